"""Pages and actions of the chat. Every view that takes an id looks the object up
through the owner-checking helpers below first: another user's object is a 404."""

from collections.abc import Callable

from asgiref.sync import async_to_sync
from django.http import HttpRequest, HttpResponse
from django.shortcuts import aget_object_or_404, get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect, push_url, reswap, retarget

from chat import answers
from chat.eventlog import get_event_log
from chat.liveness import interrupt_if_stale
from chat.login import login_required
from chat.models import Conversation, Feedback, Message, Status
from chat.rendering import message_context, render_message

SIDEBAR_SIZE = 100


def _conversation_for(request: HttpRequest, conversation_id: int) -> Conversation:
    return get_object_or_404(Conversation, pk=conversation_id, owner=request.user)


async def _aconversation_for(request: HttpRequest, conversation_id: int) -> Conversation:
    user = await request.auser()
    return await aget_object_or_404(Conversation, pk=conversation_id, owner=user)


async def amessage_for_owner(request: HttpRequest, conversation_id: int, message_id: int) -> Message:
    user = await request.auser()
    return await aget_object_or_404(
        Message.objects.select_related("conversation"),
        pk=message_id,
        role=Message.Role.ASSISTANT,
        conversation_id=conversation_id,
        conversation__owner=user,
    )


def _form_text(request: HttpRequest, name: str) -> str:
    """A field of the posted form, as text every database stores: PostgreSQL
    refuses the NUL character (a 500). Nobody types one; it is dropped."""
    return request.POST.get(name, "").replace("\x00", "")


def _refusal(request: HttpRequest, refused: answers.Refused) -> HttpResponse:
    """A refusal is shown next to the composer (HTMX) or as a page of its own."""
    html = render_to_string("chat/_notice.html", {"text": str(refused)})
    response = HttpResponse(html, status=refused.status)
    if request.htmx:
        response = retarget(response, "#notice")
        response = reswap(response, "innerHTML")
    return response


# Pages


@require_GET
@login_required
def home(request: HttpRequest) -> HttpResponse:
    return _page(request, None)


@require_GET
@login_required
def conversation(request: HttpRequest, conversation_id: int) -> HttpResponse:
    return _page(request, _conversation_for(request, conversation_id))


def _page(request: HttpRequest, current: Conversation | None) -> HttpResponse:
    conversations = Conversation.objects.filter(owner=request.user)[:SIDEBAR_SIZE]
    messages = []
    if current is not None:
        rows = list(
            current.messages.filter(superseded_by__isnull=True)
            .select_related("feedback")
            .prefetch_related("tool_calls")  # in ToolCall's own order: start_seq, id
        )
        for m in rows:
            if m.status == Status.STREAMING:
                async_to_sync(interrupt_if_stale)(m)
        last_assistant = max((m.pk for m in rows if m.role == Message.Role.ASSISTANT), default=None)
        for m in rows:
            context = message_context(m, list(m.tool_calls.all()))
            context["is_last"] = m.pk == last_assistant
            messages.append(context)
    return render(
        request,
        "chat/page.html",
        {"conversations": conversations, "sidebar_size": SIDEBAR_SIZE, "current": current, "messages": messages},
    )


# Sending and answer actions


@require_POST
@login_required
async def new_conversation(request: HttpRequest) -> HttpResponse:
    user = await request.auser()
    try:
        exchange, html = await answers.start_conversation(
            user.pk, _form_text(request, "prompt"), _rendering(request, _new_conversation_html)
        )
    except answers.Refused as refused:
        return _refusal(request, refused)
    url = reverse("chat-conversation", args=[exchange.conversation.pk])
    if not request.htmx:
        return redirect(url)
    # The answer streams in the page that sent it (no page load before the stream
    # opens): the page becomes the conversation's, its exchange replaces the welcome.
    return push_url(reswap(HttpResponse(html), "innerHTML"), url)


@require_POST
@login_required
async def send(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = await _aconversation_for(request, conversation_id)
    try:
        _, html = await answers.send_prompt(conversation, _form_text(request, "prompt"), _rendering(request, _pair_html))
    except answers.Refused as refused:
        return _refusal(request, refused)
    if not request.htmx:
        return redirect("chat-conversation", conversation.pk)
    return HttpResponse(html)


def _rendering(request: HttpRequest, render: Callable[[HttpRequest, answers.Exchange], str]) -> answers.Render:
    """What answers.* render the started exchange with: only HTMX shows a fragment."""
    if not request.htmx:
        return lambda exchange: ""
    return lambda exchange: render(request, exchange)


def _pair_html(request: HttpRequest, exchange: answers.Exchange) -> str:
    return render_message(exchange.prompt, is_last=False) + render_message(exchange.answer)


def _answer_html(request: HttpRequest, exchange: answers.Exchange) -> str:
    return render_message(exchange.answer)


def _new_conversation_html(request: HttpRequest, exchange: answers.Exchange) -> str:
    oob = render_to_string("chat/_new_conversation.html", {"current": exchange.conversation}, request=request)
    return _pair_html(request, exchange) + oob


@require_POST
@login_required
async def stop(request: HttpRequest, conversation_id: int, message_id: int) -> HttpResponse:
    message = await amessage_for_owner(request, conversation_id, message_id)
    if message.status == Status.STREAMING:
        await get_event_log().request_stop(message.pk)
    # The stream ends every open view of the answer with `done`.
    return HttpResponse(status=204) if request.htmx else redirect("chat-conversation", conversation_id)


@require_POST
@login_required
async def continue_answer(request: HttpRequest, conversation_id: int, message_id: int) -> HttpResponse:
    return await _restart(request, conversation_id, message_id, answers.continue_answer)


@require_POST
@login_required
async def retry(request: HttpRequest, conversation_id: int, message_id: int) -> HttpResponse:
    return await _restart(request, conversation_id, message_id, answers.retry_answer)


async def _restart(request: HttpRequest, conversation_id: int, message_id: int, start) -> HttpResponse:
    """Continue or Retry: the answer that now streams replaces the old one in place."""
    message = await amessage_for_owner(request, conversation_id, message_id)
    try:
        _, html = await start(message, _rendering(request, _answer_html))
    except answers.Refused as refused:
        return _refusal(request, refused)
    if not request.htmx:
        return redirect("chat-conversation", conversation_id)
    return HttpResponse(html)


@require_POST
@login_required
def feedback(request: HttpRequest, conversation_id: int, message_id: int) -> HttpResponse:
    message = get_object_or_404(
        Message,
        pk=message_id,
        role=Message.Role.ASSISTANT,
        conversation_id=conversation_id,
        conversation__owner=request.user,
    )
    if message.is_streaming:
        return HttpResponse("Wait for the answer to finish, then rate it.", status=409)
    rating = request.POST.get("rating")
    if rating not in ("1", "-1"):
        return HttpResponse("Choose thumbs up or down.", status=400)
    comment = _form_text(request, "comment").strip()[:2000]
    Feedback.objects.update_or_create(
        message=message,
        defaults={"user": request.user, "rating": int(rating), "comment": comment, "updated_at": timezone.now()},
    )
    message.refresh_from_db()
    if not request.htmx:
        return redirect("chat-conversation", conversation_id)
    return render(request, "chat/_message.html#feedback", message_context(message))


# Conversation list


@require_POST
@login_required
def rename(request: HttpRequest, conversation_id: int) -> HttpResponse:
    current = _conversation_for(request, conversation_id)
    title = " ".join(_form_text(request, "title").split())[:200]
    if title:
        current.title = title
        current.save(update_fields=["title"])
    if not request.htmx:
        return redirect("chat-conversation", current.pk)
    on_screen = request.htmx.current_url_abs_path == reverse("chat-conversation", args=[current.pk])
    return render(request, "chat/page.html#conversation_item", {"c": current, "current": current if on_screen else None})


@require_POST
@login_required
def delete(request: HttpRequest, conversation_id: int) -> HttpResponse:
    current = _conversation_for(request, conversation_id)
    for message_id in current.messages.filter(status=Status.STREAMING).values_list("pk", flat=True):
        async_to_sync(get_event_log().request_stop)(message_id)
    current.delete()
    if request.htmx and request.htmx.current_url_abs_path != reverse("chat-conversation", args=[conversation_id]):
        return HttpResponse()  # the page removes the item itself (hx-swap="delete")
    url = reverse("chat-home")
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)

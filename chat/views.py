"""Pages and actions of the chat. Every view that takes an id looks the object up
through chat/ownership.py first: another user's object is a 404."""

from collections.abc import Callable

from asgiref.sync import async_to_sync, sync_to_async
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect, push_url, replace_url, reswap, retarget

from chat import answers, listing, quotas, sharing, tree
from chat.eventlog import get_event_log
from chat.generation.liveness import interrupt_if_stale
from chat.models import Conversation, Feedback, Message, Status, UserSettings
from chat.ownership import (
    aanswer_for,
    aconversation_for,
    amessage_for,
    answer_for,
    aprompt_for,
    conversation_for,
)
from chat.provider import catalog
from chat.rendering import message_context, render_message
from chat.serving.login import login_required
from chat.storable import storable

# The list's first page (chat/listing.py pages the rest).
SIDEBAR_SIZE = listing.PAGE_SIZE
# Longest custom instructions: every answer's request carries them.
MAX_INSTRUCTIONS_CHARS = 4000


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
    current = conversation_for(request, conversation_id)
    # A link to one message (a search result) opens the branch that holds it.
    at = request.GET.get("at", "")
    if not (at.isdigit() and current.messages.filter(pk=at).exists()):
        at = None
    return _page(request, current, at=int(at) if at else None)


def _page(request: HttpRequest, current: Conversation | None, at: int | None = None) -> HttpResponse:
    picker = catalog.picker(current.model_option_id if current is not None else None)
    messages = _branch(current, picker.options, at) if current is not None else []
    return render(
        request,
        "chat/page.html",
        {
            **listing.sidebar_context(request.user),
            **sharing.panel_context(current),
            "current": current,
            "messages": messages,
            "picker": picker,
        },
    )


def _branch(current: Conversation, retry_models: list[tuple[str, str]], at: int | None = None) -> list[dict]:
    """The messages of the branch on screen, root first, each with its pager:
    three queries whatever the branch's length (its messages with their feedback
    and offered model, their tool calls, the siblings of all of them)."""
    leaf = tree.latest_under(at) if at is not None else tree.leaf_of(current)
    if leaf is None:
        return []
    if at is not None:
        current.active_leaf_id = leaf  # what the composer's prompt follows
    rows = list(
        # Tool calls in ToolCall's order.
        tree.path_to(leaf).select_related("feedback", "model_option").prefetch_related("tool_calls")
    )
    for m in rows:
        if m.status == Status.STREAMING:
            async_to_sync(interrupt_if_stale)(m)
    pagers = tree.pagers(rows)
    last_assistant = max((m.pk for m in rows if m.role == Message.Role.ASSISTANT), default=None)
    messages = []
    for m in rows:
        context = message_context(m, list(m.tool_calls.all()), retry_models)
        context["is_last"] = m.pk == last_assistant
        context["pager"] = pagers.get(m.pk)
        messages.append(context)
    return messages


def _branch_html(request: HttpRequest, current: Conversation) -> str:
    """The branch on screen after it changed (an edit, a Retry, a switch): the
    message list, and out of band what the composer's next prompt follows."""
    context = {"current": current, "messages": _branch(current, catalog.options()), "after_oob": True}
    return render_to_string("chat/page.html#message_list", context, request=request) + render_to_string(
        "chat/page.html#composer_after", context
    )


# Sending and answer actions


@require_POST
@login_required
async def new_conversation(request: HttpRequest) -> HttpResponse:
    user = await request.auser()
    prompt = request.POST.get("prompt", "")
    model = request.POST.get("model")
    try:
        exchange, html = await _begin(
            request, lambda: answers.store_new_conversation(user.pk, prompt, model), _new_conversation_html
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
    conversation = await aconversation_for(request, conversation_id)
    prompt = request.POST.get("prompt", "")
    after = request.POST.get("after", "")
    after = int(after) if after.isdigit() else None
    model = request.POST.get("model")
    try:
        _, html = await _begin(request, lambda: answers.store_prompt(conversation, prompt, after, model), _sent_html)
    except answers.Refused as refused:
        return _refusal(request, refused)
    if not request.htmx:
        return redirect("chat-conversation", conversation.pk)
    return HttpResponse(html)


Fragment = Callable[[HttpRequest, answers.Exchange], str]


def _picker_of(exchange: answers.Exchange) -> catalog.Picker:
    """The composer's picker after a prompt, from what its start read: the
    models on offer, the one that writes the answer selected."""
    choice = exchange.setup.choice
    offered = exchange.setup.retry_models
    if not offered:
        return catalog.Picker([(choice.value, choice.label)], choice.value, demo=choice.demo)
    return catalog.Picker(offered, choice.value)


async def _begin(
    request: HttpRequest, store: Callable[[], answers.Exchange], fragment: Fragment
) -> tuple[answers.Exchange, str]:
    """Store the exchange and render its fragment (HTMX only) in one trip to the
    database thread, then start its answer: the rows are the generation's from
    then on."""
    exchange, html = await sync_to_async(_stored_and_rendered)(request, store, fragment)
    await answers.start(exchange)
    return exchange, html


def _stored_and_rendered(
    request: HttpRequest, store: Callable[[], answers.Exchange], fragment: Fragment
) -> tuple[answers.Exchange, str]:
    exchange = store()
    return exchange, fragment(request, exchange) if request.htmx else ""


def _pair_html(request: HttpRequest, exchange: answers.Exchange) -> str:
    return render_message(exchange.prompt, is_last=False) + render_message(exchange.answer)


def _sent_html(request: HttpRequest, exchange: answers.Exchange) -> str:
    # The composer that sent the prompt takes the fresh one from the answer (hx-select-oob).
    context = {"current": exchange.conversation, "picker": _picker_of(exchange)}
    composer = render_to_string("chat/page.html#composer", context, request=request)
    return _pair_html(request, exchange) + composer


def _answer_html(request: HttpRequest, exchange: answers.Exchange) -> str:
    return render_message(exchange.answer)


def _new_branch_html(request: HttpRequest, exchange: answers.Exchange) -> str:
    return _branch_html(request, exchange.conversation)


def _new_conversation_html(request: HttpRequest, exchange: answers.Exchange) -> str:
    # The conversation joins the list on top; "No conversations yet." goes.
    owned = Conversation.objects.filter(owner_id=exchange.conversation.owner_id)
    context = {"current": exchange.conversation, "first": owned.count() == 1, "picker": _picker_of(exchange)}
    oob = render_to_string("chat/_new_conversation.html", context, request=request)
    return _pair_html(request, exchange) + oob


@require_POST
@login_required
async def stop(request: HttpRequest, conversation_id: int, message_id: int) -> HttpResponse:
    message = await aanswer_for(request, conversation_id, message_id)
    if message.status == Status.STREAMING:
        await get_event_log().request_stop(message.pk)
    # The stream ends every open view of the answer with `done`.
    return HttpResponse(status=204) if request.htmx else redirect("chat-conversation", conversation_id)


@require_POST
@login_required
async def continue_answer(request: HttpRequest, conversation_id: int, message_id: int) -> HttpResponse:
    """The answer goes on in place."""
    message = await aanswer_for(request, conversation_id, message_id)
    try:
        _, html = await _begin(request, lambda: answers.store_continue(message), _answer_html)
    except answers.Refused as refused:
        return _refusal(request, refused)
    if not request.htmx:
        return redirect("chat-conversation", conversation_id)
    return HttpResponse(html)


@require_POST
@login_required
async def retry(request: HttpRequest, conversation_id: int, message_id: int) -> HttpResponse:
    """A new answer to the same prompt, beside the old one: the page shows its
    branch. Written by the conversation's model, or the one `model` names
    ("Retry with")."""
    message = await aanswer_for(request, conversation_id, message_id)
    model = request.POST.get("model")
    try:
        _, html = await _begin(request, lambda: answers.store_retry(message, model), _new_branch_html)
    except answers.Refused as refused:
        return _refusal(request, refused)
    return _branch_response(request, conversation_id, html)


@require_POST
@login_required
async def edit(request: HttpRequest, conversation_id: int, message_id: int) -> HttpResponse:
    """An earlier prompt, edited and sent again: a new branch from that point."""
    original = await aprompt_for(request, conversation_id, message_id)
    prompt = request.POST.get("prompt", "")
    try:
        _, html = await _begin(request, lambda: answers.store_edit(original, prompt), _new_branch_html)
    except answers.Refused as refused:
        return _refusal(request, refused)
    return _branch_response(request, conversation_id, html)


@require_POST
@login_required
async def switch(request: HttpRequest, conversation_id: int, message_id: int) -> HttpResponse:
    """Show the alternative `message_id` and the rest of its branch, down to its
    newest message. Whatever streams elsewhere goes on streaming."""
    message = await amessage_for(request, conversation_id, message_id)
    html = await sync_to_async(_switched)(request, message)
    return _branch_response(request, conversation_id, html)


def _switched(request: HttpRequest, message: Message) -> str:
    current = message.conversation
    current.active_leaf_id = tree.latest_under(message.pk)
    current.save(update_fields=["active_leaf"])
    return _branch_html(request, current) if request.htmx else ""


def _branch_response(request: HttpRequest, conversation_id: int, html: str) -> HttpResponse:
    if not request.htmx:
        return redirect("chat-conversation", conversation_id)
    # The list is replaced whatever element asked; a page opened at a search
    # result's branch (?at=) now shows the stored one, which a reload shows too.
    response = reswap(retarget(HttpResponse(html), "#messages"), "innerHTML")
    return replace_url(response, reverse("chat-conversation", args=[conversation_id]))


@require_POST
@login_required
def feedback(request: HttpRequest, conversation_id: int, message_id: int) -> HttpResponse:
    message = answer_for(request, conversation_id, message_id)
    if message.is_streaming:
        return HttpResponse("Wait for the answer to finish, then rate it.", status=409)
    rating = request.POST.get("rating")
    if rating not in ("1", "-1"):
        return HttpResponse("Choose thumbs up or down.", status=400)
    comment = storable(request.POST.get("comment", "")).strip()[:2000]
    Feedback.objects.update_or_create(
        message=message,
        defaults={"user": request.user, "rating": int(rating), "comment": comment, "updated_at": timezone.now()},
    )
    message.refresh_from_db()
    if not request.htmx:
        return redirect("chat-conversation", conversation_id)
    return render(request, "chat/_message.html#feedback", message_context(message, retry_models=[]))


# Conversation list


@require_POST
@login_required
def rename(request: HttpRequest, conversation_id: int) -> HttpResponse:
    current = conversation_for(request, conversation_id)
    title = " ".join(storable(request.POST.get("title", "")).split())[:200]
    if title:
        current.title = title
        current.save(update_fields=["title"])
    if not request.htmx:
        return redirect("chat-conversation", current.pk)
    on_screen = request.htmx.current_url_abs_path == reverse("chat-conversation", args=[current.pk])
    return render(request, "chat/page.html#renamed", {"c": current, "current": current if on_screen else None})


@require_POST
@login_required
def delete(request: HttpRequest, conversation_id: int) -> HttpResponse:
    current = conversation_for(request, conversation_id)
    for message_id in current.messages.filter(status=Status.STREAMING).values_list("pk", flat=True):
        async_to_sync(get_event_log().request_stop)(message_id)
    current.delete()
    if request.htmx and request.htmx.current_url_abs_path != reverse("chat-conversation", args=[conversation_id]):
        return HttpResponse()  # the page removes the item itself (hx-swap="delete")
    url = reverse("chat-home")
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


# The user's settings


@require_GET
@login_required
def settings_page(request: HttpRequest) -> HttpResponse:
    own = UserSettings.objects.filter(user=request.user).values_list("instructions", flat=True).first()
    return _settings_page(request, own or "", saved="saved" in request.GET)


@require_POST
@login_required
def save_instructions(request: HttpRequest) -> HttpResponse:
    """The user's custom instructions, sent to the model after the site's in every
    conversation (chat/provider/prompt.py)."""
    instructions = storable(request.POST.get("instructions", "")).strip()
    if len(instructions) > MAX_INSTRUCTIONS_CHARS:
        error = (
            f"Those instructions are {len(instructions):,} characters long; the limit is "
            f"{MAX_INSTRUCTIONS_CHARS:,}. Shorten them, then save."
        )
        return _settings_page(request, instructions, error=error, status=422)
    UserSettings.objects.update_or_create(user=request.user, defaults={"instructions": instructions})
    return redirect(reverse("chat-settings") + "?saved=1")


def _settings_page(
    request: HttpRequest, instructions: str, *, saved: bool = False, error: str = "", status: int = 200
) -> HttpResponse:
    context = {
        "instructions": instructions,
        "limit": MAX_INSTRUCTIONS_CHARS,
        "saved": saved,
        "error": error,
        **quotas.usage_summary(request.user.pk),
    }
    return render(request, "chat/settings.html", context, status=status)

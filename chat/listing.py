"""The conversation list: pinned conversations first, then the others newest
first, a page at a time (a cursor, not an offset: a conversation that moves to
the top while one scrolls neither repeats nor hides another); the archived ones
in a view of their own; and search across all of them (chat/search.py)."""

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode, urlsplit

from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.urls import Resolver404, resolve, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from chat import search as fulltext
from chat.models import Conversation
from chat.ownership import conversation_for, conversations_of
from chat.provider import catalog
from chat.serving.login import login_required

PAGE_SIZE = 100
SEARCH_RESULTS = 30


@dataclass(frozen=True)
class Page:
    conversations: list[Conversation]
    # The next page's URL; none after the last.
    more_url: str | None


def _cursor(conversation: Conversation) -> str:
    return f"{conversation.updated_at.isoformat()}~{conversation.pk}"


def _after_cursor(queryset: QuerySet[Conversation], cursor: str) -> QuerySet[Conversation]:
    """The conversations listed after the one `cursor` names. A cursor that is no
    cursor is a ValueError."""
    when, _, pk = cursor.rpartition("~")
    updated_at, pk = datetime.fromisoformat(when), int(pk)
    if timezone.is_naive(updated_at):
        raise ValueError("a cursor has a time zone")
    return queryset.filter(Q(updated_at__lt=updated_at) | Q(updated_at=updated_at, pk__lt=pk))


def page_of(user, *, archived: bool = False, after: str = "") -> Page:
    """A page of the list: unpinned conversations out of the archive, or (the
    "Archived" view) the archived ones, newest first."""
    queryset = conversations_of(user).filter(archived_at__isnull=not archived)
    if not archived:
        queryset = queryset.filter(pinned_at__isnull=True)
    if after:
        queryset = _after_cursor(queryset, after)
    rows = list(queryset.order_by("-updated_at", "-pk")[: PAGE_SIZE + 1])
    more_url = None
    if len(rows) > PAGE_SIZE:
        rows = rows[:PAGE_SIZE]
        query = {"after": _cursor(rows[-1])} | ({"archived": "1"} if archived else {})
        more_url = reverse("chat-list") + "?" + urlencode(query)
    return Page(rows, more_url)


def pinned_of(user) -> list[Conversation]:
    """Pinned conversations, latest pinned first: few, all shown."""
    return list(
        conversations_of(user).filter(pinned_at__isnull=False, archived_at__isnull=True).order_by("-pinned_at", "-pk")
    )


def sidebar_context(user, *, archived: bool = False) -> dict:
    return {
        "pinned": [] if archived else pinned_of(user),
        "page": page_of(user, archived=archived),
        "archived_view": archived,
    }


def _on_screen(request: HttpRequest) -> Conversation | None:
    """The conversation of the page that asked (HTMX), to mark it in the list."""
    if not request.htmx or not request.htmx.current_url:
        return None
    try:
        match = resolve(urlsplit(request.htmx.current_url).path)
    except Resolver404:
        return None
    if match.url_name != "chat-conversation":
        return None
    return conversations_of(request.user).filter(pk=match.kwargs["conversation_id"]).first()


@require_GET
@login_required
def conversation_list(request: HttpRequest) -> HttpResponse:
    """The next page of the list ("Load more", or scrolling to its end)."""
    archived = request.GET.get("archived") == "1"
    try:
        page = page_of(request.user, archived=archived, after=request.GET.get("after", ""))
    except ValueError:
        return HttpResponseBadRequest("That is not a place in the list.")
    context = {"page": page, "current": _on_screen(request), "archived_view": archived}
    if not request.htmx:
        return _page(request, {**context, "pinned": []})
    return render(request, "chat/page.html#conversation_page", context)


@require_GET
@login_required
def archived(request: HttpRequest) -> HttpResponse:
    """The page with the archived conversations in the list."""
    return _page(request, sidebar_context(request.user, archived=True))


def _lists_changed(request: HttpRequest, conversation: Conversation) -> HttpResponse:
    archived_view = request.POST.get("view") == "archived"
    if not request.htmx:
        return redirect("chat-archived" if archived_view else "chat-home")
    context = {**sidebar_context(request.user, archived=archived_view), "current": _on_screen(request)}
    return render(request, "chat/page.html#conversation_lists", context)


@require_POST
@login_required
def pin(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """Pin (pinned=1) or unpin a conversation. Pinning brings it out of the archive."""
    conversation = conversation_for(request, conversation_id)
    if request.POST.get("pinned") == "1":
        conversation.pinned_at, conversation.archived_at = timezone.now(), None
    else:
        conversation.pinned_at = None
    conversation.save(update_fields=["pinned_at", "archived_at"])
    return _lists_changed(request, conversation)


@require_POST
@login_required
def archive(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """Archive (archived=1) or bring back a conversation. Archiving unpins it."""
    conversation = conversation_for(request, conversation_id)
    if request.POST.get("archived") == "1":
        conversation.archived_at, conversation.pinned_at = timezone.now(), None
    else:
        conversation.archived_at = None
    conversation.save(update_fields=["pinned_at", "archived_at"])
    return _lists_changed(request, conversation)


@require_GET
@login_required
def search(request: HttpRequest) -> HttpResponse:
    """Results as one types (HTMX: the fragment; nothing typed, nothing), or a
    page with them in the list."""
    query = request.GET.get("q", "")[:500]
    hits = fulltext.search(request.user.pk, query, limit=SEARCH_RESULTS) if query.strip() else []
    context = {"query": query, "hits": hits, "searched": bool(fulltext.parse(query))}
    if request.htmx:
        return render(request, "chat/_search_results.html", context)
    return _page(request, {**sidebar_context(request.user), **context})


def _page(request: HttpRequest, context: dict) -> HttpResponse:
    """A whole page around the list: no conversation on screen, and a composer
    with its model picker that starts a new one."""
    return render(request, "chat/page.html", {**context, "messages": [], "picker": catalog.picker(None)})

"""Read-only links to one branch of a conversation.

A link is an unguessable token. It shows the branch as it was when shared (a
snapshot, stored with the link) or as it is now (live: the branch under the
message it was shared from, with what was added below it since; or whichever
branch the owner has on screen). Only people logged in to the site may open it,
or anyone if the owner chose so and the site allows it (CHAT_ALLOW_PUBLIC_SHARES).

The page shows the branch's text and nothing else of the owner's: no list of
their conversations, no ids (of the conversation, its messages, other branches),
no controls. A revoked link is a 404, as one that never existed.
"""

import secrets
from datetime import datetime

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from chat import tree
from chat.markdown import render_markdown
from chat.models import Conversation, Message, Share, Status
from chat.ownership import conversation_for
from chat.serving.login import login_required
from chat.storable import storable

MODES = {"snapshot", "live", "follow"}


def panel_context(current: Conversation | None) -> dict:
    """What the page's Share menu shows: the conversation's links still open."""
    if current is None:
        return {}
    return {
        "shares": list(current.shares.filter(revoked_at__isnull=True)),
        "public_shares_allowed": settings.CHAT_ALLOW_PUBLIC_SHARES,
    }


def _branch_rows(conversation: Conversation, anchor: int | None) -> list[Message]:
    leaf = tree.latest_under(anchor) if anchor is not None else tree.leaf_of(conversation)
    if leaf is None:
        return []
    return list(tree.path_to(leaf).prefetch_related("tool_calls"))


def _shown(message: Message) -> dict:
    """A message as a shared page shows it: no id, nothing staff or the
    provider said about it."""
    return {
        "role": message.role,
        "content": message.content,
        "created_at": message.created_at.isoformat(),
        "tools": [call.name for call in message.tool_calls.all()],
        "unfinished": message.status == Status.STREAMING,
    }


def create(conversation: Conversation, mode: str, public: bool) -> Share:
    anchor = tree.leaf_of(conversation)
    share = Share(
        conversation=conversation,
        token=secrets.token_urlsafe(24),
        leaf_id=None if mode == "follow" else anchor,
        public=public and settings.CHAT_ALLOW_PUBLIC_SHARES,
    )
    if mode == "snapshot":
        share.snapshot = {
            "title": conversation.title,
            "messages": [_shown(m) for m in _branch_rows(conversation, anchor)],
        }
    share.save()
    return share


def _panel(request: HttpRequest, conversation: Conversation, status: int = 200) -> HttpResponse:
    if not request.htmx:
        return redirect("chat-conversation", conversation.pk)
    context = {"current": conversation, **panel_context(conversation)}
    return render(request, "chat/_share_panel.html", context, status=status)


@require_POST
@login_required
def share(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = conversation_for(request, conversation_id)
    mode = request.POST.get("mode", "snapshot")
    if mode not in MODES:
        return HttpResponse("Choose a snapshot or a live link.", status=400)
    create(conversation, mode, public=request.POST.get("public") == "1")
    return _panel(request, conversation)


@require_POST
@login_required
def revoke(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = conversation_for(request, conversation_id)
    share_id = storable(request.POST.get("share", ""))
    # ASCII digits only: "²".isdigit() is true, and no id.
    if share_id.isascii() and share_id.isdigit():
        conversation.shares.filter(pk=share_id, revoked_at__isnull=True).update(revoked_at=timezone.now())
    return _panel(request, conversation)


@require_GET
def shared(request: HttpRequest, token: str) -> HttpResponse:
    """The shared branch, read-only."""
    share = get_object_or_404(Share.objects.select_related("conversation"), token=token, revoked_at__isnull=True)
    if not (share.public and settings.CHAT_ALLOW_PUBLIC_SHARES) and not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if share.is_snapshot:
        title, shown = share.snapshot["title"], share.snapshot["messages"]
    else:
        rows = _branch_rows(share.conversation, share.leaf_id)
        if not rows:
            raise Http404
        title, shown = share.conversation.title, [_shown(m) for m in rows]
    messages = [
        {
            **m,
            "created_at": datetime.fromisoformat(m["created_at"]),
            "html": render_markdown(m["content"]) if m["role"] == Message.Role.ASSISTANT else None,
        }
        for m in shown
    ]
    return render(request, "chat/shared.html", {"share": share, "title": title, "shared_messages": messages})

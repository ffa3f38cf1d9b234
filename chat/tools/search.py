"""search_conversations: find what the calling user said or was told before.

It only ever reads the calling user's own conversations (ToolContext.user_id).
"""

import re
from functools import reduce
from operator import and_

from asgiref.sync import sync_to_async
from django.db.models import Q
from django.urls import reverse

from chat.models import Message
from chat.tools.registry import Tool, ToolContext, ToolError, register

MAX_RESULTS = 5
SNIPPET = 160


def search(user_id: int, query: str, *, exclude_conversation: int | None = None) -> list[dict]:
    words = [w for w in re.findall(r"\w+", query.lower()) if len(w) > 1][:8]
    if not words:
        return []
    matches = (
        # Every branch: an alternative the user paged away from is still theirs.
        Message.objects.filter(conversation__owner_id=user_id)
        .filter(reduce(and_, (Q(content__icontains=w) for w in words)))
        .select_related("conversation")
        .order_by("-created_at")
    )
    if exclude_conversation is not None:
        matches = matches.exclude(conversation_id=exclude_conversation)
    return [
        {
            "conversation": m.conversation.title,
            "role": m.role,
            "date": m.created_at.date().isoformat(),
            "snippet": _snippet(m.content, words[0]),
            # Opens the branch that holds the message (chat.views.conversation).
            "link": reverse("chat-conversation", args=[m.conversation_id]) + f"?at={m.pk}#msg-{m.pk}",
        }
        for m in matches[:MAX_RESULTS]
    ]


def _snippet(text: str, word: str) -> str:
    at = text.lower().find(word)
    start = max(at - SNIPPET // 3, 0)
    snippet = " ".join(text[start : start + SNIPPET].split())
    return ("…" if start else "") + snippet + ("…" if start + SNIPPET < len(text) else "")


async def _run(args: dict, ctx: ToolContext) -> str:
    query = args.get("query")
    if not isinstance(query, str) or not query.strip():
        raise ToolError("Give a non-empty 'query' to search for.")
    results = await sync_to_async(search)(ctx.user_id, query, exclude_conversation=ctx.conversation_id)
    if not results:
        return f"No earlier messages mention {query!r}."
    lines = [f"- [{r['conversation']}]({r['link']}) ({r['date']}, {r['role']}): {r['snippet']}" for r in results]
    return f"Earlier messages that mention {query!r}:\n" + "\n".join(lines)


register(
    Tool(
        name="search_conversations",
        description=(
            "Search the user's own earlier conversations (other chats, not this one) for words, "
            "and return matching snippets with links. Use it when the user asks what they said, "
            "asked or were told before."
        ),
        parameters={
            "type": "object",
            "properties": {"query": {"type": "string", "description": "Words to look for."}},
            "required": ["query"],
        },
        run=_run,
    )
)

"""search_conversations: find what the calling user said or was told before.

It only ever reads the calling user's own conversations (ToolContext.user_id).
"""

from html import unescape

from asgiref.sync import sync_to_async
from django.utils.html import strip_tags

from chat import search as fulltext
from chat.tools.registry import Tool, ToolContext, ToolError, register

MAX_RESULTS = 5


def search(user_id: int, query: str, *, exclude_conversation: int | None = None) -> list[dict]:
    """The page's search (chat/search.py): titles and every branch's messages."""
    hits = fulltext.search(user_id, query, limit=MAX_RESULTS, titles=2, exclude_conversation=exclude_conversation)
    return [
        {
            "conversation": hit.title,
            "role": hit.role or "title",
            "date": hit.date.date().isoformat(),
            "snippet": unescape(strip_tags(str(hit.snippet))),
            # Opens the branch that holds the message (chat.views.conversation).
            "link": hit.link,
        }
        for hit in hits
    ]


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

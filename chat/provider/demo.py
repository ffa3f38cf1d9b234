"""The offline demo model: answers without any provider, so the product runs on a
fresh machine. It is an httpx2 transport that speaks the OpenAI streaming wire
format, so answers go through exactly the client code a real provider uses.

It calls the built-in tools when a prompt asks for what they do: arithmetic, the
time somewhere, or what the user said before. It thinks aloud first, as a
reasoning model does (a short passage in `reasoning_content` deltas), so the
thinking block can be seen without a provider.
"""

import asyncio
import json
import re
from collections.abc import AsyncIterator

import httpx2
from django.conf import settings

from chat.provider import wire
from chat.provider.prompt import CONTINUE_MARKER

_ARITHMETIC_RUN = re.compile(r"[\d\s.+\-*/%^()]+")
_TIME = re.compile(r"\btime\b.*?\bin\s+([A-Za-z_/ ]+?)\s*[?.!]*$", re.IGNORECASE)
_RECALL = re.compile(
    r"(?:what did i (?:say|write|ask) about|search my (?:conversations|chats) for|did i mention)\s+(.+?)\s*[?.!]*$",
    re.IGNORECASE,
)
_ZONES = {
    "paris": "Europe/Paris",
    "london": "Europe/London",
    "berlin": "Europe/Berlin",
    "madrid": "Europe/Madrid",
    "rome": "Europe/Rome",
    "new york": "America/New_York",
    "chicago": "America/Chicago",
    "los angeles": "America/Los_Angeles",
    "san francisco": "America/Los_Angeles",
    "tokyo": "Asia/Tokyo",
    "sydney": "Australia/Sydney",
    "singapore": "Asia/Singapore",
    "mumbai": "Asia/Kolkata",
    "utc": "UTC",
}


class DemoModelTransport(httpx2.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(await request.aread())
        chunks = plan(body)
        return httpx2.Response(
            200,
            headers={"content-type": "text/event-stream"},
            content=_paced(chunks, settings.CHAT_DEMO_DELAY),
            request=request,
        )


async def _paced(chunks: list[dict], delay: float) -> AsyncIterator[bytes]:
    for chunk in chunks:
        delta = chunk["choices"][0]["delta"] if chunk["choices"] else {}
        if delay and (delta.get("content") or delta.get("reasoning_content")):
            await asyncio.sleep(delay)
        yield wire.sse(chunk)
    yield wire.DONE


def plan(body: dict) -> list[dict]:
    """The chunks of the demo model's reply to a chat-completions request."""
    messages = body.get("messages", [])
    offered = {t["function"]["name"] for t in body.get("tools") or []}
    last = messages[-1] if messages else {"role": "user", "content": ""}
    # It thinks before it answers a prompt, not when it goes on after its tools
    # or from a partial answer.
    thought = ""
    if last["role"] == "tool":
        text = _after_tools(messages)
    else:
        prompt = _text(last.get("content"))
        call = _tool_call_for(prompt, offered) if CONTINUE_MARKER not in prompt else None
        if call is not None:
            name, arguments = call
            return [
                wire.role_chunk(),
                *_thinking(_thought_before_tool(name, arguments)),
                wire.tool_call_chunk(0, id=f"call_demo_{len(messages)}", name=name),
                wire.tool_call_chunk(0, arguments=json.dumps(arguments)),
                wire.finish_chunk("tool_calls"),
                wire.usage_chunk(_count(messages), 12),
            ]
        if CONTINUE_MARKER in prompt:
            text = _continuation(messages)
        else:
            text = _answer(prompt)
            thought = _thought_before_answer(prompt)
    pieces = _words(text)
    limit = body.get("max_tokens") or body.get("max_completion_tokens")
    finish = "stop"
    if limit and len(pieces) > limit:
        pieces, finish = pieces[:limit], "length"
    return [
        wire.role_chunk(),
        *_thinking(thought),
        *(wire.text_chunk(p) for p in pieces),
        wire.finish_chunk(finish),
        wire.usage_chunk(_count(messages), len(pieces)),
    ]


def _words(text: str) -> list[str]:
    return re.findall(r"\s*\S+|\s+", text)


def _thinking(thought: str) -> list[dict]:
    return [wire.reasoning_chunk(word) for word in _words(thought)]


def _thought_before_answer(prompt: str) -> str:
    topic = " ".join(prompt.split()[:6]) or "nothing in particular"
    return (
        f'The user wrote "{topic}". I am the demo model, with no real knowledge behind me, '
        "so the honest answer says so.\n\n"
        "What helps most: show what a streamed answer looks like (a list, a code block), "
        "then point to what I can really do: arithmetic, the time in a city, a search of earlier chats."
    )


def _thought_before_tool(name: str, arguments: dict) -> str:
    what = ", ".join(f"{key} {value}" for key, value in arguments.items())
    return f"The user asks for something the {name} tool answers exactly. Better to call it ({what}) than to guess."


def _text(content) -> str:
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""


def _count(messages: list[dict]) -> int:
    return sum(len(_text(m.get("content")).split()) for m in messages) + 5


def _tool_call_for(prompt: str, offered: set[str]) -> tuple[str, dict] | None:
    recall = _RECALL.search(prompt)
    if recall and "search_conversations" in offered:
        return "search_conversations", {"query": recall.group(1)}
    time = _TIME.search(prompt)
    if time and "current_time" in offered:
        place = time.group(1).strip()
        return "current_time", {"timezone": _ZONES.get(place.lower(), place.replace(" ", "_"))}
    expression = _arithmetic(prompt)
    if expression and "calculator" in offered:
        return "calculator", {"expression": expression}
    return None


def _arithmetic(prompt: str) -> str | None:
    """The longest run of arithmetic in the prompt that has a digit and an operator."""
    runs = [r.strip() for r in _ARITHMETIC_RUN.findall(prompt)]
    runs = [r for r in runs if re.search(r"\d", r) and re.search(r"\d\s*[-+*/%^]", r)]
    if not runs:
        return None
    return max(runs, key=len).replace("^", "**")


def _after_tools(messages: list[dict]) -> str:
    results = []
    for m in reversed(messages):
        if m["role"] != "tool":
            break
        results.append(_text(m.get("content")))
    results.reverse()
    if len(results) == 1:
        return f"Here is what the tool returned:\n\n> {results[0]}\n\nAsk me anything else."
    listed = "\n".join(f"- {r}" for r in results)
    return f"Here is what the tools returned:\n\n{listed}\n"


def _answer(prompt: str) -> str:
    topic = " ".join(prompt.split()[:12]) or "your question"
    return (
        f"You asked about **{topic}**. I am the offline *demo model*: I answer without "
        "any provider, so this text is a sample of what streaming looks like, not a real answer.\n\n"
        "Here is what I can do for real:\n\n"
        "1. Arithmetic with the calculator tool: try *what is 12 * (3 + 4)?*\n"
        "2. The time anywhere: try *what time is it in Tokyo?*\n"
        "3. Recall your own chats: try *what did I say about holidays?*\n\n"
        "A code block, to show the formatting:\n\n"
        "```python\n"
        "def greet(name: str) -> str:\n"
        '    return f"Hello, {name}!"\n'
        "```\n\n"
        "Set `OPENAI_API_KEY` (and optionally `OPENAI_BASE_URL` and `CHAT_MODEL`), or add a provider in the admin, "
        "to talk to a real model."
    )


def _continuation(messages: list[dict]) -> str:
    """Go on from a partial answer: the rest of what the demo would have said."""
    partial = ""
    prompt = ""
    for m in messages:
        if m["role"] == "user" and CONTINUE_MARKER not in _text(m.get("content")):
            prompt, partial = _text(m.get("content")), ""
        elif m["role"] == "assistant":
            partial += _text(m.get("content"))
    full = _answer(prompt)
    if full.startswith(partial) and len(full) > len(partial):
        return full[len(partial) :]
    return " (continued) That is the end of the demo answer."

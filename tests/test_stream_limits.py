"""Open answer streams are bounded per user, and a stream that ends leaves
nothing behind: not in the count of the user's streams, not in memory.

Streams are read through the application daphne serves (chatproject.asgi), the
way daphne drives it: a request, the response's messages as they come, and a
disconnect when the tab goes.

Personas: `alice` follows her answer from several tabs; `bob` is another user,
whose streams never count against alice's.
"""

import asyncio
import gc
import html
import os

import pytest
from asgiref.testing import ApplicationCommunicator
from django.http import HttpRequest
from django.test import AsyncClient

from chat.eventlog import get_event_log
from chat.models import Conversation, Message
from chatproject.asgi import application as served
from tests.conftest import HTMX, finished, send
from tests.openai_stub import Stream
from tests.sse_client import Frame, parse

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast")]

REPLACED = "too many answers open in other tabs or windows"


def _scope(path: str, client: AsyncClient) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


class Tab:
    """A browser tab reading an answer's stream through the served application."""

    def __init__(self, client: AsyncClient, message: Message) -> None:
        path = f"/c/{message.conversation_id}/m/{message.pk}/stream/"
        self.app = ApplicationCommunicator(served, _scope(path, client))
        self.body = ""
        self.ended = False

    async def open(self) -> "Tab":
        """Once the answer's text arrives, the stream waits for more: it counts."""
        await self.app.send_input({"type": "http.request", "body": b"", "more_body": False})
        start = await self.app.receive_output(10)
        assert start["status"] == 200
        await self.read_until("event: text_delta")
        return self

    async def _receive(self) -> None:
        message = await self.app.receive_output(10)
        self.body += message.get("body", b"").decode()
        self.ended = not message.get("more_body", False)

    async def read_until(self, text: str) -> None:
        while text not in self.body and not self.ended:
            await self._receive()
        assert text in self.body, self.body

    async def read_to_the_end(self) -> list[Frame]:
        while not self.ended:
            await self._receive()
        return parse(self.body)

    async def stays_open(self) -> bool:
        return await self.app.receive_nothing(timeout=0.3)

    async def close(self) -> None:
        """The tab goes away."""
        if not self.ended:
            await self.app.send_input({"type": "http.disconnect"})
        await self.app.wait(10)


async def hung_answer(stub, client: AsyncClient, owner) -> Message:
    """An answer that keeps streaming: a word, then nothing until it is stopped."""
    stub.script(Stream(["Hello"], hang=True))
    conversation = await Conversation.objects.acreate(owner=owner, title="A long answer")
    return await send(client, conversation, "Take your time")


async def stop(client: AsyncClient, message: Message) -> None:
    response = await client.post(f"/c/{message.conversation_id}/m/{message.pk}/stop/", headers=HTMX)
    assert response.status_code == 204
    await finished(message.pk)


async def streams_left(user_id: int) -> list[str]:
    """The user's streams the event log still counts: what a stream opened now,
    with room for itself alone, would replace."""
    log = get_event_log()
    try:
        return await log.open_stream(user_id, "probe", 1)
    finally:
        await log.close_stream(user_id, "probe")


async def test_a_newer_stream_replaces_the_oldest_beyond_the_limit(stub, settings, alice, alice_async, bob, bob_async):
    settings.CHAT_MAX_STREAMS_PER_USER = 2
    answer = await hung_answer(stub, alice_async, alice)
    bobs = await hung_answer(stub, bob_async, bob)
    tabs: list[Tab] = []
    try:
        first, second = [await Tab(alice_async, answer).open() for _ in range(2)]
        tabs += [first, second]
        # bob's streams are his own count.
        tabs += [await Tab(bob_async, bobs).open() for _ in range(2)]
        assert await first.stays_open()

        third = await Tab(alice_async, answer).open()
        tabs.append(third)
        # The oldest ends, at once, with the answer as stored and a notice instead
        # of a stream: no sse-connect, so the page does not reconnect.
        *_, last = await first.read_to_the_end()
        assert last.event == "error"
        assert REPLACED in html.unescape(last.data)
        assert "Hello" in last.data
        assert "sse-connect" not in last.data
        for tab in tabs[1:]:
            assert await tab.stays_open()
    finally:
        for tab in tabs:
            await tab.close()
        await stop(alice_async, answer)
        await stop(bob_async, bobs)


async def test_a_stream_that_ends_no_longer_counts(stub, settings, alice, alice_async):
    """However it ends: the tab goes, a newer stream replaces it, the answer ends."""
    settings.CHAT_MAX_STREAMS_PER_USER = 1
    answer = await hung_answer(stub, alice_async, alice)
    gone = await Tab(alice_async, answer).open()
    await gone.close()
    assert await streams_left(alice.pk) == []

    replaced = await Tab(alice_async, answer).open()
    last = await Tab(alice_async, answer).open()
    assert (await replaced.read_to_the_end())[-1].event == "error"
    await replaced.close()
    await stop(alice_async, answer)
    assert (await last.read_to_the_end())[-1].event == "done"
    await last.close()
    assert await streams_left(alice.pk) == []


def _of_the_request(o) -> bool:
    """The request, Django's two tasks for it, the stream's generator. (Checked by
    type: isinstance() on a weak proxy whose object is gone raises.)"""
    kind = type(o)
    if issubclass(kind, asyncio.Task):
        return o.get_coro().__name__ in ("process_request", "listen_for_disconnect")
    return issubclass(kind, HttpRequest) or (kind.__name__ == "async_generator" and o.__name__ == "answer_events")


@pytest.mark.xfail(
    bool(os.environ.get("REDIS_URL")),
    reason="Open defect: on the Redis event log a closed stream's request task is left in a reference "
    "cycle since MCP tools landed (it passes on the in-process log); its cause is not found yet.",
    strict=False,
)
async def test_a_closed_stream_leaves_nothing_for_the_garbage_collector(stub, alice, alice_async):
    """The request, its tasks and the stream are freed when the tab goes, not at
    the collector's next full pass: that may come long after on a busy server,
    and never for what chat/generation.py froze (gc.freeze) while they were open.
    (A page is short-lived; Django's template contexts leave it in cycles.)"""
    answer = await hung_answer(stub, alice_async, alice)
    gc.collect()
    gc.disable()
    try:
        tab = await Tab(alice_async, answer).open()
        await tab.close()
        del tab
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left = [repr(o) for o in gc.garbage if _of_the_request(o)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
        await stop(alice_async, answer)
    assert left == []

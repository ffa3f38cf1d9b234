"""Faults of the serving processes, against real daphne workers: a worker killed
with SIGKILL mid-answer (one worker on SQLite; two on PostgreSQL and Redis) and
Redis restarted mid-answer (two workers). After each, no stored character is
lost beyond the flush interval (CHAT_FLUSH_INTERVAL, 250 ms), no answer is left
`streaming` without a generation, the user is shown what happened, and the next
prompt is answered.

The loss is measured against what a viewer had received: a text that reached
the viewer was already with the server, so it was due in the database at most
one flush interval later. Whatever reached the viewer that long before the kill
(plus the write's own time) must be stored.
"""

import os
import re
import threading
import time

import httpx2
import pytest
from django.conf import settings

from tests import test_many_workers as many_workers
from tests.conftest import texts
from tests.live import Browserless, LiveServer
from tests.openai_stub import Stream
from tests.sse_client import Frame
from tests.test_live_resume import (
    WORDS,
    _page_body_and_cursor,
    assert_interrupted_then_continued,
)

pytestmark = pytest.mark.slow

# Workers on a PostgreSQL database of this module's, each with the Redis it is given.
database = many_workers.database
start_worker = many_workers.start_worker

ON_POSTGRES = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))
sqlite_pass = pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="one worker on SQLite: the first pass")
postgres_pass = pytest.mark.skipif(not ON_POSTGRES, reason="PostgreSQL and Redis: the second pass (DATABASE_URL)")

ANSWER = "".join(WORDS)
# One word every 50 ms: 80 words, 4 s.
WORD_DELAY = 0.05
# A write takes its own time after it falls due (a trip to the database thread
# and a commit) on a busy machine.
WRITE_TIME = 0.15


class Watcher:
    """A viewer reading an answer's stream in a thread, noting when each frame came."""

    def __init__(self, viewer: Browserless, conversation_id: int, message_id: int, after: int = 0) -> None:
        self.conversation_id, self.message_id = conversation_id, message_id
        self.frames: list[tuple[float, Frame]] = []
        self.ended = threading.Event()
        self._thread = threading.Thread(
            target=self._read, args=(viewer, conversation_id, message_id, after), daemon=True
        )
        self._thread.start()

    def _read(self, viewer: Browserless, conversation_id: int, message_id: int, after: int) -> None:
        try:
            for frame in viewer.frames(conversation_id, message_id, after=after):
                self.frames.append((time.monotonic(), frame))
        except httpx2.HTTPError:
            pass  # the server died under the stream
        finally:
            self.ended.set()

    def wait_for_words(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.text_before(time.monotonic())) < len("".join(WORDS[:count])):
            assert time.monotonic() < deadline, f"{count} words did not arrive"
            time.sleep(0.01)

    def text_before(self, when: float) -> str:
        return texts([frame for at, frame in self.frames if at < when])

    def rest(self, timeout: float = 30) -> list[Frame]:
        assert self.ended.wait(timeout), "the stream did not end"
        return [frame for _, frame in self.frames]


def kill_mid_answer(worker: LiveServer, watcher: Watcher) -> float:
    """SIGKILL the worker once the viewer has a good part of the answer; when."""
    watcher.wait_for_words(30)
    killed_at = time.monotonic()
    worker.kill()
    return killed_at


def assert_lost_at_most_a_flush_interval(watcher: Watcher, killed_at: float, stored: str) -> None:
    owed = watcher.text_before(killed_at - settings.CHAT_FLUSH_INTERVAL - WRITE_TIME)
    shown = watcher.text_before(killed_at)
    assert owed, "the answer did not stream long enough before the kill"
    assert ANSWER.startswith(stored)
    assert len(stored) >= len(owed), (
        f"lost text the viewer had {settings.CHAT_FLUSH_INTERVAL + WRITE_TIME:g} s before the kill: "
        f"stored {len(stored)} characters, owed {len(owed)}, shown {len(shown)}"
    )


def wait_until_shown_interrupted(viewer: Browserless, conversation_id: int, message_id: int) -> str:
    """The page, once it shows the answer interrupted (its heartbeat went stale)."""
    deadline = time.monotonic() + 30
    while True:
        page = viewer.page(conversation_id)
        article = re.search(rf'<article[^>]*id="msg-{message_id}".*?</article>', page, re.DOTALL).group(0)
        if 'data-status="interrupted"' in article:
            return article
        assert time.monotonic() < deadline, "the answer was never shown interrupted"
        time.sleep(0.2)


def assert_tells_interrupted(html: str, stored: str) -> None:
    """What the user reads: the stored text, the interruption and a Continue button."""
    assert 'data-status="interrupted"' in html
    assert "Interrupted:" in html and 'role="status"' in html
    assert 'class="continue"' in html
    assert stored.strip() in html


def assert_next_prompt_answered(poster: Browserless, viewer: Browserless, server: LiveServer, conversation_id, stub):
    stub.script(Stream(["The next ", "answer."]))
    response = poster.post(f"/c/{conversation_id}/send/", {"prompt": "And now?"})
    assert response.status_code == 200, response.text
    message_id = int(re.findall(r'id="msg-(\d+)" data-status', response.text)[-1])
    frames = list(viewer.frames(conversation_id, message_id))
    assert frames[-1].event == "done"
    assert [int(f.id) for f in frames] == [1, 2, 3]
    assert texts(frames) == "The next answer."
    assert server.message(message_id)["status"] == "complete"


def assert_nothing_left_streaming(server: LiveServer) -> None:
    assert server.sql("SELECT id FROM chat_message WHERE status = 'streaming'") == []
    assert server.sql("SELECT id FROM chat_generation WHERE status = 'streaming'") == []


@sqlite_pass
def test_a_killed_worker_loses_at_most_a_flush_interval_and_its_answer_is_continued(
    live_server_factory, openai_stub_server
):
    live = live_server_factory()
    openai_stub_server.script(Stream(WORDS, delay=WORD_DELAY))
    alice = Browserless(live.url, "alice", "alice-password")
    conversation_id, message_id = alice.new_conversation("Count for me")
    watcher = Watcher(alice.use(live.url), conversation_id, message_id)
    killed_at = kill_mid_answer(live, watcher)

    partial = live.message(message_id)
    assert partial["status"] == "streaming"
    assert_lost_at_most_a_flush_interval(watcher, killed_at, partial["content"])

    live.start()
    # The browser reconnects from the last event it had (beyond what was
    # stored); once the heartbeat is stale it is told, and shown the stored text.
    last_seen = int(watcher.rest()[-1].id)
    reconnected = list(alice.frames(conversation_id, message_id, after=last_seen))
    assert [f.event for f in reconnected] == ["error"]
    assert_tells_interrupted(reconnected[0].data, partial["content"])
    assert_tells_interrupted(wait_until_shown_interrupted(alice, conversation_id, message_id), partial["content"])

    assert_interrupted_then_continued(alice, live, conversation_id, message_id, partial, openai_stub_server)
    # The model was given the partial answer as its own turn, then asked to go on.
    sent = openai_stub_server.requests[-1]["messages"]
    assert sent[-2] == {"role": "assistant", "content": partial["content"]}
    assert sent[-1]["role"] == "user" and "Continue" in sent[-1]["content"]
    seams = live.sql("SELECT text_offset FROM chat_generation WHERE message_id = ? ORDER BY id", message_id)
    assert seams == [(0,), (len(partial["content"]),)]

    assert_next_prompt_answered(alice, alice, live, conversation_id, openai_stub_server)
    assert_nothing_left_streaming(live)


def _answering_on_the_first(start_worker, redis, stub) -> tuple:
    """Two workers sharing `redis`; alice's new answer generated by the first and
    watched through the second, which outlives it."""
    first, second = start_worker(redis), start_worker(redis)
    stub.script(Stream(WORDS, delay=WORD_DELAY))
    alice = Browserless(first.url, "alice", "alice-password")
    conversation_id, message_id = alice.new_conversation("Count for me")
    elsewhere = alice.use(second.url)
    watcher = Watcher(elsewhere.use(second.url), conversation_id, message_id)
    return first, second, alice, elsewhere, watcher


@postgres_pass
def test_a_killed_worker_of_two_loses_at_most_a_flush_interval_and_its_answer_is_continued_on_the_other(
    start_worker, openai_stub_server
):
    redis = many_workers._redis_server()
    try:
        first, second, _, elsewhere, watcher = _answering_on_the_first(start_worker, redis, openai_stub_server)
        conversation_id, message_id = watcher.conversation_id, watcher.message_id
        killed_at = kill_mid_answer(first, watcher)

        partial = second.message(message_id)
        assert partial["status"] == "streaming"
        assert_lost_at_most_a_flush_interval(watcher, killed_at, partial["content"])
        # The viewer is told when the heartbeat goes stale, without reloading.
        frames = watcher.rest(timeout=many_workers.HEARTBEAT_STALE + 20)
        assert frames[-1].event == "error"
        assert_tells_interrupted(frames[-1].data, partial["content"])
        assert_tells_interrupted(
            wait_until_shown_interrupted(elsewhere, conversation_id, message_id), partial["content"]
        )

        # Redis outlived the dead worker: its unsaved events must not be served.
        assert_interrupted_then_continued(elsewhere, second, conversation_id, message_id, partial, openai_stub_server)
        assert_next_prompt_answered(elsewhere, elsewhere, second, conversation_id, openai_stub_server)
        assert_nothing_left_streaming(second)
    finally:
        redis.stop()


@postgres_pass
def test_a_redis_restart_mid_answer_loses_no_text_and_the_next_prompt_streams(start_worker, openai_stub_server):
    redis = many_workers._redis_server()
    try:
        first, second, alice, elsewhere, watcher = _answering_on_the_first(start_worker, redis, openai_stub_server)
        conversation_id, message_id = watcher.conversation_id, watcher.message_id
        watcher.wait_for_words(20)

        redis.kill()
        redis.start()  # the same port, empty: every event published so far is gone

        # The viewer is told the live view was lost, with the text stored so far.
        frames = watcher.rest()
        assert frames[-1].event == "error"
        assert "status-streaming" in frames[-1].data and 'role="alert"' in frames[-1].data
        assert ANSWER.startswith(texts(frames))
        # A reload during the rest of the answer shows the stored text and follows
        # the answer to its end: nothing missing, nothing twice.
        page, cursor = _page_body_and_cursor(elsewhere.page(conversation_id), message_id)
        assert ANSWER.startswith(page.text())
        rest = list(elsewhere.frames(conversation_id, message_id, after=cursor))
        assert rest[-1].event == "done"
        for frame in rest:
            page.apply(frame)
        assert ANSWER.startswith(page.text())
        assert ANSWER.strip() in rest[-1].data

        # The generating worker stored every character and finished the answer.
        stored = first.message(message_id)
        assert (stored["status"], stored["content"]) == ("complete", ANSWER)
        assert first.sql("SELECT status FROM chat_generation WHERE message_id = ?", message_id) == [("complete",)]
        assert_nothing_left_streaming(first)

        # The next prompt, posted to one worker, streams from the other.
        assert_next_prompt_answered(alice, elsewhere, second, conversation_id, openai_stub_server)
    finally:
        redis.stop()

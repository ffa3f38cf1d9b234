"""Answers that survive, against a real daphne process: reload mid-answer, a
second tab, Stop reaching the provider. (A crash followed by Continue:
tests/test_faults_workers.py.)"""

import re

import pytest

from tests.conftest import live_page, shown, texts
from tests.live import Browserless
from tests.live_page import LivePage
from tests.openai_stub import Stream
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

WORDS = [f"word{i} " for i in range(80)]


@pytest.fixture
def live(live_server_factory):
    return live_server_factory()


def _page_body_and_cursor(page: str, message_id: int) -> tuple[LivePage, int]:
    """What a reloaded page shows of a streaming answer, and where its stream resumes."""
    article = re.search(rf'<article[^>]*id="msg-{message_id}".*?</article>', page, re.S).group(0)
    cursor = int(re.search(r'sse-connect="[^"]*\?after=(\d+)"', article).group(1))
    return LivePage.from_page(article, message_id), cursor


def assert_interrupted_then_continued(viewer, server, conversation_id, message_id, partial, stub) -> None:
    """After the generating process died: the stream ends with the interruption
    (nothing the dead process published beyond what it stored), the stored text is
    kept, and Continue completes the same message."""
    frames = list(viewer.frames(conversation_id, message_id, after=partial["last_seq"]))
    assert [f.event for f in frames] == ["error"]
    assert "server stopped" in frames[0].data
    stored = server.message(message_id)
    assert stored["status"] == "interrupted" and stored["stop_reason"] == "server_restart"
    assert stored["content"] == partial["content"]

    remainder = "".join(WORDS)[len(partial["content"]) :]
    stub.script(Stream([remainder]))
    response = viewer.post(f"/c/{conversation_id}/m/{message_id}/continue/")
    assert response.status_code == 200
    cursor = int(re.search(r"after=(\d+)", response.text).group(1))
    rest = list(viewer.frames(conversation_id, message_id, after=cursor))
    assert rest[-1].event == "done"
    # The fragment shows the stored text, the frames go on from it to the whole answer.
    page = LivePage.from_page(response.text, message_id)
    for frame in rest:
        page.apply(frame)
    assert page.html() == live_page("".join(WORDS)).html()
    stored = server.message(message_id)
    assert (stored["status"], stored["content"]) == ("complete", "".join(WORDS))


def assert_stopped_keeping_what_was_shown(frames, seen, server, message_id, stub) -> None:
    """After Stop: the stream ends with `done` saying so, the provider's stream is
    closed, and the stored answer keeps at least what was shown, not all of it."""
    rest = list(frames)
    assert rest[-1].event == "done"
    assert "Stopped" in rest[-1].data
    assert stub.disconnected.wait(5), "the generating process did not close the provider's stream"
    stored = server.message(message_id)
    assert stored["status"] == "stopped" and stored["stop_reason"] == "user_stop"
    assert stored["content"].startswith(texts(seen))
    assert 0 < len(stored["content"]) < len("".join(WORDS))


def test_reload_mid_answer_resumes_exactly(live, openai_stub_server):
    openai_stub_server.script(Stream(WORDS, delay=0.02))
    alice = Browserless(live.url, "alice", "alice-password")
    conversation_id, message_id = alice.new_conversation("Count for me")

    before = list(alice.frames(conversation_id, message_id, limit=15))
    assert [int(f.id) for f in before] == list(range(1, 16))
    # The browser reconnects with its cursor: the rest, nothing twice.
    after = list(alice.frames(conversation_id, message_id, after=15))
    assert after[-1].event == "done"
    assert texts(before + after) == shown("".join(WORDS))

    # A reload: the page shows what is stored, its stream continues from there.
    openai_stub_server.script(Stream(WORDS, delay=0.02))
    conversation_id, message_id = alice.new_conversation("Count again")
    list(alice.frames(conversation_id, message_id, limit=20))
    wait_until(lambda: live.message(message_id)["content"], message="no text reached the database")
    page, cursor = _page_body_and_cursor(alice.page(conversation_id), message_id)
    assert cursor > 0 and page.text()
    rest = list(alice.frames(conversation_id, message_id, after=cursor))
    for frame in rest:
        page.apply(frame)
    # The page at its cursor and the events after it build the body the whole
    # text builds: the same HTML, not only the same words.
    assert page.html() == live_page("".join(WORDS)).html()
    assert live.message(message_id)["content"] == "".join(WORDS)


def test_a_second_tab_follows_the_same_answer(live, openai_stub_server):
    openai_stub_server.script(Stream(WORDS[:30], delay=0.02))
    alice = Browserless(live.url, "alice", "alice-password")
    conversation_id, message_id = alice.new_conversation("Count for me")
    second_tab = alice.use(live.url)
    first = list(alice.frames(conversation_id, message_id))
    second = list(second_tab.frames(conversation_id, message_id))
    assert [f.id for f in first] == [f.id for f in second]
    assert LivePage.from_frames(first).html() == LivePage.from_frames(second).html()
    assert texts(first) == shown("".join(WORDS[:30]))


def test_stop_closes_the_provider_stream_and_keeps_the_partial(live, openai_stub_server):
    openai_stub_server.script(Stream(WORDS, delay=0.05))
    alice = Browserless(live.url, "alice", "alice-password")
    conversation_id, message_id = alice.new_conversation("Count for me")
    frames = alice.frames(conversation_id, message_id)
    seen = [next(frames) for _ in range(5)]
    assert alice.post(f"/c/{conversation_id}/m/{message_id}/stop/").status_code == 204
    assert_stopped_keeping_what_was_shown(frames, seen, live, message_id, openai_stub_server)
    # Stop after the end is harmless.
    assert alice.post(f"/c/{conversation_id}/m/{message_id}/stop/").status_code == 204
    assert live.message(message_id)["status"] == "stopped"

"""After its last event an answer's stream stays closed: no reconnect loop."""

import pytest

from tests.openai_stub import Stream

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Longer than the stream's `retry:` (2 s) plus htmx-ext-sse's first reconnect
# delay: a page that reconnects after the end would have done it by then.
QUIET_MS = 4500


def test_each_answer_opens_its_stream_once(chat, openai_stub_server):
    page = chat.page
    openai_stub_server.script(
        Stream(["One ", "answer."], delay=0.1),
        Stream(["Second ", "answer ", "breaks"], delay=0.1, drop=True),
        Stream([f"w{i} " for i in range(60)], delay=0.1),
    )

    # Ends with `done`.
    chat.send("First")
    page.wait_for_url("**/c/*/")
    chat.wait_status("complete")
    page.wait_for_timeout(QUIET_MS)
    assert len(chat.stream_requests()) == 1, chat.stream_requests()

    # Ends with an `error`.
    chat.send("Second")
    chat.wait_status("error")
    page.wait_for_timeout(QUIET_MS)
    assert len(chat.stream_requests()) == 2, chat.stream_requests()

    # Ends with Stop.
    chat.send("Third")
    page.wait_for_function("() => (document.querySelector('.msg-body.live') || {}).textContent?.includes('w2 ')")
    page.locator("#composer .stop").click()
    chat.wait_status("stopped")
    page.wait_for_timeout(QUIET_MS)
    streams = chat.stream_requests()
    assert len(streams) == 3, streams
    assert len(set(streams)) == 3  # one per answer, each its own message


def test_a_tab_whose_stream_another_replaced_says_so_and_does_not_reconnect(
    open_chat, live_server_factory, openai_stub_server
):
    """One stream per user here: the tab opened last follows the answer; the other
    shows the text so far and a notice to reload, and asks for no stream again."""
    server = live_server_factory({"CHAT_MAX_STREAMS_PER_USER": "1"})
    openai_stub_server.script(Stream(["Hello ", "there"], hang=True))
    first = open_chat(server=server)
    first.send("Take your time")
    first.page.wait_for_url("**/c/*/")
    first.page.wait_for_function(
        "() => (document.querySelector('.msg-body.live') || {}).textContent?.includes('there')"
    )

    second = open_chat(server=server)
    second.page.goto(first.page.url)
    notice = first.last_answer().locator(".notice")
    notice.wait_for()
    assert "too many answers open in other tabs or windows" in notice.text_content()
    assert "Hello there" in first.last_answer().text_content()
    first.page.wait_for_timeout(QUIET_MS)
    assert len(first.stream_requests()) == 1, first.stream_requests()

    # The newer tab still follows the answer, and Stop ends it there.
    assert second.live_text() == "Hello there"
    second.page.locator("#composer .stop").click()
    second.wait_status("stopped")
    assert len(second.stream_requests()) == 1, second.stream_requests()

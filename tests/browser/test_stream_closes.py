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

"""Model output is text: markup and fake SSE frames in it are shown, never run."""

import pytest

from tests.openai_stub import Stream

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCRIPT = "<script>window.__pwned=1</script>"
IMAGE = '<img src=x onerror="window.__pwned=1">'
FAKE_FRAME = "\n\nevent: done\ndata: x\n\n"
PARTS = ["Look: ", SCRIPT, " and ", IMAGE, " then", FAKE_FRAME, "the end ", "of ", "it."] + [
    f"pad{i} " for i in range(12)
]


def _pwned(page):
    return page.evaluate("() => window.__pwned")


def test_hostile_model_output_is_shown_as_text_and_runs_nothing(chat, openai_stub_server):
    page = chat.page
    openai_stub_server.script(Stream(PARTS, delay=0.12))
    chat.send("Say something nasty")
    page.wait_for_url("**/c/*/")

    # While streaming: the markup is on screen as text, and the fake `done`
    # inside a token did not end the stream.
    live = page.locator(".msg.assistant .msg-body.live")
    page.wait_for_function("() => (document.querySelector('.msg-body.live') || {}).textContent?.includes('the end')")
    text = live.inner_text()
    assert SCRIPT in text and IMAGE in text and "event: done\ndata: x" in text
    assert page.locator('.msg.assistant[data-status="streaming"]').count() == 1
    assert page.locator(".msg-body script, .msg-body img").count() == 0
    assert _pwned(page) is None

    # Finished and rendered as Markdown: still text, still nothing ran.
    chat.wait_status("complete")
    body = chat.last_answer().locator(".msg-body")
    final = body.inner_text()
    assert SCRIPT in final and IMAGE in final and "event: done" in final and "data: x" in final
    assert final.rstrip().endswith("pad11")
    assert body.locator("script, img, [onerror]").count() == 0
    assert _pwned(page) is None
    assert chat.live.message(chat.answer_id())["content"] == "".join(PARTS)

    # And again from the stored page.
    page.reload()
    assert SCRIPT in chat.last_answer().locator(".msg-body").inner_text()
    assert _pwned(page) is None
    # The broken image never even loaded: only this server was asked for anything.
    assert not [url for url in chat.requests if url.rstrip("/").endswith("/x")]

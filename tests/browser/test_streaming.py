"""A person sends a prompt and watches the answer arrive, in real Chromium."""

import time

import pytest

from tests.browser.conftest import SCREENSHOTS
from tests.openai_stub import Stream

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MARKDOWN_ANSWER = [
    "Here is ",
    "a plan:\n\n",
    "- first ",
    "step\n",
    "- second ",
    "step\n\n",
    "```python\n",
    "def add(a, b):\n",
    "    return a + b\n",
    "```\n\n",
    "That ",
    "is ",
    "all.",
]


def test_it_streams_an_answer_then_renders_markdown(chat, openai_stub_server):
    page = chat.page
    parts = [f"word{i} " for i in range(30)] + MARKDOWN_ANSWER
    openai_stub_server.script(Stream(parts, delay=0.08))
    chat.send("Make a plan")

    # A new conversation: the page moves to it and follows the answer there.
    page.wait_for_url("**/c/*/")
    page.wait_for_selector("#messages .msg.assistant .msg-body.live span")
    assert page.locator("#composer textarea").is_disabled()
    assert page.locator("#composer .stop").is_visible()
    assert page.locator("#composer .send").is_hidden()
    assert page.locator(".msg-state.generating").is_visible()

    # The answer grows on screen while it streams, not only at the end.
    seen = []
    for _ in range(40):
        text = chat.live_text()
        if text is None:
            break
        if not seen or text != seen[-1]:
            seen.append(text)
        if len(seen) >= 4:
            break
        time.sleep(0.15)
    assert len(seen) >= 4, f"the answer did not grow while streaming: {seen}"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "test_it_streams_an_answer_then_renders_markdown-streaming.png"))
    for shorter, longer in zip(seen, seen[1:], strict=False):
        assert longer.startswith(shorter) and len(longer) > len(shorter)

    chat.wait_status("complete")
    answer = chat.last_answer()
    assert answer.locator(".msg-body li").count() == 2
    assert answer.locator(".msg-body pre").count() == 1
    assert answer.locator(".msg-body .highlight .k").first.inner_text() == "def"
    assert answer.locator(".copy-code").count() == 1
    assert page.locator("#composer textarea").is_enabled()
    assert page.locator("#composer .send").is_visible()
    assert page.locator("#composer .stop").is_hidden()
    assert page.locator(".msg-state.generating").count() == 0
    stored = chat.live.message(chat.answer_id())
    assert stored["status"] == "complete" and stored["content"] == "".join(parts)

    # A second prompt in the same conversation is appended in place.
    openai_stub_server.script(Stream(["Second ", "answer ", "here."], delay=0.1))
    chat.send("And again")
    page.wait_for_selector('#messages .msg.assistant[data-status="streaming"]')
    assert page.locator("#composer textarea").is_disabled()
    assert page.locator("#composer textarea").input_value() == ""
    chat.wait_status("complete")
    assert chat.last_answer().inner_text().startswith("Second answer here.")
    assert page.locator("#messages .msg.user").count() == 2
    assert page.locator("#composer textarea").is_enabled()

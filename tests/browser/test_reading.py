"""Reading an answer: autoscroll that respects the reader, copy buttons, the composer."""

import pytest

from tests.openai_stub import Stream

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LINES = [f"line {i}\n" for i in range(140)]

DISTANCE_FROM_BOTTOM = "(() => { const m = document.getElementById('messages');"
DISTANCE_FROM_BOTTOM += " return m.scrollHeight - m.scrollTop - m.clientHeight; })()"


LINES_SHOWN = "(() => { const b = document.querySelector('#messages .msg.assistant:last-of-type .msg-body.live');"
LINES_SHOWN += " return b ? b.textContent.split('line ').length - 1 : 0; })()"


def _distance(page) -> float:
    return page.evaluate(DISTANCE_FROM_BOTTOM)


def _more_lines_shown(page, count: int) -> None:
    """Wait until `count` more lines of the answer arrived, then for the frame
    after the next (the page follows the text in an animation frame)."""
    page.wait_for_function(f"(n) => {LINES_SHOWN} >= n", arg=page.evaluate(LINES_SHOWN) + count)
    _next_frame(page)


def _next_frame(page) -> None:
    page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")


def test_autoscroll_follows_until_the_reader_scrolls_up(chat, openai_stub_server):
    page = chat.page
    openai_stub_server.script(Stream(LINES, delay=0.06))
    chat.send("Write many lines")
    page.wait_for_url("**/c/*/")
    page.wait_for_function("() => (document.querySelector('.msg-body.live') || {}).textContent?.includes('line 30')")

    # Following: the newest text stays in view as it arrives.
    for _ in range(3):
        _more_lines_shown(page, 5)
        assert _distance(page) < 48
    assert page.locator(".jump-latest").is_hidden()

    # The reader scrolls up: the page stays where they are, and offers a way back.
    page.locator("#messages").hover()
    page.mouse.wheel(0, -600)
    page.locator(".jump-latest").wait_for(state="visible")
    held = page.evaluate("document.getElementById('messages').scrollTop")
    before = chat.live_text()
    _more_lines_shown(page, 10)
    assert len(chat.live_text()) > len(before), "the answer should still be streaming"
    assert abs(page.evaluate("document.getElementById('messages').scrollTop") - held) < 2
    assert _distance(page) > 200

    # Jump to latest: back at the end, and following again.
    page.locator(".jump-latest").click()
    page.wait_for_function(f"() => {DISTANCE_FROM_BOTTOM} < 48")
    assert page.locator(".jump-latest").is_hidden()
    _more_lines_shown(page, 5)
    assert _distance(page) < 48

    # The final render (a different height) keeps the end in view.
    chat.wait_status("complete")
    _next_frame(page)
    assert _distance(page) < 48
    assert page.locator(".jump-latest").is_hidden()


def test_copy_buttons_and_the_composer_keys(open_chat, openai_stub_server):
    chat = open_chat(permissions=["clipboard-read", "clipboard-write"])
    page = chat.page
    code = 'print("hello")\nprint("world")'
    openai_stub_server.script(Stream(["Run this:\n\n", "```python\n", code + "\n", "```\n"], delay=0.05))

    # Shift+Enter is a new line, Enter sends.
    box = page.locator("#composer textarea")
    box.click()
    box.type("first line")
    box.press("Shift+Enter")
    box.type("second line")
    assert box.input_value() == "first line\nsecond line"
    assert page.locator("#messages .msg").count() == 0
    box.press("Enter")
    page.wait_for_url("**/c/*/")
    assert page.locator(".msg.user .msg-body").inner_text() == "first line\nsecond line"
    chat.wait_status("complete")
    # Focus is back in the composer for the next prompt.
    page.wait_for_function("() => document.activeElement === document.querySelector('#composer textarea')")

    # Highlighted by Pygments and copied without the button's own label.
    block = chat.last_answer().locator(".highlight")
    assert block.locator(".nb").first.inner_text() == "print"
    assert block.evaluate("el => getComputedStyle(el.querySelector('.s2')).color") != block.evaluate(
        "el => getComputedStyle(el.querySelector('.nb')).color"
    )
    block.hover()
    block.locator(".copy-code").click()
    page.wait_for_function("() => document.querySelector('.copy-code').textContent === 'Copied'")
    assert page.evaluate("navigator.clipboard.readText()") == code
    page.wait_for_function("() => document.querySelector('.copy-code').textContent === 'Copy'", timeout=5000)

    chat.last_answer().locator("button.copy-answer").click()
    page.wait_for_function("() => document.querySelector('.copy-answer').textContent === 'Copied'")
    assert page.evaluate("navigator.clipboard.readText()") == "Run this:\n\n" + code

    assert not chat.console_errors, chat.console_errors

"""The page on a phone and in the dark, and everything it loads comes from this server."""

from urllib.parse import urlsplit

import pytest

from tests.browser.conftest import SCREENSHOTS
from tests.openai_stub import Stream, ToolCallPart

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}

RICH_ANSWER = [
    "Here is **the plan**, with `inline code`:\n\n",
    "1. Measure\n2. Cut\n\n",
    "```python\nimport math\n\ndef area(r: float) -> float:\n",
    "    # The area of a circle.\n    return math.pi * r ** 2\n```\n\n",
    "> A quote to finish.",
]


def _a_rich_conversation(chat, stub):
    stub.script(
        Stream(
            ["Working it out.", ToolCallPart(0, id="call_1", name="calculator", arguments='{"expression": "2 ** 10"}')],
            finish_reason="tool_calls",
        ),
        Stream(RICH_ANSWER, delay=0.02),
        Stream([f"word{i} " for i in range(80)], delay=0.1),
    )
    chat.send("Plan something for me, please, and compute 2 ** 10 while you are at it")
    chat.page.wait_for_url("**/c/*/")
    chat.wait_status("complete")
    chat.send("Now count")
    chat.page.wait_for_function(
        "() => (document.querySelector('.msg-body.live') || {}).textContent?.includes('word5 ')"
    )
    chat.page.locator("#composer .stop").click()
    chat.wait_status("stopped")


def _only_this_server(chat):
    hosts = {urlsplit(url).hostname for url in chat.requests if not url.startswith(("data:", "blob:"))}
    assert hosts == {"127.0.0.1"}, chat.requests


def _shot(page, name):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name))


def test_a_phone_in_dark_mode(open_chat, openai_stub_server):
    chat = open_chat(**PHONE, color_scheme="dark")
    page = chat.page
    page.emulate_media(color_scheme="dark")
    assert page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
    _a_rich_conversation(chat, openai_stub_server)

    # Nothing is wider than the screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert page.locator("#composer textarea").is_visible()
    assert page.locator("#composer .send").is_visible()
    assert page.locator(".msg.assistant button.continue").is_visible()
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(23, 24, 27)"
    _shot(page, "test_a_phone_in_dark_mode-answer.png")

    # The conversation list opens from the menu button and closes again.
    assert not page.locator(".sidebar .new-chat").is_visible()
    page.locator(".nav-button").click()
    page.locator(".sidebar .new-chat").wait_for(state="visible")
    page.wait_for_timeout(400)  # the slide-in transition
    _shot(page, "test_a_phone_in_dark_mode-sidebar.png")
    page.mouse.click(375, 420)  # on the dimmed page beside the list
    page.locator(".sidebar .new-chat").wait_for(state="hidden")
    page.locator(".nav-button").click()
    page.locator(".sidebar .new-chat").wait_for(state="visible")
    page.keyboard.press("Escape")
    page.locator(".sidebar .new-chat").wait_for(state="hidden")
    page.locator(".nav-button").click()
    page.locator(".nav-close").click()
    page.locator(".sidebar .new-chat").wait_for(state="hidden")

    _only_this_server(chat)


def test_a_phone_in_light_mode(open_chat, openai_stub_server):
    chat = open_chat(**PHONE, color_scheme="light")
    _a_rich_conversation(chat, openai_stub_server)
    assert chat.page.evaluate("document.documentElement.scrollWidth") <= 390
    _only_this_server(chat)


def test_a_desktop_in_dark_mode(open_chat, openai_stub_server):
    chat = open_chat(color_scheme="dark")
    _a_rich_conversation(chat, openai_stub_server)
    _only_this_server(chat)

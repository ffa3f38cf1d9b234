"""The page on a phone and in the dark, and everything it loads comes from this server."""

import re
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


# An element's text colour, and the background it is drawn on: its own, or the
# first ancestor's that is not transparent.
COLOURS = """(selector) => {
  const element = document.querySelector(selector);
  if (!element) return null;
  let under = element;
  while (under && /^(transparent|rgba\\(.*, 0\\))$/.test(getComputedStyle(under).backgroundColor)) {
    under = under.parentElement;
  }
  return [getComputedStyle(element).color, under ? getComputedStyle(under).backgroundColor : "rgb(255, 255, 255)"];
}"""


def _luminance(css: str) -> float:
    """WCAG relative luminance of an `rgb(...)` colour."""
    channels = [float(x) / 255 for x in re.findall(r"[\d.]+", css)[:3]]
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(a: str, b: str) -> float:
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


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
    page = chat.page
    assert page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
    _a_rich_conversation(chat, openai_stub_server)

    # Every part of the page is drawn dark, and its text is readable on it
    # (WCAG AA: a contrast of at least 4.5 to 1).
    parts = {
        "page": "body",
        "conversation list": ".sidebar .conversation a",
        "prompt": ".msg.user .msg-body",
        "answer": ".msg.assistant .msg-body",
        "code": ".msg-body .highlight pre",
        "tool card": ".tool-card .tool-name",
        "stopped notice": ".msg-state.stopped",
        "composer": "#composer textarea",
    }
    for part, selector in parts.items():
        colours = page.evaluate(COLOURS, selector)
        assert colours, f"no {part} ({selector}) on the page"
        text, background = colours
        assert _luminance(background) < 0.05, f"the {part} is drawn light: {background}"
        assert _contrast(text, background) >= 4.5, f"the {part}'s text is hard to read: {text} on {background}"
    # Nothing is wider than the window.
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]


def test_a_rich_conversation_loads_nothing_from_another_host(open_chat, openai_stub_server):
    """Tools, code, a quote and a stopped answer, in the dark: every request
    (styles, scripts, fonts, images of either colour scheme) goes to this server."""
    chat = open_chat(color_scheme="dark")
    _a_rich_conversation(chat, openai_stub_server)
    _only_this_server(chat)

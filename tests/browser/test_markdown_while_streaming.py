"""Markdown rendered while the answer streams, in real Chromium with htmx: the
blocks show rendered before `done`, a reloaded tab builds the DOM of a tab that
never reloaded, and the finished answer is the DOM a fresh page load shows."""

import pytest

from tests.openai_stub import Stream
from tests.waiting import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ANSWER = [
    "Intro with **bo",
    "ld** words",
    " and *emphasis*.\n\n",
    "- one\n",
    "- two\n\n",
    "```py",
    "thon\nx = 1\n",
    "```\n\n",
    *(f"word{i} " for i in range(40)),
    "\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nThe <scr",
    "ipt>alert(1)</script> stays text, and *it",
    "alic* at the end",
]
BODY = "() => document.querySelector('#messages .msg.assistant:last-of-type .msg-body').innerHTML"


def body_when_still(page) -> str:
    """The answer's body once htmx has settled it (no element still marked as
    being added or settled)."""
    page.wait_for_function(
        "() => !document.querySelector('#messages .msg.assistant:last-of-type "
        ".htmx-added, #messages .msg.assistant:last-of-type .htmx-settling')"
    )
    return page.evaluate(BODY)


def test_markdown_renders_while_streaming_and_a_reload_builds_the_same_dom(open_chat, openai_stub_server):
    # The answer stops mid-way (the provider hangs after the parts): it stays streaming.
    openai_stub_server.script(Stream(ANSWER, delay=0.06, hang=True))
    watcher = open_chat()
    watcher.send("Some Markdown, please")
    page = watcher.page
    page.wait_for_url("**/c/*/")
    message_id = watcher.answer_id()
    live = "#messages .msg.assistant:last-of-type .msg-body.live"

    # Rendered blocks appear before `done`; no Markdown parser in the browser.
    page.wait_for_selector(f"{live} strong")
    reloader = open_chat(server=watcher.live)
    reloader.page.goto(page.url)
    page.wait_for_selector(f"{live} li")
    reloader.page.reload()
    page.wait_for_selector(f"{live} pre")
    assert page.locator(f"{live} strong").first.inner_text() == "bold"
    assert page.locator(f"{live} li").count() == 2
    assert page.locator('#messages .msg.assistant:last-of-type[data-status="streaming"]').count() == 1

    # Every part published and stored: both tabs at the same cursor.
    wait_until(
        lambda: watcher.live.message(message_id)["last_seq"] == len(ANSWER), message="the answer did not reach its end"
    )
    page.wait_for_function(f"() => document.querySelector('{live}').textContent.endsWith('at the end')")
    reloader.page.wait_for_function(f"() => document.querySelector('{live}').textContent.endsWith('at the end')")
    watched = body_when_still(page)
    assert watched == body_when_still(reloader.page)
    # The closed code block is highlighted and can be copied before the answer ends.
    assert page.locator(f"{live} .md-settled .highlight .copy-code").count() == 1
    # And the same as a page rendered from the stored text at that cursor.
    fresh = open_chat(server=watcher.live)
    fresh.page.goto(page.url)
    assert body_when_still(fresh.page) == watched
    # Model HTML is text, at every moment.
    assert page.locator(f"{live} script").count() == 0
    assert "The <script>alert(1)</script> stays text" in page.evaluate(
        f"() => document.querySelector('{live}').textContent"
    )

    # The end: Stop (the provider hangs), then the finished answer is the DOM a
    # fresh page load shows.
    page.locator("#composer .stop").click()
    watcher.wait_status("stopped")
    reloader.wait_status("stopped")
    finished = body_when_still(page)
    assert "<strong>bold</strong>" in finished and "<li>one</li>" in finished and 'class="highlight"' in finished
    assert finished == body_when_still(reloader.page)
    fresh.page.reload()
    fresh.wait_status("stopped")
    assert body_when_still(fresh.page) == finished

"""What the page shows after an action comes from the server's answer and the
style sheet, not from chat.js: the composer after a prompt, Stop, the actions of
earlier answers; and Stop works without JavaScript."""

import re
import time

import pytest

from tests.openai_stub import Stream

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WORDS = [f"word{i} " for i in range(60)]


def test_the_composer_stop_and_earlier_actions_follow_the_server(chat, openai_stub_server):
    page = chat.page
    openai_stub_server.script(Stream(WORDS, delay=0.1), Stream(["A ", "short ", "answer."], delay=0.1))
    chat.send("Count slowly")
    page.wait_for_url("**/c/*/")
    stopped = chat.answer_id()
    page.wait_for_function("() => (document.querySelector('.msg-body.live') || {}).textContent?.includes('word2 ')")

    # Stop submits the answer's own stop form.
    page.locator("#composer .stop").click()
    chat.wait_status("stopped")
    assert chat.live.message(stopped)["stop_reason"] == "user_stop"
    earlier = page.locator(f"#msg-{stopped}")
    assert earlier.locator("button.continue").is_visible()
    assert earlier.locator("button.retry").is_visible()

    # A refused prompt keeps its text and says why, next to the composer.
    box = page.locator("#composer textarea")
    box.fill("x" * 20_001)
    box.press("Enter")
    page.locator("#notice .notice").wait_for()
    assert "20,001 characters" in page.locator("#notice").inner_text()
    assert box.input_value() == "x" * 20_001

    # The next prompt comes back with a fresh composer: empty, without the notice.
    box.fill("And now?")
    box.press("Enter")
    page.wait_for_selector(f'#messages .msg.assistant[data-status="streaming"]:not(#msg-{stopped})')
    page.wait_for_selector("#composer textarea:disabled")
    assert box.input_value() == ""
    assert page.locator("#notice").inner_text() == ""
    assert page.locator("#notice").is_hidden()
    # The stopped answer is no longer the last of its branch: it cannot be continued,
    # but it can be retried (a new answer beside it, on a branch of its own).
    assert earlier.locator("button.continue").is_hidden()
    assert earlier.locator("button.retry").is_visible()

    chat.wait_status("complete")
    assert chat.last_answer().locator("button.retry").is_visible()
    # The browser reports the refused prompt's 422, and nothing else.
    assert [e for e in chat.console_errors if "status of 422" not in e] == []


def test_stop_works_without_javascript(open_chat, openai_stub_server):
    chat = open_chat(java_script_enabled=False)
    page = chat.page
    openai_stub_server.script(Stream(WORDS, delay=0.1))
    page.locator("#composer textarea").fill("Count slowly")
    page.locator("#composer .send").click()

    # The form posted; the conversation's page shows the answer being written,
    # with Stop in the place of Send.
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    answer = chat.answer_id()
    assert page.locator(f'#msg-{answer}[data-status="streaming"]').count() == 1
    assert page.locator("#composer .send").is_hidden()
    page.locator("#composer .stop").click()

    # Stop posted the answer's stop form; the page comes back to the conversation.
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    deadline = time.monotonic() + 20
    while chat.live.message(answer)["status"] == "streaming":
        assert time.monotonic() < deadline, "the answer was not stopped"
        time.sleep(0.1)
    assert chat.live.message(answer)["stop_reason"] == "user_stop"
    page.reload()
    assert page.locator(f'#msg-{answer}[data-status="stopped"]').count() == 1
    assert page.locator("#composer .send").is_visible()
    assert page.locator("#composer .stop").is_hidden()

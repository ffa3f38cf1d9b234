"""A first visit: the login form, an empty chat, and the offline demo model."""

import pytest

from tests.browser.conftest import SCREENSHOTS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# No provider configured: the built-in demo model answers.
DEMO = {"OPENAI_API_KEY": "", "OPENAI_BASE_URL": "", "CHAT_MODEL": "demo", "CHAT_DEMO_DELAY": "0.01"}


def test_logging_in_and_an_empty_chat(open_chat):
    chat = open_chat(login=False)
    page = chat.page
    assert "/accounts/login/" in page.url
    assert page.evaluate("document.activeElement.name") == "username"
    chat.log_in("alice", "wrong-password")
    page.locator(".login .notice").wait_for()
    assert "did not match" in page.locator(".login .notice").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "test_logging_in_and_an_empty_chat-login.png"))

    chat.log_in("alice", "alice-password")
    page.wait_for_url(chat.live.url + "/")
    assert page.locator(".welcome").is_visible()
    if not chat.conversation_ids():
        assert page.locator(".conversations .empty").is_visible()
    assert page.locator("#composer textarea").is_enabled()
    assert page.evaluate("document.activeElement === document.querySelector('#composer textarea')")
    # An empty prompt sends nothing.
    page.locator("#composer textarea").press("Enter")
    page.wait_for_timeout(300)
    assert page.url == chat.live.url + "/"
    assert not chat.console_errors, chat.console_errors

    # Log out, and the chat is behind the login again.
    page.locator(".sidebar-foot button.link").click()
    page.goto(chat.live.url + "/")
    assert "/accounts/login/" in page.url


def test_the_demo_model_says_what_it_is_and_uses_a_tool(open_chat, live_server_factory):
    chat = open_chat(server=live_server_factory(DEMO))
    page = chat.page
    badge = page.locator(".demo-badge")
    assert badge.is_visible() and "Demo model" in badge.inner_text()
    chat.send("what is 12 * (3 + 4)?")
    page.wait_for_url("**/c/*/")
    chat.wait_status("complete")
    answer = chat.last_answer()
    assert answer.locator('.tool-card.tool-ok[data-tool="calculator"] .tool-result').inner_text() == "84"
    assert "84" in answer.locator(".msg-body blockquote").inner_text()
    assert not chat.console_errors, chat.console_errors

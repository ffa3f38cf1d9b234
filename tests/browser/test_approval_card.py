"""A tool staff set to "ask" in a real browser: the card asks with the
arguments, Approve is clicked, the card runs and shows its result, and the
answer goes on. Against a real MCP server over streamable HTTP."""

import pytest

from tests.mcp_servers import (
    TOKEN,
    register_live,
)
from tests.openai_stub import Stream, ToolCallPart

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_a_card_asks_is_approved_and_shows_its_result(chat, web, openai_stub_server):
    headers = f"encrypt_map({{'Authorization': 'Bearer {TOKEN}'}})"
    register_live(chat.live, "web", "ask", f"transport='http', url={web.url!r}, headers_encrypted={headers}")
    openai_stub_server.script(
        Stream(
            [ToolCallPart(0, id="call_1", name="web__echo"), ToolCallPart(0, arguments='{"text": "<b>hello</b>"}')],
            finish_reason="tool_calls",
        ),
        Stream(["It said ", "hello."]),
    )
    page = chat.page
    chat.send("Echo hello")
    card = page.locator(".msg.assistant .tool-card.tool-asks")
    card.wait_for()
    assert card.locator(".tool-server").inner_text() == "web"
    assert card.locator(".tool-name").inner_text() == "echo"
    assert "<b>hello</b>" in card.locator(".tool-args pre").inner_text()
    assert "waiting for your approval" in card.locator(".tool-state").inner_text()
    assert page.locator(".msg-state .when-asking").is_visible()
    card.locator("button.approve").click()
    chat.wait_status("complete")
    done = page.locator('.msg.assistant .tool-card[data-tool="web__echo"]')
    assert done.count() == 1
    assert "tool-ok" in done.get_attribute("class")
    # Tool output is text: the markup it returned is shown, not applied.
    assert done.locator(".tool-result").inner_text() == "<b>hello</b>"
    assert done.locator(".tool-result b").count() == 0
    assert page.locator(".msg.assistant button.approve").count() == 0
    assert "It said hello." in chat.last_answer().inner_text()

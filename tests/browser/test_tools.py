"""A tool call shows as a card in the answer: running, then its result, in place."""

import pytest

from tests.openai_stub import Stream, ToolCallPart

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Every tool card the page ever shows, with its state, in the order they appear.
RECORD_TOOL_CARDS = """
window.__toolCards = [];
new MutationObserver(() => {
  document.querySelectorAll('.tool-card').forEach((card) => {
    const seen = card.id + ' ' + card.className;
    if (!window.__toolCards.includes(seen)) window.__toolCards.push(seen);
  });
}).observe(document, { childList: true, subtree: true, attributes: true, attributeFilter: ['class'] });
"""


def test_it_shows_a_running_tool_card_then_its_result_before_the_text(chat, openai_stub_server):
    page = chat.page
    page.evaluate(RECORD_TOOL_CARDS)  # the answer streams in this very page
    openai_stub_server.script(
        Stream(
            [
                "Let me work that out.",
                ToolCallPart(0, id="call_1", name="calculator", arguments='{"expression": '),
                ToolCallPart(0, arguments='"12 * (3 + 4)"}'),
            ],
            delay=0.3,
            finish_reason="tool_calls",
        ),
        Stream(["The ", "answer ", "is ", "84."], delay=0.3, first_delay=0.5),
    )
    chat.send("What is 12 * (3 + 4)?")
    page.wait_for_url("**/c/*/")
    card = page.locator('.msg.assistant .tool-card[data-tool="calculator"]')
    card.wait_for()
    chat.wait_status("complete")

    seen = page.evaluate("window.__toolCards")
    states = [entry.split(" ", 1)[1] for entry in seen]
    assert any("tool-running" in s for s in states), seen
    assert "tool-ok" in states[-1], seen
    assert states.index(next(s for s in states if "tool-running" in s)) < len(states) - 1
    # One card, updated in place, not a second one.
    assert len({entry.split(" ", 1)[0] for entry in seen}) == 1, seen

    assert card.count() == 1
    assert card.locator(".tool-result").inner_text() == "84"
    assert "done" in card.locator(".tool-state").inner_text()
    # The card sits between the text before it and the text the model wrote after it.
    order = page.evaluate(
        """() => {
          const body = document.querySelector('.msg.assistant .msg-body');
          const card = body.querySelector('.tool-card');
          const nodes = [...body.querySelectorAll('p')];
          const before = nodes.find((p) => p.textContent.includes('work that out'));
          const after = nodes.find((p) => p.textContent.includes('The answer is 84.'));
          const follows = (a, b) => !!(a.compareDocumentPosition(b) & Node.DOCUMENT_POSITION_FOLLOWING);
          return { before: !!before && follows(before, card), after: !!after && follows(card, after) };
        }"""
    )
    assert order == {"before": True, "after": True}

    # Reloaded, the stored answer looks the same.
    page.reload()
    assert page.locator(".msg.assistant .tool-card.tool-ok .tool-result").inner_text() == "84"
    assert page.locator(".msg.assistant .msg-body").inner_text().endswith("The answer is 84.")

"""A reasoning model's thinking in the page: a block above the answer, open while
the model thinks, closed to "Thought for N s" when the answer starts, and resumed
exactly by a reload mid-thought."""

import re

import pytest

from tests.openai_stub import Reasoning, Stream

pytestmark = [pytest.mark.browser, pytest.mark.slow]

STEPS = [Reasoning(f"step{i} ") for i in range(50)]
WORDS = [f"word{i} " for i in range(30)]

# The thinking block's state on each change of the page: its text, label, whether
# it is open, and the answer's status and text.
RECORD_THINKING = """
window.__thinking = [];
new MutationObserver(() => {
  const answer = document.querySelector('#messages .msg.assistant:last-of-type');
  const block = answer && answer.querySelector('details.thinking');
  if (!block) return;
  const body = answer.querySelector('.msg-body');
  const state = {
    thought: block.querySelector('.thinking-text').textContent,
    label: block.querySelector('.thinking-label').textContent,
    open: block.open,
    status: answer.dataset.status,
    answer: body ? body.textContent.trim() : '',
  };
  const last = window.__thinking[window.__thinking.length - 1];
  if (!last || JSON.stringify(last) !== JSON.stringify(state)) window.__thinking.push(state);
}).observe(document, { childList: true, subtree: true, characterData: true, attributes: true });
"""


def test_a_reload_mid_thought_resumes_the_thinking_exactly_then_closes_it(chat, openai_stub_server):
    page = chat.page
    openai_stub_server.script(Stream([*STEPS, *WORDS], delay=0.08))
    chat.send("Think it over")
    page.wait_for_url("**/c/*/")
    page.wait_for_function("() => (document.querySelector('.thinking-text') || {}).textContent?.includes('step5 ')")
    block = chat.last_answer().locator("details.thinking")
    assert block.is_visible() and block.get_attribute("open") is not None
    assert block.locator(".thinking-label").inner_text() == "Thinking…"

    page.add_init_script(RECORD_THINKING)
    page.reload()
    message_id = chat.answer_id()
    page.wait_for_function("() => window.__thinking && window.__thinking.length > 0")
    chat.wait_status("complete")

    stored = chat.live.message(message_id)
    assert stored["reasoning"] == "".join(s.text for s in STEPS)
    states = page.evaluate("window.__thinking")
    # The reloaded page started part-way through the thinking (what was saved),
    # open, then streamed the rest: each step a start of the stored thinking,
    # nothing twice, the last all of it.
    first = states[0]
    assert 0 < len(first["thought"]) < len(stored["reasoning"]), first
    assert first["open"] and first["label"] == "Thinking…" and first["answer"] == ""
    for state in states:
        assert stored["reasoning"].startswith(state["thought"]), state
        assert state["thought"].count("step0 ") == 1
    assert states[-1]["thought"] == stored["reasoning"]
    # Once the answer's text starts, still streaming: closed, with the time it thought.
    answering = [s for s in states if s["status"] == "streaming" and s["answer"]]
    assert answering, states
    assert all(not s["open"] and re.fullmatch(r"Thought for \d+ s", s["label"]) for s in answering), answering
    # About 50 steps of 80 ms.
    assert 3 <= stored["reasoning_seconds"] <= 20
    # Finished: the stored answer, its thinking kept above it, closed.
    final = chat.last_answer()
    assert final.locator(".thinking-label").inner_text() == f"Thought for {round(stored['reasoning_seconds'])} s"
    assert final.locator("details.thinking").get_attribute("open") is None
    assert final.locator(".msg-body").inner_text() == "".join(WORDS).strip()
    # Opened by the reader, it shows the thinking as stored.
    final.locator("details.thinking summary").click()
    assert final.locator(".thinking-text").inner_text() == stored["reasoning"]
    assert len(chat.stream_requests()) == 2  # one per page load

"""Answers that survive what people do: reload, errors, Stop and Continue."""

import pytest

from tests.openai_stub import Stream

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Plain words, no Markdown syntax: the rendered answer reads exactly as stored.
WORDS = [f"word{i} " for i in range(60)]

# Every text the streaming answer shows, recorded once the page is parsed (before
# htmx opens the stream: this listener is added first) and on each change after.
# Not while the parser is still writing the page: the answer's element exists,
# empty, before its stored text is parsed into it.
RECORD_LIVE_TEXT = """
window.__liveTexts = [];
function recordLiveText() {
  const body = document.querySelector('#messages .msg.assistant:last-of-type .msg-body.live');
  if (!body) return;
  const text = body.textContent;
  if (window.__liveTexts[window.__liveTexts.length - 1] !== text) window.__liveTexts.push(text);
}
document.addEventListener('DOMContentLoaded', () => {
  recordLiveText();
  new MutationObserver(recordLiveText).observe(document, { childList: true, subtree: true, characterData: true });
});
"""


def test_a_reload_mid_answer_shows_exactly_the_stored_answer(chat, openai_stub_server):
    page = chat.page
    openai_stub_server.script(Stream(WORDS, delay=0.08))
    chat.send("Count for me")
    page.wait_for_url("**/c/*/")
    page.wait_for_function("() => (document.querySelector('.msg-body.live') || {}).textContent?.includes('word8 ')")
    page.add_init_script(RECORD_LIVE_TEXT)
    page.reload()
    message_id = chat.answer_id()
    page.wait_for_function("() => window.__liveTexts && window.__liveTexts.length > 0")
    chat.wait_status("complete")

    stored = chat.live.message(message_id)
    assert stored["status"] == "complete"
    assert stored["content"] == "".join(WORDS)
    # Without the line break markdown-it writes after the open block's end tag.
    texts = [text.removesuffix("\n") for text in page.evaluate("window.__liveTexts")]
    # The reloaded page started part-way (what was saved), then streamed the rest:
    # every step is the start of the stored answer, and the last is all of it.
    assert 0 < len(texts[0]) < len(stored["content"]), texts[0]
    for text in texts:
        assert stored["content"].startswith(text), text
    assert texts[-1] == stored["content"]
    # Once finished, the page shows the stored answer (as Markdown: one paragraph).
    assert chat.last_answer().locator(".msg-body").inner_text() == stored["content"].strip()
    assert len(chat.stream_requests()) == 2  # one per page load


def test_a_provider_error_keeps_the_partial_text_and_retry_answers_again(chat, openai_stub_server):
    page = chat.page
    openai_stub_server.script(
        Stream(["Partial ", "answer ", "that ", "breaks"], delay=0.1, drop=True),
        Stream(["A ", "fresh ", "answer."], delay=0.1),
    )
    chat.send("Tell me something")
    page.wait_for_url("**/c/*/")
    chat.wait_status("error")
    answer = chat.last_answer()
    failed_id = chat.answer_id()
    assert answer.locator(".msg-body").inner_text() == "Partial answer that breaks"
    error = answer.locator(".msg-state.error")
    assert error.is_visible()
    stored_error = chat.live.message(failed_id)["error"]
    assert stored_error and error.locator(".state-text").inner_text() == stored_error
    assert answer.locator("button.continue").is_visible()
    assert page.locator("#composer textarea").is_enabled()

    answer.locator("button.retry").click()
    page.wait_for_selector('.msg.assistant[data-status="streaming"]')
    chat.wait_status("complete")
    assert page.locator(".msg.assistant").count() == 1
    assert chat.answer_id() != failed_id
    assert chat.last_answer().locator(".msg-body").inner_text() == "A fresh answer."
    assert chat.live.message(chat.answer_id())["content"] == "A fresh answer."


def test_stop_then_continue_makes_one_answer(chat, openai_stub_server):
    page = chat.page
    openai_stub_server.script(Stream(WORDS, delay=0.1), Stream(["and ", "the ", "rest."], delay=0.1))
    chat.send("Count slowly")
    page.wait_for_url("**/c/*/")
    page.wait_for_function("() => (document.querySelector('.msg-body.live') || {}).textContent?.includes('word3 ')")
    page.locator("#composer .stop").click()
    chat.wait_status("stopped")
    message_id = chat.answer_id()
    partial = chat.live.message(message_id)["content"]
    assert partial.startswith("word0 word1 word2 word3 ") and len(partial) < len("".join(WORDS))
    answer = chat.last_answer()
    assert answer.locator(".msg-state.stopped").is_visible()
    assert answer.locator(".msg-body").inner_text() == partial.strip()
    assert page.locator("#composer textarea").is_enabled()
    assert page.locator("#composer .stop").is_hidden()

    answer.locator("button.continue").click()
    page.wait_for_selector(f'#msg-{message_id}[data-status="streaming"]')
    chat.wait_status("complete")
    assert page.locator(".msg.assistant").count() == 1
    assert chat.answer_id() == message_id
    stored = chat.live.message(message_id)["content"]
    assert stored == partial + "and the rest."
    assert chat.last_answer().locator(".msg-body").inner_text() == stored
    assert page.locator(".msg-state.stopped").count() == 0


def test_a_server_crash_shows_reconnecting_then_interrupted_and_continue_finishes(chat, openai_stub_server):
    page = chat.page
    openai_stub_server.script(Stream(WORDS, delay=0.1))
    chat.send("Count for me")
    page.wait_for_url("**/c/*/")
    page.wait_for_function("() => (document.querySelector('.msg-body.live') || {}).textContent?.includes('word5 ')")
    message_id = chat.answer_id()
    chat.live.kill()
    page.locator(".msg.assistant.reconnecting .when-reconnecting").wait_for(state="visible")

    chat.live.start()
    chat.wait_status("interrupted", timeout=40_000)
    stored = chat.live.message(message_id)
    assert stored["status"] == "interrupted" and stored["stop_reason"] == "server_restart"
    answer = chat.last_answer()
    assert answer.locator(".msg-state.interrupted").is_visible()
    assert answer.locator(".msg-body").inner_text() == stored["content"].strip()

    remainder = "".join(WORDS)[len(stored["content"]) :]
    openai_stub_server.script(Stream([remainder[: len(remainder) // 2], remainder[len(remainder) // 2 :]], delay=0.2))
    answer.locator("button.continue").click()
    chat.wait_status("complete")
    assert page.locator(".msg.assistant").count() == 1
    assert chat.live.message(message_id)["content"] == "".join(WORDS)
    assert chat.last_answer().locator(".msg-body").inner_text() == "".join(WORDS).strip()

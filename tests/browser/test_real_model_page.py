"""A real model's answer on the page, in real Chromium, from a real daphne
process talking to the real model server (tests/realmodel.py)."""

import pytest

from tests.realmodel import MODEL_ALIAS

pytestmark = [pytest.mark.browser, pytest.mark.realmodel, pytest.mark.slow]

ANSWER = "#messages .msg.assistant:last-of-type"
# Generous: on two busy cores the model writes some 10 to 20 tokens a second.
TIMEOUT_MS = 60_000


def test_a_real_answer_renders_on_the_page_and_stays_after_a_reload(open_chat, live_server_factory, real_model_server):
    server = live_server_factory(
        {"OPENAI_BASE_URL": real_model_server.base_url, "CHAT_MODEL": MODEL_ALIAS, "CHAT_MAX_TOKENS": "48"}
    )
    chat = open_chat(server=server)
    chat.send("What is the capital of France? Answer in one sentence.")
    page = chat.page
    page.wait_for_url("**/c/*/")
    # Ended by the model (or at its token limit), never with an error.
    page.wait_for_selector(
        f'{ANSWER}:not([data-status="streaming"]):not(.htmx-settling)', state="attached", timeout=TIMEOUT_MS
    )
    stored = server.message(chat.answer_id())
    assert (stored["status"], stored["stop_reason"]) in {("complete", ""), ("stopped", "token_limit")}, stored
    assert stored["content"].strip()
    shown = page.locator(f"{ANSWER} .msg-body").inner_text().strip()
    assert shown
    # The stored answer, rendered anew, is what the stream left on the page.
    page.reload()
    assert page.locator(f"{ANSWER} .msg-body").inner_text().strip() == shown
    assert not chat.console_errors

"""Branches in the browser: an edited prompt and regenerated answers are
alternatives paged with "‹ n/m ›", the branch on screen survives a reload, and
the next prompt continues it."""

import re

import pytest

from tests.openai_stub import Stream

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _answer(page, text: str):
    """The finished answer with `text`, once it is shown."""
    answer = page.locator('#messages .msg.assistant[data-status="complete"]', has_text=text)
    answer.wait_for()
    return answer


def _shown_answers(page) -> list[str]:
    return [t.strip() for t in page.locator("#messages .msg.assistant .msg-body").all_inner_texts()]


def test_edit_a_prompt_page_back_to_the_old_branch_and_reload(chat, openai_stub_server):
    page = chat.page
    openai_stub_server.script(Stream(["The old ", "answer."]), Stream(["The new ", "answer."]))
    chat.send("What is old?")
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    _answer(page, "The old answer.")

    prompt = page.locator("#messages .msg.user")
    prompt.locator(".edit-prompt summary").click()
    box = prompt.locator(".edit-prompt textarea")
    assert box.input_value() == "What is old?"
    box.fill("What is new?")
    prompt.locator(".edit-prompt .send-edit").click()

    _answer(page, "The new answer.")
    assert _shown_answers(page) == ["The new answer."]
    pager = page.locator("#messages .msg.user .pager")
    assert pager.locator(".pager-position").inner_text() == "2/2"
    assert page.locator("#messages .msg.user .msg-body").inner_text() == "What is new?"
    # The model was asked the edited prompt alone.
    assert [m["content"] for m in openai_stub_server.requests[-1]["messages"][1:]] == ["What is new?"]

    pager.locator(".pager-previous").click()
    page.locator("#messages .msg.user .pager-position", has_text="1/2").wait_for()
    assert _shown_answers(page) == ["The old answer."]
    assert page.locator("#messages .msg.user .msg-body").inner_text() == "What is old?"

    page.reload()
    page.locator("#messages .msg.user .pager-position", has_text="1/2").wait_for()
    assert _shown_answers(page) == ["The old answer."]
    assert len(openai_stub_server.requests) == 2

    # The next prompt continues the branch on screen, and the model sees that branch.
    openai_stub_server.script(Stream(["Then ", "more."]))
    chat.send("And then?")
    _answer(page, "Then more.")
    assert _shown_answers(page) == ["The old answer.", "Then more."]
    assert [m["content"] for m in openai_stub_server.requests[-1]["messages"][1:]] == [
        "What is old?",
        "The old answer.",
        "And then?",
    ]
    assert chat.console_errors == []


def test_regenerate_twice_and_page_from_the_first_to_the_third(chat, openai_stub_server):
    page = chat.page
    openai_stub_server.script(Stream(["First ", "try."]), Stream(["Second ", "try."]), Stream(["Third ", "try."]))
    chat.send("Say something")
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    _answer(page, "First try.").locator("button.retry").click()
    _answer(page, "Second try.").locator("button.retry").click()
    _answer(page, "Third try.")

    position = page.locator("#messages > .pager .pager-position")
    assert position.inner_text() == "3/3"
    assert _shown_answers(page) == ["Third try."]
    for expected, text in (("2/3", "Second try."), ("1/3", "First try.")):
        page.locator("#messages > .pager .pager-previous").click()
        position.filter(has_text=expected).wait_for()
        assert _shown_answers(page) == [text]
    assert page.locator("#messages > .pager .pager-previous").is_disabled()
    for expected, text in (("2/3", "Second try."), ("3/3", "Third try.")):
        page.locator("#messages > .pager .pager-next").click()
        position.filter(has_text=expected).wait_for()
        assert _shown_answers(page) == [text]
    assert page.locator("#messages > .pager .pager-next").is_disabled()
    # Every attempt was asked the same prompt, and nothing else.
    assert [[m["content"] for m in r["messages"][1:]] for r in openai_stub_server.requests] == [["Say something"]] * 3
    assert chat.console_errors == []

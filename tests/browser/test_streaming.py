"""A person sends a prompt and watches the answer arrive, in real Chromium."""

import itertools
import re
import time

import pytest

from tests.browser.conftest import SCREENSHOTS
from tests.openai_stub import Stream

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MARKDOWN_ANSWER = [
    "Here is ",
    "a plan:\n\n",
    "- first ",
    "step\n",
    "- second ",
    "step\n\n",
    "```python\n",
    "def add(a, b):\n",
    "    return a + b\n",
    "```\n\n",
    "That ",
    "is ",
    "all.",
]


def test_it_streams_an_answer_then_renders_markdown(chat, openai_stub_server):
    page = chat.page
    parts = [f"word{i} " for i in range(30)] + MARKDOWN_ANSWER
    openai_stub_server.script(Stream(parts, delay=0.08))
    chat.send("Make a plan")

    # A new conversation: the page becomes its page and follows the answer.
    page.wait_for_url("**/c/*/")
    page.wait_for_selector("#messages .msg.assistant .msg-body.live span")
    assert page.locator("#composer textarea").is_disabled()
    assert page.locator("#composer .stop").is_visible()
    assert page.locator("#composer .send").is_hidden()
    assert page.locator(".msg-state.generating").is_visible()

    # The answer grows on screen while it streams, not only at the end.
    seen = []
    for _ in range(40):
        text = chat.live_text()
        if text is None:
            break
        if not seen or text != seen[-1]:
            seen.append(text)
        if len(seen) >= 4:
            break
        time.sleep(0.15)
    assert len(seen) >= 4, f"the answer did not grow while streaming: {seen}"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "test_it_streams_an_answer_then_renders_markdown-streaming.png"))
    for shorter, longer in itertools.pairwise(seen):
        assert longer.startswith(shorter) and len(longer) > len(shorter)

    chat.wait_status("complete")
    answer = chat.last_answer()
    assert answer.locator(".msg-body li").count() == 2
    assert answer.locator(".msg-body pre").count() == 1
    assert answer.locator(".msg-body .highlight .k").first.inner_text() == "def"
    assert answer.locator(".copy-code").count() == 1
    assert page.locator("#composer textarea").is_enabled()
    assert page.locator("#composer .send").is_visible()
    assert page.locator("#composer .stop").is_hidden()
    assert page.locator(".msg-state.generating").count() == 0
    stored = chat.live.message(chat.answer_id())
    assert stored["status"] == "complete" and stored["content"] == "".join(parts)

    # A second prompt in the same conversation is appended in place.
    openai_stub_server.script(Stream(["Second ", "answer ", "here."], delay=0.1))
    chat.send("And again")
    page.wait_for_selector('#messages .msg.assistant[data-status="streaming"]')
    page.wait_for_selector("#composer textarea:disabled")  # once the swap has settled
    assert page.locator("#composer textarea").input_value() == ""
    chat.wait_status("complete")
    assert chat.last_answer().inner_text().startswith("Second answer here.")
    assert page.locator("#messages .msg.user").count() == 2
    assert page.locator("#composer textarea").is_enabled()


def test_a_new_chat_streams_in_the_page_that_sent_it(chat, openai_stub_server):
    page = chat.page
    earlier = chat.conversation_ids()
    openai_stub_server.script(
        Stream([f"word{i} " for i in range(20)], delay=0.08), Stream(["Second ", "answer ", "here."], delay=0.1)
    )
    title = "Plan a <b>trip</b> & more"
    page.evaluate("window.__marker = 1")  # gone if the browser loads another page
    chat.send(title)

    # The answer streams here, and the page is the conversation's page, as a
    # reload would show it.
    page.wait_for_selector("#messages .msg.assistant .msg-body.live span")
    [conversation] = [c for c in chat.conversation_ids() if c not in earlier]
    assert page.url == f"{chat.live.url}/c/{conversation}/"
    assert page.locator(".welcome").count() == 0
    assert page.locator(".chat-head h1").inner_text() == title
    assert page.title() == f"{title} · Chat"
    items = page.locator(".conversations li")
    assert items.first.get_attribute("id") == f"conv-{conversation}"
    assert items.first.locator(".conv-title").inner_text() == title
    assert page.locator(".conversations .current").count() == 1
    assert items.first.get_attribute("class").split() == ["conversation", "current"]
    assert items.first.locator("a").get_attribute("aria-current") == "page"
    assert page.locator(".conversations .empty").count() == 0
    assert page.locator("#composer textarea").is_disabled()
    assert page.locator("#composer .stop").is_visible()
    chat.wait_status("complete")
    assert page.evaluate("window.__marker") == 1
    assert page.locator("#composer textarea").is_enabled()
    assert page.evaluate("document.activeElement === document.querySelector('#composer textarea')")

    # The next prompt goes to the same conversation, once, and streams in place too.
    chat.send("And again")
    page.wait_for_selector('#messages .msg.assistant[data-status="streaming"]')
    page.wait_for_selector("#composer .stop:visible")
    chat.wait_status("complete")
    assert chat.last_answer().inner_text().startswith("Second answer here.")
    assert page.evaluate("window.__marker") == 1
    assert chat.conversation_ids() == [*earlier, conversation]
    posts = [url for url in chat.requests if re.search(r"/c/(new|\d+/send)/$", url)]
    assert posts == [f"{chat.live.url}/c/new/", f"{chat.live.url}/c/{conversation}/send/"]
    rows = chat.live.sql("SELECT role, content FROM chat_message WHERE conversation_id = ? ORDER BY id", conversation)
    assert rows == [
        ("user", title),
        ("assistant", "".join(f"word{i} " for i in range(20))),
        ("user", "And again"),
        ("assistant", "Second answer here."),
    ]

    # A reload shows both exchanges; Back is the new chat page again, listing the conversation.
    page.reload()
    assert page.locator("#messages .msg.user .msg-body").all_inner_texts() == [title, "And again"]
    assert page.locator("#messages .msg.assistant").count() == 2
    assert page.locator(".chat-head h1").inner_text() == title
    page.go_back()
    page.wait_for_url(chat.live.url + "/")
    page.locator(".welcome").wait_for()
    assert page.locator(f"#conv-{conversation}:not(.current)").count() == 1
    assert not chat.console_errors, chat.console_errors

"""The conversation list: titles, times, rename, and delete with confirmation."""

import re

import pytest

from chat.views import SIDEBAR_SIZE
from tests.browser.conftest import SCREENSHOTS
from tests.openai_stub import Stream

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _new_conversation(chat, prompt):
    page = chat.page
    page.goto(chat.live.url + "/")
    chat.send(prompt)
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    chat.wait_status("complete")
    return int(re.search(r"/c/(\d+)/$", page.url).group(1))


def test_rename_and_delete_conversations(chat, openai_stub_server):
    page = chat.page
    openai_stub_server.script(Stream(["Fine."]), Stream(["Fine."]))
    earlier = chat.conversation_ids()
    if not earlier:
        assert page.locator(".conversations .empty").is_visible()
    first = _new_conversation(chat, "Plan a trip to Lisbon")
    second = _new_conversation(chat, "Ideas for dinner")
    assert chat.conversation_ids() == [*earlier, first, second]

    # Newest first, titled by the first prompt, with a time.
    items = page.locator(".conversations .conversation")
    assert items.count() == min(len(earlier) + 2, 100)
    assert page.locator(".conversations .empty").count() == 0
    assert items.nth(0).locator(".conv-title").inner_text() == "Ideas for dinner"
    assert items.nth(1).locator(".conv-title").inner_text() == "Plan a trip to Lisbon"
    assert items.nth(0).locator("time").get_attribute("datetime")
    assert re.search(r"\d", items.nth(0).locator("time").inner_text())
    assert page.locator(f"#conv-{second}").get_attribute("class").split() == ["conversation", "current"]
    assert page.locator(".chat-head h1").inner_text() == "Ideas for dinner"

    # Rename the conversation on screen: the list, the heading and the tab follow.
    current = page.locator(f"#conv-{second}")
    current.locator("summary").click()
    title = current.locator('input[name="title"]')
    title.fill("Dinner ideas for Friday")
    page.screenshot(path=str(SCREENSHOTS / "test_rename_and_delete_conversations-menu.png"))
    title.press("Enter")
    page.wait_for_function("() => document.querySelector('.chat-head h1').textContent === 'Dinner ideas for Friday'")
    assert page.locator(f"#conv-{second} .conv-title").inner_text() == "Dinner ideas for Friday"
    assert page.title() == "Dinner ideas for Friday · Chat"
    assert page.locator(f"#conv-{second}.current").count() == 1

    # Rename another one: it stays not current, and the heading stays.
    other = page.locator(f"#conv-{first}")
    other.locator("summary").click()
    other.locator('input[name="title"]').fill("Lisbon in May")
    other.locator('button:text-is("Rename")').click()
    page.wait_for_function(f"() => document.querySelector('#conv-{first} .conv-title').textContent === 'Lisbon in May'")
    assert page.locator(f"#conv-{first}.current").count() == 0
    assert page.locator(".chat-head h1").inner_text() == "Dinner ideas for Friday"
    titles = chat.live.sql("SELECT id, title FROM chat_conversation WHERE id IN (?, ?) ORDER BY id", first, second)
    assert titles == [(first, "Lisbon in May"), (second, "Dinner ideas for Friday")]

    # Delete asks first; saying no keeps everything.
    questions = []

    def answer(dialog, accept):
        questions.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda dialog: answer(dialog, False))
    other.locator("summary").click()
    other.locator("button.danger").click()
    page.wait_for_timeout(500)
    assert questions == ["Delete “Lisbon in May” and all its messages? This cannot be undone."]
    assert page.locator(f"#conv-{first}").count() == 1
    assert chat.conversation_ids() == [*earlier, first, second]

    # Saying yes deletes it and its messages (the menu is still open).
    page.once("dialog", lambda dialog: answer(dialog, True))
    other.locator("button.danger").click()
    page.wait_for_function(f"() => !document.querySelector('#conv-{first}')")
    assert chat.conversation_ids() == [*earlier, second]
    assert chat.live.sql("SELECT COUNT(*) FROM chat_message WHERE conversation_id = ?", first) == [(0,)]
    assert page.locator(f"#conv-{second}").count() == 1

    # Deleting the conversation on screen goes back to a new chat.
    page.goto(f"{chat.live.url}/c/{second}/")
    page.once("dialog", lambda dialog: answer(dialog, True))
    page.locator(f"#conv-{second} summary").click()
    page.locator(f"#conv-{second} button.danger").click()
    page.wait_for_url(chat.live.url + "/")
    assert page.locator(".welcome").is_visible()
    assert page.locator(f"#conv-{second}").count() == 0
    assert chat.conversation_ids() == earlier
    if not earlier:
        assert page.locator(".conversations .empty").is_visible()


def test_a_long_list_loads_its_next_page_at_its_end_and_a_new_chat_joins_on_top(
    open_chat, live_server_factory, openai_stub_server
):
    """The list shows the newest SIDEBAR_SIZE conversations, and the next ones
    when scrolled to its end. A new chat joins it on top without a page load,
    and the next page still starts right after the last item shown."""
    live = live_server_factory()
    # Its own user, so the other tests' conversations do not change the count.
    live.manage(
        "shell",
        "-c",
        "from datetime import timedelta\n"
        "from django.contrib.auth import get_user_model\n"
        "from django.utils import timezone\n"
        "from chat.models import Conversation\n"
        "user = get_user_model().objects.filter(username='many').first()"
        " or get_user_model().objects.create_user('many', password='many-password')\n"
        "user.conversations.all().delete()\n"
        f"for n in range({SIDEBAR_SIZE + 5}):\n"
        "    Conversation.objects.create(owner=user, title=f'Old chat {n}',"
        " updated_at=timezone.now() - timedelta(days=n + 1))\n",
    )
    chat = open_chat(username="many", password="many-password", server=live)
    page = chat.page
    items = page.locator(".conversations .conversation")
    assert items.count() == SIDEBAR_SIZE
    assert items.last.locator(".conv-title").inner_text() == f"Old chat {SIDEBAR_SIZE - 1}"

    openai_stub_server.script(Stream(["Fine."]))
    chat.send("A chat that fills the list")
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    chat.wait_status("complete")
    assert items.count() == SIDEBAR_SIZE + 1
    assert items.first.locator(".conv-title").inner_text() == "A chat that fills the list"

    # Scrolled to its end, the list loads the rest: each once, in order.
    page.locator(".conversations .more").scroll_into_view_if_needed()
    page.wait_for_function(
        f"() => document.querySelectorAll('.conversations .conversation').length === {SIDEBAR_SIZE + 6}"
    )
    titles = items.locator(".conv-title").all_inner_texts()
    assert titles == ["A chat that fills the list"] + [f"Old chat {n}" for n in range(SIDEBAR_SIZE + 5)]
    assert page.locator(".conversations .more").count() == 0


def test_pin_archive_and_bring_back(chat, openai_stub_server):
    """Pinned on top under "Pinned"; archived out of the list into the Archived
    view, and back; the page never reloads for it."""
    page = chat.page
    openai_stub_server.script(Stream(["Fine."]), Stream(["Fine."]))
    first = _new_conversation(chat, "Keep this one handy")
    second = _new_conversation(chat, "Put this one away")
    page.evaluate("window.__samePage = true")

    def menu(pk: int, button: str) -> None:
        item = page.locator(f"#conv-{pk}")
        item.locator("summary").click()
        item.locator(f'button:text-is("{button}")').click()

    menu(first, "Pin")
    page.locator(f"#pinned #conv-{first}").wait_for()
    assert page.locator(".list-label", has_text="Pinned").is_visible()
    assert page.locator(f"#recent #conv-{first}").count() == 0
    assert page.locator(f"#conv-{second}.current").count() == 1  # still marked as the one on screen

    menu(second, "Archive")
    page.locator(f"#conv-{second}").wait_for(state="detached")
    assert page.evaluate("window.__samePage") is True

    page.locator('.sidebar-foot a:text-is("Archived")').click()
    page.locator(f"#conv-{second}").wait_for()
    assert page.locator(".list-head .list-label").text_content() == "Archived"
    assert page.locator(f"#conv-{first}").count() == 0
    menu(second, "Unarchive")
    page.locator(f"#conv-{second}").wait_for(state="detached")
    page.locator(".list-head a").click()
    page.locator(f"#recent #conv-{second}").wait_for()
    assert page.locator(f"#pinned #conv-{first}").count() == 1

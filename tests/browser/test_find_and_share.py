"""Finding and sharing in the browser: search as one types, a result opening its
message's branch, and a read-only link shared, opened by someone else, revoked."""

import re

import pytest

from tests.waiting import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# A conversation of alice's with two answers to one prompt: the one on screen,
# and one she paged away from, whose text is what she will search for.
SEED = """
from django.contrib.auth import get_user_model
from chat.models import Conversation, Message
alice = get_user_model().objects.get(username="alice")
c = Conversation.objects.create(owner=alice, title="Packing for Lisbon {tag}")
prompt = Message.objects.create(conversation=c, role="user", content="What should I pack for Lisbon?")
hidden = Message.objects.create(conversation=c, role="assistant", parent=prompt,
    content="Pack quokkasunscreen{tag} and a light jacket.")
shown = Message.objects.create(conversation=c, role="assistant", parent=prompt, content="Comfortable shoes, above all.")
c.active_leaf = shown
c.save()
print(c.pk, hidden.pk)
"""


def _seed(chat, tag: str) -> tuple[int, int]:
    output = chat.live.manage("shell", "-c", SEED.format(tag=tag))
    conversation_id, message_id = output.strip().splitlines()[-1].split()
    return int(conversation_id), int(message_id)


def test_search_as_one_types_and_open_the_result_on_its_branch(chat):
    page = chat.page
    conversation_id, hidden_id = _seed(chat, "a1")
    page.goto(chat.live.url + "/")
    box = page.locator('.search input[name="q"]')
    # Typed as a person does: the last word is a prefix while it is typed.
    box.press_sequentially("quokkasun", delay=40)
    hit = page.locator(".search-hits .search-hit", has_text="light jacket")
    hit.wait_for()
    assert hit.locator("mark").inner_text() == "quokkasunscreena1"
    assert hit.locator(".hit-title").inner_text().startswith("Packing for Lisbon a1")
    # The results take the list's place; one request per pause, not per key.
    assert not page.locator("#conversation-nav").is_visible()
    searches = [url for url in chat.requests if "/search/?" in url]
    assert 1 <= len(searches) <= 3, searches

    hit.locator("a").click()
    page.wait_for_url(re.compile(rf"/c/{conversation_id}/\?at={hidden_id}"))
    # The branch that holds the message, not the one stored as on screen.
    answer = page.locator(f"#msg-{hidden_id}")
    answer.wait_for()
    assert "light jacket" in answer.inner_text()
    assert "Comfortable shoes" not in page.locator("#messages").inner_text()

    # Clearing the box brings the list back.
    box = page.locator('.search input[name="q"]')
    box.fill("quokka")
    page.locator(".search-hits").wait_for()
    box.fill("")
    box.dispatch_event("search")
    page.locator("#conversation-nav").wait_for(state="visible")
    assert page.locator(".search-hits").count() == 0


def test_share_a_branch_open_it_as_someone_else_and_revoke_it(chat, open_chat):
    page = chat.page
    conversation_id, _ = _seed(chat, "b2")
    page.goto(f"{chat.live.url}/c/{conversation_id}/")
    page.locator(".share-menu summary").click()
    page.locator(".share-create").click()
    link = page.locator(".share-url").first
    link.wait_for()
    url = link.input_value()
    assert re.fullmatch(rf"{re.escape(chat.live.url)}/s/[\w-]{{32,}}/", url), url

    bob = open_chat(username="bob", password="bob-password", server=chat.live)
    bob.page.goto(url)
    assert "Comfortable shoes, above all." in bob.page.locator(".shared-messages").inner_text()
    body = bob.page.content()
    assert "quokkasunscreen" not in body and "sidebar" not in body and f"/c/{conversation_id}/" not in body
    assert bob.page.locator("form, textarea").count() == 0

    page.locator(".share-revoke").first.click()
    page.locator(".share-links .empty").wait_for()
    assert page.locator(".share-url").count() == 0
    response = bob.page.goto(url)
    assert response.status == 404
    wait_until(lambda: "Comfortable shoes" not in bob.page.content(), message="the revoked page still shows")

"""What the server sends so that the page needs no script for it: the composer
after a prompt, the heading and tab after a rename, the conversation list after a
new chat, and the Stop button's target. Each is what a reload would show.

Persona: `alice` owns the conversations.
"""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from chat.models import Conversation, Message
from chat.views import SIDEBAR_SIZE
from tests.conftest import HTMX, finished, send
from tests.openai_stub import Stream
from tests.test_new_conversation import on_page, only
from tests.test_output_safety import Element, tree

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast")]


def _deletes(fragment: Element) -> list[str]:
    """The ids the fragment removes from the page, out of band."""
    return [e.attrs["id"] for e in fragment.walk() if e.attrs.get("hx-swap-oob") == "delete"]


async def test_a_sent_prompt_comes_back_with_a_fresh_composer(stub, alice_async, conversation):
    stub.script(Stream(["Fine."]))
    response = await alice_async.post(f"/c/{conversation.pk}/send/", {"prompt": "Hello"}, headers=HTMX)
    assert response.status_code == 200, response.content
    fragment = tree(response.content.decode())
    answer = await Message.objects.filter(conversation=conversation, role="assistant").alatest("id")

    # The composer takes the one in the answer (hx-select-oob): empty, no notice,
    # posting to the same conversation; the exchange itself goes to #messages.
    composer = only(fragment, id="composer")
    assert composer.attrs["hx-select-oob"] == "#composer"
    assert "hx-swap-oob" not in composer.attrs
    assert composer.find("textarea").text() == ""
    assert only(composer, id="notice").children == []
    assert composer.attrs["action"] == composer.attrs["hx-post"] == f"/c/{conversation.pk}/send/"
    assert [e.attrs["id"] for e in fragment.children if isinstance(e, Element) and e.tag == "article"][-1] == (
        f"msg-{answer.pk}"
    )

    # The same composer as the conversation's page (form tokens aside).
    await finished(answer.pk)
    page = (await alice_async.get(f"/c/{conversation.pk}/")).content.decode()
    assert composer.skeleton(ignore=("value",)) == on_page(page, r'<form id="composer".*?</form>').skeleton(
        ignore=("value",)
    )


async def test_stop_submits_the_form_of_the_answer_being_written(stub, alice_async, conversation):
    """The composer's Stop button is the same on every page; the answer being
    written carries the form it submits, with that answer's URL."""
    stub.script(Stream([f"w{i} " for i in range(40)], delay=0.02))
    answer = await send(alice_async, conversation, "Count")
    page = (await alice_async.get(f"/c/{conversation.pk}/")).content.decode()
    stop_url = f"/c/{conversation.pk}/m/{answer.pk}/stop/"
    stop_form = on_page(page, r'<form id="stop-answer".*?</form>')
    assert stop_form.attrs["action"] == stop_form.attrs["hx-post"] == stop_url
    assert "hidden" in stop_form.attrs
    assert only(on_page(page, r'<form id="composer".*?</form>'), **{"class": "stop"}).attrs["form"] == "stop-answer"

    response = await alice_async.post(stop_url, headers=HTMX)
    assert response.status_code == 204
    assert (await finished(answer.pk)).status == "stopped"
    page = (await alice_async.get(f"/c/{conversation.pk}/")).content.decode()
    assert 'id="stop-answer"' not in page


def test_renaming_the_conversation_on_screen_retitles_the_heading_and_the_tab(alice_client, conversation):
    url = f"/c/{conversation.pk}/"
    response = alice_client.post(
        f"{url}rename/", {"title": "Lisbon in May"}, headers={**HTMX, "HX-Current-URL": f"http://testserver{url}"}
    )
    assert response.status_code == 200
    fragment = tree(response.content.decode())
    item = only(fragment, id=f"conv-{conversation.pk}")
    assert item.attrs["class"].split() == ["conversation", "current"]
    assert only(item, href=url).attrs["aria-current"] == "page"
    assert only(fragment, id="chat-title", hx_swap_oob="true").text() == "Lisbon in May"
    assert fragment.find("title").text() == "Lisbon in May · Chat"

    # As the reloaded page shows them.
    page = alice_client.get(url).content.decode()
    assert "<title>Lisbon in May · Chat</title>" in page
    assert on_page(page, r'<h1 id="chat-title">.*?</h1>').text() == "Lisbon in May"


def test_renaming_another_conversation_changes_only_its_item(alice, alice_client, conversation):
    other = Conversation.objects.create(owner=alice, title="Other chat")
    response = alice_client.post(
        f"/c/{other.pk}/rename/",
        {"title": "Lisbon in May"},
        headers={**HTMX, "HX-Current-URL": f"http://testserver/c/{conversation.pk}/"},
    )
    assert response.status_code == 200
    fragment = tree(response.content.decode())
    [item] = [e for e in fragment.children if isinstance(e, Element)]
    assert item.attrs["id"] == f"conv-{other.pk}"
    assert item.attrs["class"].split() == ["conversation"]
    assert "aria-current" not in only(item, href=f"/c/{other.pk}/").attrs


async def test_the_first_chat_takes_the_place_of_no_conversations_yet(stub, alice, alice_async):
    page = (await alice_async.get("/")).content.decode()
    assert on_page(page, r'<li class="empty".*?</li>').attrs["id"] == "no-conversations"

    stub.script(Stream(["Fine."]), Stream(["Fine."]))
    response = await alice_async.post("/c/new/", {"prompt": "First"}, headers=HTMX)
    assert response.status_code == 200, response.content
    assert _deletes(tree(response.content.decode())) == ["no-conversations"]
    await finished((await Message.objects.alatest("id")).pk)

    # The next new chat finds no such item: it removes nothing (a missing target
    # would be an error in the browser's console).
    response = await alice_async.post("/c/new/", {"prompt": "Second"}, headers=HTMX)
    assert response.status_code == 200, response.content
    assert _deletes(tree(response.content.decode())) == []
    await finished((await Message.objects.alatest("id")).pk)


async def test_a_new_chat_in_a_full_list_keeps_its_items_and_its_next_page(stub, alice, alice_async):
    """The list is paged: the new chat goes on top, nothing leaves, and "Load more"
    still starts right after the last item shown (its cursor names that item)."""
    now = timezone.now()
    old = [
        await Conversation.objects.acreate(owner=alice, title=f"Old chat {n}", updated_at=now - timedelta(days=n + 1))
        for n in range(SIDEBAR_SIZE + 1)
    ]
    page = (await alice_async.get("/")).content.decode()
    assert f'id="conv-{old[-2].pk}"' in page and f'id="conv-{old[-1].pk}"' not in page

    stub.script(Stream(["Fine."]))
    response = await alice_async.post("/c/new/", {"prompt": "One more"}, headers=HTMX)
    assert response.status_code == 200, response.content
    assert _deletes(tree(response.content.decode())) == []
    await finished((await Message.objects.alatest("id")).pk)

    more = re.search(r'<li class="more"><a href="([^"]+)"', page).group(1).replace("&amp;", "&")
    rest = (await alice_async.get(more, headers=HTMX)).content.decode()
    assert re.findall(r'id="conv-(\d+)"', rest) == [str(old[-1].pk)]

"""The first prompt of a new chat. With htmx, the answer streams in the page that
sent it: the POST answers with the same fragment as a later prompt, plus the
out-of-band swaps that make the "New chat" page the conversation's page, as a
reload would show it. Without JavaScript, the browser goes to that page.

Persona: `alice` starts the conversation.
"""

import re

import pytest

from chat.models import Conversation
from tests.conftest import HTMX, finished, read_stream, texts
from tests.openai_stub import Stream
from tests.test_output_safety import PAGE_TAGS, Element, assert_inert, tree

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast")]

HOSTILE_PROMPT = '<script>alert(1)</script> & "Lisbon" <img src=x onerror=alert(2)>'


def only(root: Element, **attrs: str) -> Element:
    """The one element with these attribute values."""
    found = [e for e in root.walk() if all(e.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())]
    assert len(found) == 1, (attrs, found)
    return found[0]


def on_page(page: str, pattern: str) -> Element:
    """One element cut from a whole page (the doctype keeps `tree` off the page itself)."""
    return tree(re.search(pattern, page, re.S).group(0)).children[0]


async def test_the_first_answer_streams_in_the_page_that_sent_it(stub, alice, alice_async):
    stub.script(Stream(["Hello ", "there."]))
    response = await alice_async.post("/c/new/", {"prompt": HOSTILE_PROMPT}, headers=HTMX)
    assert response.status_code == 200, response.content
    conversation = await Conversation.objects.aget(owner=alice)
    user_message, assistant = [m async for m in conversation.messages.order_by("id")]
    url = f"/c/{conversation.pk}/"
    assert response["HX-Push-Url"] == url
    assert response["HX-Reswap"] == "innerHTML"  # the exchange replaces the welcome
    assert "HX-Redirect" not in response

    # The prompt is text wherever it appears: in the message, the title, the list.
    body = response.content.decode()
    assert "<script>" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    fragment = tree(body)
    assert_inert(fragment, allowed_tags=PAGE_TAGS)
    assert conversation.title.startswith("<script>alert(1)</script> &")

    # The exchange, as POST /c/<id>/send/ answers it: the answer streams from its own URL.
    messages = [e for e in fragment.children if isinstance(e, Element) and e.tag == "article"]
    assert [m.attrs["id"] for m in messages] == [f"msg-{user_message.pk}", f"msg-{assistant.pk}"]
    body_of_prompt = [e for e in messages[0].walk() if e.attrs.get("class") == "msg-body"]
    assert [e.text().strip() for e in body_of_prompt] == [HOSTILE_PROMPT]
    # Its edit form starts from the prompt, as text too.
    [edit_box] = [e for e in messages[0].walk() if e.tag == "textarea"]
    assert edit_box.text() == HOSTILE_PROMPT
    live = only(fragment, hx_ext="sse")
    assert live.attrs["sse-connect"] == f"/c/{conversation.pk}/m/{assistant.pk}/stream/?after=0"

    # Out of band: the conversation on top of the list, marked current; the heading
    # and the tab's title; a composer that posts to the conversation.
    listed = only(fragment, hx_swap_oob="afterbegin:#recent")
    item = only(listed, id=f"conv-{conversation.pk}")
    assert item.attrs["class"].split() == ["conversation", "current"]
    link = only(item, href=url)
    assert link.attrs["aria-current"] == "page"
    assert only(link, **{"class": "conv-title"}).text() == conversation.title
    assert only(fragment, id="chat-title", hx_swap_oob="true").text() == conversation.title
    assert fragment.find("title").text() == f"{conversation.title} · Chat"
    composer = only(fragment, id="composer", hx_swap_oob="true")
    send_url = f"/c/{conversation.pk}/send/"
    assert composer.attrs["action"] == composer.attrs["hx-post"] == send_url

    # Each piece is what the conversation's page shows after a reload (form tokens aside).
    page = (await alice_async.get(url)).content.decode()
    assert item.skeleton(ignore=("value",)) == on_page(page, r'<li class="conversation[^>]*>.*?</li>').skeleton(
        ignore=("value",)
    )
    del composer.attrs["hx-swap-oob"]
    assert composer.skeleton(ignore=("value",)) == on_page(page, r'<form id="composer".*?</form>').skeleton(
        ignore=("value",)
    )

    # The answer streams, and the composer's next prompt goes to the same conversation.
    assert texts(await read_stream(alice_async, assistant)) == "Hello there."
    assert (await finished(assistant.pk)).status == "complete"
    # The model got the prompt the conversation started with (known to the POST,
    # not read back), and later the whole conversation (read from the database).
    assert [(m["role"], m["content"]) for m in stub.requests[0]["messages"][1:]] == [("user", HOSTILE_PROMPT)]
    stub.script(Stream(["Again."]))
    response = await alice_async.post(send_url, {"prompt": "And again"}, headers=HTMX)
    assert response.status_code == 200, response.content
    assert "hx-swap-oob" not in response.content.decode()
    assert await conversation.messages.acount() == 4
    assert await Conversation.objects.filter(owner=alice).acount() == 1
    second = await conversation.messages.alatest("id")
    assert (await finished(second.pk)).status == "complete"
    assert [(m["role"], m["content"]) for m in stub.requests[1]["messages"][1:]] == [
        ("user", HOSTILE_PROMPT),
        ("assistant", "Hello there."),
        ("user", "And again"),
    ]


async def test_without_htmx_the_first_prompt_goes_to_the_conversations_page(stub, alice, alice_async):
    stub.script(Stream(["Hello."]))
    response = await alice_async.post("/c/new/", {"prompt": "Hi"})
    conversation = await Conversation.objects.aget(owner=alice)
    assert response.status_code == 302
    assert response["Location"] == f"/c/{conversation.pk}/"
    assert "HX-Push-Url" not in response
    assert (await finished((await conversation.messages.alatest("id")).pk)).status == "complete"

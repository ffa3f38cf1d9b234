"""Read-only share links: a snapshot or live, for people logged in here or (if
the site allows) anyone; revoked, a 404; the page shows the branch and nothing
else of its owner's."""

import re

import pytest
from django.test import Client
from django.urls import reverse

from chat.models import Conversation, Message, Share
from tests.conftest import HTMX

pytestmark = pytest.mark.django_db


@pytest.fixture
def chat(alice) -> Conversation:
    """Alice's conversation with two branches; the second on screen, with a tool call."""
    c = Conversation.objects.create(owner=alice, title="Alice's trip")
    prompt = Message.objects.create(conversation=c, role="user", content="Where should I go in May?")
    Message.objects.create(conversation=c, role="assistant", parent=prompt, content="Hidden branch: Oslo.")
    shown = Message.objects.create(conversation=c, role="assistant", parent=prompt, content="**Lisbon**, for the sun.")
    shown.tool_calls.create(call_id="call_1", name="current_time", arguments="{}", result="May")
    c.active_leaf = shown
    c.save()
    Conversation.objects.create(owner=alice, title="Alice's other secret chat")
    return c


def share(client, chat, **form) -> Share:
    response = client.post(reverse("chat-share", args=[chat.pk]), {"mode": "snapshot", **form}, headers=HTMX)
    assert response.status_code == 200, response.content
    share = Share.objects.latest("id")
    assert f"/s/{share.token}/" in response.content.decode()
    return share


@pytest.fixture
def bob_client(bob) -> Client:
    client = Client()
    client.force_login(bob)
    return client


def test_a_shared_branch_shows_its_text_and_nothing_else_of_the_owners(alice_client, bob_client, chat):
    link = reverse("chat-shared", args=[share(alice_client, chat).token])
    assert len(link.split("/")[2]) >= 32  # unguessable
    response = bob_client.get(link)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Where should I go in May?" in html and "<strong>Lisbon</strong>, for the sun." in html
    assert "Used current_time" in html and "A snapshot" in html
    # No other branch, no other conversation, no ids, no controls.
    assert "Oslo" not in html
    assert "other secret chat" not in html and "sidebar" not in html and "conversations" not in html
    assert not re.search(r"/c/\d+|msg-\d+|conv-\d+", html)
    assert "<form" not in html and "composer" not in html and "sse-connect" not in html
    # Anonymous visitors log in first (the site does not allow public links).
    anonymous = Client().get(link)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith(reverse("login"))


def test_a_snapshot_stays_as_it_was_and_a_live_link_follows(alice_client, bob_client, chat):
    snapshot = reverse("chat-shared", args=[share(alice_client, chat).token])
    live = reverse("chat-shared", args=[share(alice_client, chat, mode="live").token])
    follow = reverse("chat-shared", args=[share(alice_client, chat, mode="follow").token])
    answer = chat.active_leaf
    prompt = Message.objects.create(conversation=chat, role="user", content="And in June?", parent=answer)
    later = Message.objects.create(conversation=chat, role="assistant", content="Porto in June.", parent=prompt)
    chat.title = "Renamed later"
    chat.active_leaf = later
    chat.save()
    html = bob_client.get(snapshot).content.decode()
    assert "Lisbon" in html and "Porto" not in html and "Alice&#x27;s trip" in html and "A snapshot" in html
    html = bob_client.get(live).content.decode()
    assert "Lisbon" in html and "Porto in June." in html and "Live" in html and "Renamed later" in html
    # The owner switches to the other branch: a live link of a branch stays on
    # it; one that follows the owner's screen shows the other branch.
    chat.active_leaf = chat.messages.get(content__startswith="Hidden branch")
    chat.save()
    assert "Porto in June." in bob_client.get(live).content.decode()
    html = bob_client.get(follow).content.decode()
    assert "Oslo" in html and "Lisbon" not in html


def test_a_revoked_link_is_a_404_and_leaves_the_menu(alice_client, bob_client, chat):
    first = share(alice_client, chat)
    second = share(alice_client, chat, mode="live")
    response = alice_client.post(reverse("chat-share-revoke", args=[chat.pk]), {"share": first.pk}, headers=HTMX)
    assert response.status_code == 200
    assert f"/s/{first.token}/" not in response.content.decode()
    assert f"/s/{second.token}/" in response.content.decode()
    for client in (bob_client, alice_client, Client()):
        assert client.get(reverse("chat-shared", args=[first.token])).status_code == 404
    assert bob_client.get(reverse("chat-shared", args=[second.token])).status_code == 200
    assert Client().get("/s/no-such-token-at-all-here-0000000000/").status_code == 404
    # The page lists the links still open.
    page = alice_client.get(reverse("chat-conversation", args=[chat.pk])).content.decode()
    assert f"/s/{second.token}/" in page and f"/s/{first.token}/" not in page
    # Deleting the conversation ends every link.
    chat.delete()
    assert bob_client.get(reverse("chat-shared", args=[second.token])).status_code == 404


def test_another_user_cannot_share_or_revoke_anothers_link(alice_client, bob, bob_client, chat):
    link = share(alice_client, chat)
    bobs = Conversation.objects.create(owner=bob, title="Bob's")
    assert bob_client.post(reverse("chat-share", args=[chat.pk]), {"mode": "live"}).status_code == 404
    response = bob_client.post(reverse("chat-share-revoke", args=[bobs.pk]), {"share": link.pk}, headers=HTMX)
    assert response.status_code == 200
    link.refresh_from_db()
    assert link.revoked_at is None and Share.objects.count() == 1


def test_public_links_only_where_the_site_allows_them(alice_client, chat, settings):
    page = alice_client.get(reverse("chat-conversation", args=[chat.pk])).content.decode()
    assert 'name="public"' not in page
    # Asked for anyway: a link for people logged in.
    closed = share(alice_client, chat, public="1")
    assert not closed.public
    assert Client().get(reverse("chat-shared", args=[closed.token])).status_code == 302

    settings.CHAT_ALLOW_PUBLIC_SHARES = True
    page = alice_client.get(reverse("chat-conversation", args=[chat.pk])).content.decode()
    assert 'name="public"' in page
    public = share(alice_client, chat, public="1")
    assert public.public
    response = Client().get(reverse("chat-shared", args=[public.token]))
    assert response.status_code == 200 and "Lisbon" in response.content.decode()
    # Staff turning public links off closes them to anonymous visitors again.
    settings.CHAT_ALLOW_PUBLIC_SHARES = False
    assert Client().get(reverse("chat-shared", args=[public.token])).status_code == 302


def test_a_bad_mode_is_refused(alice_client, chat):
    response = alice_client.post(reverse("chat-share", args=[chat.pk]), {"mode": "everything"})
    assert response.status_code == 400 and not Share.objects.exists()

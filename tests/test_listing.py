"""The conversation list: pinned on top, archived apart, and every conversation
reachable a page at a time."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from chat.listing import PAGE_SIZE
from chat.models import Conversation
from tests.conftest import HTMX

pytestmark = pytest.mark.django_db


def listed(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<li class="conversation[^"]*" id="conv-(\d+)"', html)]


def more_url(html: str) -> str | None:
    match = re.search(r'<li class="more"><a href="([^"]+)"', html)
    return match and match.group(1).replace("&amp;", "&")


@pytest.fixture
def many(alice) -> list[Conversation]:
    """2.5 pages of conversations, newest first; two of them with the same time."""
    now = timezone.now()
    made = [
        Conversation(owner=alice, title=f"Chat {n}", updated_at=now - timedelta(minutes=n))
        for n in range(PAGE_SIZE * 5 // 2)
    ]
    made[41].updated_at = made[40].updated_at
    Conversation.objects.bulk_create(made)
    return sorted(Conversation.objects.filter(owner=alice), key=lambda c: (c.updated_at, c.pk), reverse=True)


def test_every_conversation_is_reached_page_by_page_each_once(alice_client, many):
    page = alice_client.get(reverse("chat-home")).content.decode()
    seen = listed(page)
    assert len(seen) == PAGE_SIZE
    url = more_url(page)
    pages = 1
    # A conversation that moves to the top meanwhile (a new prompt) leaves the
    # pages below the cursor: no other conversation is skipped or repeated.
    Conversation.objects.filter(pk=many[-1].pk).update(updated_at=timezone.now())
    while url:
        fragment = alice_client.get(url, headers=HTMX).content.decode()
        assert "<html" not in fragment
        seen += listed(fragment)
        url = more_url(fragment)
        pages += 1
    assert pages == 3
    assert seen == [c.pk for c in many[:-1]]


def test_a_page_without_htmx_is_a_page_and_a_bad_cursor_a_400(alice_client, many):
    url = more_url(alice_client.get(reverse("chat-home")).content.decode())
    page = alice_client.get(url)
    assert page.status_code == 200 and b"<html" in page.content
    assert listed(page.content.decode())[0] == many[PAGE_SIZE].pk
    for bad in ("nonsense", "2026-01-01T00:00:00~1", "2026-01-01T00:00:00+00:00~x", "~"):
        assert alice_client.get(reverse("chat-list"), {"after": bad}).status_code == 400, bad


def test_pinned_conversations_lead_the_list_and_stay_out_of_its_pages(alice_client, many):
    old = many[-1]
    response = alice_client.post(reverse("chat-pin", args=[old.pk]), {"pinned": "1"}, headers=HTMX)
    assert response.status_code == 200
    # The lists come back whole: the pinned one on top, under "Pinned".
    html = response.content.decode()
    assert listed(html)[0] == old.pk and "Pinned" in html
    assert listed(html).count(old.pk) == 1
    home = alice_client.get(reverse("chat-home")).content.decode()
    assert listed(home)[:2] == [old.pk, many[0].pk]
    assert re.search(rf'id="pinned">\s*<li class="conversation" id="conv-{old.pk}"', home)
    # It is on no page of the rest.
    url, rest = more_url(home), []
    while url:
        fragment = alice_client.get(url, headers=HTMX).content.decode()
        rest += listed(fragment)
        url = more_url(fragment)
    assert old.pk not in rest and len(rest) == len(many) - PAGE_SIZE - 1

    alice_client.post(reverse("chat-pin", args=[old.pk]), {"pinned": "0"})
    old.refresh_from_db()
    assert old.pinned_at is None
    assert "Pinned" not in alice_client.get(reverse("chat-home")).content.decode()


def test_archived_conversations_leave_the_list_for_the_archived_view_and_come_back(alice, alice_client):
    kept = Conversation.objects.create(owner=alice, title="Kept")
    gone = Conversation.objects.create(owner=alice, title="Put away", pinned_at=timezone.now())
    response = alice_client.post(
        reverse("chat-archive", args=[gone.pk]), {"archived": "1"}, headers={**HTMX, "HX-Current-URL": f"/c/{gone.pk}/"}
    )
    assert listed(response.content.decode()) == [kept.pk]
    gone.refresh_from_db()
    assert gone.archived_at is not None and gone.pinned_at is None  # archiving unpins
    assert listed(alice_client.get(reverse("chat-home")).content.decode()) == [kept.pk]

    archive = alice_client.get(reverse("chat-archived")).content.decode()
    assert listed(archive) == [gone.pk] and "Back to chats" in archive
    assert 'name="archived" value="0"' in archive and "Unarchive" in archive
    # Still found by search, marked archived; still opens.
    hits = alice_client.get(reverse("chat-search"), {"q": "away"}, headers=HTMX).content.decode()
    assert f'href="/c/{gone.pk}/"' in hits and "Archived" in hits
    assert alice_client.get(reverse("chat-conversation", args=[gone.pk])).status_code == 200

    # Brought back from the archived view, which that view's answer still shows.
    response = alice_client.post(
        reverse("chat-archive", args=[gone.pk]), {"archived": "0", "view": "archived"}, headers=HTMX
    )
    assert listed(response.content.decode()) == [] and "Nothing archived." in response.content.decode()
    assert sorted(listed(alice_client.get(reverse("chat-home")).content.decode())) == sorted([kept.pk, gone.pk])
    # Without htmx: back to the list it was asked from.
    response = alice_client.post(reverse("chat-archive", args=[kept.pk]), {"archived": "1", "view": "archived"})
    assert response.status_code == 302 and response["Location"] == reverse("chat-archived")


def test_the_archived_view_pages_too(alice, alice_client):
    now = timezone.now()
    Conversation.objects.bulk_create(
        Conversation(owner=alice, title=f"Old {n}", updated_at=now - timedelta(hours=n), archived_at=now)
        for n in range(PAGE_SIZE + 3)
    )
    Conversation.objects.create(owner=alice, title="Current")
    archive = alice_client.get(reverse("chat-archived")).content.decode()
    assert len(listed(archive)) == PAGE_SIZE and "Current" not in archive
    url = more_url(archive)
    assert "archived=1" in url
    rest = alice_client.get(url, headers=HTMX).content.decode()
    assert len(listed(rest)) == 3 and more_url(rest) is None

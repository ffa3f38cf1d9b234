"""search_conversations only ever sees the calling user's own messages."""

import asyncio

import pytest

from chat.models import Conversation, Message
from chat.tools import ToolContext, get_tool
from chat.tools.search import search


@pytest.fixture
def chats(alice, bob):
    mine = Conversation.objects.create(owner=alice, title="Holiday plans")
    Message.objects.create(conversation=mine, role="user", content="I want a holiday in Lisbon in May.")
    theirs = Conversation.objects.create(owner=bob, title="Bob's secrets")
    Message.objects.create(conversation=theirs, role="user", content="My holiday secret: Lisbon, never tell alice.")
    current = Conversation.objects.create(owner=alice, title="Now")
    return mine, theirs, current


@pytest.mark.django_db
def test_it_finds_the_users_own_messages_with_links(alice, chats):
    mine, _, _ = chats
    results = search(alice.pk, "holiday Lisbon")
    assert [r["conversation"] for r in results] == ["Holiday plans"]
    message = mine.messages.get()
    assert results[0]["link"] == f"/c/{mine.pk}/?at={message.pk}#msg-{message.pk}"
    assert "Lisbon" in results[0]["snippet"]


@pytest.mark.django_db
def test_it_never_returns_another_users_text(alice, bob, chats):
    for query in ("secret", "never tell", "Lisbon", "holiday"):
        for result in search(alice.pk, query):
            assert "secret" not in result["snippet"]
            assert result["conversation"] != "Bob's secrets"
    assert [r["conversation"] for r in search(bob.pk, "Lisbon")] == ["Bob's secrets"]


@pytest.mark.django_db(transaction=True)
def test_the_tool_runs_as_the_calling_user_and_skips_the_current_chat(alice, chats):
    _mine, _, current = chats
    Message.objects.create(conversation=current, role="user", content="what did I say about Lisbon?")
    tool = get_tool("search_conversations")
    output = asyncio.run(tool.run({"query": "Lisbon"}, ToolContext(user_id=alice.pk, conversation_id=current.pk)))
    assert "Holiday plans" in output and "secret" not in output
    assert "what did I say" not in output
    nothing = asyncio.run(tool.run({"query": "zebra"}, ToolContext(user_id=alice.pk, conversation_id=current.pk)))
    assert nothing == "No earlier messages mention 'zebra'."

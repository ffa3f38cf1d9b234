"""Full-text search of one's conversations (chat/search.py): the same words,
phrases and prefixes on SQLite (FTS5) and PostgreSQL (tsvector), only one's own
messages, every branch, and an answer found by the words it has while it streams."""

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.urls import reverse

from chat.models import Conversation, Message
from chat.search import Term, parse, search
from tests.conftest import HTMX, finished, send
from tests.openai_stub import Stream
from tests.waiting import wait_until_async


@pytest.fixture
def chats(alice, bob):
    holiday = Conversation.objects.create(owner=alice, title="Holiday plans")
    prompt = Message.objects.create(conversation=holiday, role="user", content="I want a holiday in Lisbon in May.")
    answer = Message.objects.create(
        conversation=holiday,
        role="assistant",
        parent=prompt,
        content="Lisbon in May is warm. Pack light, and book the tram tour early.",
    )
    # Another branch: an answer Alice paged away from.
    Message.objects.create(
        conversation=holiday, role="assistant", parent=prompt, content="Porto is quieter than Lisbon in spring."
    )
    code = Conversation.objects.create(owner=alice, title="Model names")
    Message.objects.create(conversation=code, role="user", content="Is gpt-4o faster than the old model?")
    bobs = Conversation.objects.create(owner=bob, title="Bob's holiday")
    Message.objects.create(conversation=bobs, role="user", content="My secret Lisbon holiday, zanzibar too.")
    return holiday, answer, code, bobs


def snippets(user, query) -> list[str]:
    return [str(hit.snippet) for hit in search(user.pk, query)]


def test_a_query_becomes_words_phrases_and_a_prefix_being_typed():
    assert parse("holiday lis") == [Term(("holiday",)), Term(("lis",), prefix=True)]
    assert parse("holiday lis ") == [Term(("holiday",)), Term(("lis",))]
    assert parse('"book the tram" tour') == [Term(("book", "the", "tram")), Term(("tour",), prefix=True)]
    assert parse('tour "book the') == [Term(("tour",)), Term(("book", "the"))]
    assert parse("GPT-4o") == [Term(("gpt", "4o"), prefix=True)]
    # Query syntax of either engine is just punctuation.
    assert parse("a* OR b:* & !c 'd' NEAR(e)") == [
        Term(("a",)),
        Term(("or",)),
        Term(("b",)),
        Term(("c",)),
        Term(("d",)),
        Term(("near", "e"), prefix=True),
    ]
    assert parse('  " * " ') == []


@pytest.mark.django_db
def test_words_phrases_and_prefixes_find_the_same_messages(alice, chats):
    holiday, answer, code, _ = chats
    hits = search(alice.pk, "lisbon may ")
    assert [(h.conversation_id, h.message_id) for h in hits] == [
        (holiday.pk, answer.pk),
        (holiday.pk, answer.parent_id),
    ]
    # Every branch: the answer paged away from is found too.
    assert "Porto" in " ".join(snippets(alice, "quieter"))
    # A phrase is the words together, in order.
    assert len(search(alice.pk, '"tram tour" ')) == 1
    assert search(alice.pk, '"tour tram" ') == []
    # The last word as it is being typed.
    assert [h.message_id for h in search(alice.pk, "pack li")] == [answer.pk]
    assert search(alice.pk, "pack li ") == []
    # Case, and a word with punctuation inside.
    assert [h.conversation_id for h in search(alice.pk, "GPT-4O ")] == [code.pk]
    assert search(alice.pk, "gpt-5 ") == []
    # No stemming, the same on both databases.
    assert search(alice.pk, "plan ") == []


@pytest.mark.django_db
def test_titles_match_and_come_first(alice, chats):
    holiday, *_ = chats
    hits = search(alice.pk, "holiday")
    assert (hits[0].conversation_id, hits[0].message_id) == (holiday.pk, None)
    assert str(hits[0].snippet) == "<mark>Holiday</mark> plans"
    assert all(h.conversation_id == holiday.pk for h in hits)


@pytest.mark.django_db
def test_another_users_words_never_match(alice, bob, chats):
    *_, bobs = chats
    assert search(alice.pk, "zanzibar") == []
    assert search(alice.pk, "secret") == []
    for query in ("holiday", "lisbon", "Lisbon holiday", '"secret lisbon"', "my"):
        assert all(h.conversation_id != bobs.pk for h in search(alice.pk, query)), query
    assert [h.conversation_id for h in search(bob.pk, "zanz")] == [bobs.pk]


@pytest.mark.django_db
def test_snippets_are_escaped_and_highlighted(alice, conversation):
    long = "word " * 60 + "<script>alert(1)</script> the needle & thread " + "word " * 60
    Message.objects.create(conversation=conversation, role="assistant", content=long)
    [hit] = search(alice.pk, "needle")
    text = str(hit.snippet)
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "<mark>needle</mark> &amp; thread" in text
    assert text.startswith("…") and text.endswith("…")
    assert len(text) < 300


@pytest.mark.django_db
def test_edits_and_deletes_keep_the_index_current(alice, conversation):
    message = Message.objects.create(conversation=conversation, role="user", content="first words")
    assert len(search(alice.pk, "first")) == 1
    Message.objects.filter(pk=message.pk).update(content="second words")
    assert search(alice.pk, "first") == []
    assert len(search(alice.pk, "second")) == 1
    conversation.title = "Renamed chat"
    conversation.save()
    assert [h.message_id for h in search(alice.pk, "renamed")] == [None]
    conversation.delete()
    assert search(alice.pk, "second") == [] and search(alice.pk, "renamed") == []


@pytest.mark.django_db
def test_the_index_is_the_databases_own(alice, chats):
    """The search's conditions are ones a full-text index answers (with a few rows
    a planner may read the table instead: the benchmark measures a large account)."""
    from chat.search import matching, matching_messages

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET enable_seqscan = off")
            for queryset, index in [
                (matching_messages(alice.pk, parse("lisbon ")), "chat_message_search_"),
                (matching(Conversation.objects.all(), "title", parse("holiday ")), "chat_conversation_title_search"),
            ]:
                sql, params = queryset.query.sql_with_params()
                cursor.execute("EXPLAIN " + sql, params)
                plan = "\n".join(row[0] for row in cursor.fetchall())
                assert index in plan, plan
        else:
            sql, params = matching_messages(alice.pk, parse("lisbon ")).query.sql_with_params()
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
            plan = "\n".join(str(row) for row in cursor.fetchall())
            assert "chat_message_fts" in plan and "VIRTUAL TABLE INDEX" in plan, plan


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fast")
async def test_a_streaming_answer_is_found_by_the_words_it_has_so_far(stub, alice, alice_async, conversation, settings):
    settings.CHAT_FLUSH_INTERVAL = 0.1
    stub.script(Stream(["marmalade "] * 5 + ["quokka "] * 40, delay=0.03))
    message = await send(alice_async, conversation, "Say something")

    async def found_while_streaming():
        hits = await sync_to_async(search)(alice.pk, "marmalade")
        answer = await Message.objects.aget(pk=message.pk)
        return hits and answer.status == "streaming" and hits

    hits = await wait_until_async(found_while_streaming, message="the streaming answer was not found")
    assert [h.message_id for h in hits] == [message.pk]
    await finished(message.pk)
    hits = await sync_to_async(search)(alice.pk, "quokka")
    assert [h.message_id for h in hits] == [message.pk]


@pytest.mark.django_db
def test_the_search_view_answers_a_fragment_as_one_types(alice_client, chats):
    holiday, answer, *_ = chats
    url = reverse("chat-search")
    response = alice_client.get(url, {"q": "tram to"}, headers=HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert f'href="/c/{holiday.pk}/?at={answer.pk}#msg-{answer.pk}"' in html
    assert "<mark>tram</mark> <mark>tour</mark>" in html
    assert "<html" not in html
    assert "No matches" in alice_client.get(url, {"q": "zanzibar"}, headers=HTMX).content.decode()
    # Nothing typed: nothing listed, the conversation list shows again.
    assert alice_client.get(url, {"q": " "}, headers=HTMX).content.decode().strip() == ""
    # Without htmx: a page of its own.
    page = alice_client.get(url, {"q": "tram"})
    assert page.status_code == 200 and b"<html" in page.content and b"<mark>tram</mark>" in page.content


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "sqlite", reason="SQLite drops a rebuilt table's triggers; PostgreSQL keeps its indexes"
)
def test_a_migration_that_rebuilds_the_messages_table_leaves_the_index_working(alice, conversation):
    """SQLite alters a table by copying it into a new one, which drops the old
    one's triggers: after `migrate`, they are put back and the rows written
    without them are indexed."""
    from chat.apps import _search_index_in_place

    with connection.cursor() as cursor:
        for event in ("insert", "delete", "update"):
            cursor.execute(f"DROP TRIGGER chat_message_fts_{event}")
    Message.objects.create(conversation=conversation, role="user", content="written while unindexed")
    assert search(alice.pk, "unindexed") == []
    _search_index_in_place("default")
    assert [h.conversation_id for h in search(alice.pk, "unindexed")] == [conversation.pk]
    Message.objects.create(conversation=conversation, role="user", content="written after")
    assert len(search(alice.pk, "after")) == 1

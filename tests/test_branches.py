"""Conversations as trees: editing a prompt and regenerating an answer add
siblings, the "‹ n/m ›" pager switches the branch on screen (stored on the server),
and the model is sent exactly the path from the root to its prompt.

Personas: `alice` owns the conversation; a second session of hers stands for
another tab or device.
"""

import re

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from chat.models import Conversation, Generation, Message
from tests.conftest import HTMX, finished, read_stream, texts
from tests.openai_stub import Stream

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast")]


async def _post(client: AsyncClient, url: str, data: dict | None = None, htmx: bool = True):
    return await client.post(url, data or {}, headers=HTMX if htmx else {})


async def _answer(client, stub, url: str, reply: str, data: dict | None = None) -> Message:
    """Post an action that starts an answer (send, edit, retry); the finished answer."""
    stub.script(Stream([reply]))
    response = await _post(client, url, data)
    assert response.status_code == 200, response.content
    answer = await Message.objects.alatest("id")
    assert (await finished(answer.pk)).content == reply
    return await Message.objects.aget(pk=answer.pk)


async def _say(client, stub, conversation, prompt: str, reply: str) -> Message:
    return await _answer(client, stub, f"/c/{conversation.pk}/send/", reply, {"prompt": prompt})


async def _edit(client, stub, prompt: Message, text: str, reply: str) -> Message:
    return await _answer(client, stub, f"/c/{prompt.conversation_id}/m/{prompt.pk}/edit/", reply, {"prompt": text})


async def _retry(client, stub, answer: Message, reply: str) -> Message:
    return await _answer(client, stub, f"/c/{answer.conversation_id}/m/{answer.pk}/retry/", reply)


async def _switch(client, message: Message, htmx: bool = True):
    return await _post(client, f"/c/{message.conversation_id}/m/{message.pk}/switch/", htmx=htmx)


def _sent(stub) -> list[tuple[str, str]]:
    """The conversation the model was last sent, without the system prompt."""
    return [(m["role"], m["content"]) for m in stub.requests[-1]["messages"][1:]]


async def _page(client, conversation) -> str:
    response = await client.get(f"/c/{conversation.pk}/")
    assert response.status_code == 200
    return response.content.decode()


def _shown(page: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<article class="msg [^"]*" id="msg-(\d+)"', page)]


def _pagers(page: str) -> list[str]:
    return re.findall(r'<span class="pager-position">(\d+/\d+)</span>', page)


async def _prompt_of(answer: Message) -> Message:
    return await Message.objects.aget(pk=answer.parent_id)


async def test_the_model_is_sent_the_path_to_its_prompt_and_never_a_sibling(stub, alice_async, conversation):
    one = await _say(alice_async, stub, conversation, "first", "one")
    two = await _say(alice_async, stub, conversation, "second", "two")
    two_again = await _retry(alice_async, stub, two, "two again")
    # A regenerated answer is asked the same prompt, without the attempt beside it.
    assert _sent(stub) == [("user", "first"), ("assistant", "one"), ("user", "second")]
    three = await _say(alice_async, stub, conversation, "third", "three")
    assert _sent(stub)[-2:] == [("assistant", "two again"), ("user", "third")]

    # An edit deep in the branch: the path to the edited prompt, nothing of the
    # prompt it replaces nor of the answers beside the ones on the path.
    await _edit(alice_async, stub, await _prompt_of(three), "third, edited", "three again")
    assert _sent(stub) == [
        ("user", "first"),
        ("assistant", "one"),
        ("user", "second"),
        ("assistant", "two again"),
        ("user", "third, edited"),
    ]
    # Back to the first attempt at "second": the next prompt continues that branch.
    assert (await _switch(alice_async, two)).status_code == 200
    await _say(alice_async, stub, conversation, "fourth", "four")
    assert _sent(stub) == [
        ("user", "first"),
        ("assistant", "one"),
        ("user", "second"),
        ("assistant", "two"),
        ("user", "fourth"),
    ]
    # Editing the first prompt starts a tree of its own: only the edited prompt.
    await _edit(alice_async, stub, await _prompt_of(one), "first, edited", "one again")
    assert _sent(stub) == [("user", "first, edited")]
    assert two_again.parent_id == two.parent_id


async def test_edit_and_retry_keep_everything_and_the_pager_switches_to_the_rest_of_a_branch(
    stub, alice_async, conversation
):
    one = await _say(alice_async, stub, conversation, "first", "one")
    two = await _say(alice_async, stub, conversation, "second", "two")
    three = await _say(alice_async, stub, conversation, "third", "three")
    first = await _prompt_of(one)
    edited = await _edit(alice_async, stub, first, "first, edited", "one, edited")
    page = await _page(alice_async, conversation)
    assert _shown(page) == [edited.parent_id, edited.pk]
    assert _pagers(page) == ["2/2"]

    # Paging back to the first prompt shows its branch down to its latest message.
    response = await _switch(alice_async, first)
    assert response.status_code == 200
    assert response["HX-Retarget"] == "#messages"
    assert _shown(response.content.decode()) == [first.pk, one.pk, two.parent_id, two.pk, three.parent_id, three.pk]
    # The composer's next prompt follows the end of the branch now on screen.
    assert f'name="after" value="{three.pk}" hx-swap-oob="outerHTML:#composer input[name=after]"' in (
        response.content.decode()
    )
    page = await _page(alice_async, conversation)
    assert _shown(page) == [first.pk, one.pk, two.parent_id, two.pk, three.parent_id, three.pk]
    assert _pagers(page) == ["1/2"]

    # Regenerating a middle answer twice: three alternatives, the newest shown.
    again = await _retry(alice_async, stub, two, "two again")
    third = await _retry(alice_async, stub, two, "two, third try")
    page = await _page(alice_async, conversation)
    assert _shown(page) == [first.pk, one.pk, two.parent_id, third.pk]
    assert _pagers(page) == ["1/2", "3/3"]
    # The first attempt still has the rest of its branch.
    await _switch(alice_async, two)
    assert _pagers(await _page(alice_async, conversation)) == ["1/2", "1/3"]
    assert _shown(await _page(alice_async, conversation))[-3:] == [two.pk, three.parent_id, three.pk]
    assert await Message.objects.filter(conversation=conversation).acount() == 10
    assert again.parent_id == third.parent_id == two.parent_id


async def test_the_branch_on_screen_is_the_servers_for_every_session(stub, alice, alice_async, conversation):
    one = await _say(alice_async, stub, conversation, "first", "one")
    other = await _retry(alice_async, stub, one, "one again")
    second_tab = AsyncClient()
    await second_tab.aforce_login(alice)
    assert _shown(await _page(second_tab, conversation))[-1] == other.pk
    await _switch(alice_async, one)
    assert _shown(await _page(second_tab, conversation))[-1] == one.pk
    await _switch(second_tab, other)
    assert _shown(await _page(alice_async, conversation))[-1] == other.pk


async def test_a_prompt_lands_in_the_branch_its_sender_sees(stub, alice, alice_async, conversation):
    """Another tab switched the stored branch: a prompt sent from a page still
    showing the old branch continues the old branch, as its sender saw it."""
    one = await _say(alice_async, stub, conversation, "first", "one")
    other = await _retry(alice_async, stub, one, "one again")
    await _switch(alice_async, one)
    stub.script(Stream(["two"]))
    response = await _post(alice_async, f"/c/{conversation.pk}/send/", {"prompt": "second", "after": other.pk})
    assert response.status_code == 200
    answer = await finished((await Message.objects.alatest("id")).pk)
    prompt = await _prompt_of(answer)
    assert prompt.parent_id == other.pk
    assert _sent(stub)[-2:] == [("assistant", "one again"), ("user", "second")]
    assert (await Conversation.objects.aget(pk=conversation.pk)).active_leaf_id == answer.pk


async def test_switching_away_from_a_streaming_answer_and_back_resumes_it(stub, alice_async, conversation):
    one = await _say(alice_async, stub, conversation, "first", "one")
    words = [f"w{i} " for i in range(40)]
    stub.script(Stream(words, delay=0.03))
    response = await _post(alice_async, f"/c/{conversation.pk}/m/{one.pk}/retry/")
    assert response.status_code == 200
    streaming = await Message.objects.alatest("id")
    first_cursor = int(re.search(r"after=(\d+)", response.content.decode()).group(1))

    away = (await _switch(alice_async, one)).content.decode()
    assert "sse-connect" not in away
    back = (await _switch(alice_async, streaming)).content.decode()
    assert f'id="msg-{streaming.pk}"' in back
    if 'data-status="streaming"' in back:
        # Still going: the page resumes after what it shows, like a reload.
        cursor = int(re.search(rf"/m/{streaming.pk}/stream/\?after=(\d+)", back).group(1))
        assert cursor >= first_cursor
    frames = await read_stream(alice_async, streaming, after=first_cursor)
    assert texts(frames) == "".join(words)
    stored = await finished(streaming.pk)
    assert (stored.status, stored.content) == ("complete", "".join(words))


async def test_continue_is_for_the_last_answer_of_a_branch(stub, alice_async, conversation):
    stub.script(Stream(["Cut"], finish_reason="length"))
    response = await _post(alice_async, f"/c/{conversation.pk}/send/", {"prompt": "first"})
    assert response.status_code == 200
    cut = await finished((await Message.objects.alatest("id")).pk)
    await _say(alice_async, stub, conversation, "second", "two")
    response = await _post(alice_async, f"/c/{conversation.pk}/m/{cut.pk}/continue/")
    assert response.status_code == 409
    assert "Only the last answer of a branch can be continued." in response.content.decode()
    assert (await Message.objects.aget(pk=cut.pk)).content == "Cut"


async def test_edit_switch_and_retry_work_without_javascript(stub, alice_async, conversation):
    one = await _say(alice_async, stub, conversation, "first", "one")
    prompt = await _prompt_of(one)
    stub.script(Stream(["one, edited"]))
    response = await _post(alice_async, f"/c/{conversation.pk}/m/{prompt.pk}/edit/", {"prompt": "edited"}, htmx=False)
    assert (response.status_code, response["Location"]) == (302, f"/c/{conversation.pk}/")
    await finished((await Message.objects.alatest("id")).pk)
    response = await _switch(alice_async, prompt, htmx=False)
    assert (response.status_code, response["Location"]) == (302, f"/c/{conversation.pk}/")
    page = await _page(alice_async, conversation)
    assert _shown(page) == [prompt.pk, one.pk]
    # The pager and the edit form are plain forms that post.
    assert re.search(rf'<form method="post" action="/c/{conversation.pk}/m/\d+/switch/"', page)
    assert f'<form method="post" action="/c/{conversation.pk}/m/{prompt.pk}/edit/"' in page


async def test_an_edit_of_an_answer_is_404_and_a_bad_edit_is_refused(stub, alice_async, conversation):
    one = await _say(alice_async, stub, conversation, "first", "one")
    response = await _post(alice_async, f"/c/{conversation.pk}/m/{one.pk}/edit/", {"prompt": "x"})
    assert response.status_code == 404
    response = await _post(alice_async, f"/c/{conversation.pk}/m/{one.parent_id}/edit/", {"prompt": "  "})
    assert response.status_code == 422
    assert response["HX-Retarget"] == "#notice"
    assert await Message.objects.filter(conversation=conversation).acount() == 2


async def test_branch_answers_count_toward_the_per_minute_limit(stub, alice_async, conversation, settings):
    one = await _say(alice_async, stub, conversation, "first", "one")
    await _retry(alice_async, stub, one, "one again")
    settings.CHAT_PROMPTS_PER_MINUTE = 2
    for url, data in (
        (f"/c/{conversation.pk}/m/{one.pk}/retry/", {}),
        (f"/c/{conversation.pk}/m/{one.parent_id}/edit/", {"prompt": "edited"}),
    ):
        response = await _post(alice_async, url, data)
        assert response.status_code == 429
        assert "You asked for 2 answers in the last minute" in response.content.decode()
    assert await Generation.objects.acount() == 2


async def test_one_answer_at_a_time_in_a_conversation_whatever_its_branch(stub, alice_async, conversation):
    one = await _say(alice_async, stub, conversation, "first", "one")
    stub.script(Stream(["slow"], hang=True))
    response = await _post(alice_async, f"/c/{conversation.pk}/m/{one.pk}/retry/")
    assert response.status_code == 200
    hanging = await Message.objects.alatest("id")
    await _switch(alice_async, one)
    for url, data in (
        (f"/c/{conversation.pk}/send/", {"prompt": "second"}),
        (f"/c/{conversation.pk}/m/{one.parent_id}/edit/", {"prompt": "edited"}),
        (f"/c/{conversation.pk}/m/{one.pk}/retry/", {}),
    ):
        response = await _post(alice_async, url, data)
        assert response.status_code == 409, url
    await _post(alice_async, f"/c/{conversation.pk}/m/{hanging.pk}/stop/")
    assert (await finished(hanging.pk)).status == "stopped"


async def test_a_search_result_on_another_branch_opens_that_branch(stub, alice, alice_async, conversation):
    from chat.tools.search import search

    one = await _say(alice_async, stub, conversation, "first", "about zebras")
    await _retry(alice_async, stub, one, "about lions")
    other = await Conversation.objects.acreate(owner=alice, title="Elsewhere")
    [result] = await sync_to_async(search)(alice.pk, "zebras", exclude_conversation=other.pk)
    assert result["link"] == f"/c/{conversation.pk}/?at={one.pk}#msg-{one.pk}"
    page = (await alice_async.get(result["link"].split("#")[0])).content.decode()
    assert _shown(page) == [one.parent_id, one.pk]
    # Only shown: the branch kept for every tab is still the one last chosen.
    assert _shown(await _page(alice_async, conversation))[-1] != one.pk


def _exchanges(conversation: Conversation, count: int) -> None:
    """`count` exchanges, each answer with a regenerated sibling beside it."""
    parent = None
    for i in range(count):
        prompt = Message.objects.create(conversation=conversation, role="user", content=f"q{i}", parent=parent)
        Message.objects.create(conversation=conversation, role="assistant", content=f"old a{i}", parent=prompt)
        parent = Message.objects.create(conversation=conversation, role="assistant", content=f"a{i}", parent=prompt)
    conversation.active_leaf = parent
    conversation.save()


@pytest.mark.django_db
def test_the_page_reads_a_branch_in_the_same_queries_whatever_its_length(alice, alice_client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    counts = []
    for length in (2, 40):
        conversation = Conversation.objects.create(owner=alice, title=f"{length} exchanges")
        _exchanges(conversation, length)
        with CaptureQueriesContext(connection) as queries:
            page = alice_client.get(f"/c/{conversation.pk}/").content.decode()
        assert len(_shown(page)) == 2 * length
        assert _pagers(page) == ["2/2"] * length
        counts.append(len(queries))
    assert counts[0] == counts[1]


@pytest.mark.django_db
def test_deleting_a_conversation_deletes_every_branch(alice, alice_client):
    conversation = Conversation.objects.create(owner=alice, title="tree")
    _exchanges(conversation, 3)
    response = alice_client.post(f"/c/{conversation.pk}/delete/")
    assert response.status_code == 302
    assert not Message.objects.exists()

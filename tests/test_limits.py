"""The limits that keep one user (or one long conversation) from hurting the
service: each is enforced, and a refused user reads why and what to do.

Personas: `alice` sends the prompts; `bob` is another user whose own limits are
not touched by alice's.
"""

import html
import json
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from chat.models import Conversation, Message, UsageEntry
from tests.conftest import HTMX, finished, read_stream, send, shown, texts
from tests.openai_stub import Stream

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast")]


def assert_refused(response, status: int, text: str) -> None:
    """A refusal is swapped into the composer's notice, whatever the form targets."""
    assert response.status_code == status, response.content
    assert response["HX-Retarget"] == "#notice"
    assert response["HX-Reswap"] == "innerHTML"
    assert text in html.unescape(response.content.decode())


async def post(client, url: str, data: dict | None = None):
    return await client.post(url, data or {}, headers=HTMX)


async def stop(client, message: Message) -> Message:
    response = await post(client, f"/c/{message.conversation_id}/m/{message.pk}/stop/")
    assert response.status_code == 204
    return await finished(message.pk)


async def new_conversation(owner, title: str = "Chat") -> Conversation:
    return await Conversation.objects.acreate(owner=owner, title=title)


async def finished_answer(conversation: Conversation, prompt: str = "Earlier", answer: str = "Done") -> Message:
    """An exchange from an hour ago (it does not count against prompts per minute)."""
    earlier = timezone.now() - timedelta(hours=1)
    stored = Conversation.objects.filter(pk=conversation.pk)
    leaf = await stored.values_list("active_leaf", flat=True).aget()
    question = await Message.objects.acreate(
        conversation=conversation, role="user", content=prompt, created_at=earlier, parent_id=leaf
    )
    message = await Message.objects.acreate(
        conversation=conversation, role="assistant", content=answer, model="demo", created_at=earlier, parent=question
    )
    await stored.aupdate(active_leaf=message)
    return message


# Prompt length


async def test_a_too_long_prompt_is_refused(stub, alice_async, conversation, settings):
    settings.CHAT_MAX_PROMPT_CHARS = 50
    response = await post(alice_async, f"/c/{conversation.pk}/send/", {"prompt": "x" * 51})
    assert_refused(response, 422, "That message is 51 characters long; the limit is 50. Shorten it")
    assert await conversation.messages.acount() == 0
    assert stub.requests == []


async def test_a_prompt_at_the_limit_is_answered(stub, alice_async, conversation, settings):
    settings.CHAT_MAX_PROMPT_CHARS = 50
    stub.script(Stream(["ok"]))
    # Surrounding whitespace does not count.
    message = await send(alice_async, conversation, "  " + "x" * 50 + "\n")
    assert (await finished(message.pk)).status == "complete"
    assert stub.requests[0]["messages"][-1] == {"role": "user", "content": "x" * 50}


async def test_a_too_long_first_prompt_creates_no_conversation(stub, alice, alice_async, settings):
    settings.CHAT_MAX_PROMPT_CHARS = 50
    response = await post(alice_async, "/c/new/", {"prompt": "x" * 51})
    assert_refused(response, 422, "the limit is 50")
    assert await Conversation.objects.acount() == 0


async def test_without_htmx_a_refusal_is_a_page_with_the_notice(stub, alice_async, conversation, settings):
    settings.CHAT_MAX_PROMPT_CHARS = 50
    response = await alice_async.post(f"/c/{conversation.pk}/send/", {"prompt": "x" * 51})
    assert response.status_code == 422
    assert "HX-Retarget" not in response
    assert "the limit is 50" in response.content.decode()


# Concurrent answers


async def test_concurrent_answers_per_user_are_limited(stub, alice, alice_async, bob, bob_async, settings):
    settings.CHAT_MAX_CONCURRENT_ANSWERS = 2
    first, second, third = [await new_conversation(alice, f"Chat {i}") for i in range(3)]
    earlier = await finished_answer(third)
    stub.script(Stream(["one"], hang=True), Stream(["two"], hang=True))
    running = [await send(alice_async, first, "One"), await send(alice_async, second, "Two")]
    try:
        refusal = "You already have 2 answers being written (the limit is 2). Wait for one to finish or stop it."
        assert_refused(await post(alice_async, f"/c/{third.pk}/send/", {"prompt": "Three"}), 429, refusal)
        assert_refused(await post(alice_async, "/c/new/", {"prompt": "Four"}), 429, refusal)
        assert_refused(await post(alice_async, f"/c/{third.pk}/m/{earlier.pk}/retry/"), 429, refusal)
        assert await Conversation.objects.filter(owner=alice).acount() == 3
        assert len(stub.requests) == 2

        # Another user is not held back by alice's answers.
        stub.script(Stream(["bob's"]))
        bobs = await send(bob_async, await new_conversation(bob), "Hi")
        assert (await finished(bobs.pk)).status == "complete"

        # One conversation writes one answer at a time, whatever the limit.
        settings.CHAT_MAX_CONCURRENT_ANSWERS = 10
        response = await post(alice_async, f"/c/{first.pk}/send/", {"prompt": "Again"})
        assert_refused(response, 409, "An answer is still being written in this conversation.")
        settings.CHAT_MAX_CONCURRENT_ANSWERS = 2

        # When one ends, there is room again.
        await stop(alice_async, running.pop(0))
        stub.script(Stream(["three"]))
        third_answer = await send(alice_async, third, "Three")
        assert (await finished(third_answer.pk)).status == "complete"
    finally:
        for message in running:
            await stop(alice_async, message)


# Prompts per minute


async def test_prompts_per_minute_are_limited(stub, alice, alice_async, bob, bob_async, conversation, settings):
    settings.CHAT_PROMPTS_PER_MINUTE = 3
    for i in range(3):
        stub.script(Stream([f"answer {i}"]))
        await finished((await send(alice_async, conversation, f"Prompt {i}")).pk)
    response = await post(alice_async, f"/c/{conversation.pk}/send/", {"prompt": "One more"})
    assert_refused(response, 429, "in the last minute (the limit is 3). Wait a moment, then send again.")
    # The count is per user, not per conversation.
    assert_refused(await post(alice_async, "/c/new/", {"prompt": "Elsewhere"}), 429, "the limit is 3")
    assert len(stub.requests) == 3
    assert await Message.objects.filter(role="user").acount() == 3

    # Bob has his own allowance.
    stub.script(Stream(["hi bob"]))
    await finished((await send(bob_async, await new_conversation(bob), "Hi")).pk)

    # A minute later alice may send again.
    a_minute_ago = timezone.now() - timedelta(seconds=61)
    await Message.objects.filter(conversation=conversation).aupdate(created_at=a_minute_ago)
    await UsageEntry.objects.filter(user=alice).aupdate(created_at=a_minute_ago)
    stub.script(Stream(["again"]))
    assert (await finished((await send(alice_async, conversation, "One more")).pk)).status == "complete"


async def test_deleting_conversations_does_not_reset_the_per_minute_limit(stub, alice_async, conversation, settings):
    """The limit counts the usage ledger, which a deletion leaves alone."""
    settings.CHAT_PROMPTS_PER_MINUTE = 2
    for i in range(2):
        stub.script(Stream([f"answer {i}"]))
        await finished((await send(alice_async, conversation, f"Prompt {i}")).pk)
    response = await post(alice_async, f"/c/{conversation.pk}/delete/", {})
    assert response.status_code in (200, 204, 302)
    assert not await Conversation.objects.filter(pk=conversation.pk).aexists()
    assert_refused(await post(alice_async, "/c/new/", {"prompt": "After deleting"}), 429, "the limit is 2")


async def test_retries_count_against_the_per_minute_limit(stub, alice_async, conversation, settings):
    """Every answer attempt is a provider request, whether a prompt or a Retry."""
    settings.CHAT_PROMPTS_PER_MINUTE = 3
    stub.script(Stream(["first"]))
    message = await finished((await send(alice_async, conversation, "Hi")).pk)
    for i in range(2):
        stub.script(Stream([f"retry {i}"]))
        response = await post(alice_async, f"/c/{conversation.pk}/m/{message.pk}/retry/")
        assert response.status_code == 200
        latest = await Message.objects.filter(conversation=conversation, role="assistant").alatest("id")
        message = await finished(latest.pk)
    response = await post(alice_async, f"/c/{conversation.pk}/m/{message.pk}/retry/")
    assert_refused(response, 429, "in the last minute (the limit is 3). Wait a moment, then send again.")
    assert len(stub.requests) == 3


# Conversation length sent to the model


def history_size(request: dict) -> int:
    """What CHAT_MAX_CONTEXT_CHARS bounds: the conversation, without the system prompt."""
    return sum(len(json.dumps(m)) for m in request["messages"][1:])


async def long_conversation(conversation: Conversation, turns: int) -> list[dict]:
    """`turns` finished exchanges of about 300 characters of JSON each; the
    conversation as the model would be sent it in full."""
    full = []
    for i in range(turns):
        question = f"Question {i}: " + "why " * 30
        answer = f"Answer {i}: " + "because " * 15
        await finished_answer(conversation, question, answer)
        full += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return full


async def test_a_long_conversation_is_cut_to_the_context_limit(stub, alice_async, conversation, settings):
    settings.CHAT_MAX_CONTEXT_CHARS = 2000
    full = await long_conversation(conversation, 30) + [{"role": "user", "content": "The latest question"}]
    assert sum(len(json.dumps(m)) for m in full) > 4 * 2000
    stub.script(Stream(["ok"]))
    message = await send(alice_async, conversation, "The latest question")
    assert (await finished(message.pk)).status == "complete"

    request = stub.requests[0]
    sent = request["messages"][1:]
    assert history_size(request) <= 2000
    assert sent[-1] == {"role": "user", "content": "The latest question"}
    # The latest turns, whole, starting at a user prompt, and as many as fit.
    assert sent == full[-len(sent) :]
    assert sent[0]["role"] == "user"
    assert history_size(request) + sum(len(json.dumps(m)) for m in full[-len(sent) - 2 : -len(sent)]) > 2000
    assert request["messages"][0]["role"] == "system"


async def test_one_prompt_longer_than_the_context_limit_keeps_its_end(stub, alice_async, conversation, settings):
    settings.CHAT_MAX_CONTEXT_CHARS = 1000
    settings.CHAT_MAX_PROMPT_CHARS = 5000
    prompt = "Read this: " + 'é"<' * 1000 + " So what is the answer?"
    stub.script(Stream(["ok"]))
    message = await send(alice_async, conversation, prompt)
    assert (await finished(message.pk)).status == "complete"
    request = stub.requests[0]
    assert history_size(request) <= 1000
    last = request["messages"][-1]
    assert last["role"] == "user"
    assert len(last["content"]) > 100
    assert prompt.endswith(last["content"])


async def test_continuing_a_long_answer_stays_within_the_context_limit(stub, alice_async, conversation, settings):
    settings.CHAT_MAX_CONTEXT_CHARS = 1000
    await long_conversation(conversation, 5)
    partial = "".join(f"line {i}\n" for i in range(500))
    cut = await finished_answer(conversation, "Write a lot", partial)
    await Message.objects.filter(pk=cut.pk).aupdate(
        status="stopped", stop_reason="user_stop", model="stub-model", last_seq=500
    )
    stub.script(Stream(["line 500\n"]))
    response = await post(alice_async, f"/c/{conversation.pk}/m/{cut.pk}/continue/")
    assert response.status_code == 200
    assert (await finished(cut.pk)).status == "complete"
    request = stub.requests[0]
    assert history_size(request) <= 1000
    sent = request["messages"][1:]
    assert {"role": "user", "content": "Write a lot"} in sent
    # The model goes on from the end of what it wrote.
    assert sent[-2]["role"] == "assistant" and partial.endswith(sent[-2]["content"])
    assert sent[-2]["content"].endswith("line 499\n")


# Answer length


@pytest.mark.parametrize("part", ["0123456789", "0123456"], ids=["at-a-delta-boundary", "inside-a-delta"])
async def test_an_answer_stops_at_the_length_limit(stub, alice_async, conversation, settings, part):
    settings.CHAT_MAX_ANSWER_CHARS = 100
    produced = part * 30
    stub.script(Stream([part] * 30))
    message = await send(alice_async, conversation, "Talk a lot")
    frames = await read_stream(alice_async, message)
    stored = await finished(message.pk)
    assert (stored.status, stored.stop_reason) == ("stopped", "answer_limit")
    assert stored.content == produced[:100]
    assert len(stored.content) == 100
    assert texts(frames) == shown(stored.content)
    assert frames[-1].event == "done"
    final = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", frames[-1].data)).split())
    assert "Stopped:" in final and "length limit" in final


async def test_an_answer_exactly_at_the_limit_is_complete(stub, alice_async, conversation, settings):
    settings.CHAT_MAX_ANSWER_CHARS = 100
    stub.script(Stream(["0123456789"] * 10))
    message = await send(alice_async, conversation, "Exactly a hundred")
    stored = await finished(message.pk)
    assert (stored.status, stored.stop_reason) == ("complete", "")
    assert len(stored.content) == 100

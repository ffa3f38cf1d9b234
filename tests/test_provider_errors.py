"""The real `openai` client against the local stub: every way a provider fails
gives an `error` event, keeps the partial text, and Retry works."""

import pytest

from chat.models import Message
from tests.conftest import HTMX, finished, read_stream, send, texts
from tests.openai_stub import Status, Stream

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast")]

PARTIAL = ["Partial ", "answer ", "so far"]

FAILURES = {
    "rate limit": (Status(429, "Rate limit reached for requests"), "", "rate-limiting"),
    "server error": (Status(500, "The server had an error"), "", "failed (500)"),
    "auth error": (Status(401, "Incorrect API key provided"), "", "rejected the API key"),
    "dropped mid-stream": (Stream(PARTIAL, drop=True), "".join(PARTIAL), "connection to the model provider was lost"),
    "no finish reason": (Stream(PARTIAL, finish_reason=None), "".join(PARTIAL), "ended without finishing"),
    "silent provider": (Stream(PARTIAL, hang=True), "".join(PARTIAL), "sent nothing for"),
    "error event mid-stream": (Stream(PARTIAL, error="The model is overloaded"), "".join(PARTIAL), "The model is overloaded"),
}


@pytest.mark.parametrize("failure", FAILURES, ids=list(FAILURES))
async def test_it_reports_the_failure_and_keeps_the_partial_text(failure, stub, alice_async, conversation, settings):
    settings.CHAT_IDLE_TIMEOUT = 0.5
    reply, kept, said = FAILURES[failure]
    stub.script(reply)
    message = await send(alice_async, conversation, "Tell me something")
    frames = await read_stream(alice_async, message)
    assert frames[-1].event == "error"
    assert said in frames[-1].data
    assert texts(frames) == kept
    # The error frame shows the kept text next to the message and a Retry button.
    if kept:
        assert "Partial answer so far" in frames[-1].data
    assert ">Retry</button>" in frames[-1].data
    stored = await finished(message.pk)
    assert stored.status == "error"
    assert stored.stop_reason == "provider_error"
    assert said in stored.error
    assert stored.content == kept


async def test_retry_after_a_failure_gives_a_fresh_answer(stub, alice_async, conversation):
    stub.script(Stream(PARTIAL, drop=True), Stream(["A fresh ", "answer."]))
    failed = await send(alice_async, conversation, "Tell me something")
    await finished(failed.pk)
    response = await alice_async.post(f"/c/{conversation.pk}/m/{failed.pk}/retry/", headers=HTMX)
    assert response.status_code == 200
    replacement = await Message.objects.filter(conversation=conversation, role="assistant").alatest("id")
    assert replacement.pk != failed.pk
    assert f'id="msg-{replacement.pk}"' in response.content.decode()
    frames = await read_stream(alice_async, replacement)
    assert texts(frames) == "A fresh answer."
    assert (await finished(replacement.pk)).status == "complete"
    # The failed attempt stays stored for review, out of the conversation's flow.
    failed = await Message.objects.aget(pk=failed.pk)
    assert failed.superseded_by_id == replacement.pk
    page = (await alice_async.get(f"/c/{conversation.pk}/")).content.decode()
    assert f'id="msg-{failed.pk}"' not in page
    assert f'id="msg-{replacement.pk}"' in page
    # The model was asked the same prompt again, without the failed attempt.
    assert [m["role"] for m in stub.requests[-1]["messages"]] == ["system", "user"]


async def test_the_token_limit_stops_the_answer_and_continue_goes_on(stub, alice_async, conversation):
    stub.script(Stream(["Cut ", "at the "], finish_reason="length"), Stream(["limit."]))
    message = await send(alice_async, conversation, "Write a lot")
    frames = await read_stream(alice_async, message)
    assert frames[-1].event == "done"
    assert "token limit" in frames[-1].data
    stored = await finished(message.pk)
    assert (stored.status, stored.stop_reason) == ("stopped", "token_limit")
    response = await alice_async.post(f"/c/{conversation.pk}/m/{message.pk}/continue/", headers=HTMX)
    assert response.status_code == 200
    await finished(message.pk)
    stored = await Message.objects.aget(pk=message.pk)
    assert stored.content == "Cut at the limit."
    assert stored.status == "complete"


async def test_a_failure_before_the_answer_starts_is_retried(stub, alice_async, conversation, settings):
    """CHAT_MAX_RETRIES: the client tries again while nothing has been streamed,
    with the same request; the user sees one answer."""
    settings.CHAT_MAX_RETRIES = 1
    stub.script(Status(503, "Overloaded, try again"), Stream(["Second ", "try."]))
    message = await send(alice_async, conversation, "Tell me something")
    frames = await read_stream(alice_async, message)
    assert frames[-1].event == "done"
    assert texts(frames) == "Second try."
    assert len(stub.requests) == 2 and stub.requests[0] == stub.requests[1]
    assert stub.requests[0]["tools"] and stub.requests[0]["max_tokens"] == settings.CHAT_MAX_TOKENS

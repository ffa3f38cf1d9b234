"""The real `openai` client against the local stub: every way a provider fails
gives an `error` event, keeps the partial text, and Retry works. Users read a
fixed sentence per kind of failure; the provider's own words go to the log and to
staff in admin only.

Personas: `alice` asks; `admin_async` is staff reviewing in admin.
"""

import json
import logging

import pytest
from django.test import AsyncClient

from chat.models import Generation, Message
from tests.conftest import HTMX, finished, read_stream, send, texts
from tests.openai_stub import Status, Stream

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast")]

PARTIAL = ["Partial ", "answer ", "so far"]

FAILURES = {
    "rate limit": (Status(429, "Rate limit reached for requests"), "", "receiving too many requests"),
    "server error": (Status(500, "The server had an error"), "", "unavailable right now"),
    "auth error": (Status(401, "Incorrect API key provided"), "", "did not accept this site"),
    "dropped mid-stream": (Stream(PARTIAL, drop=True), "".join(PARTIAL), "connection to the model provider was lost"),
    "no finish reason": (Stream(PARTIAL, finish_reason=None), "".join(PARTIAL), "ended without finishing"),
    "silent provider": (Stream(PARTIAL, hang=True), "".join(PARTIAL), "sent nothing for"),
    "error event mid-stream": (
        Stream(PARTIAL, error="The model is overloaded"),
        "".join(PARTIAL),
        "reported an error while",
    ),
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
    # Staff read what went wrong in the provider's or the library's words.
    assert (await Generation.objects.aget(message=message)).error_detail


async def test_an_answer_cut_by_the_content_filter_is_no_complete_answer(stub, alice_async, conversation):
    stub.script(Stream(PARTIAL, finish_reason="content_filter"))
    message = await send(alice_async, conversation, "Tell me something")
    frames = await read_stream(alice_async, message)
    assert frames[-1].event == "error"
    assert "content filter stopped this answer" in frames[-1].data
    stored = await finished(message.pk)
    assert (stored.status, stored.stop_reason, stored.content) == ("error", "provider_error", "".join(PARTIAL))


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
    # The failed attempt stays stored beside it, out of the branch on screen.
    failed = await Message.objects.aget(pk=failed.pk)
    assert failed.parent_id == replacement.parent_id
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


# What the provider says about itself stays with staff.

# A real provider's error body carries a masked key, an organisation id, quota
# figures and internal host names; these stand for them.
SECRETS = ("sk-proj-****9f3Q", "org-Kq7TzXw2", "gpu-node-17.internal.example", "quota 4711")
SECRET_BODY = (
    "Incorrect API key provided: sk-proj-****9f3Q for org-Kq7TzXw2 (quota 4711 of 5000 used) "
    "at gpu-node-17.internal.example"
)

# Every kind of failure whose provider says something: the reply, and what the user reads.
SAYING_FAILURES = {
    "rate limited": (Status(429, SECRET_BODY), "receiving too many requests"),
    "quota used up": (Status(429, SECRET_BODY, error_code="insufficient_quota"), "usage limit for this site"),
    "unavailable": (Status(503, SECRET_BODY), "unavailable right now"),
    "server error": (Status(500, SECRET_BODY), "unavailable right now"),
    "authentication": (Status(401, SECRET_BODY), "did not accept this site"),
    "refused": (Status(403, SECRET_BODY), "refused to answer this request"),
    "content policy": (
        Status(400, SECRET_BODY, error_code="content_policy_violation"),
        "refused to answer this request",
    ),
    "no such model": (Status(404, SECRET_BODY), "does not offer the model"),
    "bad request": (Status(400, SECRET_BODY), "could not process this request"),
    "unprocessable": (Status(422, SECRET_BODY), "could not process this request"),
    "context too long": (Status(400, SECRET_BODY, error_code="context_length_exceeded"), "too long for the model"),
    "error mid-stream": (Stream(PARTIAL, error=SECRET_BODY), "reported an error while"),
    "unreadable chunk": (Stream([*PARTIAL, f"data: {{{SECRET_BODY}\n\n".encode()]), "could not be read"),
    "error in an error": (
        Stream([*PARTIAL, f'data: {{"error": {{"error": "{SECRET_BODY}"}}}}\n\n'.encode()]),
        "reported an error while",
    ),
}


@pytest.fixture
def admin_async(admin_user) -> AsyncClient:
    client = AsyncClient()
    client.force_login(admin_user)
    return client


def assert_secret_free(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} reached {where}"


@pytest.mark.parametrize("failure", SAYING_FAILURES, ids=list(SAYING_FAILURES))
async def test_the_providers_words_reach_staff_and_the_log_never_the_user(
    failure, stub, alice_async, admin_async, conversation, caplog
):
    reply, said = SAYING_FAILURES[failure]
    caplog.set_level(logging.INFO, logger="chat")
    stub.script(reply)
    message = await send(alice_async, conversation, "Tell me something")

    frames = await read_stream(alice_async, message)
    assert frames[-1].event == "error" and said in frames[-1].data
    for frame in frames:
        assert_secret_free(frame.data, f"the {frame.event} frame")
    stored = await finished(message.pk)
    assert (stored.status, stored.stop_reason) == ("error", "provider_error")
    assert said in stored.error
    assert_secret_free(stored.error, "Message.error")
    assert "OPENAI_API_KEY" not in stored.error
    generation = await Generation.objects.aget(message=message)
    assert_secret_free(generation.error, "Generation.error")
    page = (await alice_async.get(f"/c/{conversation.pk}/")).content.decode()
    assert said in page
    assert_secret_free(page, "the page")
    # A reconnecting stream renders the stored message.
    assert_secret_free((await read_stream(alice_async, message, after=0))[-1].data, "a replayed stream")

    # Staff read the provider's words in admin, not in the exports.
    selected = {"_selected_action": [conversation.pk]}
    for action in ("export_json", "export_csv"):
        response = await admin_async.post("/admin/chat/conversation/", {"action": action, **selected})
        assert response.status_code == 200
        assert_secret_free(response.content.decode(), action)
    response = await admin_async.post("/admin/chat/conversation/", {"action": "export_json", **selected})
    assert "error_detail" not in json.loads(response.content)["conversations"][0]["messages"][1]["generations"][0]
    admin_pages = [f"/admin/chat/conversation/{conversation.pk}/change/", f"/admin/chat/message/{message.pk}/change/"]
    for url in admin_pages:
        page = (await admin_async.get(url)).content.decode()
        assert "sk-proj-****9f3Q" in page and "org-Kq7TzXw2" in page, url
    # The owner is no staff: admin sends her to its login.
    assert (await alice_async.get(admin_pages[0])).status_code == 302

    logged = [r.getMessage() for r in caplog.records if r.name == "chat.generation"]
    assert any("gpu-node-17.internal.example" in line and f"message={message.pk}" in line for line in logged), logged

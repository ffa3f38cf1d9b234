"""A tool staff set to "ask": the answer pauses on an Approve / Deny card, the
decision may come from another session (or worker: tests/test_mcp_workers.py),
and the answer goes on; denied, not decided in time, or stopped, it ends
clearly. Against a real MCP server over streamable HTTP."""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from chat.eventlog import get_event_log
from chat.mcp import approval
from chat.models import Approval, McpTool, Message, Status, ToolCall
from chat.rendering import render_message
from tests.conftest import HTMX, finished, read_stream, send
from tests.mcp_servers import (
    APPROVED_CALL_EVENTS,
    http_server,
)
from tests.openai_stub import Stream, ToolCallPart
from tests.waiting import wait_until_async

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast")]


@pytest.fixture
def asks(web, db):
    return http_server(web.url, policy=McpTool.Policy.ASK)


@pytest.fixture
def alice_elsewhere(alice) -> AsyncClient:
    """Alice in a second browser session."""
    client = AsyncClient()
    client.force_login(alice)
    return client


def echo_call(text: str = "hello") -> Stream:
    parts = [ToolCallPart(0, id="call_e", name="web__echo"), ToolCallPart(0, arguments=json.dumps({"text": text}))]
    return Stream(parts, finish_reason="tool_calls")


async def pending_call(message: Message) -> ToolCall:
    return await wait_until_async(
        lambda: ToolCall.objects.filter(message=message, approval=Approval.PENDING).afirst(),
        message="the call did not wait for approval",
    )


async def decide(client: AsyncClient, call: ToolCall, decision: str):
    return await client.post(f"/tools/{call.pk}/decide/", {"decision": decision}, headers=HTMX)


async def test_approved_from_another_session_the_tool_runs_and_the_answer_goes_on(
    stub, alice_async, alice_elsewhere, conversation, asks
):
    stub.script(echo_call("<b>hi</b>"), Stream(["It echoed."]))
    message = await send(alice_async, conversation, "Echo please")
    reading = asyncio.create_task(read_stream(alice_async, message))
    call = await pending_call(message)
    # The other session's page shows the pending card with the arguments (once
    # the answer's row has caught up with its events: a write every flush interval).

    async def page_with_card() -> str:
        page = (await alice_elsewhere.get(f"/c/{conversation.pk}/")).content.decode()
        return page if "waiting for your approval" in page else ""

    page = await wait_until_async(page_with_card)
    assert f"/tools/{call.pk}/decide/" in page
    assert "&lt;b&gt;hi&lt;/b&gt;" in page and "<b>hi" not in page
    assert (await decide(alice_elsewhere, call, "approve")).status_code == 204
    frames = await reading
    assert [f.event for f in frames] == APPROVED_CALL_EVENTS
    assert "Approve" in frames[1].data and "Deny" in frames[1].data and 'hx-swap-oob="outerHTML"' in frames[1].data
    assert "Approve" not in frames[2].data and "approved, running" in frames[2].data
    assert "&lt;b&gt;hi&lt;/b&gt;" in frames[3].data
    stored = await finished(message.pk)
    assert stored.status == Status.COMPLETE
    row = await ToolCall.objects.aget(pk=call.pk)
    assert (row.approval, row.state, row.result) == ("approved", "ok", "<b>hi</b>")
    # Decided once: a second decision is refused.
    assert (await decide(alice_async, call, "deny")).status_code == 409


async def test_denied_the_model_is_told_and_the_card_says_so(stub, alice_async, conversation, asks):
    stub.script(echo_call(), Stream(["Understood, I will not."]))
    message = await send(alice_async, conversation, "Echo please")
    reading = asyncio.create_task(read_stream(alice_async, message))
    call = await pending_call(message)
    assert (await decide(alice_async, call, "deny")).status_code == 204
    frames = await reading
    assert [f.event for f in frames][-4:] == ["tool_approval", "tool_result", "text_delta", "done"]
    assert "denied" in frames[-3].data and approval.DENIED in frames[-3].data
    told = stub.requests[1]["messages"][-1]
    assert told == {"role": "tool", "tool_call_id": "call_e", "content": f"Error: {approval.DENIED}"}
    row = await ToolCall.objects.aget(pk=call.pk)
    assert (row.approval, row.state, row.result) == ("denied", "error", "")
    page = await sync_to_async(render_message)(await finished(message.pk))
    assert "denied" in page and "Approve" not in page


async def test_nobody_decides_in_time(stub, alice_async, conversation, asks, settings):
    settings.CHAT_APPROVAL_TIMEOUT = 0.5
    stub.script(echo_call(), Stream(["No answer from you."]))
    message = await send(alice_async, conversation, "Echo please")
    frames = await read_stream(alice_async, message)
    assert frames[-1].event == "done"
    assert "not approved in time" in frames[-3].data
    row = await ToolCall.objects.aget(message=message)
    assert (row.approval, row.state) == ("timed_out", "error")
    assert stub.requests[1]["messages"][-1]["content"] == "Error: " + approval.refusal(Approval.TIMED_OUT)
    assert (await decide(alice_async, row, "approve")).status_code == 409


async def test_stop_while_waiting_ends_the_answer_and_the_buttons(stub, alice_async, conversation, asks):
    stub.script(echo_call(), Stream(["never sent"]))
    message = await send(alice_async, conversation, "Echo please")
    reading = asyncio.create_task(read_stream(alice_async, message))
    call = await pending_call(message)
    response = await alice_async.post(f"/c/{conversation.pk}/m/{message.pk}/stop/", headers=HTMX)
    assert response.status_code == 204
    frames = await reading
    assert frames[-1].event == "done"
    stored = await finished(message.pk)
    assert stored.status == Status.STOPPED
    row = await ToolCall.objects.aget(pk=call.pk)
    assert row.state == "error"
    page = await sync_to_async(render_message)(stored)
    assert "Approve" not in page and "waiting for your approval" not in page
    assert (await decide(alice_async, call, "approve")).status_code == 409
    assert len(stub.requests) == 1


async def test_another_user_cannot_decide(stub, alice_async, bob_async, conversation, asks):
    stub.script(echo_call(), Stream(["ok"]))
    message = await send(alice_async, conversation, "Echo please")
    call = await pending_call(message)
    assert (await decide(bob_async, call, "approve")).status_code == 404
    assert (await ToolCall.objects.aget(pk=call.pk)).approval == Approval.PENDING
    assert (await decide(alice_async, call, "maybe")).status_code == 400
    await alice_async.post(f"/c/{conversation.pk}/m/{message.pk}/stop/", headers=HTMX)
    await finished(message.pk)


async def test_waiting_for_a_person_is_not_an_unwatched_answer(stub, alice_async, conversation, asks, settings):
    """Nobody reads the stream for longer than the unwatched limit while the card
    waits; the answer is still there to approve, then completes."""
    settings.CHAT_UNWATCHED_LIMIT = 1
    stub.script(echo_call(), Stream(["Echoed."]))
    message = await send(alice_async, conversation, "Echo please")
    log = get_event_log()

    async def watched_until_pending():
        # Watched, as an open stream would, until the card asks; then nobody watches.
        await log.touch_viewer(message.pk)
        return await ToolCall.objects.filter(message=message, approval=Approval.PENDING).afirst()

    call = await wait_until_async(watched_until_pending, message="the call did not wait for approval")
    # Over twice the limit: the unwatched check (every limit/4) runs several times.
    await asyncio.sleep(2.5)
    assert (await Message.objects.aget(pk=message.pk)).status == Status.STREAMING
    assert (await decide(alice_async, call, "approve")).status_code == 204
    assert (await finished(message.pk)).status == Status.COMPLETE

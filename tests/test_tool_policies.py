"""Staff's policy for a built-in tool: "never" is not offered (and a call of it
anyway is refused), "ask" waits for the user like an MCP tool, no policy runs."""

import asyncio

import pytest

from chat.models import Approval, BuiltinTool, ToolCall
from tests.conftest import HTMX, finished, read_stream, send
from tests.mcp_servers import APPROVED_CALL_EVENTS
from tests.openai_stub import Stream, ToolCallPart
from tests.waiting import wait_until_async

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast")]


def calculator(expression: str) -> Stream:
    parts = [
        ToolCallPart(0, id="c1", name="calculator"),
        ToolCallPart(0, arguments=f'{{"expression": "{expression}"}}'),
    ]
    return Stream(parts, finish_reason="tool_calls")


async def test_a_built_in_tool_set_to_never_is_not_offered_nor_run(stub, alice_async, conversation):
    await BuiltinTool.objects.acreate(name="calculator", policy="never")
    stub.script(calculator("1 + 1"), Stream(["I cannot."]))
    message = await send(alice_async, conversation, "1 + 1?")
    await finished(message.pk)
    offered = {t["function"]["name"] for t in stub.requests[0]["tools"]}
    assert "calculator" not in offered and "current_time" in offered
    row = await ToolCall.objects.aget(message=message)
    assert (row.state, row.error) == ("error", "There is no tool named 'calculator'.")


async def test_a_built_in_tool_that_asks_runs_once_approved(stub, alice_async, conversation):
    await BuiltinTool.objects.acreate(name="calculator", policy="ask")
    stub.script(calculator("2 * 21"), Stream(["42."]))
    message = await send(alice_async, conversation, "2 * 21?")
    reading = asyncio.create_task(read_stream(alice_async, message))
    call = await wait_until_async(
        lambda: ToolCall.objects.filter(message=message, approval=Approval.PENDING).afirst(),
        message="the call did not wait for approval",
    )
    assert call.server == ""
    response = await alice_async.post(f"/tools/{call.pk}/decide/", {"decision": "approve"}, headers=HTMX)
    assert response.status_code == 204
    frames = await reading
    assert [f.event for f in frames] == APPROVED_CALL_EVENTS
    row = await ToolCall.objects.aget(pk=call.pk)
    assert (row.approval, row.state, row.result) == ("approved", "ok", "42")


def test_staff_choose_a_built_in_tools_policy(admin_client):
    page = admin_client.get("/admin/chat/builtintool/add/").content.decode()
    assert '<option value="calculator">' in page and '<option value="current_time">' in page
    response = admin_client.post("/admin/chat/builtintool/add/", {"name": "current_time", "policy": "ask"})
    assert response.status_code == 302
    assert BuiltinTool.objects.get(name="current_time").policy == "ask"
    assert admin_client.post("/admin/chat/builtintool/add/", {"name": "rm_rf", "policy": "run"}).status_code == 200
    assert not BuiltinTool.objects.filter(name="rm_rf").exists()

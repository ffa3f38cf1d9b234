"""What is offered of MCP servers, to whom, by which names; their headers kept
secret; what staff see and do in the admin; a user's switch for one
conversation; a result's content as text. No server process: the servers
themselves run in tests/test_mcp_tools.py and tests/test_mcp_approval.py."""

import json
import re

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from mcp_types import CallToolResult, ImageContent, TextContent

from chat.export import conversations_as_json
from chat.mcp.catalog import offered_tools
from chat.mcp.names import public_name
from chat.mcp.results import result_text
from chat.mcp.secrets import decrypt_map, encrypt_map, masked, resolved
from chat.models import Conversation, McpServer, McpTool, Message, ToolCall
from chat.tools import ToolError, all_tools

pytestmark = pytest.mark.django_db

TOKEN = "Bearer abcdefghijklmnopqrstuvwxyz-0123456789"
PROVIDER_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def server_with_tools(name: str, *tools: str, policy: str = McpTool.Policy.RUN, **fields) -> McpServer:
    server = McpServer.objects.create(name=name, command="unused", **fields)
    for tool in tools:
        McpTool.objects.create(server=server, name=tool, policy=policy, input_schema={"type": "object"})
    return server


def names(user, conversation) -> set[str]:
    return {t.name for t in offered_tools(user.pk, conversation.pk)}


def test_names_fit_the_providers_rule_and_never_collide():
    long = "x" * 100
    odd = ["get time", "get.time", "get/time", "ünïcode", long, long + "y", "a__b"]
    made = [public_name(server, tool) for server in ("a", "a-b", "z" * 30) for tool in [*odd, "plain"]]
    assert all(PROVIDER_NAME.match(n) for n in made)
    assert len(set(made)) == len(made)
    assert public_name("time", "get_current_time") == "time__get_current_time"
    assert not {public_name("a", t) for t in odd} & {t.name for t in all_tools()}


def test_server_names_cannot_make_a_separator():
    for bad in ["a_b", "A", "a--b", "-a", "a b", ""]:
        with pytest.raises(ValidationError):
            McpServer(name=bad, command="x").full_clean()
    McpServer(name="my-server-2", command="x").full_clean()


def test_headers_are_encrypted_at_rest_and_shown_masked(monkeypatch):
    stored = encrypt_map({"Authorization": TOKEN, "X-Key": "env:MCP_TEST_KEY"})
    assert "abcdefghijklmnop" not in stored and "Bearer" not in stored
    assert decrypt_map(stored) == {"Authorization": TOKEN, "X-Key": "env:MCP_TEST_KEY"}
    monkeypatch.setenv("MCP_TEST_KEY", "from-env")
    assert resolved(decrypt_map(stored)) == {"Authorization": TOKEN, "X-Key": "from-env"}
    monkeypatch.delenv("MCP_TEST_KEY")
    assert resolved(decrypt_map(stored)) == {"Authorization": TOKEN}
    assert masked(TOKEN) == "••••6789" and masked("short") == "••••" and masked("env:X") == "env:X"
    assert decrypt_map("not-a-token") == {}


def test_only_shared_enabled_listed_tools_not_set_to_never_are_offered(alice, bob, conversation):
    team = Group.objects.create(name="team")
    alice.groups.add(team)
    server_with_tools("open", "a", everyone=True)
    server_with_tools("mine", "b").users.add(alice)
    server_with_tools("team", "c").groups.add(team)
    server_with_tools("off", "d", everyone=True, enabled=False)
    server_with_tools("nobody", "e")
    server_with_tools("never", "f", everyone=True, policy=McpTool.Policy.NEVER)
    gone = server_with_tools("gone", "g", everyone=True)
    McpTool.objects.filter(server=gone).update(listed=False)
    assert names(alice, conversation) == {"open__a", "mine__b", "team__c"}
    bobs = Conversation.objects.create(owner=bob)
    assert names(bob, bobs) == {"open__a"}
    asks = server_with_tools("asks", "h", everyone=True, policy=McpTool.Policy.ASK)
    assert [t.asks for t in offered_tools(alice.pk, conversation.pk) if t.server.id == asks.pk] == [True]


def test_a_user_switches_a_server_off_for_one_conversation(alice, alice_client, bob, conversation):
    server = server_with_tools("time", "now", everyone=True)
    other = Conversation.objects.create(owner=alice)
    page = alice_client.get(f"/c/{conversation.pk}/").content.decode()
    assert 'id="tool-sources"' in page and ">time<" in page and "Switch off" in page
    response = alice_client.post(f"/c/{conversation.pk}/tools/{server.pk}/", {"on": "0"}, headers={"HX-Request": "1"})
    assert response.status_code == 200 and "Switch on" in response.content.decode()
    assert names(alice, conversation) == set()
    assert names(alice, other) == {"time__now"}
    alice_client.post(f"/c/{conversation.pk}/tools/{server.pk}/", {"on": "1"})
    assert names(alice, conversation) == {"time__now"}


def test_switching_is_the_owners_and_only_for_shared_servers(alice, bob, conversation, client):
    shared = server_with_tools("time", "now", everyone=True)
    private = server_with_tools("private", "x")
    client.force_login(bob)
    assert client.post(f"/c/{conversation.pk}/tools/{shared.pk}/", {"on": "0"}).status_code == 404
    client.force_login(alice)
    assert client.post(f"/c/{conversation.pk}/tools/{private.pk}/", {"on": "0"}).status_code == 404
    assert client.get(f"/c/{conversation.pk}/tools/{shared.pk}/").status_code == 405
    # A user no server is shared with has no Tools list.
    shared.delete()
    assert 'id="tool-sources"' not in client.get(f"/c/{conversation.pk}/").content.decode()


def test_staff_add_a_server_its_token_is_never_shown_and_its_state_is(admin_client):
    response = admin_client.post(
        "/admin/chat/mcpserver/add/",
        {
            "name": "remote",
            "transport": "http",
            "url": "http://127.0.0.1:9/mcp",
            "headers": f"Authorization: {TOKEN}",
            "enabled": "on",
            "everyone": "on",
            "tools-TOTAL_FORMS": "0",
            "tools-INITIAL_FORMS": "0",
        },
        follow=True,
    )
    assert response.status_code == 200
    text = response.content.decode()
    assert "Cannot be reached" in text and "abcdefghijklmnop" not in text
    server = McpServer.objects.get(name="remote")
    assert server.state == McpServer.State.UNREACHABLE
    assert decrypt_map(server.headers_encrypted) == {"Authorization": TOKEN}
    page = admin_client.get(f"/admin/chat/mcpserver/{server.pk}/change/").content.decode()
    assert "Authorization: ••••6789" in page and "abcdefghijklmnop" not in page
    # Saving without headers keeps them; "-" removes them.
    form = {
        "name": "remote",
        "transport": "http",
        "url": "http://127.0.0.1:9/mcp",
        "enabled": "",
        "tools-TOTAL_FORMS": "0",
        "tools-INITIAL_FORMS": "0",
    }
    admin_client.post(f"/admin/chat/mcpserver/{server.pk}/change/", {**form, "headers": ""})
    assert decrypt_map(McpServer.objects.get(pk=server.pk).headers_encrypted) == {"Authorization": TOKEN}
    admin_client.post(f"/admin/chat/mcpserver/{server.pk}/change/", {**form, "headers": "-"})
    assert McpServer.objects.get(pk=server.pk).headers_encrypted == ""


def test_staff_set_each_tools_policy_in_the_server_page(admin_client):
    server = server_with_tools("time", "now", "later", policy=McpTool.Policy.ASK, enabled=False)
    tools = list(server.tools.order_by("name"))
    data = {
        "name": "time",
        "transport": "stdio",
        "command": "unused",
        "headers": "",
        "environment": "GITHUB_TOKEN=ghp_0123456789abcdefghij\nHOME_DIR=env:MCP_HOME",
        "tools-TOTAL_FORMS": "2",
        "tools-INITIAL_FORMS": "2",
    }
    for i, tool in enumerate(tools):
        data |= {f"tools-{i}-id": tool.pk, f"tools-{i}-server": server.pk, f"tools-{i}-policy": "run"}
    data["tools-1-policy"] = "never"
    response = admin_client.post(f"/admin/chat/mcpserver/{server.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert dict(server.tools.values_list("name", "policy")) == {"later": "run", "now": "never"}
    server.refresh_from_db()
    assert decrypt_map(server.environment_encrypted) == {
        "GITHUB_TOKEN": "ghp_0123456789abcdefghij",
        "HOME_DIR": "env:MCP_HOME",
    }
    page = admin_client.get(f"/admin/chat/mcpserver/{server.pk}/change/").content.decode()
    assert "GITHUB_TOKEN=••••ghij, HOME_DIR=env:MCP_HOME" in page and "0123456789abcdef" not in page


def test_a_server_may_not_be_sent_the_workers_own_secrets(admin_client, monkeypatch):
    """An env: value names an MCP_* variable only: SECRET_KEY, a provider's key
    or the database's address are never read into a server's headers."""
    data = {"name": "web", "transport": "http", "url": "https://tools.example/mcp", "environment": ""}
    response = admin_client.post("/admin/chat/mcpserver/add/", {**data, "headers": "Authorization: env:SECRET_KEY"})
    assert response.status_code == 200
    assert "may only name a variable that starts with MCP_" in response.content.decode()
    assert not McpServer.objects.exists()
    # One stored before this rule is not sent either.
    monkeypatch.setenv("MCP_TOKEN", "from-the-environment")
    assert resolved({"A": "env:SECRET_KEY", "B": "env:MCP_TOKEN", "C": "plain"}) == {
        "B": "from-the-environment",
        "C": "plain",
    }


def test_only_superusers_register_or_change_a_server(client, django_user_model):
    from django.contrib.auth.models import Permission

    staff = django_user_model.objects.create_user("staffer", password="x", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__endswith="_mcpserver"))
    server = McpServer.objects.create(name="time", command="mcp-server-time")
    client.force_login(staff)
    assert client.get(f"/admin/chat/mcpserver/{server.pk}/change/").status_code == 200  # may look
    assert (
        client.post(f"/admin/chat/mcpserver/{server.pk}/change/", {"name": "x", "command": "rm -rf /"}).status_code
        == 403
    )
    assert client.get("/admin/chat/mcpserver/add/").status_code == 403
    server.refresh_from_db()
    assert server.command == "mcp-server-time"


def test_an_mcp_call_is_exported_with_its_server_and_approval(alice, conversation):
    answer = Message.objects.create(conversation=conversation, role="assistant", content="ok", status="complete")
    ToolCall.objects.create(
        message=answer, call_id="c", name="time__now", server="time", approval="approved", state="ok", result="1"
    )
    exported = json.loads(conversations_as_json(Conversation.objects.all()))
    call = exported["conversations"][0]["messages"][0]["tool_calls"][0]
    assert (call["server"], call["approval"]) == ("time", "approved")


def test_result_content_becomes_text_and_errors_raise():
    text = CallToolResult(content=[TextContent(type="text", text="<b>x</b>")])
    assert result_text(text) == "<b>x</b>"
    structured = CallToolResult(content=[], structured_content={"a": "<i>"})
    assert json.loads(result_text(structured)) == {"a": "<i>"}
    image = CallToolResult(content=[ImageContent(type="image", data="AAAA", mime_type="image/png")])
    assert result_text(image) == "[image (image/png), not shown]"
    with pytest.raises(ToolError, match="it broke"):
        result_text(CallToolResult(content=[TextContent(type="text", text="it broke")], is_error=True))


def test_staff_review_shows_an_mcp_call_naming_its_server(admin_client, alice, conversation):
    answer = Message.objects.create(
        conversation=conversation, role="assistant", content="ok", status="complete", last_seq=3
    )
    ToolCall.objects.create(
        message=answer,
        call_id="c",
        name="time__now",
        server="time",
        approval="approved",
        state="ok",
        result="<script>x()</script>",
        start_seq=1,
        result_seq=2,
    )
    page = admin_client.get(f"/admin/chat/conversation/{conversation.pk}/change/").content.decode()
    assert 'class="tool-server">time<' in page and 'class="tool-name">now<' in page
    assert "&lt;script&gt;x()" in page and "<script>x()" not in page

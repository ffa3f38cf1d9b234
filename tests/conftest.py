"""Shared fixtures.

Personas: `alice` owns the conversations under test; `bob` is another logged-in
user who must never see them (every view answers him 404).
"""

import asyncio
from pathlib import Path

import pytest
from asgiref.sync import SyncToAsync
from django.db import connections
from django.test import AsyncClient, Client

from chat import generation
from chat.live_markdown import LiveMarkdown
from chat.markdown import render_markdown
from chat.models import Conversation, Message
from chat.rendering import escape_text
from tests.live import LiveServer, RedisServer
from tests.live_page import LivePage
from tests.openai_stub import OpenAIStub
from tests.realmodel import MODEL_ALIAS, ModelServer, model_file, skip_or_fail_without_model
from tests.sse_client import Frame, parse


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item, nextitem):
    """Before the test database is dropped: the ORM calls of async tests run in
    asgiref's executor thread, whose open connection would keep PostgreSQL from
    dropping it."""
    if nextitem is None:
        SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=10)


@pytest.fixture(autouse=True)
def fresh_event_log(settings):
    """Each test its own in-process event log. SQLite numbers a flushed table's
    rows from 1 again, so a test's answer can have the id of an earlier test's
    answer, whose events the shared log would still replay to it. (Redis keys are
    prefixed per session, and PostgreSQL never reuses an id.)"""
    from chat.eventlog import get_event_log

    if not settings.REDIS_URL:
        get_event_log.cache_clear()


@pytest.fixture(scope="session")
def openai_stub_server():
    with OpenAIStub() as stub:
        yield stub


@pytest.fixture(scope="session")
def real_model_server(tmp_path_factory):
    """A real model behind llama-cpp-python's OpenAI-compatible server, started
    once per test session (skipped, or failed under REQUIRE_SERVICES=1, when it
    is not installed)."""
    skip_or_fail_without_model()
    with ModelServer(tmp_path_factory.mktemp("real-model"), model_file()) as server:
        yield server


@pytest.fixture
def real_model(real_model_server, settings):
    """The product's model settings pointed at the real model server."""
    settings.OPENAI_API_KEY = "test-key"
    settings.OPENAI_BASE_URL = real_model_server.base_url
    settings.CHAT_MODEL = MODEL_ALIAS
    settings.CHAT_MAX_RETRIES = 0
    # Text reaches the database and the stream soon, so a test can stop the answer
    # while it is being written.
    settings.CHAT_FLUSH_INTERVAL = 0.05
    settings.CHAT_STREAM_POLL = 0.1
    return real_model_server


LIVE_USERS = {"alice": "alice-password", "bob": "bob-password"}


@pytest.fixture(scope="session")
def live_db_template(tmp_path_factory) -> Path:
    """An SQLite file migrated once, with alice and bob, for live servers to copy."""
    workdir = tmp_path_factory.mktemp("live-template")
    LiveServer(workdir).prepare(LIVE_USERS)
    return workdir / "db.sqlite3"


@pytest.fixture
def live_server_factory(tmp_path, live_db_template, openai_stub_server):
    """Start real daphne processes talking to the stub; all stopped at the end."""
    openai_stub_server.reset()
    servers: list[LiveServer] = []

    def start(
        env: dict[str, str] | None = None, port: int | None = None, daphne_args: tuple[str, ...] = ()
    ) -> LiveServer:
        server = LiveServer(
            tmp_path,
            {
                "OPENAI_BASE_URL": openai_stub_server.base_url,
                "OPENAI_API_KEY": "test",
                "CHAT_MODEL": "stub-model",
                **(env or {}),
            },
            port=port,
            daphne_args=daphne_args,
        )
        if not servers:
            server.prepare(LIVE_USERS, template=live_db_template)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def web():
    """The tests' streamable HTTP MCP server (tests/mcp_servers.py), one per module."""
    from tests.mcp_servers import HttpMcpServer

    server = HttpMcpServer()
    yield server
    server.stop()


@pytest.fixture
def stub(openai_stub_server, settings):
    """The real `openai` client pointed at the local OpenAI-compatible stub."""
    openai_stub_server.reset()
    settings.OPENAI_API_KEY = "test-key"
    settings.OPENAI_BASE_URL = openai_stub_server.base_url
    settings.CHAT_MODEL = "stub-model"
    settings.CHAT_MAX_RETRIES = 0
    return openai_stub_server


@pytest.fixture
def fast(settings):
    """Short timers, so interruption paths run in test time."""
    settings.CHAT_FLUSH_INTERVAL = 0.05
    settings.CHAT_STREAM_POLL = 0.1
    settings.CHAT_IDLE_TIMEOUT = 2
    settings.CHAT_DEMO_DELAY = 0


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", password="alice-password")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", password="bob-password")


@pytest.fixture
def alice_client(alice) -> Client:
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def alice_async(alice) -> AsyncClient:
    client = AsyncClient()
    client.force_login(alice)
    return client


@pytest.fixture
def bob_async(bob) -> AsyncClient:
    client = AsyncClient()
    client.force_login(bob)
    return client


@pytest.fixture
def conversation(alice) -> Conversation:
    return Conversation.objects.create(owner=alice, title="Alice's chat")


HTMX = {"HX-Request": "true"}


async def send(client: AsyncClient, conversation: Conversation, prompt: str) -> Message:
    """Send a prompt as the page does; returns the assistant message it started."""
    response = await client.post(f"/c/{conversation.pk}/send/", {"prompt": prompt}, headers=HTMX)
    assert response.status_code == 200, response.content
    return await Message.objects.filter(conversation=conversation, role="assistant").alatest("id")


async def finished(message_id: int, timeout: float = 10) -> Message:
    """Wait for the message's generation to end; the stored message."""
    task = generation.running_task(message_id)
    if task is not None:
        await asyncio.wait_for(asyncio.shield(task), timeout)
    return await Message.objects.aget(pk=message_id)


async def read_stream(client: AsyncClient, message: Message, *, after: int | None = None, headers=None) -> list[Frame]:
    url = f"/c/{message.conversation_id}/m/{message.pk}/stream/"
    if after is not None:
        url += f"?after={after}"
    response = await client.get(url, headers=headers or {})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    body = "".join([chunk.decode() async for chunk in response.streaming_content])
    return parse(body)


def texts(frames: list[Frame]) -> str:
    """The answer text the page shows from text_delta and tool_start frames, as a
    browser builds it (tests/live_page.py), without tags and unescaped. For text
    that Markdown leaves alone, the text as written."""
    return LivePage.from_frames(frames).text()


def live_page(*stretches: str) -> LivePage:
    """The body a page rendered from an answer's text shows while the answer
    streams, `stretches` being its text with a tool card after each but the last
    (without the cards)."""
    *closed, growing = stretches
    live = LiveMarkdown(growing)
    settled = "".join(render_markdown(s) for s in closed) + live.settled_html
    before, raw, after = live.open_parts
    return LivePage(settled, before, escape_text(raw), after, settled_text=settled)


def shown(*stretches: str) -> str:
    """What `texts` gives for frames that carry `stretches` (see `live_page`)."""
    return live_page(*stretches).text()


@pytest.fixture
def private_redis():
    """A redis-server of the test's own, which it may kill and start again."""
    if not RedisServer.available():
        pytest.skip("redis-server is not installed")
    server = RedisServer().start()
    yield server
    server.stop()

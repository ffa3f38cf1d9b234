"""Every URL of the product, checked for who may reach it, for ids that are no
database id, and for responses that no cache may keep.

Personas: `alice` owns a conversation with an answer; `bob` is another logged-in
user, who must get a 404 for each of alice's objects; an anonymous visitor is
sent to the login page.

The URLs are discovered from the URLconf, not listed by hand: a new view that
is not in VIEWS below fails `test_every_url_pattern_is_known`, so it cannot
ship without these checks.
"""

import re
from dataclasses import dataclass

import pytest
from django.test import AsyncClient, Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from chat.models import Approval, Conversation, Feedback, McpServer, Message, Share, Status, ToolCall
from tests.conftest import finished
from tests.openai_stub import Stream

# URL name -> the one HTTP method the view accepts.
VIEWS = {
    "chat-home": "GET",
    "chat-new": "POST",
    "chat-conversation": "GET",
    "chat-send": "POST",
    "chat-rename": "POST",
    "chat-delete": "POST",
    "chat-stream": "GET",
    "chat-stop": "POST",
    "chat-continue": "POST",
    "chat-retry": "POST",
    "chat-feedback": "POST",
    "chat-edit": "POST",
    "chat-switch": "POST",
    "chat-settings": "GET",
    "chat-settings-save": "POST",
    "chat-tool-decide": "POST",
    "chat-tool-source": "POST",
    "chat-list": "GET",
    "chat-archived": "GET",
    "chat-search": "GET",
    "chat-pin": "POST",
    "chat-archive": "POST",
    "chat-data": "GET",
    "chat-export": "GET",
    "chat-import": "POST",
    "chat-share": "POST",
    "chat-share-revoke": "POST",
    "chat-shared": "GET",
}
# Django's own views, tested by Django.
SKIPPED_PREFIXES = ("admin/", "accounts/")
# How each URL parameter is filled with one of alice's objects.
PARAMETERS = {"conversation_id", "message_id", "call_id", "server_id", "token"}
# A share link's token is its only key: anyone logged in who has it may open the
# page (tests/test_sharing.py), so it is no id that another user must get a 404 for.
TOKENS = {"token"}
# A form that would change something if a view let it through.
FORM = {
    "prompt": "Hello",
    "title": "Renamed by someone else",
    "rating": "1",
    "comment": "bob was here",
    "pinned": "1",
    "archived": "1",
    "mode": "snapshot",
    "share": "1",
}


@dataclass(frozen=True)
class Route:
    name: str
    pattern: str

    @property
    def parameters(self) -> list[str]:
        return re.findall(r"<(?:\w+:)?(\w+)>", self.pattern)

    @property
    def method(self) -> str:
        return VIEWS[self.name]

    @property
    def other_method(self) -> str:
        return "POST" if self.method == "GET" else "GET"

    def url(self, **ids: int) -> str:
        return reverse(self.name, kwargs={p: ids[p] for p in self.parameters})

    def url_with(self, parameter: str, raw: str, **ids: int) -> str:
        """The URL with `raw` in the place of `parameter`, whatever the converter accepts."""
        placeholder = 424242424242
        return self.url(**{**ids, parameter: placeholder}).replace(f"/{placeholder}/", f"/{raw}/")


def _walk(patterns, prefix: str = ""):
    for p in patterns:
        route = prefix + str(p.pattern)
        if route.startswith(SKIPPED_PREFIXES):
            continue
        if isinstance(p, URLResolver):
            yield from _walk(p.url_patterns, route)
        elif isinstance(p, URLPattern):
            yield Route(p.name or f"<unnamed {route!r}>", route)


ROUTES = list(_walk(get_resolver().url_patterns))
KNOWN = [r for r in ROUTES if r.name in VIEWS]
WITH_IDS = [r for r in KNOWN if r.parameters and not set(r.parameters) & TOKENS]
POSTS = [r for r in KNOWN if r.method == "POST"]


def _ids(routes):
    return [r.name for r in routes]


def test_every_url_pattern_is_known():
    """A new view must be added to VIEWS, and so to every check below."""
    names = [r.name for r in ROUTES]
    assert len(names) == len(set(names)), f"URL names must be unique: {names}"
    assert set(names) == set(VIEWS), (
        f"Unknown URL patterns {sorted(set(names) - set(VIEWS))}, "
        f"or gone ones {sorted(set(VIEWS) - set(names))}: update VIEWS in {__name__}."
    )


def test_accounts_offer_only_logging_in_and_out(client):
    """No mail is sent, so a password reset link would never arrive: only what the
    pages use is mounted."""
    [accounts] = [p for p in get_resolver().url_patterns if str(p.pattern) == "accounts/"]
    assert {p.name for p in accounts.url_patterns} == {"login", "logout"}
    for url in ("/accounts/password_reset/", "/accounts/reset/MQ/set-password/", "/accounts/password_change/"):
        assert client.get(url).status_code == 404, url


def test_every_url_parameter_can_be_filled():
    for route in ROUTES:
        # `id`, not `int`: a number beyond the id columns must be a 404 (see below).
        converters = ["slug" if p in TOKENS else "id" for p in route.parameters]
        assert re.findall(r"<(\w+):", route.pattern) == converters, route
        assert set(route.parameters) <= PARAMETERS, (
            f"{route.name} ({route.pattern}) takes {route.parameters}; teach {__name__} how to fill them."
        )


def _request(client: Client, method: str, url: str, **kwargs):
    if method == "GET":
        return client.get(url, **kwargs)
    return client.post(url, FORM, **kwargs)


@pytest.fixture
def answer(conversation) -> Message:
    """Alice's conversation with a finished, stopped answer (so every action applies)."""
    Message.objects.create(conversation=conversation, role="user", content="Alice's secret question")
    message = Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="Alice's secret answer",
        status=Status.STOPPED,
        stop_reason="user_stop",
        model="demo",
        last_seq=3,
    )
    return message


@pytest.fixture
def ids(conversation, answer) -> dict[str, int | str]:
    # A call of alice's answer waiting for her decision, an MCP server everyone
    # may use (in alice's conversation, only she may switch it), and a share link.
    call = ToolCall.objects.create(message=answer, call_id="c", name="web__echo", approval=Approval.PENDING)
    server = McpServer.objects.create(name="web", command="unused", everyone=True)
    share = Share.objects.create(conversation=conversation, token="alices-token", leaf=answer)
    return {
        "conversation_id": conversation.pk,
        "message_id": answer.pk,
        "call_id": call.pk,
        "server_id": server.pk,
        "token": share.token,
    }


@pytest.fixture
def bob_client(bob) -> Client:
    client = Client()
    client.force_login(bob)
    return client


def _assert_untouched(conversation: Conversation, answer: Message) -> None:
    conversation.refresh_from_db()
    answer.refresh_from_db()
    assert conversation.title == "Alice's chat"
    assert list(conversation.messages.values_list("role", "content", "status")) == [
        ("user", "Alice's secret question", "complete"),
        ("assistant", "Alice's secret answer", "stopped"),
    ]
    assert conversation.active_leaf_id is None
    assert conversation.pinned_at is None and conversation.archived_at is None
    assert conversation.shares.count() <= 1 and not conversation.shares.filter(revoked_at__isnull=False).exists()
    assert not Feedback.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("route", KNOWN, ids=_ids(KNOWN))
def test_it_sends_anonymous_visitors_to_log_in(route, ids, client):
    url = route.url(**ids)
    response = _request(client, route.method, url)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"
    # The method check comes first: the wrong method is a 405 for everyone.
    assert _request(client, route.other_method, url).status_code == 405


@pytest.mark.django_db
@pytest.mark.parametrize("route", WITH_IDS, ids=_ids(WITH_IDS))
def test_another_user_gets_404(route, ids, conversation, answer, bob_client):
    for headers in ({}, {"HX-Request": "true"}):
        response = _request(bob_client, route.method, route.url(**ids), headers=headers)
        assert response.status_code == 404
        assert b"Alice" not in response.content
    _assert_untouched(conversation, answer)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "route",
    [r for r in WITH_IDS if "message_id" in r.parameters],
    ids=_ids(r for r in WITH_IDS if "message_id" in r.parameters),
)
def test_another_user_gets_404_with_his_own_conversation_id(route, ids, conversation, answer, bob, bob_client):
    """A message is looked up within the conversation, not by its id alone."""
    bobs = Conversation.objects.create(owner=bob, title="Bob's chat")
    response = _request(bob_client, route.method, route.url(conversation_id=bobs.pk, message_id=ids["message_id"]))
    assert response.status_code == 404
    _assert_untouched(conversation, answer)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "route",
    [r for r in WITH_IDS if "message_id" in r.parameters],
    ids=_ids(r for r in WITH_IDS if "message_id" in r.parameters),
)
def test_a_message_id_is_404_in_the_wrong_conversation(route, ids, alice, alice_client, conversation, answer):
    other = Conversation.objects.create(owner=alice, title="Another chat")
    response = _request(alice_client, route.method, route.url(conversation_id=other.pk, message_id=ids["message_id"]))
    assert response.status_code == 404
    _assert_untouched(conversation, answer)


# Numbers no 64-bit id column holds: the database driver would raise (a 500).
OUT_OF_RANGE = [str(2**63), "99999999999999999999", "1" + "0" * 40]


@pytest.mark.django_db
@pytest.mark.parametrize("route", WITH_IDS, ids=_ids(WITH_IDS))
def test_an_id_out_of_range_is_404(route, ids, alice_client, conversation, answer):
    for parameter in route.parameters:
        for raw in OUT_OF_RANGE:
            url = route.url_with(parameter, raw, **ids)
            for headers in ({}, {"HX-Request": "true"}):
                assert _request(alice_client, route.method, url, headers=headers).status_code == 404, url
    # The largest id there can be is a 404 only because nothing has it.
    largest = route.url_with(route.parameters[-1], str(2**63 - 1), **ids)
    assert _request(alice_client, route.method, largest).status_code == 404
    _assert_untouched(conversation, answer)


async def _arequest(client: AsyncClient, method: str, url: str, **kwargs):
    """The response, a stream read to its end."""
    if method == "GET":
        response = await client.get(url, **kwargs)
    else:
        response = await client.post(url, FORM, **kwargs)
    if response.streaming:
        b"".join([chunk async for chunk in response.streaming_content])
    return response


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fast")
@pytest.mark.parametrize("route", KNOWN, ids=_ids(KNOWN))
async def test_every_response_is_private_and_never_stored(route, ids, stub, alice_async, bob_async):
    """Pages, fragments and streams hold one user's conversations: no cache, shared
    or the browser's own, may keep them. Every answer, whoever asks and however it
    ends (a page, a fragment, a stream, a redirect, a refusal, a 404)."""
    stub.default = Stream(["A short answer."])
    url = route.url(**ids)
    anonymous = AsyncClient()
    for client, headers in [(anonymous, {}), (bob_async, {}), (alice_async, {"HX-Request": "true"}), (alice_async, {})]:
        response = await _arequest(client, route.method, url, headers=headers)
        directives = {d.strip() for d in response.get("Cache-Control", "").split(",")}
        assert {"private", "no-store"} <= directives, (response.status_code, response.get("Cache-Control"))
        async for message in Message.objects.filter(status=Status.STREAMING):
            await finished(message.pk)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fast")
@pytest.mark.parametrize("route", POSTS, ids=_ids(POSTS))
async def test_a_nul_character_in_a_form_is_stored_replaced_not_a_500(route, ids, stub, alice_async):
    """PostgreSQL stores no NUL character: a form that carries one (no browser
    sends it, a script may) must not reach the database with it. It is stored as
    U+FFFD, like every text that comes in (chat/storable.py)."""
    stub.default = Stream(["A short answer."])
    # Into every text field (a rating that is not "1" or "-1" is refused anyway).
    form = {name: value if name == "rating" else value[:3] + "\x00" + value[3:] for name, value in FORM.items()}
    response = await alice_async.post(route.url(**ids), form, headers={"HX-Request": "true"})
    assert response.status_code < 500
    async for message in Message.objects.filter(status=Status.STREAMING):
        await finished(message.pk)
    stored = [c.title async for c in Conversation.objects.all()]
    stored += [m.content async for m in Message.objects.all()]
    stored += [f.comment async for f in Feedback.objects.all()]
    assert not [text for text in stored if "\x00" in text]
    if route.name == "chat-rename":
        assert stored[0] == FORM["title"][:3] + "\ufffd" + FORM["title"][3:]


@pytest.mark.django_db
def test_another_user_does_not_see_alices_conversations_on_his_pages(conversation, answer, bob_client):
    # Alice's chat in every list: pinned, archived, and a page beyond the first.
    pinned = Conversation.objects.create(owner=conversation.owner, title="Alice's pinned", pinned_at=timezone.now())
    archived = Conversation.objects.create(
        owner=conversation.owner, title="Alice's archived", archived_at=timezone.now()
    )
    after = f"{timezone.now().isoformat()}~{2**62}"
    pages = [
        (reverse("chat-home"), {}),
        (reverse("chat-archived"), {}),
        (reverse("chat-export"), {}),
        (reverse("chat-list"), {"after": after}),
        (reverse("chat-list"), {"after": after, "archived": "1"}),
        *((reverse("chat-search"), {"q": q}) for q in ("Alice", "secret", "answer", "pinned", "archived", "chat")),
    ]
    # (The query itself is shown back, so what is looked for is what only Alice's rows hold.)
    hers = [b"Alice&#x27;s", b"secret question", b"secret answer"]
    hers += [f"/c/{c.pk}/".encode() for c in (conversation, pinned, archived)]
    for url, query in pages:
        for headers in ({}, {"HX-Request": "true"}):
            response = bob_client.get(url, query, headers=headers)
            assert response.status_code == 200, url
            assert not [text for text in hers if text in response.content], (url, query)


@pytest.mark.django_db
@pytest.mark.parametrize("route", KNOWN, ids=_ids(KNOWN))
def test_the_wrong_method_is_405(route, ids, alice_client, conversation, answer):
    url = route.url(**ids)
    for method in ("GET", "POST", "PUT", "DELETE"):
        if method == route.method:
            continue
        response = alice_client.generic(method, url)
        assert response.status_code == 405, method
        assert response["Allow"] == route.method
    _assert_untouched(conversation, answer)


@pytest.mark.django_db
@pytest.mark.parametrize("route", POSTS, ids=_ids(POSTS))
def test_a_post_without_csrf_token_is_refused(route, ids, alice, conversation, answer):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    for headers in ({}, {"HX-Request": "true"}):
        response = client.post(route.url(**ids), FORM, headers=headers)
        assert response.status_code == 403
    assert Conversation.objects.count() == 1
    _assert_untouched(conversation, answer)


@pytest.mark.django_db
def test_a_post_with_the_pages_csrf_token_is_accepted(alice, conversation, answer):
    """The refusals above are about the token: the same client with the token the
    page puts in hx-headers gets through."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    page = client.get(reverse("chat-conversation", args=[conversation.pk]))
    token = re.search(rb'hx-headers=\'\{"X-CSRFToken": "([^"]+)"\}\'', page.content).group(1).decode()
    response = client.post(
        reverse("chat-rename", args=[conversation.pk]),
        {"title": "Renamed"},
        headers={"HX-Request": "true", "X-CSRFToken": token},
    )
    assert response.status_code == 200
    conversation.refresh_from_db()
    assert conversation.title == "Renamed"


@pytest.fixture
def bobs_answer(bob) -> Message:
    bobs = Conversation.objects.create(owner=bob, title="Bob's chat")
    prompt = Message.objects.create(conversation=bobs, role="user", content="Bob's secret question")
    return Message.objects.create(conversation=bobs, role="assistant", content="Bob's secret answer", parent=prompt)


@pytest.mark.django_db
def test_a_branch_link_to_another_users_message_opens_only_ones_own_branch(
    alice_client, conversation, answer, bobs_answer
):
    response = alice_client.get(f"{reverse('chat-conversation', args=[conversation.pk])}?at={bobs_answer.pk}")
    assert response.status_code == 200
    assert b"Bob" not in response.content
    assert b"Alice's secret answer" in response.content


@pytest.mark.django_db(transaction=True)
def test_a_prompt_sent_after_another_users_answer_stays_in_ones_own_conversation(
    stub, alice_client, conversation, answer, bobs_answer
):
    from tests.openai_stub import Stream

    stub.script(Stream(["Hi"]))
    response = alice_client.post(
        reverse("chat-send", args=[conversation.pk]), {"prompt": "Hello", "after": bobs_answer.pk}
    )
    assert response.status_code == 302
    prompt = Message.objects.filter(role="user").latest("id")
    assert (prompt.conversation_id, prompt.parent_id) == (conversation.pk, answer.pk)
    assert not bobs_answer.children.exists()

"""One's own conversations exported and imported back, and a ChatGPT data
export's conversations.json imported: whole trees, once, all or nothing."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from chat import tree
from chat.models import Conversation, Feedback, Message, ToolCall
from chat.portability import ImportRefused, read

pytestmark = pytest.mark.django_db


def upload(client, content: bytes | str, name: str = "conversations.json"):
    data = content.encode() if isinstance(content, str) else content
    return client.post(reverse("chat-import"), {"file": SimpleUploadedFile(name, data, "application/json")})


def branch(conversation: Conversation) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in tree.path_to(tree.leaf_of(conversation))]


@pytest.fixture
def alices(alice) -> Conversation:
    """A conversation with two answers to one prompt, a tool call, reasoning,
    a rating, and what staff noted about it."""
    c = Conversation.objects.create(owner=alice, title="Sums", flagged=True, review_note="staff only")
    prompt = Message.objects.create(conversation=c, role="user", content="What is 6 * 7?")
    first = Message.objects.create(
        conversation=c, role="assistant", parent=prompt, content="42.", reasoning="6 sevens.", model="m1"
    )
    ToolCall.objects.create(message=first, call_id="call_1", name="calculator", arguments='{"e": "6*7"}', result="42")
    Feedback.objects.create(message=first, user=alice, rating=1, comment="right")
    second = Message.objects.create(
        conversation=c, role="assistant", parent=prompt, content="Forty-two.", error="", review_note="staff only"
    )
    c.active_leaf = first
    c.save()
    assert second.pk > first.pk
    return c


def test_an_export_imported_elsewhere_is_the_same_tree(alice_client, alices, bob):
    response = alice_client.get(reverse("chat-export"))
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith('attachment; filename="chats-')
    document = json.loads(response.content)
    assert "staff only" not in response.content.decode() and "flagged" not in response.content.decode()
    [exported] = document["conversations"]
    assert [m["content"] for m in exported["messages"]] == ["What is 6 * 7?", "42.", "Forty-two."]
    assert exported["messages"][1]["tool_calls"][0]["name"] == "calculator"
    assert exported["messages"][1]["reasoning"] == "6 sevens."

    from django.test import Client

    client = Client()
    client.force_login(bob)
    response = upload(client, response.content)
    assert response.status_code == 200
    assert "Imported 1 conversation (3 messages)" in response.content.decode()
    copy = Conversation.objects.get(owner=bob)
    assert copy.title == "Sums" and not copy.flagged and copy.review_note == ""
    assert branch(copy) == [("user", "What is 6 * 7?"), ("assistant", "42.")]
    answer = copy.messages.get(content="42.")
    assert answer.reasoning == "6 sevens." and answer.model == "m1"
    assert list(answer.tool_calls.values_list("name", "result")) == [("calculator", "42")]
    assert (answer.feedback.rating, answer.feedback.comment, answer.feedback.user) == (1, "right", bob)
    # The other branch is there too, a sibling of the one on screen.
    other = copy.messages.get(content="Forty-two.")
    assert other.parent_id == answer.parent_id
    # Importing it again adds nothing.
    response = upload(client, json.dumps(document))
    assert "Imported 0 conversations (0 messages); 1 already here" in response.content.decode()
    assert Conversation.objects.filter(owner=bob).count() == 1


def test_an_export_imported_into_its_own_account_adds_nothing(alice_client, alices):
    exported = alice_client.get(reverse("chat-export")).content
    response = upload(alice_client, exported)
    assert "1 already here" in response.content.decode()
    assert Conversation.objects.count() == 1


def _node(key, parent, children, role=None, parts=None, time=None, **message):
    entry = {"id": key, "parent": parent, "children": children, "message": None}
    if role is not None:
        entry["message"] = {
            "id": key,
            "author": {"role": role, "name": None, "metadata": {}},
            "create_time": time,
            "update_time": None,
            "content": message.pop("content", {"content_type": "text", "parts": parts}),
            "status": "finished_successfully",
            "end_turn": True,
            "weight": 1.0,
            "metadata": message.pop("metadata", {}),
            "recipient": message.pop("recipient", "all"),
        }
    return entry


def chatgpt_export() -> list[dict]:
    """Two conversations as ChatGPT exports them. The first has an edited prompt
    (two branches), a regenerated answer, a hidden system message, and a tool call
    with its output between two parts of one answer; the branch on screen is the
    edited prompt's regenerated answer."""
    t = 1_700_000_000.0
    trip = {
        "title": "Trip to Lisbon",
        "create_time": t,
        "update_time": t + 500,
        "conversation_id": "6f1c2a9e-0000-4000-8000-000000000001",
        "id": "6f1c2a9e-0000-4000-8000-000000000001",
        "current_node": "a3",
        "mapping": {
            "root": _node("root", None, ["sys"]),
            "sys": _node("sys", "root", ["u1", "u2"], "system", [""], None),
            "u1": _node("u1", "sys", ["a1"], "user", ["Plan three days in Lisbon"], t + 1),
            "a1": _node(
                "a1",
                "u1",
                ["tool-out"],
                "assistant",
                None,
                t + 2,
                content={"content_type": "code", "language": "unknown", "text": "search('Lisbon weather')"},
                recipient="browser",
            ),
            "tool-out": _node("tool-out", "a1", ["a1b"], "tool", ["Sunny, 24 C"], t + 3),
            "a1b": _node(
                "a1b", "tool-out", [], "assistant", ["Day 1: Alfama."], t + 4, metadata={"model_slug": "gpt-4o"}
            ),
            "u2": _node("u2", "sys", ["a2", "a3"], "user", ["Plan two days in Lisbon"], t + 10),
            "a2": _node("a2", "u2", [], "assistant", ["Day 1: Belém."], t + 11),
            "a3": _node(
                "a3",
                "u2",
                [],
                "assistant",
                None,
                t + 12,
                content={"content_type": "multimodal_text", "parts": ["Day 1: Baixa.", {"asset_pointer": "file-x"}]},
            ),
        },
    }
    short = {
        "title": "Hello",
        "create_time": t + 1000,
        "update_time": t + 1001,
        "conversation_id": "6f1c2a9e-0000-4000-8000-000000000002",
        "current_node": "b2",
        # The mapping's order need not be the tree's.
        "mapping": {
            "b2": _node("b2", "b1", [], "assistant", ["Hi! How can I help?"], t + 1001),
            "b1": _node("b1", "b0", ["b2"], "user", ["Hello"], t + 1000),
            "b0": _node("b0", None, ["b1"]),
        },
    }
    return [trip, short]


def test_a_chatgpt_export_is_imported_with_its_branches(alice, alice_client):
    response = upload(alice_client, json.dumps(chatgpt_export()))
    assert response.status_code == 200, response.content
    assert "Imported 2 conversations (7 messages)" in response.content.decode()
    trip = Conversation.objects.get(title="Trip to Lisbon")
    assert trip.owner == alice and trip.created_at.timestamp() == 1_700_000_000.0
    # The branch ChatGPT had on screen: the edited prompt's second answer.
    assert branch(trip) == [
        ("user", "Plan two days in Lisbon"),
        ("assistant", "Day 1: Baixa.\n\n[attachment]"),
    ]
    # The first prompt and the edit are alternatives; so are the two answers.
    first, edited = trip.messages.filter(role="user").order_by("id")
    assert first.parent_id is None and edited.parent_id is None
    answers = list(edited.children.order_by("id").values_list("content", flat=True))
    assert answers == ["Day 1: Belém.", "Day 1: Baixa.\n\n[attachment]"]
    # The tool's call and output are not conversation text; the answer around them is one message.
    [answer] = first.children.all()
    assert answer.content == "Day 1: Alfama." and answer.model == "gpt-4o"
    assert not trip.messages.filter(content__contains="Sunny").exists()
    hello = Conversation.objects.get(title="Hello")
    assert branch(hello) == [("user", "Hello"), ("assistant", "Hi! How can I help?")]
    # The page opens on that branch; search finds imported text.
    page = alice_client.get(reverse("chat-conversation", args=[trip.pk])).content.decode()
    assert "Day 1: Baixa." in page and "Day 1: Belém." not in page
    assert (
        "Alfama"
        in alice_client.get(reverse("chat-search"), {"q": "alfama"}, headers={"HX-Request": "true"}).content.decode()
    )

    # Twice: nothing more.
    response = upload(alice_client, json.dumps(chatgpt_export()))
    assert "Imported 0 conversations (0 messages); 2 already here" in response.content.decode()
    assert Conversation.objects.count() == 2 and Message.objects.count() == 7


def _broken(change) -> list[dict]:
    export = chatgpt_export()
    change(export)
    return export


MALFORMED = {
    "not JSON": (b"{not json", "not JSON"),
    "not UTF-8": (b"\xff\xfe\x00", "not JSON"),
    "another shape": (b'{"hello": 1}', "not a file this site can import"),
    "a parent not in the mapping": (
        _broken(lambda e: e[1]["mapping"]["b1"].update(parent="nowhere")),
        "which is not in the mapping",
    ),
    "a loop": (
        _broken(lambda e: e[1]["mapping"]["b0"].update(parent="b2")),
        "in a loop",
    ),
    "a message without author": (
        _broken(lambda e: e[1]["mapping"]["b2"]["message"].pop("author")),
        "needs an author",
    ),
    "parts that are not a list": (
        _broken(lambda e: e[1]["mapping"]["b2"]["message"]["content"].update(parts="Hi")),
        "must be a list",
    ),
    "a bad time": (_broken(lambda e: e[1].update(create_time="yesterday")), "is not a time"),
    "nothing to import": (
        _broken(lambda e: e[1].update(mapping={"b0": _node("b0", None, [])})),
        "has no messages to import",
    ),
    "nested deeper than a parser goes": (b"[" * 100_000, "not JSON"),
    "a parent that is no node id": (
        _broken(lambda e: e[1]["mapping"]["b1"].update(parent=["b0"])),
        "must be a node id",
    ),
    "metadata that is no object": (
        _broken(lambda e: e[1]["mapping"]["b2"]["message"].update(metadata=["x"])),
        None,
    ),
    "a message longer than any answer": (
        _broken(lambda e: e[1]["mapping"]["b2"]["message"]["content"].update(parts=["x" * 200_001])),
        "the most a message may have is",
    ),
    "an own export with no messages": (
        {"format": "chat-conversations", "version": 1, "conversations": [{"id": 1, "title": "x", "messages": []}]},
        "has no messages",
    ),
    "an own export whose parent is no id": (
        {
            "format": "chat-conversations",
            "version": 1,
            "conversations": [
                {"id": 1, "title": "x", "messages": [{"id": 1, "role": "user", "content": "Hi", "parent_id": [2]}]}
            ],
        },
        "parent_id must be a message's id",
    ),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_a_malformed_file_is_refused_whole_with_a_reason(name, alice_client):
    content, reason = MALFORMED[name]
    data = content if isinstance(content, bytes) else json.dumps(content).encode()
    response = upload(alice_client, data)
    if reason is None:
        # Not wrong enough to refuse: imported, with what could not be read left out.
        assert response.status_code == 200, response.content.decode()[:500]
        return
    assert response.status_code == 400
    text = response.content.decode()
    assert "Nothing was imported." in text and reason in text.replace("&#x27;", "'"), text
    # The first conversation of the file was fine: it is not stored either.
    assert not Conversation.objects.exists() and not Message.objects.exists()


def test_a_malformed_own_export_is_refused(alice_client, alices):
    document = json.loads(alice_client.get(reverse("chat-export")).content)
    document["conversations"][0]["messages"][1]["role"] = "system"
    with pytest.raises(ImportRefused, match="role must be"):
        read(json.dumps(document).encode())
    document["conversations"][0]["messages"][1]["role"] = "assistant"
    document["conversations"][0]["messages"][0]["parent_id"] = document["conversations"][0]["messages"][2]["id"]
    with pytest.raises(ImportRefused, match="in a loop"):
        read(json.dumps(document).encode())


def test_a_file_over_the_limit_is_refused_before_it_is_read(alice_client, settings):
    settings.CHAT_MAX_IMPORT_BYTES = 1000
    response = upload(alice_client, json.dumps(chatgpt_export()))
    assert response.status_code == 400
    assert "the most that can be imported is 1,000" in response.content.decode()
    assert not Conversation.objects.exists()


def test_no_file_is_a_clear_refusal(alice_client):
    response = alice_client.post(reverse("chat-import"))
    assert response.status_code == 400 and "Choose a file" in response.content.decode()

"""Migrations that change stored data, run on rows made before them."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)


def migrate(target: tuple[str, str]):
    executor = MigrationExecutor(connection)
    executor.migrate([target])
    executor.loader.build_graph()
    return executor.loader.project_state([target]).apps


def test_existing_answer_attempts_take_their_conversations_owner():
    apps = migrate(("chat", "0002_generation_started_at_index"))
    try:
        User = apps.get_model("auth", "User")
        Conversation = apps.get_model("chat", "Conversation")
        Message = apps.get_model("chat", "Message")
        Generation = apps.get_model("chat", "Generation")
        expected = {}
        for name in ("alice", "bob"):
            user = User.objects.create(username=name)
            conversation = Conversation.objects.create(owner=user)
            for _ in range(2):
                message = Message.objects.create(conversation=conversation, role="assistant")
                expected[Generation.objects.create(message=message).pk] = user.pk
        apps = migrate(("chat", "0003_generation_owner"))
        Generation = apps.get_model("chat", "Generation")
        assert dict(Generation.objects.values_list("pk", "owner_id")) == expected
    finally:
        # Back to the newest schema for the tests that follow.
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes("chat")[0])


def _shown_before(Message, conversation) -> list[int]:
    """What the page listed before the tree: the messages no Retry replaced."""
    rows = Message.objects.filter(conversation_id=conversation.pk, superseded_by__isnull=True)
    return list(rows.order_by("created_at", "id").values_list("pk", flat=True))


def _branch_after(Message, Conversation, conversation) -> list[int]:
    """What the page lists after: the path from the root to the active leaf."""
    parents = dict(Message.objects.filter(conversation_id=conversation.pk).values_list("pk", "parent_id"))
    path, at = [], Conversation.objects.get(pk=conversation.pk).active_leaf_id
    while at is not None:
        path.append(at)
        at = parents[at]
    return path[::-1]


def test_superseded_attempts_become_siblings_and_every_conversation_shows_what_it_showed():
    apps = migrate(("chat", "0004_provider_error_detail_and_output_limit"))
    try:
        User = apps.get_model("auth", "User")
        Conversation = apps.get_model("chat", "Conversation")
        Message = apps.get_model("chat", "Message")
        alice = User.objects.create(username="alice")

        def say(conversation, role, content, **fields):
            return Message.objects.create(conversation=conversation, role=role, content=content, **fields)

        # Shaped like today's data: a prompt whose answer was retried twice (the
        # failed attempts hidden by `superseded_by`), a later exchange, and a
        # last answer retried once; then a plain conversation and an empty one.
        retried = Conversation.objects.create(owner=alice, title="retried")
        p1 = say(retried, "user", "first prompt")
        a1 = say(retried, "assistant", "failed", status="error")
        a1b = say(retried, "assistant", "stopped", status="stopped")
        a1c = say(retried, "assistant", "kept")
        Message.objects.filter(pk=a1.pk).update(superseded_by=a1b)
        Message.objects.filter(pk=a1b.pk).update(superseded_by=a1c)
        p2 = say(retried, "user", "second prompt")
        a2 = say(retried, "assistant", "interrupted", status="interrupted")
        a2b = say(retried, "assistant", "second kept")
        Message.objects.filter(pk=a2.pk).update(superseded_by=a2b)
        plain = Conversation.objects.create(owner=alice, title="plain")
        q1, b1 = say(plain, "user", "hi"), say(plain, "assistant", "hello")
        q2, b2 = say(plain, "user", "again"), say(plain, "assistant", "hello again")
        empty = Conversation.objects.create(owner=alice, title="empty")
        before = {c.pk: _shown_before(Message, c) for c in (retried, plain, empty)}
        assert before[retried.pk] == [p1.pk, a1c.pk, p2.pk, a2b.pk]

        apps = migrate(("chat", "0007_remove_message_superseded_by"))
        Conversation = apps.get_model("chat", "Conversation")
        Message = apps.get_model("chat", "Message")
        for c in (retried, plain, empty):
            assert _branch_after(Message, Conversation, c) == before[c.pk], c.title
        parents = dict(Message.objects.values_list("pk", "parent_id"))
        # Every attempt at the first answer is an alternative under its prompt.
        assert [pk for pk, parent in parents.items() if parent == p1.pk] == [a1.pk, a1b.pk, a1c.pk]
        assert [pk for pk, parent in parents.items() if parent == p2.pk] == [a2.pk, a2b.pk]
        assert parents[p1.pk] is None and parents[p2.pk] == a1c.pk
        assert [parents[m.pk] for m in (q1, b1, q2, b2)] == [None, q1.pk, b1.pk, q2.pk]
        assert Conversation.objects.get(pk=empty.pk).active_leaf_id is None
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes("chat")[0])

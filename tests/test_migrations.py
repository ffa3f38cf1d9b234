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

"""Today's conversations as trees, each showing exactly what it showed before.

Until now a conversation was a line: its messages in id order, an answer replaced
by Retry kept but hidden (`superseded_by`). Retry was allowed on the latest answer
only, so a hidden attempt and the answers that replaced it all follow the same
prompt. In the tree: an answer's parent is the latest prompt before it (so the
hidden attempts become siblings of their replacement), a prompt's parent is the
latest shown message before it, and the active leaf is the conversation's latest
shown message. The path from the root to that leaf is the shown messages, in order.

Its own migration (between the schema changes) so that PostgreSQL runs the row
updates in a transaction of their own.
"""

from django.db import migrations

BATCH = 1000


def superseded_attempts_become_siblings(apps, schema_editor):
    Conversation = apps.get_model("chat", "Conversation")
    Message = apps.get_model("chat", "Message")
    rows = Message.objects.order_by("conversation_id", "id").values_list(
        "id", "conversation_id", "role", "superseded_by_id"
    )
    parents: list = []
    leaves: list = []
    current = shown = prompt = None
    for pk, conversation_id, role, superseded_by_id in rows.iterator(chunk_size=BATCH):
        if conversation_id != current:
            if shown is not None:
                leaves.append(Conversation(pk=current, active_leaf_id=shown))
            current, shown, prompt = conversation_id, None, None
        if role == "user":
            parent, prompt = shown, pk
        else:
            parent = prompt if prompt is not None else shown
        if superseded_by_id is None:
            shown = pk
        if parent is not None:
            parents.append(Message(pk=pk, parent_id=parent))
        if len(parents) >= BATCH:
            Message.objects.bulk_update(parents, ["parent"])
            parents = []
        if len(leaves) >= BATCH:
            Conversation.objects.bulk_update(leaves, ["active_leaf"])
            leaves = []
    if shown is not None:
        leaves.append(Conversation(pk=current, active_leaf_id=shown))
    Message.objects.bulk_update(parents, ["parent"], batch_size=BATCH)
    Conversation.objects.bulk_update(leaves, ["active_leaf"], batch_size=BATCH)


class Migration(migrations.Migration):

    dependencies = [
        ("chat", "0005_message_parent_conversation_active_leaf"),
    ]

    operations = [
        migrations.RunPython(superseded_attempts_become_siblings, migrations.RunPython.noop),
    ]

"""A conversation is a tree: each message follows its parent (an answer its prompt,
a prompt the answer before it), and editing a prompt or regenerating an answer adds
a sibling. The page shows one branch, the path from the root to the conversation's
active leaf; the model is sent the path from the root to its prompt.

Paths and subtrees are read with one recursive query each (WITH RECURSIVE, the
same in PostgreSQL and SQLite), walking the primary key up or the parent index
down: the cost grows with the branch, not with the conversation. A child is always
created after its parent, so ids grow down every path: a path in id order is the
path from the root, and the newest message under a message is a leaf.
"""

from dataclasses import dataclass

from django.db import connection
from django.db.models import Q, QuerySet
from django.db.models.expressions import RawSQL

from chat.models import Conversation, Message


def _table() -> str:
    return connection.ops.quote_name(Message._meta.db_table)


def _path_sql() -> str:
    table = _table()
    return (
        f"WITH RECURSIVE path(id, parent_id) AS ("
        f"SELECT id, parent_id FROM {table} WHERE id = %s "
        f"UNION ALL SELECT m.id, m.parent_id FROM {table} m JOIN path ON m.id = path.parent_id"
        f") SELECT id FROM path"
    )


def path_to(leaf_id: int) -> QuerySet[Message]:
    """The messages from the root down to `leaf_id`, in that order."""
    return Message.objects.filter(pk__in=RawSQL(_path_sql(), [leaf_id])).order_by("id")


def latest_under(message_id: int) -> int:
    """The newest message in the subtree of `message_id` (itself when it has no
    children): the end of the branch that switching to `message_id` shows."""
    table = _table()
    sql = (
        f"WITH RECURSIVE below(id) AS ("
        f"SELECT id FROM {table} WHERE id = %s "
        f"UNION ALL SELECT m.id FROM {table} m JOIN below ON m.parent_id = below.id"
        f") SELECT MAX(id) FROM below"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [message_id])
        return cursor.fetchone()[0]


def leaf_of(conversation: Conversation) -> int | None:
    """The last message of the branch on screen: the stored active leaf, or for a
    conversation that has none yet, its newest message."""
    if conversation.active_leaf_id is not None:
        return conversation.active_leaf_id
    return conversation.messages.order_by("-id").values_list("pk", flat=True).first()


@dataclass(frozen=True)
class Pager:
    """Where a message stands among its alternatives (itself and its siblings)."""

    position: int
    count: int
    previous_id: int | None
    next_id: int | None


def pagers(path: list[Message]) -> dict[int, Pager]:
    """The pager of each message of `path` that has alternatives, from one query
    for the siblings of the whole path (not one per message)."""
    if not path:
        return {}
    parents = {m.parent_id for m in path}
    siblings = Q(parent_id__in=[p for p in parents if p is not None])
    if None in parents:
        siblings |= Q(parent__isnull=True)
    rows = Message.objects.filter(siblings, conversation_id=path[0].conversation_id).order_by("id")
    alternatives: dict[int | None, list[int]] = {}
    for parent_id, pk in rows.values_list("parent_id", "pk"):
        alternatives.setdefault(parent_id, []).append(pk)
    out = {}
    for m in path:
        ids = alternatives.get(m.parent_id, [m.pk])
        if len(ids) > 1:
            at = ids.index(m.pk)
            out[m.pk] = Pager(
                position=at + 1,
                count=len(ids),
                previous_id=ids[at - 1] if at > 0 else None,
                next_id=ids[at + 1] if at + 1 < len(ids) else None,
            )
    return out

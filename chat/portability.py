"""A user's own conversations as a file, and such files (or a ChatGPT data
export's conversations.json) imported back.

The export keeps what the user made and saw: every branch of every conversation,
the branch on screen, each message's text, reasoning, status and tool calls, and
the user's own ratings. Not what staff wrote about them (flags, review notes) nor
the provider's own account of a failure (chat/export.py says why).

An import reads and checks the whole file before it writes anything, then writes
it in one transaction: a bad file is an ImportRefused naming what is wrong, and
nothing of it is stored. Each conversation is kept with an import key (where it
came from), so importing the same file again adds nothing; a conversation
exported from this very account, still here, is not imported again either.
"""

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import sha256

from django.conf import settings
from django.db import transaction
from django.db.models import Prefetch
from django.utils import timezone

from chat.models import Conversation, Feedback, Message, Status, StopReason, ToolCall
from chat.storable import storable

FORMAT = "chat-conversations"
VERSION = 1

MESSAGE_FIELDS = [
    "id",
    "parent_id",
    "role",
    "content",
    "reasoning",
    "reasoning_seconds",
    "status",
    "stop_reason",
    "error",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "created_at",
    "first_token_at",
    "finished_at",
]
TOOL_CALL_FIELDS = [
    "call_id",
    "name",
    "arguments",
    "result",
    "error",
    "state",
    "started_at",
    "finished_at",
    "text_offset",
]
TIMES = {"created_at", "first_token_at", "finished_at", "started_at", "updated_at", "pinned_at", "archived_at"}


# Export


def export_of(user) -> dict:
    """Every conversation of `user`, oldest first, as one JSON-ready document."""
    messages = Message.objects.order_by("id").select_related("feedback")
    conversations = (
        Conversation.objects.filter(owner=user)
        .order_by("created_at", "id")
        .prefetch_related(
            Prefetch("messages", queryset=messages),
            Prefetch("messages__tool_calls", queryset=ToolCall.objects.order_by("start_seq", "id")),
        )
    )
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": timezone.now().isoformat(),
        "conversations": [_conversation(c) for c in conversations],
    }


def _conversation(conversation: Conversation) -> dict:
    return {
        "id": conversation.pk,
        "title": conversation.title,
        "created_at": _iso(conversation.created_at),
        "updated_at": _iso(conversation.updated_at),
        "pinned_at": _iso(conversation.pinned_at),
        "archived_at": _iso(conversation.archived_at),
        "active_leaf_id": conversation.active_leaf_id,
        "messages": [_message(m) for m in conversation.messages.all()],
    }


def _message(message: Message) -> dict:
    data = {name: _plain(getattr(message, name)) for name in MESSAGE_FIELDS}
    data["tool_calls"] = [
        {name: _plain(getattr(c, name)) for name in TOOL_CALL_FIELDS} for c in message.tool_calls.all()
    ]
    try:
        feedback = message.feedback
    except Message.feedback.RelatedObjectDoesNotExist:
        feedback = None
    data["feedback"] = None if feedback is None else {"rating": feedback.rating, "comment": feedback.comment}
    return data


def _plain(value):
    return _iso(value) if isinstance(value, datetime) else value


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


# Import: what a file holds, checked, before anything is written.


class ImportRefused(Exception):
    """The file cannot be imported; the message says why, for the user."""


@dataclass
class Node:
    """A message to store, with its place in the tree."""

    role: str
    content: str
    created_at: datetime
    fields: dict = field(default_factory=dict)
    tool_calls: list[dict] = field(default_factory=list)
    feedback: dict | None = None
    children: list["Node"] = field(default_factory=list)


@dataclass
class Incoming:
    """A conversation to store."""

    key: str
    title: str
    created_at: datetime
    updated_at: datetime
    roots: list[Node]
    active: Node | None
    pinned_at: datetime | None = None
    archived_at: datetime | None = None
    # The conversation of this account it was exported from, if any.
    original_id: int | None = None


@dataclass(frozen=True)
class Imported:
    conversations: int
    messages: int
    skipped: int


def check_size(size: int) -> None:
    limit = settings.CHAT_MAX_IMPORT_BYTES
    if size > limit:
        raise ImportRefused(f"The file is {size:,} bytes; the most that can be imported is {limit:,}.")


def read(data: bytes) -> list[Incoming]:
    """The conversations a file holds: this product's export, or ChatGPT's
    conversations.json. Refused whole at the first thing wrong."""
    check_size(len(data))
    try:
        document = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ImportRefused(
            "The file is not JSON: choose an export of this site or ChatGPT's conversations.json."
        ) from None
    if isinstance(document, dict) and document.get("format") == FORMAT:
        if document.get("version") != VERSION:
            raise ImportRefused(f"This export's version ({document.get('version')!r}) is not one this site reads.")
        return [_own(c, n) for n, c in enumerate(_list(document.get("conversations"), "conversations"), 1)]
    if isinstance(document, list) and all(isinstance(c, dict) and "mapping" in c for c in document):
        return [_chatgpt(c, n) for n, c in enumerate(document, 1)]
    raise ImportRefused(
        "This is not a file this site can import: choose an export of this site, or conversations.json "
        "from a ChatGPT data export."
    )


def _list(value, what: str) -> list:
    if not isinstance(value, list):
        raise ImportRefused(f"“{what}” must be a list.")
    return value


def _text(value, what: str, *, blank: bool = True) -> str:
    if value is None and blank:
        return ""
    if not isinstance(value, str):
        raise ImportRefused(f"{what} must be text.")
    return storable(value)


def _id(value, what: str) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise ImportRefused(f"{what} must be a message's id.")


def _content(text: str, what: str) -> str:
    """A message's text, refused past the longest an answer may be here (what
    every page that shows it renders)."""
    limit = max(settings.CHAT_MAX_ANSWER_CHARS, settings.CHAT_MAX_PROMPT_CHARS)
    if len(text) > limit:
        raise ImportRefused(f"{what} is {len(text):,} characters long; the most a message may have is {limit:,}.")
    return text


def _time(value, what: str) -> datetime | None:
    if value is None:
        return None
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, tz=UTC)
        when = datetime.fromisoformat(value)
    except (TypeError, ValueError, OverflowError, OSError):
        raise ImportRefused(f"{what} is not a time: {value!r:.40}.") from None
    return when if timezone.is_aware(when) else when.replace(tzinfo=UTC)


def _number(value, what: str, *, kind=int):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise ImportRefused(f"{what} must be a number.")
    if value < 0 or value > 2**31 - 1:
        raise ImportRefused(f"{what} is out of range.")
    return value


def _forest(nodes: dict, parents: dict, order: list, where: str) -> list[Node]:
    """Link each node under its parent; the roots, in `order`. Refused: a parent
    that is not in the conversation, or a loop."""
    roots = []
    for key in order:
        parent = parents[key]
        if parent is None:
            roots.append(nodes[key])
        elif parent not in nodes:
            raise ImportRefused(f"{where}: message {key!r} follows {parent!r}, which is not in it.")
        else:
            nodes[parent].children.append(nodes[key])
    reached, stack = 0, list(roots)
    while stack:
        node = stack.pop()
        reached += 1
        stack.extend(node.children)
    if reached != len(nodes):
        raise ImportRefused(f"{where}: its messages follow each other in a loop.")
    return roots


def _own(data, number: int) -> Incoming:
    where = f"Conversation {number}"
    if not isinstance(data, dict):
        raise ImportRefused(f"{where} is not an object.")
    original_id = data.get("id")
    created_at = _time(data.get("created_at"), f"{where}'s created_at") or timezone.now()
    nodes, parents, order = {}, {}, []
    for m in _list(data.get("messages"), f"{where}'s messages"):
        if not isinstance(m, dict):
            raise ImportRefused(f"{where}: a message is not an object.")
        key = m.get("id")
        if not isinstance(key, int) or key in nodes:
            raise ImportRefused(f"{where}: each message needs an id of its own.")
        what = f"{where}, message {key}"
        role = m.get("role")
        if role not in Message.Role.values:
            raise ImportRefused(f"{what}: the role must be “user” or “assistant”.")
        status = m.get("status") or Status.COMPLETE
        if status not in Status.values or status == Status.STREAMING:
            # An answer that was still being written when exported stopped there.
            status = Status.INTERRUPTED if status == Status.STREAMING else None
        if status is None:
            raise ImportRefused(f"{what}: unknown status {m.get('status')!r:.40}.")
        stop_reason = m.get("stop_reason") or ""
        if stop_reason not in StopReason.values:
            raise ImportRefused(f"{what}: unknown stop reason {stop_reason!r:.40}.")
        node = Node(
            role=role,
            content=_content(_text(m.get("content"), f"{what}'s content"), what),
            created_at=_time(m.get("created_at"), f"{what}'s created_at") or created_at,
            fields={
                "reasoning": _text(m.get("reasoning"), f"{what}'s reasoning"),
                "reasoning_seconds": _number(m.get("reasoning_seconds"), f"{what}'s reasoning_seconds", kind=float),
                "status": status,
                "stop_reason": stop_reason,
                "error": _text(m.get("error"), f"{what}'s error"),
                "model": _text(m.get("model"), f"{what}'s model")[:100],
                "prompt_tokens": _number(m.get("prompt_tokens"), f"{what}'s prompt_tokens"),
                "completion_tokens": _number(m.get("completion_tokens"), f"{what}'s completion_tokens"),
                "first_token_at": _time(m.get("first_token_at"), f"{what}'s first_token_at"),
                "finished_at": _time(m.get("finished_at"), f"{what}'s finished_at"),
            },
            tool_calls=[_tool_call(c, what) for c in _list(m.get("tool_calls") or [], f"{what}'s tool_calls")],
            feedback=_feedback(m.get("feedback"), what),
        )
        nodes[key], parents[key] = node, _id(m.get("parent_id"), f"{what}'s parent_id")
        order.append(key)
    if not nodes:
        raise ImportRefused(f"{where} has no messages.")
    roots = _forest(nodes, parents, order, where)
    active = nodes.get(_id(data.get("active_leaf_id"), f"{where}'s active_leaf_id"))
    stamp = f"{original_id}:{created_at.isoformat()}"
    return Incoming(
        key="export:" + sha256(stamp.encode()).hexdigest()[:40],
        title=_title(data.get("title"), where),
        created_at=created_at,
        updated_at=_time(data.get("updated_at"), f"{where}'s updated_at") or created_at,
        pinned_at=_time(data.get("pinned_at"), f"{where}'s pinned_at"),
        archived_at=_time(data.get("archived_at"), f"{where}'s archived_at"),
        roots=roots,
        active=active,
        original_id=original_id if isinstance(original_id, int) else None,
    )


def _tool_call(data, what: str) -> dict:
    if not isinstance(data, dict):
        raise ImportRefused(f"{what}: a tool call is not an object.")
    state = data.get("state") or ToolCall.State.OK
    if state not in ToolCall.State.values:
        raise ImportRefused(f"{what}: a tool call's state is unknown.")
    return {
        "call_id": _text(data.get("call_id"), f"{what}'s tool call id")[:200],
        "name": _text(data.get("name"), f"{what}'s tool name")[:100],
        "arguments": _text(data.get("arguments"), f"{what}'s tool arguments"),
        "result": _text(data.get("result"), f"{what}'s tool result"),
        "error": _text(data.get("error"), f"{what}'s tool error"),
        # A call still running when exported never will finish.
        "state": ToolCall.State.ERROR if state == ToolCall.State.RUNNING else state,
        "started_at": _time(data.get("started_at"), f"{what}'s tool call time") or timezone.now(),
        "finished_at": _time(data.get("finished_at"), f"{what}'s tool call time"),
        "text_offset": _number(data.get("text_offset"), f"{what}'s tool call offset") or 0,
    }


def _feedback(data, what: str) -> dict | None:
    if data is None:
        return None
    if not isinstance(data, dict) or data.get("rating") not in (1, -1):
        raise ImportRefused(f"{what}: a rating must be 1 or -1.")
    return {"rating": data["rating"], "comment": _text(data.get("comment"), f"{what}'s comment")[:2000]}


def _title(value, where: str) -> str:
    title = " ".join(_text(value, f"{where}'s title").split())[:200]
    return title or "Imported chat"


# ChatGPT's conversations.json: each conversation a `mapping` of node id to
# {id, message, parent, children}; a message {author: {role}, content:
# {content_type, parts}, create_time, metadata}; `current_node` the branch on screen.

CHATGPT_ROLES = {"user": Message.Role.USER, "assistant": Message.Role.ASSISTANT}


def _chatgpt_text(message: dict, what: str) -> str | None:
    """A message's text, or None for what is no conversation text here (a
    system prompt, a tool's output, an assistant's call to a tool)."""
    content = message.get("content")
    if not isinstance(content, dict):
        raise ImportRefused(f"{what}: “content” must be an object.")
    kind = content.get("content_type")
    if kind in ("text", "multimodal_text"):
        parts = _list(content.get("parts", []), f"{what}'s parts")
        texts = [p if isinstance(p, str) else "[attachment]" for p in parts]
        return storable("\n\n".join(t for t in texts if t))
    if kind == "code":
        return storable(f"```\n{_text(content.get('text'), f'{what} code')}\n```")
    return None


def _chatgpt(data: dict, number: int) -> Incoming:
    title = data.get("title")
    where = f"Conversation {number}" + (f" (“{title:.60}”)" if isinstance(title, str) and title else "")
    mapping = data.get("mapping")
    if not isinstance(mapping, dict) or not mapping:
        raise ImportRefused(f"{where}: “mapping” must be an object of messages.")
    created_at = _time(data.get("create_time"), f"{where}'s create_time") or timezone.now()
    # First the whole tree as ChatGPT has it, then the messages kept.
    parents, kept, order = {}, {}, []
    for key, entry in mapping.items():
        what = f"{where}, node {key!r:.50}"
        if not isinstance(entry, dict):
            raise ImportRefused(f"{what} is not an object.")
        parent = entry.get("parent")
        if parent is not None and not isinstance(parent, str):
            raise ImportRefused(f"{what}: “parent” must be a node id.")
        if parent is not None and parent not in mapping:
            raise ImportRefused(f"{what} follows {parent!r:.50}, which is not in the mapping.")
        parents[key] = parent
        order.append(key)
        message = entry.get("message")
        if message is None:
            continue
        if not isinstance(message, dict) or not isinstance(message.get("author"), dict):
            raise ImportRefused(f"{what}: a message needs an author.")
        role = CHATGPT_ROLES.get(message["author"].get("role"))
        if role is None or message.get("recipient") not in (None, "all"):
            continue
        text = _chatgpt_text(message, what)
        if not text:
            continue
        text = _content(text, what)
        metadata = message.get("metadata") or {}
        model = metadata.get("model_slug") if isinstance(metadata, dict) else None
        kept[key] = Node(
            role=role,
            content=text,
            created_at=_time(message.get("create_time"), f"{what}'s create_time") or created_at,
            fields={"model": model[:100] if isinstance(model, str) else ""},
        )
    # Loops in ChatGPT's own tree are refused like ours.
    _forest({k: Node("", "", created_at) for k in mapping}, parents, order, where)
    # A kept message follows its nearest kept ancestor; two of the same role in a
    # row (an answer around a tool's output) become one.
    into: dict[str, Node] = {}  # node id -> the kept message that holds it
    roots: list[Node] = []
    for key in _parents_first(parents, order):
        parent = parents[key]
        above = into.get(parent) if parent is not None else None
        node = kept.get(key)
        if node is None:
            if above is not None:
                into[key] = above
            continue
        if above is not None and above.role == node.role and not above.children:
            above.content += "\n\n" + node.content
            into[key] = above
            continue
        (above.children if above is not None else roots).append(node)
        into[key] = node
    if not roots:
        raise ImportRefused(f"{where} has no messages to import.")
    current = data.get("current_node")
    ident = data.get("conversation_id") or data.get("id")
    stamp = ident if isinstance(ident, str) and ident else f"{title}:{data.get('create_time')}:{len(mapping)}"
    return Incoming(
        key="chatgpt:" + sha256(stamp.encode()).hexdigest()[:40],
        title=_title(title, where),
        created_at=created_at,
        updated_at=_time(data.get("update_time"), f"{where}'s update_time") or created_at,
        roots=roots,
        active=into.get(current) if isinstance(current, str) else None,
    )


def _parents_first(parents: dict, order: list) -> list:
    """Node ids, each after its parent (the mapping's order need not be)."""
    children: dict = {}
    for key in order:
        children.setdefault(parents[key], []).append(key)
    out, stack = [], list(reversed(children.get(None, [])))
    while stack:
        key = stack.pop()
        out.append(key)
        stack.extend(reversed(children.get(key, [])))
    return out


# Import: the writing.


def store(user, incoming: list[Incoming]) -> Imported:
    """Store what `read` gave, all of it or (on any error) nothing."""
    with transaction.atomic():
        known = set(Conversation.objects.filter(owner=user).exclude(import_key="").values_list("import_key", flat=True))
        originals = {
            (pk, created.isoformat())
            for pk, created in Conversation.objects.filter(owner=user).values_list("pk", "created_at")
        }
        new = []
        for conversation in incoming:
            original = (conversation.original_id, conversation.created_at.isoformat())
            if conversation.key not in known and original not in originals:
                known.add(conversation.key)
                new.append(conversation)
        messages = _store_all(user, new)
    return Imported(len(new), messages, len(incoming) - len(new))


def _store_all(user, incoming: list[Incoming]) -> int:
    """The conversations, then their messages a level of the trees at a time,
    every conversation's together (a few statements per level, not per message).
    Every child is created after its parent, so ids grow down every path, as
    chat/tree.py expects."""
    conversations = Conversation.objects.bulk_create(
        Conversation(
            owner=user,
            title=c.title,
            created_at=c.created_at,
            updated_at=c.updated_at,
            pinned_at=c.pinned_at,
            archived_at=c.archived_at,
            import_key=c.key,
        )
        for c in incoming
    )
    stored: dict[int, Message] = {}  # id(Node) -> its row
    level = [(node, None, row) for c, row in zip(incoming, conversations, strict=True) for node in c.roots]
    count = 0
    while level:
        rows = [
            Message(
                conversation=conversation,
                parent=parent,
                role=node.role,
                content=node.content,
                created_at=node.created_at,
                **node.fields,
            )
            for node, parent, conversation in level
        ]
        Message.objects.bulk_create(rows)
        count += len(rows)
        pairs = [(node, row) for (node, _, _), row in zip(level, rows, strict=True)]
        stored.update((id(node), row) for node, row in pairs)
        ToolCall.objects.bulk_create(ToolCall(message=row, **call) for node, row in pairs for call in node.tool_calls)
        Feedback.objects.bulk_create(
            Feedback(message=row, user=user, **node.feedback) for node, row in pairs if node.feedback is not None
        )
        level = [(child, row, row.conversation) for node, row in pairs for child in node.children]
    # The branch on screen: the one the file had, or the newest message's.
    newest: dict[int, Message] = {}
    for row in stored.values():
        if row.conversation_id not in newest or row.pk > newest[row.conversation_id].pk:
            newest[row.conversation_id] = row
    for c, conversation in zip(incoming, conversations, strict=True):
        active = stored.get(id(c.active)) if c.active is not None else None
        conversation.active_leaf = active or newest[conversation.pk]
    Conversation.objects.bulk_update(conversations, ["active_leaf"], batch_size=500)
    return count

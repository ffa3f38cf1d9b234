"""Full-text search of a user's conversations: their titles and the text of every
message, every branch included, with the database's own index.

SQLite: FTS5 tables over the title and the message text, kept current by
triggers. PostgreSQL: a GIN index on `to_tsvector('simple', title)`, queried
through django.contrib.postgres.search with the same expression; and for the
messages a table of their `tsvector`s with their owner, kept current by triggers,
indexed by words (GIN) and by owner and id (btree): a word in most messages is
answered from the user's newest few, whatever other users wrote since, and a
phrase is checked against the stored vector, not the text parsed again. Both
follow whatever writes the row, the ORM or the answer recorder's raw UPDATE while
an answer streams, so an answer is found by the words it has so far.

One query language on both: words (all of them must be there), "quoted phrases",
and the last word as a prefix while it is being typed. A query is reduced to
letters and digits before it reaches either engine, so no input is query syntax.
Neither engine stems words ('simple' configuration, FTS5's unicode61 tokenizer
keeping diacritics): "plans" does not find "plan", the same on both.
"""

import re
from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL
from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from chat.models import Conversation, Message

MAX_TERMS = 8
MAX_WORD = 64
SNIPPET = 160
CONFIG = "simple"

# What both engines take for a word: runs of letters and digits (an underscore,
# punctuation and spaces part them).
_WORD = re.compile(r"[^\W_]+")
_QUOTED_OR_BARE = re.compile(r'"([^"]*)"?|(\S+)')

# The index: (table, column) of each searched text.
INDEXED = [("chat_conversation", "title"), ("chat_message", "content")]
# PostgreSQL's table of the messages' words.
MESSAGE_WORDS = "chat_message_search"


@dataclass(frozen=True)
class Term:
    """Words that must stand together, in order (one word, or a phrase); the last
    one may be the start of a word."""

    words: tuple[str, ...]
    prefix: bool = False


def parse(query: str) -> list[Term]:
    """`query` as terms: quoted phrases, and bare words (a bare word with
    punctuation inside, like gpt-4o, is the phrase of its parts). The last term is
    a prefix while it is being typed: no space or closing quote after it."""
    terms = []
    for match in _QUOTED_OR_BARE.finditer(query):
        words = tuple(w.lower()[:MAX_WORD] for w in _WORD.findall(match.group(1) or match.group(2) or ""))
        if words:
            terms.append(Term(words))
    terms = terms[:MAX_TERMS]
    typing = query and not query[-1].isspace() and not query.rstrip().endswith('"')
    if terms and typing and _QUOTED_OR_BARE.findall(query)[-1][1]:
        terms[-1] = Term(terms[-1].words, prefix=True)
    return terms


def _tsquery(terms: list[Term]) -> str:
    """PostgreSQL's to_tsquery syntax; the words hold only letters and digits."""
    parts = []
    for term in terms:
        words = [f"'{w}'" for w in term.words]
        if term.prefix:
            words[-1] += ":*"
        parts.append("(" + " <-> ".join(words) + ")")
    return " & ".join(parts)


def _fts5_query(terms: list[Term]) -> str:
    """FTS5's syntax: each term a quoted phrase, all of them required."""
    return " ".join('"' + " ".join(t.words) + '"' + ("*" if t.prefix else "") for t in terms)


def _fts5_table(table: str) -> str:
    return f"{table}_fts"


def matching(queryset: QuerySet, column: str, terms: list[Term]) -> QuerySet:
    if connection.vendor == "postgresql":
        from django.contrib.postgres.search import SearchQuery, SearchVector

        vector = SearchVector(column, config=CONFIG)
        return queryset.annotate(search_vector=vector).filter(
            search_vector=SearchQuery(_tsquery(terms), search_type="raw", config=CONFIG)
        )
    fts = connection.ops.quote_name(_fts5_table(queryset.model._meta.db_table))
    return queryset.filter(pk__in=RawSQL(f"SELECT rowid FROM {fts} WHERE {fts} MATCH %s", [_fts5_query(terms)]))


def matching_messages(user_id: int, terms: list[Term]) -> QuerySet[Message]:
    """The user's messages that hold every term, any branch."""
    if connection.vendor == "postgresql":
        words = RawSQL(
            f"SELECT message_id FROM {MESSAGE_WORDS} WHERE owner_id = %s AND vector @@ to_tsquery(%s, %s)",
            [user_id, CONFIG, _tsquery(terms)],
        )
        return Message.objects.filter(pk__in=words)
    return matching(Message.objects.filter(conversation__owner_id=user_id), "content", terms)


def latest_matching_messages(
    user_id: int, terms: list[Term], limit: int, exclude_conversation: int | None = None
) -> list[Message]:
    """The `limit` last stored of the user's messages that hold every term.

    Last stored, not last dated: ids follow the index's own order, so a word
    in most messages is answered from the first few of them instead of sorting
    them all (an imported conversation's messages count as stored when imported)."""
    if connection.vendor == "postgresql":
        # The user's rows newest first (the key) or the words' (GIN), whichever
        # the planner finds fewer.
        sql = (
            f"SELECT message_id FROM {MESSAGE_WORDS} WHERE owner_id = %s AND vector @@ to_tsquery(%s, %s) "
            f"AND conversation_id <> %s ORDER BY message_id DESC LIMIT %s"
        )
        params = [user_id, CONFIG, _tsquery(terms), exclude_conversation or 0, limit]
    else:
        # The FTS5 table walked backwards by rowid (the message's id), each match
        # kept if it is the user's, until there are enough.
        q = connection.ops.quote_name
        fts = q(_fts5_table(Message._meta.db_table))
        sql = (
            f"SELECT f.rowid FROM {fts} f JOIN {q(Message._meta.db_table)} m ON m.id = f.rowid "
            f"JOIN {q(Conversation._meta.db_table)} c ON c.id = m.conversation_id "
            f"WHERE f.{fts} MATCH %s AND c.owner_id = %s AND c.id <> %s ORDER BY f.rowid DESC LIMIT %s"
        )
        params = [_fts5_query(terms), user_id, exclude_conversation or 0, limit]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        ids = [pk for (pk,) in cursor.fetchall()]
    if not ids:
        return []
    rows = Message.objects.filter(pk__in=ids).select_related("conversation")
    rows = rows.only("role", "content", "created_at", "conversation__title", "conversation__archived_at")
    return sorted(rows, key=lambda m: m.pk, reverse=True)


def matching_conversations(user_id: int, terms: list[Term]) -> QuerySet[Conversation]:
    mine = Conversation.objects.filter(owner_id=user_id)
    return matching(mine, "title", terms).order_by("-updated_at", "-id")


@dataclass(frozen=True)
class Hit:
    """A result: a conversation whose title matches (no message), or a message."""

    conversation_id: int
    title: str
    date: datetime
    archived: bool
    # Escaped text with the matches marked: the title's, or the message's.
    snippet: SafeString
    message_id: int | None = None
    role: str = ""

    @property
    def link(self) -> str:
        url = reverse("chat-conversation", args=[self.conversation_id])
        # Opens the branch that holds the message (chat.views.conversation).
        return url if self.message_id is None else f"{url}?at={self.message_id}#msg-{self.message_id}"


def search(
    user_id: int, query: str, *, limit: int = 20, titles: int = 5, exclude_conversation: int | None = None
) -> list[Hit]:
    """Conversations whose title matches (the newest `titles` of them), then the
    messages that match, the last stored first: `limit` in all."""
    terms = parse(query)
    if not terms:
        return []
    hits: list[Hit] = []
    conversations = matching_conversations(user_id, terms).only("title", "updated_at", "archived_at")
    if exclude_conversation is not None:
        conversations = conversations.exclude(pk=exclude_conversation)
    for c in conversations[: min(titles, limit)]:
        hits.append(Hit(c.pk, c.title, c.updated_at, c.archived_at is not None, highlight(c.title, terms)))
    for m in latest_matching_messages(user_id, terms, limit - len(hits), exclude_conversation):
        c = m.conversation
        hits.append(
            Hit(c.pk, c.title, m.created_at, c.archived_at is not None, snippet(m.content, terms), m.pk, m.role)
        )
    return hits


def _pattern(terms: list[Term]) -> re.Pattern:
    """Where the terms are in a text, as the engines match them: whole words
    (the last one's start, for a prefix), a phrase's words with anything but
    letters and digits between them."""
    alternatives = []
    for term in terms:
        body = r"[\W_]+".join(re.escape(w) for w in term.words)
        alternatives.append(r"(?<![^\W_])" + body + (r"[^\W_]*" if term.prefix else r"(?![^\W_])"))
    return re.compile("|".join(alternatives), re.IGNORECASE)


def highlight(text: str, terms: list[Term]) -> SafeString:
    """`text` escaped, its matches in <mark>."""
    pattern = _pattern(terms)
    out, at = [], 0
    for match in pattern.finditer(text):
        out.append(escape(text[at : match.start()]))
        out.append(f"<mark>{escape(match.group())}</mark>")
        at = match.end()
    out.append(escape(text[at:]))
    return mark_safe("".join(out))


def snippet(text: str, terms: list[Term]) -> SafeString:
    """About SNIPPET characters of `text` around its first match, on one line."""
    match = _pattern(terms).search(text)
    start = max((match.start() if match else 0) - SNIPPET // 3, 0)
    if start:
        space = text.find(" ", start, start + 20)
        start = space + 1 if space >= 0 else start
    end = start + SNIPPET
    window = " ".join(text[start:end].split())
    return mark_safe(("…" if start else "") + highlight(window, terms) + ("…" if end < len(text) else ""))


# The index, created by migration 0010 (and again after a later migration that
# rebuilt a table: SQLite drops a table's triggers with it).


def _fts5_statements(table: str, column: str) -> list[str]:
    fts = _fts5_table(table)
    remove = f"INSERT INTO {fts}({fts}, rowid, {column}) VALUES ('delete', old.id, old.{column});"
    add = f"INSERT INTO {fts}(rowid, {column}) VALUES (new.id, new.{column});"
    return [
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {fts} USING fts5({column}, content='{table}', content_rowid='id', "
        f"tokenize='unicode61 remove_diacritics 0')",
        f"CREATE TRIGGER IF NOT EXISTS {fts}_insert AFTER INSERT ON {table} BEGIN {add} END",
        f"CREATE TRIGGER IF NOT EXISTS {fts}_delete AFTER DELETE ON {table} BEGIN {remove} END",
        f"CREATE TRIGGER IF NOT EXISTS {fts}_update AFTER UPDATE OF {column} ON {table} BEGIN {remove} {add} END",
    ]


def _trigger_names() -> set[str]:
    return {f"{_fts5_table(t)}_{event}" for t, _ in INDEXED for event in ("insert", "delete", "update")}


_VECTOR = f"to_tsvector('{CONFIG}'::regconfig, COALESCE(%s, ''))"

_POSTGRESQL = [
    # Conversations: few per user; the title's own expression index.
    f"CREATE INDEX IF NOT EXISTS chat_conversation_title_search ON chat_conversation USING gin ({_VECTOR % 'title'})",
    # Messages: their words with their owner (no foreign keys: a TRUNCATE of the
    # messages, as a test run's flush does, empties it through its trigger). The
    # key leads with the owner: the one ordered index, so a user's newest matches
    # are read from the user's own rows, never past other users' newer ones.
    f"""CREATE TABLE IF NOT EXISTS {MESSAGE_WORDS} (
        owner_id bigint NOT NULL, message_id bigint NOT NULL, conversation_id bigint NOT NULL,
        vector tsvector NOT NULL, PRIMARY KEY (owner_id, message_id))""",
    f"CREATE INDEX IF NOT EXISTS {MESSAGE_WORDS}_vector ON {MESSAGE_WORDS} USING gin (vector)",
    f"""CREATE OR REPLACE FUNCTION {MESSAGE_WORDS}_write() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            DELETE FROM {MESSAGE_WORDS} WHERE message_id = OLD.id
                AND owner_id = (SELECT owner_id FROM chat_conversation WHERE id = OLD.conversation_id);
        ELSE
            INSERT INTO {MESSAGE_WORDS} (owner_id, message_id, conversation_id, vector)
                SELECT c.owner_id, NEW.id, NEW.conversation_id, {_VECTOR % "NEW.content"}
                FROM chat_conversation c WHERE c.id = NEW.conversation_id
            ON CONFLICT (owner_id, message_id) DO UPDATE SET vector = EXCLUDED.vector;
        END IF;
        RETURN NULL;
    END $$""",
    f"""CREATE OR REPLACE FUNCTION {MESSAGE_WORDS}_empty() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM {MESSAGE_WORDS};
        RETURN NULL;
    END $$""",
    f"DROP TRIGGER IF EXISTS {MESSAGE_WORDS}_write ON chat_message",
    f"""CREATE TRIGGER {MESSAGE_WORDS}_write AFTER INSERT OR UPDATE OF content OR DELETE ON chat_message
        FOR EACH ROW EXECUTE FUNCTION {MESSAGE_WORDS}_write()""",
    f"DROP TRIGGER IF EXISTS {MESSAGE_WORDS}_empty ON chat_message",
    f"""CREATE TRIGGER {MESSAGE_WORDS}_empty AFTER TRUNCATE ON chat_message
        FOR EACH STATEMENT EXECUTE FUNCTION {MESSAGE_WORDS}_empty()""",
    # The rows there are.
    f"""INSERT INTO {MESSAGE_WORDS} (owner_id, message_id, conversation_id, vector)
        SELECT c.owner_id, m.id, m.conversation_id, {_VECTOR % "m.content"}
        FROM chat_message m JOIN chat_conversation c ON c.id = m.conversation_id
        ON CONFLICT (owner_id, message_id) DO NOTHING""",
]


def install_index(schema_editor) -> None:
    """Create the index if it is missing, and fill it from the rows there are."""
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_trigger WHERE tgname IN (%s, %s)",
                [f"{MESSAGE_WORDS}_write", f"{MESSAGE_WORDS}_empty"],
            )
            if cursor.fetchone()[0] == 2:
                return
            for statement in _POSTGRESQL:
                cursor.execute(statement)
    elif vendor == "sqlite":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            missing = _trigger_names() - {name for (name,) in cursor.fetchall()}
            if not missing:
                return
            for table, column in INDEXED:
                for statement in _fts5_statements(table, column):
                    cursor.execute(statement)
                # Rows written while a trigger was missing are indexed again.
                cursor.execute(f"INSERT INTO {_fts5_table(table)}({_fts5_table(table)}) VALUES ('rebuild')")


def remove_index(schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS chat_conversation_title_search")
        for name in ("write", "empty"):
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {MESSAGE_WORDS}_{name} ON chat_message")
            schema_editor.execute(f"DROP FUNCTION IF EXISTS {MESSAGE_WORDS}_{name}()")
        schema_editor.execute(f"DROP TABLE IF EXISTS {MESSAGE_WORDS}")
    for table, _column in INDEXED:
        if vendor == "sqlite":
            for event in ("insert", "delete", "update"):
                schema_editor.execute(f"DROP TRIGGER IF EXISTS {_fts5_table(table)}_{event}")
            schema_editor.execute(f"DROP TABLE IF EXISTS {_fts5_table(table)}")

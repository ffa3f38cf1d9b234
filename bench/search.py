"""How long a search takes on a large account.

    .venv/bin/python -m bench.search [--conversations 5000] [--messages 100000] [--runs 15]
    DATABASE_URL=postgres://…/scratch .venv/bin/python -m bench.search

One user with `--conversations` conversations holding `--messages` messages
between them (prompts of about 20 words, answers of about 120), and another user
with a fifth as many, whose rows the index holds too. The words are drawn from a
vocabulary of 20,000 made-up words with Zipf's frequencies, as a language's are.
Each query runs what the page's search runs (chat.search.search: matching
titles, then the 30 newest matching messages with their highlighted snippets) in
this process, `--runs` times after two warm-ups; it prints the median and the
slowest.

Without DATABASE_URL: a new SQLite file in a temporary directory. With it: that
database, migrated; the two users (`bench-search`, `bench-other`) are replaced,
nothing else is touched.
"""

import argparse
import os
import random
import statistics
import tempfile
import time
from datetime import timedelta
from itertools import accumulate
from pathlib import Path

VOCABULARY = 20000
SEED = 20261130


def _words(rng: random.Random) -> list[str]:
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    words = set()
    while len(words) < VOCABULARY:
        words.add("".join(rng.choices(syllables, k=rng.randint(2, 4))))
    return sorted(words, key=lambda w: (len(w), w))


def _seed(conversations: int, messages: int, rng: random.Random, vocabulary: list[str]) -> None:
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from chat.models import Conversation, Message

    cumulative = list(accumulate(1 / rank for rank in range(1, len(vocabulary) + 1)))

    def text(n: int) -> str:
        return " ".join(rng.choices(vocabulary, cum_weights=cumulative, k=n)).capitalize() + "."

    User = get_user_model()
    User.objects.filter(username__in=["bench-search", "bench-other"]).delete()
    now = timezone.now()
    for username, share in (("bench-search", 1), ("bench-other", 5)):
        user = User.objects.create_user(username)
        count = conversations // share
        made = Conversation.objects.bulk_create(
            Conversation(owner=user, title=text(4)[:-1], updated_at=now) for _ in range(count)
        )
        per = messages // share // count
        rows = []
        for n, conversation in enumerate(made):
            for i in range(per):
                prompt = i % 2 == 0
                rows.append(
                    Message(
                        conversation=conversation,
                        role="user" if prompt else "assistant",
                        content=text(rng.randint(8, 32) if prompt else rng.randint(60, 180)),
                        created_at=now - timedelta(minutes=len(made) - n, seconds=-i),
                    )
                )
            if len(rows) >= 5000:
                Message.objects.bulk_create(rows)
                rows = []
        Message.objects.bulk_create(rows)


def _queries(vocabulary: list[str]) -> dict[str, str]:
    from chat.models import Message

    sample = Message.objects.filter(conversation__owner__username="bench-search", role="assistant").first()
    words = sample.content.rstrip(".").lower().split()
    return {
        "the most frequent word": vocabulary[0] + " ",
        "a frequent word (rank 100)": vocabulary[99] + " ",
        "a rare word (rank 15,000)": vocabulary[14999] + " ",
        "two words": f"{vocabulary[30]} {vocabulary[300]} ",
        "a quoted phrase": f'"{words[3]} {words[4]} {words[5]}"',
        "a prefix being typed (3 letters)": vocabulary[400][:3],
        "a word and a prefix": f"{vocabulary[50]} {vocabulary[2000][:4]}",
        "no match": "zzzzzz ",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=5000)
    parser.add_argument("--messages", type=int, default=100000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as workdir:
        if not os.environ.get("DATABASE_URL"):
            os.environ["DATABASE_URL"] = f"sqlite:///{Path(workdir) / 'search.sqlite3'}"
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
        os.environ.setdefault("DJANGO_DEBUG", "1")
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection

        from chat.models import Message
        from chat.search import search

        call_command("migrate", verbosity=0)
        rng = random.Random(SEED)
        vocabulary = _words(rng)
        started = time.monotonic()
        _seed(args.conversations, args.messages, rng, vocabulary)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                for table in ("chat_message", "chat_conversation", "chat_message_search"):
                    cursor.execute(f"VACUUM ANALYZE {table}")
        else:
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        print(f"{connection.vendor}: seeded in {time.monotonic() - started:.0f} s")
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.get(username="bench-search")
        mine = Message.objects.filter(conversation__owner=user)
        print(
            f"bench-search: {user.conversations.count()} conversations, {mine.count()} messages; "
            f"all users: {Message.objects.count()} messages"
        )
        print(f"{'query':36} {'matches':>8} {'shown':>6} {'median':>8} {'slowest':>8}")
        from chat.search import matching_messages, parse

        for label, query in _queries(vocabulary).items():
            timings = []
            for run in range(args.runs + 2):
                start = time.perf_counter()
                hits = search(user.pk, query, limit=30)
                if run >= 2:
                    timings.append(time.perf_counter() - start)
            matches = matching_messages(user.pk, parse(query)).count()
            print(
                f"{label:36} {matches:>8} {len(hits):>6} {statistics.median(timings) * 1000:>6.1f} ms"
                f" {max(timings) * 1000:>6.1f} ms   {query!r}"
            )


if __name__ == "__main__":
    main()

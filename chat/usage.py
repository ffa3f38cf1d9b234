"""The usage ledger (UsageEntry): what each user used, written as answers start
and end, and the sums that quotas and the usage page read.

The ledger is never derived from messages: people delete conversations, and
deleting must not give usage back. Entries are only ever added."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db.models import Count, Min, Q, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from chat.models import Message, ModelPrice, Quota, UsageEntry

MILLION = Decimal(1_000_000)


def who(user_id: int) -> tuple[str, str]:
    """The user's name, and the group their usage is counted under (their first
    group by name), in one query."""
    row = (
        get_user_model()
        .objects.filter(pk=user_id)
        .annotate(first_group=Min("groups__name"))
        .values_list(get_user_model().USERNAME_FIELD, "first_group")
        .first()
    )
    return (row[0], row[1] or "") if row else ("", "")


def record_start(user_id: int, model: str, *, conversation_id: int, message_id: int) -> None:
    """An answer attempt starts: one `answer` entry, in the start's transaction."""
    username, group = who(user_id)
    UsageEntry.objects.create(
        kind=UsageEntry.Kind.ANSWER,
        user_id=user_id,
        username=username,
        group=group,
        model=model,
        conversation_id=conversation_id,
        message_id=message_id,
    )


def cost_of(model: str, prompt_tokens: int, completion_tokens: int) -> Decimal:
    price = ModelPrice.objects.filter(model=model).first()
    if price is None:
        return Decimal(0)
    return (prompt_tokens * price.input_per_million + completion_tokens * price.output_per_million) / MILLION


def record_end(
    message: Message,
    *,
    owner_id: int,
    status: str,
    prompt_tokens: int,
    completion_tokens: int,
    first_token_at: datetime | None,
    started_at: datetime,
    now: datetime,
) -> None:
    """An answer attempt ends: its tokens, cost, outcome and timings."""
    username, group = who(owner_id)
    first_token_ms = None
    if first_token_at is not None and first_token_at >= started_at:
        first_token_ms = round((first_token_at - started_at).total_seconds() * 1000)
    UsageEntry.objects.create(
        kind=UsageEntry.Kind.END,
        created_at=now,
        user_id=owner_id,
        username=username,
        group=group,
        model=message.model,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost=cost_of(message.model, prompt_tokens, completion_tokens),
        status=status,
        first_token_ms=first_token_ms,
        duration_ms=max(0, round((now - started_at).total_seconds() * 1000)),
        conversation_id=message.conversation_id,
        message_id=message.pk,
    )


# Periods and sums


def period_bounds(period: str, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The current period's start and the next one's (the reset), in the site's
    time zone."""
    now = timezone.localtime(now)
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == Quota.Period.MONTH:
        start = start.replace(day=1)
        following = (start + timedelta(days=32)).replace(day=1)
    else:
        following = start + timedelta(days=1)
    # Midnight of the next day in the zone, even across a daylight-saving change.
    return start, timezone.make_aware(following.replace(tzinfo=None))


@dataclass
class Spent:
    tokens: int = 0
    answers: int = 0
    cost: Decimal = Decimal(0)


def spent(entries: QuerySet[UsageEntry], since: datetime) -> Spent:
    """Tokens, answers started and cost of `entries` since `since`, in one query."""
    totals = entries.filter(created_at__gte=since).aggregate(
        prompt=Coalesce(Sum("prompt_tokens"), 0),
        completion=Coalesce(Sum("completion_tokens"), 0),
        answers=Count("pk", filter=Q(kind=UsageEntry.Kind.ANSWER)),
        cost=Coalesce(Sum("cost"), Decimal(0)),
    )
    return Spent(tokens=totals["prompt"] + totals["completion"], answers=totals["answers"], cost=totals["cost"])


def entries_counted_by(quota: Quota) -> QuerySet[UsageEntry]:
    """A user quota counts the user's entries; a group quota its members' together."""
    if quota.user_id is not None:
        return UsageEntry.objects.filter(user_id=quota.user_id)
    return UsageEntry.objects.filter(user__groups=quota.group_id)


def by_model(user_id: int, since: datetime) -> list[dict]:
    """A user's tokens and cost since `since`, per model."""
    rows = (
        UsageEntry.objects.filter(user_id=user_id, created_at__gte=since, kind=UsageEntry.Kind.END)
        .values("model")
        .annotate(
            answers=Count("pk"),
            prompt_tokens=Sum("prompt_tokens"),
            completion_tokens=Sum("completion_tokens"),
            cost=Sum("cost"),
        )
        .order_by("model")
    )
    return list(rows)

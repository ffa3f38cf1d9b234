"""The staff dashboard: how the product is used and whether it is healthy, from
the usage ledger (chat/usage.py).

Days that have ended are read from DailyUsage, the ledger summed once per day,
user, group and model, and DailyTiming, its first-token times counted per
bucket (TTFT_BUCKETS_MS) per day and model, from which the percentiles are read.
Only today's entries are read from the ledger itself. Each breakdown is summed
by the database: the dashboard's cost follows the number of days shown and of
active users and models, not the number of answers ever given.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import Case, Count, IntegerField, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from chat import charts
from chat.models import Conversation, DailyTiming, DailyUsage, Status, SummedDay, UsageEntry

# Upper bounds of the first-token buckets, in ms; the last bucket is everything slower.
TTFT_BUCKETS_MS = [50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000, 20000, 60000]
# A day is summed once it has been over this long: an answer ending at midnight
# on another worker has committed its entry by then.
SETTLE = timedelta(minutes=5)
WINDOWS = (7, 14, 30, 90)
# The slowest and failed answers of the day listed.
LISTED = 10

KEYS = ("user_id", "username", "group", "model")
SUMMED = ("answers", "errors", "interrupted", "stopped", "prompt_tokens", "completion_tokens", "cost")
# The same figures, from the ledger's end entries and from the daily sums.
FROM_LEDGER = {
    "answers": Count("pk"),
    "errors": Count("pk", filter=Q(status=Status.ERROR)),
    "interrupted": Count("pk", filter=Q(status=Status.INTERRUPTED)),
    "stopped": Count("pk", filter=Q(status=Status.STOPPED)),
    "prompt_tokens": Coalesce(Sum("prompt_tokens"), 0),
    "completion_tokens": Coalesce(Sum("completion_tokens"), 0),
    "cost": Coalesce(Sum("cost"), Decimal(0)),
}
FROM_SUMS = {name: Coalesce(Sum(name), 0) for name in SUMMED[:-1]} | {"cost": Coalesce(Sum("cost"), Decimal(0))}
# What each breakdown is keyed by, in the ledger and in the daily sums.
BREAKDOWNS = ("day", "model", "username", "group")
UNNAMED = {"model": "—", "username": "(deleted user)", "group": "(no group)"}


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = timezone.make_aware(datetime.combine(day, datetime.min.time()))
    return start, timezone.make_aware(datetime.combine(day + timedelta(days=1), datetime.min.time()))


def _ended_on(day: date) -> QuerySet[UsageEntry]:
    start, end = _day_bounds(day)
    return UsageEntry.objects.filter(kind=UsageEntry.Kind.END, created_at__gte=start, created_at__lt=end)


def _bucket() -> Case:
    whens = [When(first_token_ms__lte=bound, then=Value(i)) for i, bound in enumerate(TTFT_BUCKETS_MS)]
    return Case(*whens, default=Value(len(TTFT_BUCKETS_MS)), output_field=IntegerField())


def _histograms(entries: QuerySet[UsageEntry]) -> dict[str, list[int]]:
    """First-token times counted per bucket, per model: one query."""
    out: dict[str, list[int]] = {}
    timed = entries.filter(first_token_ms__isnull=False).annotate(bucket=_bucket())
    for row in timed.values("model", "bucket").annotate(n=Count("pk")).order_by():
        out.setdefault(row["model"], [0] * (len(TTFT_BUCKETS_MS) + 1))[row["bucket"]] += row["n"]
    return out


def sum_ended_days(first: date, now: datetime | None = None) -> None:
    """Sum each day from `first` that has ended (and settled) and is not summed
    yet into DailyUsage and DailyTiming. Each day in one transaction; a day
    summed meanwhile by another request is left as that request summed it."""
    now = now or timezone.now()
    today = timezone.localdate(now)
    summed = set(SummedDay.objects.filter(day__gte=first).values_list("day", flat=True))
    day = first
    while day < today:
        _, end = _day_bounds(day)
        if day not in summed and now >= end + SETTLE:
            try:
                with transaction.atomic():
                    SummedDay.objects.create(day=day)
                    entries = _ended_on(day)
                    rows = entries.values(*KEYS).annotate(**FROM_LEDGER).order_by()
                    DailyUsage.objects.bulk_create((DailyUsage(day=day, **row) for row in rows), batch_size=500)
                    DailyTiming.objects.bulk_create(
                        DailyTiming(day=day, model=model, first_token_histogram=histogram)
                        for model, histogram in _histograms(entries).items()
                    )
            except IntegrityError:
                pass
        day += timedelta(days=1)


# What the page shows


@dataclass
class Totals:
    answers: int = 0
    errors: int = 0
    interrupted: int = 0
    stopped: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal = Decimal(0)
    histogram: list[int] = field(default_factory=lambda: [0] * (len(TTFT_BUCKETS_MS) + 1))

    def add(self, row: dict) -> None:
        for name in SUMMED:
            setattr(self, name, getattr(self, name) + row[name])

    def add_times(self, histogram: list[int]) -> None:
        for i, count in enumerate(histogram):
            self.histogram[i] += count

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def rate(self, name: str) -> float:
        return getattr(self, name) / self.answers if self.answers else 0.0

    def percentile(self, fraction: float) -> int | None:
        """The bucket bound under which `fraction` of first tokens came (None
        past the last bound, or with no timings)."""
        total = sum(self.histogram)
        if not total:
            return None
        running = 0
        for i, count in enumerate(self.histogram):
            running += count
            if running >= fraction * total:
                return TTFT_BUCKETS_MS[i] if i < len(TTFT_BUCKETS_MS) else None
        return None


@dataclass
class Dashboard:
    days: list[date]
    by_day: dict[date, Totals]
    by_model: dict[str, Totals]
    by_user: dict[str, Totals]
    by_group: dict[str, Totals]
    overall: Totals
    slowest: list[dict]
    failed: list[dict]


def build(days: int, now: datetime | None = None) -> Dashboard:
    """The last `days` days, today included. Each breakdown is one GROUP BY over
    the daily sums and one over each day not summed yet (today, and a day still
    settling): a fixed number of queries, whatever the number of answers."""
    now = now or timezone.now()
    today = timezone.localdate(now)
    first = today - timedelta(days=days - 1)
    sum_ended_days(first, now)
    day_list = [first + timedelta(days=i) for i in range(days)]
    summed = set(SummedDay.objects.filter(day__gte=first).values_list("day", flat=True))
    unsummed = [day for day in day_list if day not in summed]
    daily = DailyUsage.objects.filter(day__gte=first, day__lte=today)
    board = Dashboard(day_list, {d: Totals() for d in day_list}, {}, {}, {}, Totals(), [], [])
    tables = dict(zip(BREAKDOWNS, (board.by_day, board.by_model, board.by_user, board.by_group), strict=True))
    for key, table in tables.items():
        for row in daily.values(key).annotate(**FROM_SUMS).order_by():
            table.setdefault(row[key] or UNNAMED.get(key), Totals()).add(row)
        for day in unsummed:
            if key == "day":
                board.by_day[day].add(_ended_on(day).aggregate(**FROM_LEDGER))
                continue
            for row in _ended_on(day).values(key).annotate(**FROM_LEDGER).order_by():
                table.setdefault(row[key] or UNNAMED[key], Totals()).add(row)
    for row in DailyTiming.objects.filter(day__gte=first).values("model", "first_token_histogram"):
        board.by_model.setdefault(row["model"] or UNNAMED["model"], Totals()).add_times(row["first_token_histogram"])
    for day in unsummed:
        for model, histogram in _histograms(_ended_on(day)).items():
            board.by_model.setdefault(model or UNNAMED["model"], Totals()).add_times(histogram)
    for totals in board.by_day.values():
        board.overall.add(vars(totals))
    board.slowest, board.failed = _todays_worst(now)
    return board


def _todays_worst(now: datetime) -> tuple[list[dict], list[dict]]:
    """Today's slowest answers and its failed ones, each with a link to its
    transcript when the conversation still exists: three queries."""
    start, _ = _day_bounds(timezone.localdate(now))
    today = UsageEntry.objects.filter(kind=UsageEntry.Kind.END, created_at__gte=start)
    columns = ("created_at", "username", "model", "status", "duration_ms", "first_token_ms", "conversation_id")
    slowest = list(today.filter(duration_ms__isnull=False).order_by("-duration_ms").values(*columns)[:LISTED])
    failed = list(
        today.filter(status__in=[Status.ERROR, Status.INTERRUPTED]).order_by("-created_at").values(*columns)[:LISTED]
    )
    ids = {row["conversation_id"] for row in slowest + failed if row["conversation_id"]}
    existing = set(Conversation.objects.filter(pk__in=ids).values_list("pk", flat=True))
    for row in slowest + failed:
        row["has_transcript"] = row["conversation_id"] in existing
    return slowest, failed


# The page


def _ranked(totals: dict[str, Totals], limit: int = 20) -> list[tuple[str, Totals]]:
    return sorted(totals.items(), key=lambda item: (-item[1].tokens, item[0]))[:limit]


def _with_meters(ranked: list[tuple[str, Totals]]) -> list[dict]:
    largest = max((t.tokens for _, t in ranked), default=0)
    return [{"name": name, "t": t, "meter": charts.meter(t.tokens, largest)} for name, t in ranked]


def page(request: HttpRequest) -> HttpResponse:
    """Admin's dashboard: staff (admin.site.admin_view) who may view the usage
    ledger, whose figures it shows (every user's names, tokens and cost)."""
    if not request.user.has_perm("chat.view_usageentry"):
        raise PermissionDenied
    try:
        days = int(request.GET.get("days", 14))
    except ValueError:
        days = 14
    days = days if days in WINDOWS else 14
    board = build(days)
    labels = [d.strftime("%b %-d") for d in board.days]
    per_day = [board.by_day[d] for d in board.days]
    answers_chart = charts.stacked_bars(
        labels,
        [
            ("complete", "bar-ok", [t.answers - t.errors - t.interrupted - t.stopped for t in per_day]),
            ("stopped", "bar-stopped", [t.stopped for t in per_day]),
            ("interrupted", "bar-interrupted", [t.interrupted for t in per_day]),
            ("error", "bar-error", [t.errors for t in per_day]),
        ],
        title="Answers per day, by how they ended",
    )
    rates_chart = charts.stacked_bars(
        labels,
        [
            ("% error", "bar-error", [100 * t.rate("errors") for t in per_day]),
            ("% interrupted", "bar-interrupted", [100 * t.rate("interrupted") for t in per_day]),
            ("% stopped", "bar-stopped", [100 * t.rate("stopped") for t in per_day]),
        ],
        title="Error, interruption and stop rates per day (percent of answers)",
    )
    models = _ranked(board.by_model)
    slowest_p95 = max((t.percentile(0.95) or TTFT_BUCKETS_MS[-1] for _, t in models), default=0)
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "days": days,
        "windows": WINDOWS,
        "board": board,
        "answers_chart": answers_chart,
        "rates_chart": rates_chart,
        "models": [
            {
                **row,
                "p50": row["t"].percentile(0.5),
                "p95": row["t"].percentile(0.95),
                "p95_meter": charts.meter(
                    row["t"].percentile(0.95) or TTFT_BUCKETS_MS[-1], slowest_p95, css="bar-time"
                ),
            }
            for row in _with_meters(models)
        ],
        "users": _with_meters(_ranked(board.by_user)),
        "groups": _with_meters(_ranked(board.by_group)),
        "last_bucket": TTFT_BUCKETS_MS[-1],
    }
    return TemplateResponse(request, "admin/chat/dashboard.html", context)

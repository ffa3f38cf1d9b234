"""Quotas: what a user, or a group together, may use per day or month, checked
before an answer starts against the usage ledger (chat/usage.py).

The check runs in the start's transaction, after the user's row is locked
(chat/answers.py `_check_rate`); a group quota also locks its group's row, so two
members starting at once on two workers take turns, as one user's starts do.
An answer that crosses a quota while it is written finishes; the next is refused.
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.contrib.auth.models import Group
from django.db.models import Q
from django.utils import timezone
from django.utils.timesince import timeuntil

from chat.models import Quota
from chat.usage import Spent, by_model, entries_counted_by, period_bounds, spent


class QuotaReached(Exception):
    """The message says which quota and when it resets."""


@dataclass
class QuotaState:
    """One quota that applies to a user, with what was spent against it."""

    quota: Quota
    spent: Spent
    resets_at: datetime

    @property
    def owner(self) -> str:
        if self.quota.user_id is not None:
            return "your"
        return f"the group “{self.quota.group.name}”’s"

    def reached(self) -> str | None:
        """What is used up, in words, or None."""
        q, used = self.quota, self.spent
        if q.max_answers is not None and used.answers >= q.max_answers:
            return f"{used.answers:,} of {self.owner} {q.max_answers:,} answers"
        if q.max_tokens is not None and used.tokens >= q.max_tokens:
            return f"{used.tokens:,} of {self.owner} {q.max_tokens:,} tokens"
        if q.max_cost is not None and used.cost >= q.max_cost:
            return f"{_money(used.cost)} of {self.owner} {_money(q.max_cost)} budget"
        return None


def _money(amount: Decimal) -> str:
    return f"${amount:,.2f}"


def quotas_of(user_id: int) -> list[Quota]:
    return list(
        Quota.objects.filter(Q(user_id=user_id) | Q(group__user__id=user_id)).select_related("group").order_by("pk")
    )


def states(quotas: list[Quota], now: datetime | None = None) -> list[QuotaState]:
    """Each quota with its period's spending: one query per quota."""
    now = now or timezone.now()
    out = []
    for quota in quotas:
        start, resets_at = period_bounds(quota.period, now)
        out.append(QuotaState(quota, spent(entries_counted_by(quota), start), resets_at))
    return out


def check(user_id: int) -> None:
    """Refuse to start an answer when a quota of the user's is used up. Runs in
    the start's transaction, after the user's row is locked."""
    quotas = quotas_of(user_id)
    group_ids = sorted({q.group_id for q in quotas if q.group_id is not None})
    if group_ids:
        # In id order, so two starts never wait on each other's groups.
        list(Group.objects.select_for_update().filter(pk__in=group_ids).order_by("pk").values_list("pk"))
    now = timezone.now()
    for state in states(quotas, now):
        used = state.reached()
        if used is not None:
            period = "today" if state.quota.period == Quota.Period.DAY else "this month"
            local = timezone.localtime(state.resets_at)
            raise QuotaReached(
                f"You have used {used} {period}. The quota resets at {local:%H:%M} {local.tzname()} on "
                f"{local:%-d %B} (in {timeuntil(state.resets_at, now)})."
            )


def usage_summary(user_id: int) -> dict:
    """What a user's settings page shows of their usage: this month by model, and
    each quota that applies with what was spent against it."""
    now = timezone.now()
    month_start, _ = period_bounds(Quota.Period.MONTH, now)
    rows = by_model(user_id, month_start)
    applying = states(quotas_of(user_id), now)
    return {
        "by_model": rows,
        "month_tokens": sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows),
        "month_cost": sum(r["cost"] for r in rows),
        "quotas": [
            {
                "state": s,
                "limits": [
                    (label, used, limit)
                    for label, used, limit in (
                        ("Answers", s.spent.answers, s.quota.max_answers),
                        ("Tokens", s.spent.tokens, s.quota.max_tokens),
                        ("Cost", s.spent.cost, s.quota.max_cost),
                    )
                    if limit is not None
                ],
            }
            for s in applying
        ],
    }

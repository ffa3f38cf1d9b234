"""A user's own usage: what they used this day and month, by model, against
the quotas that apply to them (from the usage ledger, chat/usage.py)."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from chat import quotas
from chat.models import Quota
from chat.serving.login import login_required
from chat.usage import by_model, period_bounds


@require_GET
@login_required
def usage(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    month_start, _ = period_bounds(Quota.Period.MONTH, now)
    rows = by_model(request.user.pk, month_start)
    states = quotas.states(quotas.quotas_of(request.user.pk), now)
    return render(
        request,
        "chat/usage.html",
        {
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
                for s in states
            ],
        },
    )

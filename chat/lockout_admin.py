"""Failed sign-ins in the admin, with what they lock.

django-axes stores a row per username, address and browser. A username is locked
out when its failures within the cool-off, summed over all its rows, reach the
limit, and so is an address. Axes' own list judges each row alone: an address
that tried many usernames once each would look harmless there. Deleting the
rows of a username or an address lifts its lockout.
"""

from axes.admin import AccessAttemptAdmin as AxesAccessAttemptAdmin
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib import admin
from django.db.models import OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.utils import timezone

LOCKED_BY = (("username", "username_failures"), ("address", "address_failures"))


def _recent_failures(field: str) -> Coalesce:
    """The failures that still count for the row's value of `field`, over all rows."""
    since = timezone.now() - settings.AXES_COOLOFF_TIME
    total = (
        AccessAttempt.objects.filter(attempt_time__gte=since, **{field: OuterRef(field)})
        .values(field)
        .annotate(total=Sum("failures_since_start"))
        .values("total")
    )
    return Coalesce(Subquery(total), 0)


class LockedOutFilter(admin.SimpleListFilter):
    title = "locked out"
    parameter_name = "locked"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        locked = Q(username_failures__gte=settings.AXES_FAILURE_LIMIT) | Q(
            address_failures__gte=settings.AXES_FAILURE_LIMIT
        )
        if self.value() == "yes":
            return queryset.filter(locked)
        if self.value() == "no":
            return queryset.exclude(locked)
        return queryset


@admin.register(AccessAttempt)
class AccessAttemptAdmin(AxesAccessAttemptAdmin):
    list_display = [
        "attempt_time",
        "username",
        "ip_address",
        "user_agent",
        "path_info",
        "failures_since_start",
        "locks",
    ]
    list_filter = [LockedOutFilter, "attempt_time", "path_info"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .annotate(username_failures=_recent_failures("username"), address_failures=_recent_failures("ip_address"))
        )

    @admin.display(description="locked out")
    def locks(self, attempt: AccessAttempt) -> str:
        locked = [what for what, total in LOCKED_BY if getattr(attempt, total) >= settings.AXES_FAILURE_LIMIT]
        return " and ".join(locked) or "no"

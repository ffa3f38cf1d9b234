"""Admin for what usage is measured against: quotas and model prices (changes
are in the audit trail), and the usage ledger itself, which is read-only."""

from django.contrib import admin

from chat.audit import AuditedAdmin, ReadOnlyAdmin
from chat.models import ModelPrice, Quota, UsageEntry


@admin.register(Quota)
class QuotaAdmin(AuditedAdmin):
    list_display = ["__str__", "user", "group", "period", "max_tokens", "max_answers", "max_cost"]
    list_filter = ["period", "group"]
    list_select_related = ["user", "group"]
    autocomplete_fields = ["user", "group"]
    fieldsets = [
        (
            None,
            {
                "fields": ["user", "group", "period", "max_tokens", "max_answers", "max_cost"],
                "description": "For one user or for a group together, not both. An empty limit does not apply. "
                "A day or month starts at midnight in the site's time zone.",
            },
        )
    ]


@admin.register(ModelPrice)
class ModelPriceAdmin(AuditedAdmin):
    list_display = ["model", "input_per_million", "output_per_million"]
    search_fields = ["model"]


@admin.register(UsageEntry)
class UsageEntryAdmin(ReadOnlyAdmin):
    """The ledger is append-only: read here, never changed or deleted."""

    list_display = [
        "created_at",
        "kind",
        "username",
        "group",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "cost",
        "status",
        "first_token_ms",
    ]
    list_filter = ["kind", "status", "model", "group"]
    search_fields = ["username", "model", "group"]
    date_hierarchy = "created_at"
    list_per_page = 100
    show_full_result_count = False

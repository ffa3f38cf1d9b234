"""The audit trail: what staff did with other people's data and to the site's
settings (who, when, what, from where), one AuditEntry per action.

`record` writes an entry; `AuditedAdmin` records every add, change and delete
made through an admin class (quotas, prices, providers and their models, the
site's settings, tool servers). The
review admin records opening a transcript, exporting, flagging and reviewing.
"""

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from chat.models import AuditEntry

# The longest detail kept: a change message lists field names, not values.
MAX_DETAIL = 2000


def _address(request: HttpRequest) -> str | None:
    # REMOTE_ADDR as the server saw it: a forwarded-for header is the client's claim.
    return request.META.get("REMOTE_ADDR") or None


def record(request: HttpRequest, action: str, target: Model | None = None, detail: str = "") -> None:
    user = request.user
    AuditEntry.objects.create(
        actor=user if user.is_authenticated else None,
        actor_name=user.get_username() if user.is_authenticated else "",
        action=action,
        target_type=target._meta.label if target is not None else "",
        target_id=str(target.pk) if target is not None and target.pk is not None else "",
        target=str(target)[:200] if target is not None else "",
        detail=detail[:MAX_DETAIL],
        address=_address(request),
    )


def record_many(request: HttpRequest, action: str, queryset: QuerySet) -> None:
    """One entry per object an action touched, in one statement."""
    user = request.user
    AuditEntry.objects.bulk_create(
        AuditEntry(
            actor=user,
            actor_name=user.get_username(),
            action=action,
            target_type=obj._meta.label,
            target_id=str(obj.pk),
            target=str(obj)[:200],
            address=_address(request),
        )
        for obj in queryset
    )


class AuditedAdmin(admin.ModelAdmin):
    """An admin whose adds, changes and deletes are in the audit trail, with the
    fields that changed (never their values: a key field's value is a secret)."""

    def save_model(self, request: HttpRequest, obj, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        changed = ", ".join(form.changed_data) if change else ""
        record(request, "changed" if change else "added", obj, f"fields: {changed}" if changed else "")

    def save_formset(self, request: HttpRequest, form, formset, change: bool) -> None:
        super().save_formset(request, form, formset, change)
        # What its inlines added, changed and deleted (an offered model of a provider).
        for obj in formset.new_objects:
            record(request, "added", obj)
        for obj, fields in formset.changed_objects:
            record(request, "changed", obj, f"fields: {', '.join(fields)}")
        for obj in formset.deleted_objects:
            record(request, "deleted", obj)

    def delete_model(self, request: HttpRequest, obj) -> None:
        record(request, "deleted", obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        record_many(request, "deleted", queryset)
        super().delete_queryset(request, queryset)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records nobody adds, changes or deletes in the admin: the audit trail, the
    usage ledger, users' feedback."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    """Append-only: nobody changes or deletes an entry here."""

    list_display = ["at", "actor_name", "action", "target_type", "target", "address"]
    list_filter = ["action", "target_type", ("actor", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["actor_name", "target", "detail"]
    date_hierarchy = "at"
    list_per_page = 100
    show_full_result_count = False

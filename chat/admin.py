"""Staff review of stored conversations.

Everything the product stored is read-only here: staff see a conversation as its
user saw it (the transcript) and may only flag it, note on it and mark it
reviewed. Saving writes the review fields alone, so a review never overwrites an
answer that is still being generated.
"""

import copy

from django import forms
from django.contrib import admin
from django.db.models import (
    Case,
    Count,
    Exists,
    IntegerField,
    Max,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.text import smart_split, unescape_string_literal

# Imported for what they register: providers and the site's settings; failed
# sign-ins and lockouts; quotas, prices and the usage ledger.
from chat import audit, catalog_admin, lockout_admin, usage_admin  # noqa: F401
from chat.export import conversations_as_csv, conversations_as_json
from chat.mcp import admin as mcp_admin  # noqa: F401 (registers MCP servers and their tools)
from chat.models import (
    STATUS_SEVERITY,
    Conversation,
    Feedback,
    Generation,
    Message,
    Status,
    StopReason,
    ToolCall,
)
from chat.rendering import message_segments
from chat.tools import admin as tools_admin  # noqa: F401 (registers built-in tools' policies)

REVIEW_FIELDS = ["flagged", "review_note", "reviewed_at", "reviewed_by"]
SEVERITY_STATUS = {severity: status for status, severity in STATUS_SEVERITY.items()}


# Per-conversation figures, as correlated subqueries: one query for the whole
# page, and no join on messages that could duplicate rows or inflate sums.


def _per_conversation(aggregate, **filters) -> Subquery:
    rows = Message.objects.filter(conversation=OuterRef("pk"), **filters).order_by().values("conversation")
    return Subquery(rows.annotate(value=aggregate).values("value"), output_field=IntegerField())


def _severity() -> Case:
    whens = [When(status=status, then=Value(severity)) for status, severity in STATUS_SEVERITY.items()]
    return Case(*whens, output_field=IntegerField())


def _tokens() -> Sum:
    zero = Value(0)
    tokens = Coalesce("prompt_tokens", zero) + Coalesce("completion_tokens", zero)
    return Sum(tokens, output_field=IntegerField())


def annotate_conversations(queryset: QuerySet[Conversation]) -> QuerySet[Conversation]:
    return queryset.annotate(
        message_count=Coalesce(_per_conversation(Count("pk")), 0),
        total_tokens=Coalesce(_per_conversation(_tokens()), 0),
        worst_severity=_per_conversation(Max(_severity()), role=Message.Role.ASSISTANT),
    )


def _has_message(**filters) -> Exists:
    return Exists(Message.objects.filter(conversation=OuterRef("pk"), **filters))


# Filters


class WorstStatusFilter(admin.SimpleListFilter):
    title = "worst answer status"
    parameter_name = "worst_status"

    def lookups(self, request, model_admin):
        return sorted(Status.choices, key=lambda choice: -STATUS_SEVERITY[choice[0]])

    def queryset(self, request, queryset):
        if self.value() in STATUS_SEVERITY:
            return queryset.filter(worst_severity=STATUS_SEVERITY[self.value()])
        return queryset


class _AnyAnswerFilter(admin.SimpleListFilter):
    """Conversations with at least one message whose `parameter_name` field has
    the chosen value."""

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(_has_message(**{self.parameter_name: self.value()}))
        return queryset


class StopReasonFilter(_AnyAnswerFilter):
    title = "stop reason (any answer)"
    parameter_name = "stop_reason"

    def lookups(self, request, model_admin):
        return [(value, label) for value, label in StopReason.choices if value]


class ModelFilter(_AnyAnswerFilter):
    title = "model (any answer)"
    parameter_name = "model"

    def lookups(self, request, model_admin):
        models = Message.objects.exclude(model="").order_by("model").values_list("model", flat=True).distinct()
        return [(name, name) for name in models]


class ReviewedFilter(admin.SimpleListFilter):
    title = "reviewed"
    parameter_name = "reviewed"

    def lookups(self, request, model_admin):
        return [("yes", "Reviewed"), ("no", "Unreviewed")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(reviewed_at__isnull=self.value() == "no")
        return queryset


# Review: the only thing staff change.


class ReviewForm(forms.ModelForm):
    reviewed = forms.BooleanField(
        required=False,
        label="Mark reviewed",
        help_text="Ticking records you and the current time as the reviewer; unticking clears both.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["reviewed"].initial = self.instance.reviewed_at is not None


class ReviewAdmin(admin.ModelAdmin):
    """Stored content is read-only; staff with change permission edit the review fields."""

    form = ReviewForm
    review_fieldset = ("Review", {"fields": ["flagged", "review_note", "reviewed", "reviewed_by", "reviewed_at"]})
    actions = ["flag", "unflag", "mark_reviewed"]

    class Media:
        # Code in answers is highlighted as on the chat page.
        css = {"all": ["chat/highlight.css"]}

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        if request.method == "GET" and response.status_code == 200:
            # Staff read someone's conversation: the audit trail says who and when.
            audit.record(request, "opened", response.context_data["original"])
        return response

    def save_model(self, request: HttpRequest, obj, form, change: bool) -> None:
        if "reviewed" in form.cleaned_data:
            if not form.cleaned_data["reviewed"]:
                obj.reviewed_by, obj.reviewed_at = None, None
            elif obj.reviewed_at is None:
                obj.reviewed_by, obj.reviewed_at = request.user, timezone.now()
        obj.save(update_fields=REVIEW_FIELDS)
        audit.record(request, "reviewed", obj, f"fields: {', '.join(form.changed_data)}")

    @admin.display(boolean=True, description="reviewed", ordering="reviewed_at")
    def reviewed(self, obj) -> bool:
        return obj.reviewed_at is not None

    @admin.action(permissions=["change"], description="Flag selected")
    def flag(self, request: HttpRequest, queryset: QuerySet) -> None:
        audit.record_many(request, "flagged", queryset)
        count = queryset.update(flagged=True)
        self.message_user(request, f"Flagged {count}.")

    @admin.action(permissions=["change"], description="Unflag selected")
    def unflag(self, request: HttpRequest, queryset: QuerySet) -> None:
        audit.record_many(request, "unflagged", queryset)
        count = queryset.update(flagged=False)
        self.message_user(request, f"Unflagged {count}.")

    @admin.action(permissions=["change"], description="Mark selected reviewed")
    def mark_reviewed(self, request: HttpRequest, queryset: QuerySet) -> None:
        audit.record_many(request, "marked reviewed", queryset)
        count = queryset.update(reviewed_by=request.user, reviewed_at=timezone.now())
        self.message_user(request, f"Marked {count} reviewed.")


# The transcript: the conversation as its user saw it, every branch of it.


def _answer_parts(message: Message, calls: list[ToolCall], generations: list[Generation]) -> list[dict]:
    """The answer's text and tool cards cut at each seam (where a Continue began).

    Each part is rendered by `message_segments` as the chat page renders a whole
    answer; a tool call sitting exactly on a seam belongs to the attempt whose
    events include it.
    """
    content = message.content
    seams = sorted((g for g in generations if g.text_offset > 0), key=lambda g: (g.text_offset, g.start_seq))
    bounds = [0] + [min(g.text_offset, len(content)) for g in seams] + [len(content)]
    parts = []
    for index in range(len(seams) + 1):
        start, end = bounds[index], bounds[index + 1]
        piece = copy.copy(message)
        piece.content = content[start:end]
        piece_calls = []
        for call in calls:
            if _part_of(call, seams) == index:
                shifted = copy.copy(call)
                shifted.text_offset = max(call.text_offset - start, 0)
                piece_calls.append(shifted)
        seam = seams[index - 1] if index else None
        parts.append({"seam": seam, "segments": message_segments(piece, piece_calls)})
    return parts


def _part_of(call: ToolCall, seams: list[Generation]) -> int:
    index = 0
    for number, seam in enumerate(seams, start=1):
        if call.text_offset > seam.text_offset or (
            call.text_offset == seam.text_offset and call.start_seq > seam.start_seq
        ):
            index = number
    return index


def _feedback_of(message: Message) -> Feedback | None:
    try:
        return message.feedback
    except Message.feedback.RelatedObjectDoesNotExist:
        return None


def _entry(message: Message, *, on_branch: bool = True, alternative: tuple[int, int] | None = None) -> dict:
    calls = list(message.tool_calls.all())
    generations = list(message.generations.all())
    is_answer = message.role == Message.Role.ASSISTANT
    return {
        "m": message,
        "parts": _answer_parts(message, calls, generations) if is_answer else [],
        "generations": generations,
        "feedback": _feedback_of(message),
        "on_branch": on_branch,
        "alternative": alternative,
    }


def _tree_entries(messages: list[Message], active_leaf_id: int | None) -> list[dict]:
    """Every message of a conversation, each branch in full: depth first, the
    alternatives at each point in the order they were written. Each is marked
    with its place among its alternatives, and whether it is on the branch the
    user has on screen (the path to the active leaf)."""
    by_id = {m.pk: m for m in messages}
    children: dict[int | None, list[Message]] = {}
    for m in messages:
        # A parent missing from the list cannot happen but must not hide a message.
        children.setdefault(m.parent_id if m.parent_id in by_id else None, []).append(m)
    on_branch = set()
    at = active_leaf_id if active_leaf_id in by_id else None
    while at is not None:
        on_branch.add(at)
        at = by_id[at].parent_id
    entries = []
    stack = list(reversed(children.get(None, [])))
    while stack:
        m = stack.pop()
        siblings = children[m.parent_id if m.parent_id in by_id else None]
        place = (siblings.index(m) + 1, len(siblings)) if len(siblings) > 1 else None
        entries.append(_entry(m, on_branch=m.pk in on_branch, alternative=place))
        stack.extend(reversed(children.get(m.pk, [])))
    return entries


def _messages_for_review() -> QuerySet[Message]:
    return (
        Message.objects.order_by("created_at", "id")
        .select_related("feedback", "reviewed_by")
        .prefetch_related(
            Prefetch("tool_calls", queryset=ToolCall.objects.order_by("start_seq", "id")),
            Prefetch("generations", queryset=Generation.objects.order_by("started_at", "id")),
        )
    )


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} s"


def _export_name(extension: str) -> str:
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    return f'attachment; filename="conversations-{stamp}.{extension}"'


@admin.register(Conversation)
class ConversationAdmin(ReviewAdmin):
    list_display = [
        "title",
        "owner",
        "message_count",
        "updated_at",
        "worst_status",
        "total_tokens",
        "flagged",
        "reviewed",
    ]
    list_filter = [
        ("owner", admin.RelatedOnlyFieldListFilter),
        WorstStatusFilter,
        StopReasonFilter,
        ModelFilter,
        "flagged",
        ReviewedFilter,
    ]
    list_select_related = ["owner"]
    date_hierarchy = "updated_at"
    # Searched by get_search_results without a join, so no row is listed twice.
    search_fields = ["title", "messages__content"]
    search_help_text = "Searches conversation titles and the text of every message."
    ordering = ["-updated_at", "-id"]
    list_per_page = 50
    show_full_result_count = False
    actions = [*ReviewAdmin.actions, "export_json", "export_csv"]
    readonly_fields = ["title", "owner", "created_at", "updated_at", "transcript", "reviewed_by", "reviewed_at"]
    fieldsets = [
        (None, {"fields": ["title", "owner", "created_at", "updated_at"]}),
        ReviewAdmin.review_fieldset,
        ("Transcript", {"fields": ["transcript"], "classes": ["wide"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        return annotate_conversations(super().get_queryset(request).select_related("owner"))

    def get_search_results(self, request: HttpRequest, queryset, search_term: str):
        # The same rule as Django's search (every word must match a title or a
        # message) but with EXISTS, so results need no DISTINCT.
        for bit in smart_split(search_term):
            if bit.startswith(('"', "'")) and bit[0] == bit[-1]:
                bit = unescape_string_literal(bit)
            queryset = queryset.filter(Q(title__icontains=bit) | _has_message(content__icontains=bit))
        return queryset, False

    @admin.display(description="messages", ordering="message_count")
    def message_count(self, obj: Conversation) -> int:
        return obj.message_count

    @admin.display(description="tokens", ordering="total_tokens")
    def total_tokens(self, obj: Conversation) -> int:
        return obj.total_tokens

    @admin.display(description="worst status", ordering="worst_severity")
    def worst_status(self, obj: Conversation) -> str:
        status = SEVERITY_STATUS.get(obj.worst_severity)
        return "—" if status is None else status.label

    @admin.display(description="transcript")
    def transcript(self, obj: Conversation) -> str:
        messages = list(_messages_for_review().filter(conversation=obj).order_by("id"))
        return render_to_string(
            "admin/chat/conversation_transcript.html", {"entries": _tree_entries(messages, obj.active_leaf_id)}
        )

    @admin.action(permissions=["view"], description="Export selected as JSON")
    def export_json(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> HttpResponse:
        audit.record_many(request, "exported", queryset)
        response = HttpResponse(conversations_as_json(queryset), content_type="application/json; charset=utf-8")
        response["Content-Disposition"] = _export_name("json")
        return response

    @admin.action(permissions=["view"], description="Export selected as CSV")
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> HttpResponse:
        audit.record_many(request, "exported", queryset)
        response = HttpResponse(conversations_as_csv(queryset), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = _export_name("csv")
        return response


class FeedbackRatingFilter(admin.SimpleListFilter):
    title = "feedback"
    parameter_name = "feedback"

    def lookups(self, request, model_admin):
        return [("1", "👍 Good"), ("-1", "👎 Bad"), ("none", "No feedback")]

    def queryset(self, request, queryset):
        if self.value() in ("1", "-1"):
            return queryset.filter(feedback__rating=int(self.value()))
        if self.value() == "none":
            return queryset.filter(feedback__isnull=True)
        return queryset


@admin.register(Message)
class MessageAdmin(ReviewAdmin):
    list_display = [
        "__str__",
        "conversation",
        "role",
        "status",
        "stop_reason",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "created_at",
        "flagged",
        "reviewed",
    ]
    list_filter = ["role", "status", "stop_reason", "model", "flagged", ReviewedFilter, FeedbackRatingFilter]
    list_select_related = ["conversation"]
    search_fields = ["content"]
    date_hierarchy = "created_at"
    ordering = ["-created_at", "-id"]
    list_per_page = 50
    show_full_result_count = False
    readonly_fields = [
        "conversation",
        "role",
        "status",
        "stop_reason",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "timing",
        "created_at",
        "parent",
        "rendered",
        "reviewed_by",
        "reviewed_at",
    ]
    fieldsets = [
        (None, {"fields": ["conversation", "role", "status", "stop_reason", "model", "parent"]}),
        ("Usage", {"fields": ["prompt_tokens", "completion_tokens", "created_at", "timing"]}),
        ReviewAdmin.review_fieldset,
        ("Content", {"fields": ["rendered"], "classes": ["wide"]}),
    ]

    @admin.display(description="timing")
    def timing(self, obj: Message) -> str:
        rate = obj.tokens_per_second
        thought = f" · thought for {_seconds(obj.reasoning_seconds)}" if obj.reasoning else ""
        return (
            f"first token {_seconds(obj.first_token_seconds)} · total {_seconds(obj.total_seconds)}"
            f" · {'—' if rate is None else f'{rate:.1f}'} tokens/s{thought}"
        )

    @admin.display(description="content")
    def rendered(self, obj: Message) -> str:
        message = _messages_for_review().get(pk=obj.pk)
        return render_to_string("admin/chat/_transcript_message.html", {"e": _entry(message)})


@admin.register(Feedback)
class FeedbackAdmin(audit.ReadOnlyAdmin):
    list_display = ["message", "rating", "comment", "user", "created_at"]
    list_filter = ["rating"]
    list_select_related = ["message", "user"]
    ordering = ["-created_at", "-id"]
    list_per_page = 50
    show_full_result_count = False

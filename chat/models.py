"""What the product stores: conversations, their messages, each answer attempt
(Generation), the tool calls an answer made, users' feedback; and the models on
offer (providers, their models), site-wide and personal instructions; users'
accounts at the single sign-on provider."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class Reviewable(models.Model):
    """Fields staff use to review stored content in admin."""

    flagged = models.BooleanField(default=False, db_index=True)
    review_note = models.TextField(blank=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        abstract = True


class Conversation(Reviewable):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, default="New chat")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now, db_index=True)
    # The last message of the branch on screen. Kept here, not in the browser, so
    # a reload, a second tab and another device show the same branch.
    active_leaf = models.ForeignKey("Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The model chosen in the composer, used for the conversation's next answers
    # (none: the site's default).
    model_option = models.ForeignKey(
        "OfferedModel", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name="model"
    )

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [models.Index(fields=["owner", "-updated_at"])]

    def __str__(self) -> str:
        return self.title


class Status(models.TextChoices):
    STREAMING = "streaming", "Generating"
    COMPLETE = "complete", "Complete"
    STOPPED = "stopped", "Stopped"
    ERROR = "error", "Error"
    INTERRUPTED = "interrupted", "Interrupted"


class StopReason(models.TextChoices):
    NONE = "", "—"
    USER_STOP = "user_stop", "Stopped by the user"
    PROVIDER_ERROR = "provider_error", "Model provider error"
    SERVER_RESTART = "server_restart", "Server restarted"
    TOKEN_LIMIT = "token_limit", "Reached the token limit"
    TOOL_ROUND_LIMIT = "tool_round_limit", "Too many tool rounds"
    UNWATCHED = "unwatched", "Nobody was watching"
    ANSWER_LIMIT = "answer_limit", "Reached the answer length limit"
    INTERNAL_ERROR = "internal_error", "Server error"
    # Too many tool calls at once, oversized tool arguments or stream lines.
    OUTPUT_LIMIT = "output_limit", "The model's output went past a limit"


# Worst first: the admin shows a conversation's worst answer status.
STATUS_SEVERITY = {
    Status.ERROR: 4,
    Status.INTERRUPTED: 3,
    Status.STOPPED: 2,
    Status.STREAMING: 1,
    Status.COMPLETE: 0,
}


class Message(Reviewable):
    class Role(models.TextChoices):
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=10, choices=Role.choices)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.COMPLETE, db_index=True)
    stop_reason = models.CharField(max_length=20, choices=StopReason.choices, blank=True, db_index=True)
    error = models.TextField(blank=True)
    # The provider's name for the model that wrote the answer, and the offered
    # model it was chosen as (none: the environment's model, or one since removed).
    model = models.CharField(max_length=100, blank=True, db_index=True)
    model_option = models.ForeignKey(
        "OfferedModel", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name="offered model"
    )
    # A reasoning model's thinking, streamed before (and between) its answer text;
    # shown in a collapsible block, never sent back to the model unless its
    # provider wants it. `reasoning_seconds`: how long it thought before answering.
    reasoning = models.TextField(blank=True)
    reasoning_seconds = models.FloatField(null=True, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    first_token_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Refreshed by the running generation; a stale one means its process died.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Sequence number of the last event whose effect `content` (and the tool
    # calls) include: a page rendered from this row resumes its stream after it.
    last_seq = models.PositiveIntegerField(default=0)
    # A conversation is a tree (chat/tree.py): an answer's parent is its prompt, a
    # prompt's the answer it follows (none for a first prompt). Editing a prompt or
    # regenerating an answer adds a sibling; nothing is overwritten.
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.role} #{self.pk}"

    @property
    def is_streaming(self) -> bool:
        return self.status == Status.STREAMING

    def assume_no_feedback(self) -> None:
        """Reading `feedback` gives None without a query. For a message just
        created: feedback is refused while an answer streams."""
        Message.feedback.related.set_cached_value(self, None)

    @property
    def can_continue(self) -> bool:
        # An answer at the length limit would stop again at once.
        return (
            self.role == self.Role.ASSISTANT
            and self.status in (Status.STOPPED, Status.ERROR, Status.INTERRUPTED)
            and self.stop_reason != StopReason.ANSWER_LIMIT
        )

    @property
    def total_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.created_at).total_seconds()

    @property
    def first_token_seconds(self) -> float | None:
        if self.first_token_at is None:
            return None
        return (self.first_token_at - self.created_at).total_seconds()

    @property
    def tokens_per_second(self) -> float | None:
        if not self.completion_tokens or self.first_token_at is None or self.finished_at is None:
            return None
        seconds = (self.finished_at - self.first_token_at).total_seconds()
        return self.completion_tokens / seconds if seconds > 0 else None


class Generation(models.Model):
    """One attempt at producing an answer's text: the first run, or a Continue.

    `text_offset` is where this attempt's text starts in the message: the seam.
    """

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="generations")
    # Who asked for the attempt (the conversation's owner), kept on the row so the
    # per-minute limit counts a user's recent attempts in one index range instead
    # of walking every message the user ever had.
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    text_offset = models.PositiveIntegerField(default=0)
    start_seq = models.PositiveIntegerField(default=0)
    model = models.CharField(max_length=100, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    first_token_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.STREAMING)
    stop_reason = models.CharField(max_length=20, choices=StopReason.choices, blank=True)
    error = models.TextField(blank=True)
    # The provider's own account of a failure, for staff in admin (and the log):
    # never shown to the user nor exported, as it may hold masked keys,
    # organisation ids, quota figures and internal host names.
    error_detail = models.TextField(blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["started_at", "id"]
        indexes = [models.Index(fields=["owner", "started_at"])]


class ToolCall(models.Model):
    class State(models.TextChoices):
        RUNNING = "running", "Running"
        OK = "ok", "OK"
        ERROR = "error", "Error"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="tool_calls")
    call_id = models.CharField(max_length=200)
    name = models.CharField(max_length=100)
    arguments = models.TextField(blank=True)
    result = models.TextField(blank=True)
    error = models.TextField(blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.RUNNING)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Where the card sits between the answer's text, and which events made it.
    text_offset = models.PositiveIntegerField(default=0)
    start_seq = models.PositiveIntegerField(default=0)
    result_seq = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["start_seq", "id"]

    @property
    def duration_ms(self) -> int | None:
        if self.finished_at is None:
            return None
        return round((self.finished_at - self.started_at).total_seconds() * 1000)


class Feedback(models.Model):
    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="feedback")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    rating = models.SmallIntegerField(choices=[(1, "👍 Good"), (-1, "👎 Bad")])
    comment = models.TextField(blank=True, max_length=2000)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "feedback"


class Provider(models.Model):
    """An OpenAI-compatible endpoint that staff offer models from."""

    name = models.CharField(max_length=100, unique=True)
    base_url = models.URLField("base URL", max_length=500, help_text="For example https://api.openai.com/v1")
    # The key, encrypted at rest (chat/provider/secrets.py), or the name of an
    # environment variable that holds it. Neither is ever shown back in full.
    api_key_encrypted = models.TextField(blank=True, editable=False)
    api_key_env = models.CharField(
        "key from environment variable",
        max_length=100,
        blank=True,
        help_text="The name of an environment variable holding the key, instead of a key kept here.",
    )
    send_reasoning = models.BooleanField(
        default=False,
        help_text="Send the model's earlier reasoning back with the conversation. Most providers "
        "ignore it and some refuse it (HTTP 400): leave off unless the provider asks for it.",
    )
    enabled = models.BooleanField(default=True)
    # The provider's GET /models, as last fetched.
    listed_models = models.JSONField(default=list, blank=True, editable=False)
    listed_at = models.DateTimeField(null=True, blank=True, editable=False)
    list_error = models.TextField(blank=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class OfferedModel(models.Model):
    """A model of a provider that users may choose, with its label and defaults."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="offered_models")
    model_id = models.CharField("model", max_length=100, help_text="The provider's name for the model.")
    label = models.CharField(max_length=100, help_text="What users see in the model picker.")
    enabled = models.BooleanField(default=True)
    position = models.PositiveIntegerField(default=0, help_text="Lower comes first in the picker.")
    context_length = models.PositiveIntegerField(
        null=True, blank=True, help_text="The model's context window in tokens; the history sent is trimmed to fit."
    )
    max_tokens = models.PositiveIntegerField(
        null=True, blank=True, help_text="The longest answer asked for, in tokens."
    )
    parameters = models.JSONField(
        default=dict, blank=True, help_text='Sent with every request, for example {"temperature": 0.7}.'
    )

    class Meta:
        ordering = ["position", "label", "id"]
        constraints = [models.UniqueConstraint(fields=["provider", "model_id"], name="offered_model_once")]

    def __str__(self) -> str:
        return self.label


class SiteSettings(models.Model):
    """The site's settings that staff change in admin: one row."""

    default_model = models.ForeignKey(OfferedModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    instructions = models.TextField(
        "site-wide instructions",
        blank=True,
        help_text="The system prompt every conversation starts with; users' own instructions follow it.",
    )

    class Meta:
        verbose_name = verbose_name_plural = "site settings"

    def __str__(self) -> str:
        return "Site settings"


class UserSettings(models.Model):
    """A user's own settings: their custom instructions."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_settings")
    instructions = models.TextField(blank=True)

    class Meta:
        verbose_name = verbose_name_plural = "user settings"


class SignOnIdentity(models.Model):
    """A user's account at the single sign-on provider: the issuer and its subject
    (`sub`), which the provider never reuses or changes, unlike a username or an
    email address. A sign-in finds its user by this, never by name or email, so an
    account at the provider cannot take over a local account that shares its email."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sign_on_identities")
    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "single sign-on identity"
        verbose_name_plural = "single sign-on identities"
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="sign_on_identity_once")]

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"

"""What the product stores: conversations, their messages, each answer attempt
(Generation), the tool calls an answer made (and the user's approval of one that
asks first), users' feedback, read-only share links; the models on offer
(providers, their models), site-wide and personal instructions; the MCP servers
staff registered, with the tools each lists; the usage ledger, quotas and the
audit trail; and users' accounts at the single sign-on provider."""

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.validators import RegexValidator
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
    # Pinned conversations lead the list (the latest pinned first); archived ones
    # leave it for the "Archived" view. Search finds both.
    pinned_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    # Where an imported conversation came from (chat/portability.py): importing the
    # same file again finds it here and adds nothing.
    import_key = models.CharField(max_length=200, blank=True, editable=False)

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [
            models.Index(fields=["owner", "-updated_at"]),
            # The list's pages: a user's conversations in or out of the archive, newest first.
            models.Index(fields=["owner", "archived_at", "-updated_at", "-id"], name="conversation_list_page"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "import_key"], condition=~models.Q(import_key=""), name="conversation_imported_once"
            )
        ]

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


class Approval(models.TextChoices):
    PENDING = "pending", "Waiting for approval"
    APPROVED = "approved", "Approved"
    DENIED = "denied", "Denied"
    TIMED_OUT = "timed_out", "Not decided in time"


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
    # A tool of an MCP server: the server's name (empty for a built-in tool).
    server = models.CharField(max_length=100, blank=True)
    # Staff made the tool ask first: where the user's decision stands.
    approval = models.CharField(max_length=10, choices=Approval.choices, blank=True)

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


class Share(models.Model):
    """A read-only link to one branch of a conversation (chat/sharing.py).

    `leaf` is the end of the branch on screen when it was shared (a live link
    shows that branch with what was added below it since); none follows whichever
    branch the owner has on screen. `snapshot` holds the branch as it was when
    shared; none shows it live. A revoked link is a 404, as one that never existed."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="shares")
    token = models.CharField(max_length=64, unique=True, editable=False)
    leaf = models.ForeignKey(Message, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    snapshot = models.JSONField(null=True, blank=True, editable=False)
    # Anyone with the link, logged in or not (only where the site allows it).
    public = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"share of {self.conversation_id}"

    @property
    def is_snapshot(self) -> bool:
        return self.snapshot is not None


class Provider(models.Model):
    """An OpenAI-compatible endpoint that staff offer models from."""

    name = models.CharField(max_length=100, unique=True)
    base_url = models.URLField("base URL", max_length=500, help_text="For example https://api.openai.com/v1")
    # The key, encrypted at rest (chat/secrets.py), or the name of an
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


class UsageEntry(models.Model):
    """The usage ledger: append-only, never derived from messages (which their
    users may delete). An `answer` entry is written when an answer attempt
    starts (the answers-per-day quota and the per-minute limit count them); an
    `end` entry when it ends, with its tokens, cost and timings."""

    class Kind(models.TextChoices):
        ANSWER = "answer", "Answer started"
        END = "end", "Answer ended"

    kind = models.CharField(max_length=6, choices=Kind.choices)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # Kept when the account is deleted: usage is the site's record.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    username = models.CharField(max_length=150)
    # The user's first group (by name) when the entry was written, for usage by group.
    group = models.CharField(max_length=150, blank=True)
    model = models.CharField(max_length=100, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    # How the attempt ended, and its timings (end entries only).
    status = models.CharField(max_length=12, blank=True)
    first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    # Where it happened, as ids rather than keys: the rows may be deleted.
    conversation_id = models.BigIntegerField(null=True, blank=True)
    message_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        verbose_name = verbose_name_plural = "usage ledger"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "kind", "created_at"])]


class ModelPrice(models.Model):
    """What a model costs, per million tokens, for the usage ledger's cost."""

    model = models.CharField(max_length=100, unique=True, help_text="The provider's name for the model.")
    input_per_million = models.DecimalField("input price per million tokens", max_digits=12, decimal_places=4)
    output_per_million = models.DecimalField("output price per million tokens", max_digits=12, decimal_places=4)

    class Meta:
        ordering = ["model"]

    def __str__(self) -> str:
        return self.model


class Quota(models.Model):
    """A limit on what one user, or a group together, may use in a period."""

    class Period(models.TextChoices):
        DAY = "day", "Per day"
        MONTH = "month", "Per month"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE)
    group = models.ForeignKey("auth.Group", null=True, blank=True, on_delete=models.CASCADE)
    period = models.CharField(max_length=5, choices=Period.choices, default=Period.DAY)
    max_tokens = models.PositiveBigIntegerField("tokens", null=True, blank=True)
    max_answers = models.PositiveIntegerField("answers", null=True, blank=True)
    max_cost = models.DecimalField("cost", max_digits=12, decimal_places=4, null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(user__isnull=False, group__isnull=True)
                | models.Q(user__isnull=True, group__isnull=False),
                name="quota_for_user_or_group",
                violation_error_message="Set either a user or a group (one, not both).",
            )
        ]

    def __str__(self) -> str:
        who = f"user {self.user}" if self.user_id else f"group {self.group}"
        return f"{self.get_period_display()} quota of {who}"


class DailyUsage(models.Model):
    """The ledger summed per day, user, group and model, for days that have
    ended: the dashboard reads these, so its cost does not grow with history."""

    day = models.DateField()
    user_id = models.BigIntegerField(null=True)
    username = models.CharField(max_length=150)
    group = models.CharField(max_length=150, blank=True)
    model = models.CharField(max_length=100, blank=True)
    answers = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    interrupted = models.PositiveIntegerField(default=0)
    stopped = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=16, decimal_places=6, default=0)

    class Meta:
        indexes = [models.Index(fields=["day"])]


class DailyTiming(models.Model):
    """First-token times of a day's answers by one model, counted per bucket of
    chat/dashboard.py's TTFT_BUCKETS_MS."""

    day = models.DateField()
    model = models.CharField(max_length=100, blank=True)
    first_token_histogram = models.JSONField(default=list)

    class Meta:
        indexes = [models.Index(fields=["day"])]


class SummedDay(models.Model):
    """A day whose ledger entries are in DailyUsage and DailyTiming."""

    day = models.DateField(primary_key=True)


class AuditEntry(models.Model):
    """What staff did with other people's data, or to the site's settings:
    append-only (admin cannot change or delete entries)."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    actor_name = models.CharField(max_length=150)
    action = models.CharField(max_length=40, db_index=True)
    # What was acted on: a model's name and the object's id and description.
    target_type = models.CharField(max_length=60, blank=True)
    target_id = models.CharField(max_length=40, blank=True)
    target = models.CharField(max_length=200, blank=True)
    detail = models.TextField(blank=True)
    address = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "audit trail"
        ordering = ["-at", "-id"]


# Tools' policies, and tools from MCP servers (chat/mcp/).


class ToolPolicy(models.TextChoices):
    RUN = "run", "Run"
    ASK = "ask", "Ask the user first"
    NEVER = "never", "Never (not offered)"


class BuiltinTool(models.Model):
    """Staff's policy for a built-in tool (chat/tools/); one without a row runs."""

    name = models.CharField(max_length=100, unique=True)
    policy = models.CharField(max_length=10, choices=ToolPolicy.choices, default=ToolPolicy.RUN)

    class Meta:
        ordering = ["name"]
        verbose_name = "built-in tool"

    def __str__(self) -> str:
        return self.name


class McpServer(models.Model):
    """A Model Context Protocol server staff registered: its tools are offered to
    the users it is shared with."""

    class Transport(models.TextChoices):
        STDIO = "stdio", "Command (stdio)"
        HTTP = "http", "URL (streamable HTTP)"

    class State(models.TextChoices):
        UNKNOWN = "unknown", "Not checked yet"
        OK = "ok", "Connected"
        UNREACHABLE = "unreachable", "Cannot be reached"
        FAILED = "failed", "Failed its handshake"

    # Part of every tool name the model sees: lowercase letters, digits and
    # single hyphens, so "<name>__<tool>" is unique across servers.
    name = models.CharField(
        max_length=30,
        unique=True,
        validators=[
            RegexValidator(r"^[a-z0-9]+(-[a-z0-9]+)*$", "Lowercase letters and digits, words joined by single hyphens.")
        ],
    )
    transport = models.CharField(max_length=10, choices=Transport.choices, default=Transport.STDIO)
    command = models.TextField(blank=True, help_text="For stdio: the command line, e.g. mcp-server-time.")
    url = models.URLField(blank=True, max_length=500, help_text="For streamable HTTP: the endpoint, e.g. https://…/mcp")
    # Request headers (a bearer token): encrypted JSON, never shown back in full
    # (chat/mcp/secrets.py). A value "env:NAME" is read from the environment.
    headers_encrypted = models.TextField(blank=True)
    # A stdio server's environment variables, kept like the headers. The server
    # gets these and a minimal environment (PATH, HOME...), never the worker's.
    environment_encrypted = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    everyone = models.BooleanField(default=False, help_text="Every signed-in user may use it.")
    users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")
    groups = models.ManyToManyField(Group, blank=True, related_name="+")
    state = models.CharField(max_length=12, choices=State.choices, default=State.UNKNOWN)
    state_detail = models.TextField(blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    # Conversations whose user switched this server's tools off.
    off_in = models.ManyToManyField(Conversation, blank=True, related_name="mcp_servers_off")

    class Meta:
        ordering = ["name"]
        verbose_name = "MCP server"

    def __str__(self) -> str:
        return self.name


class McpTool(models.Model):
    """A tool a server listed when it was last checked, and what staff decided about it."""

    Policy = ToolPolicy

    server = models.ForeignKey(McpServer, on_delete=models.CASCADE, related_name="tools")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    input_schema = models.JSONField(default=dict)
    # A new tool asks first: staff choose to let it run unasked.
    policy = models.CharField(max_length=10, choices=ToolPolicy.choices, default=ToolPolicy.ASK)
    # Listed at the last check; a tool the server no longer lists is not offered.
    listed = models.BooleanField(default=True)

    class Meta:
        ordering = ["server", "name"]
        constraints = [models.UniqueConstraint(fields=["server", "name"], name="mcp_tool_unique_per_server")]
        verbose_name = "MCP tool"

    def __str__(self) -> str:
        return f"{self.server.name}: {self.name}"


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

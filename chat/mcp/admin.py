"""Staff's side of MCP servers: register a server (a command for stdio, or a URL
and its headers for streamable HTTP), share it with users or groups, check it
(its tools are listed here with its state), and set each tool's policy: run,
ask the user first, or never (not offered).

Headers (and a stdio server's environment variables) are entered in full and
shown back masked; they are stored encrypted (chat/mcp/secrets.py)."""

from asgiref.sync import async_to_sync
from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest

from chat.audit import AuditedAdmin
from chat.mcp.discovery import check_server
from chat.mcp.secrets import decrypt_map, encrypt_map, env_reference_allowed, masked
from chat.models import McpServer, McpTool

KEPT = (
    "A value “env:MCP_NAME” is read from the worker's environment variable MCP_NAME (only MCP_* ones) "
    "when the server is reached. "
    "Stored encrypted and never shown back in full: leave empty to keep the stored ones, write “-” to remove them."
)
HEADERS_HELP = "For streamable HTTP: one header a line, “Name: value”, e.g. “Authorization: Bearer …”. " + KEPT
ENVIRONMENT_HELP = (
    "For stdio: one variable a line, “NAME=value”. The server gets these and a minimal environment "
    "(PATH, HOME…), never the worker's own. " + KEPT
)


class McpServerForm(forms.ModelForm):
    url = forms.URLField(
        assume_scheme="https", required=False, max_length=500, help_text=McpServer._meta.get_field("url").help_text
    )
    headers = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False, help_text=HEADERS_HELP)
    environment = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False, help_text=ENVIRONMENT_HELP)

    class Meta:
        model = McpServer
        fields = ["name", "transport", "command", "url", "enabled", "everyone", "users", "groups"]

    def clean_headers(self) -> dict[str, str] | None:
        return _pairs(self.cleaned_data["headers"], ":", "a header")

    def clean_environment(self) -> dict[str, str] | None:
        return _pairs(self.cleaned_data["environment"], "=", "a variable")

    def clean(self) -> dict:
        data = super().clean()
        transport = data.get("transport")
        if transport == McpServer.Transport.STDIO and not (data.get("command") or "").strip():
            self.add_error("command", "A stdio server needs the command that starts it.")
        if transport == McpServer.Transport.HTTP and not data.get("url"):
            self.add_error("url", "A streamable HTTP server needs its URL.")
        return data

    def save(self, commit: bool = True) -> McpServer:
        headers, environment = self.cleaned_data.get("headers"), self.cleaned_data.get("environment")
        if headers is not None:
            self.instance.headers_encrypted = encrypt_map(headers)
        if environment is not None:
            self.instance.environment_encrypted = encrypt_map(environment)
        return super().save(commit)


def _pairs(text: str, separator: str, what: str) -> dict[str, str] | None:
    """Lines of "name<separator>value" to store; None keeps the stored ones, "-" removes them.
    A line in error is quoted masked: it may hold the secret."""
    text = text.strip()
    if not text:
        return None
    if text == "-":
        return {}
    pairs = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, found, value = line.partition(separator)
        if not found or not name.strip() or any(c in name.strip() for c in " \t"):
            raise forms.ValidationError(f"Not {what} line: “{masked(line.strip())}”")
        if not env_reference_allowed(value.strip()):
            raise forms.ValidationError(
                f"“{name.strip()}”: an env: value may only name a variable that starts with MCP_ "
                "(the worker's own secrets are never sent to a tool server)."
            )
        pairs[name.strip()] = value.strip()
    return pairs


class McpToolInline(admin.TabularInline):
    model = McpTool
    fields = ["name", "description", "policy", "listed"]
    readonly_fields = ["name", "description", "listed"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(McpServer)
class McpServerAdmin(AuditedAdmin):
    form = McpServerForm
    list_display = ["name", "transport", "enabled", "state", "state_detail", "checked_at"]
    list_filter = ["enabled", "transport", "state"]
    filter_horizontal = ["users", "groups"]
    readonly_fields = ["stored_headers", "stored_environment", "state", "state_detail", "checked_at"]
    fieldsets = [
        (None, {"fields": ["name", "enabled", "transport"]}),
        ("Stdio", {"fields": ["command", "environment", "stored_environment"]}),
        ("Streamable HTTP", {"fields": ["url", "headers", "stored_headers"]}),
        ("Who may use it", {"fields": ["everyone", "users", "groups"]}),
        ("Last check", {"fields": ["state", "state_detail", "checked_at"]}),
    ]
    inlines = [McpToolInline]
    actions = ["check_servers"]

    # A stdio server's command runs on the worker, and a server is sent headers:
    # only superusers register, change or remove one; other staff may look.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_superuser

    @admin.display(description="Stored headers")
    def stored_headers(self, server: McpServer) -> str:
        headers = decrypt_map(server.headers_encrypted)
        return ", ".join(f"{name}: {masked(value)}" for name, value in headers.items()) or "—"

    @admin.display(description="Stored environment")
    def stored_environment(self, server: McpServer) -> str:
        environment = decrypt_map(server.environment_encrypted)
        return ", ".join(f"{name}={masked(value)}" for name, value in environment.items()) or "—"

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        # Its tools as the server lists them now, with its state.
        self._check(request, form.instance)

    @admin.action(description="Check the selected servers and list their tools")
    def check_servers(self, request: HttpRequest, queryset) -> None:
        for server in queryset:
            self._check(request, server)

    def _check(self, request: HttpRequest, server: McpServer) -> None:
        if not server.enabled:
            return
        async_to_sync(check_server)(server)
        if server.state == McpServer.State.OK:
            self.message_user(request, f"Server {server.name}: connected, {server.state_detail}.")
        else:
            state = server.get_state_display().lower()
            self.message_user(request, f"Server {server.name}: {state} ({server.state_detail})", messages.WARNING)

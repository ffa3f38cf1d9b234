"""The models on offer, in the admin: providers (an OpenAI-compatible endpoint
and its key each) with the models staff offer from them, the site's settings
(the default model, the site-wide instructions) and users' own settings.

A provider's key is write-only: the form never shows it back, only whether one
is set and its last four characters; it is stored encrypted
(chat/secrets.py). Saving a provider fetches its list of models, which
the offered models' form proposes; a provider that is down or refuses the key
is said in one fixed sentence (chat/provider/catalog.py), never in the
provider's own words, which may echo the key.
"""

import os
import re

from django import forms
from django.contrib import admin, messages
from django.db.models import Count
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from chat import secrets
from chat.audit import AuditedAdmin
from chat.models import OfferedModel, Provider, SiteSettings, UserSettings
from chat.provider import catalog

# Where the offered models' form finds the provider's listed models.
LISTED_MODELS_ID = "listed-models"
# Only variables named for a key may be read as one: a name such as SECRET_KEY or
# DATABASE_URL would otherwise send the server's own secrets to whatever base
# URL staff enter.
KEY_VARIABLE = re.compile(r"[A-Z][A-Z0-9_]*_API_KEY")


class ProviderForm(forms.ModelForm):
    base_url = forms.URLField(
        label="Base URL",
        max_length=500,
        assume_scheme="https",
        help_text="For example https://api.openai.com/v1, or http://127.0.0.1:8080/v1 for a local llama.cpp server.",
    )
    api_key = forms.CharField(
        label="Key",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only: never shown again. Leave empty to keep the current key. "
        "Local servers (llama.cpp, Ollama, vLLM) need none.",
    )
    clear_key = forms.BooleanField(label="Clear the key", required=False)

    class Meta:
        model = Provider
        fields = ["name", "base_url", "api_key_env", "send_reasoning", "enabled"]

    def clean_api_key_env(self) -> str:
        name = self.cleaned_data["api_key_env"].strip()
        if name and not KEY_VARIABLE.fullmatch(name):
            raise forms.ValidationError(
                "Name a variable that holds an API key: capitals, digits and underscores, "
                "ending in _API_KEY (for example OPENAI_API_KEY)."
            )
        return name

    def clean(self) -> dict:
        data = super().clean()
        if data.get("api_key") and data.get("clear_key"):
            raise forms.ValidationError("Either enter a new key or clear it, not both.")
        if data.get("api_key") and data.get("api_key_env"):
            raise forms.ValidationError("Either enter a key or name an environment variable that holds it, not both.")
        return data

    def save(self, commit: bool = True) -> Provider:
        provider = super().save(commit=False)
        if self.cleaned_data.get("clear_key"):
            provider.api_key_encrypted = ""
        elif self.cleaned_data.get("api_key"):
            provider.api_key_encrypted = secrets.encrypt(self.cleaned_data["api_key"])
        if commit:
            provider.save()
        return provider


class OfferedModelForm(forms.ModelForm):
    class Meta:
        model = OfferedModel
        fields = ["model_id", "label", "enabled", "position", "context_length", "max_tokens", "parameters"]
        widgets = {
            # The provider's listed models, proposed as staff type.
            "model_id": forms.TextInput(attrs={"list": LISTED_MODELS_ID, "autocomplete": "off"}),
            "parameters": forms.Textarea(attrs={"rows": 2, "cols": 30}),
        }

    def clean_parameters(self) -> dict:
        parameters = self.cleaned_data["parameters"]
        if parameters in (None, ""):
            return {}
        if not isinstance(parameters, dict):
            raise forms.ValidationError('Give a JSON object, for example {"temperature": 0.7}.')
        reserved = sorted(set(parameters) & catalog.RESERVED_PARAMETERS)
        if reserved:
            raise forms.ValidationError(
                f"{', '.join(reserved)} cannot be set here: the request sets them (max tokens has its own field)."
            )
        return parameters

    def clean(self) -> dict:
        data = super().clean()
        context, max_tokens = data.get("context_length"), data.get("max_tokens")
        if context and max_tokens and max_tokens >= context:
            raise forms.ValidationError("Max tokens must be less than the context length: the history needs room.")
        return data


class OfferedModelInline(admin.TabularInline):
    model = OfferedModel
    form = OfferedModelForm
    extra = 1


@admin.register(Provider)
class ProviderAdmin(AuditedAdmin):
    form = ProviderForm
    inlines = [OfferedModelInline]
    list_display = ["name", "base_url", "enabled", "key_status", "offered", "list_status"]
    readonly_fields = ["key_status", "list_status", "listed", "listed_at"]
    actions = ["refresh_model_lists"]
    fieldsets = [
        (None, {"fields": ["name", "base_url", "enabled"]}),
        ("Key", {"fields": ["key_status", "api_key", "clear_key", "api_key_env"]}),
        ("Models", {"fields": ["list_status", "listed", "listed_at", "send_reasoning"]}),
    ]

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).annotate(offered_count=Count("offered_models"))

    @admin.display(description="key")
    def key_status(self, provider: Provider) -> str:
        if provider.api_key_env:
            found = "set" if os.environ.get(provider.api_key_env) else "not set on this server"
            return f"From the environment variable {provider.api_key_env} ({found})"
        if not provider.api_key_encrypted:
            return "Not set"
        try:
            key = secrets.decrypt(provider.api_key_encrypted)
        except secrets.KeyUnreadable:
            return "Set, but it cannot be decrypted with this server's encryption keys: enter it again"
        end = secrets.last_four(key)
        return f"Set, ending in …{end}" if end else "Set"

    @admin.display(description="offered models")
    def offered(self, provider: Provider) -> int:
        return provider.offered_count

    @admin.display(description="model list")
    def list_status(self, provider: Provider) -> str:
        if provider.list_error:
            return provider.list_error
        if provider.listed_at is None:
            return "Not fetched yet: saving the provider fetches it."
        return f"{len(provider.listed_models)} models listed (saving the provider fetches the list again)"

    @admin.display(description="listed models")
    def listed(self, provider: Provider):
        models = provider.listed_models if isinstance(provider.listed_models, list) else []
        options = format_html_join("", '<option value="{}">', ((str(m),) for m in models))
        shown = ", ".join(str(m) for m in models) or "—"
        return format_html('<datalist id="{}">{}</datalist>{}', LISTED_MODELS_ID, options, shown)

    def save_model(self, request: HttpRequest, provider: Provider, form, change: bool) -> None:
        super().save_model(request, provider, form, change)
        self._refresh(request, provider)

    @admin.action(description="Refresh the model lists of the selected providers")
    def refresh_model_lists(self, request: HttpRequest, queryset) -> None:
        for provider in queryset:
            self._refresh(request, provider)

    def _refresh(self, request: HttpRequest, provider: Provider) -> None:
        catalog.refresh(provider)
        if provider.list_error:
            self.message_user(request, f"{provider.name}: {provider.list_error}", messages.WARNING)
        else:
            self.message_user(request, f"{provider.name}: {len(provider.listed_models)} models listed.")


@admin.register(SiteSettings)
class SiteSettingsAdmin(AuditedAdmin):
    """One row: the list is its change page."""

    fields = ["default_model", "instructions"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and not SiteSettings.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context=None):
        row = SiteSettings.objects.first()
        if row is not None:
            return HttpResponseRedirect(reverse("admin:chat_sitesettings_change", args=[row.pk]))
        if self.has_add_permission(request):
            return HttpResponseRedirect(reverse("admin:chat_sitesettings_add"))
        return super().changelist_view(request, extra_context)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "default_model":
            kwargs["queryset"] = OfferedModel.objects.filter(enabled=True, provider__enabled=True).select_related(
                "provider"
            )
            kwargs["help_text"] = (
                "Answers use it unless the user picks another. Empty: the first offered model, "
                "or the environment's model (CHAT_MODEL) while none is offered."
            )
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if db_field.name == "default_model":
            field.label_from_instance = lambda option: f"{option.label} ({option.provider.name}: {option.model_id})"
        return field


@admin.register(UserSettings)
class UserSettingsAdmin(admin.ModelAdmin):
    """Read-only: a user's instructions are theirs to change, on their settings page."""

    list_display = ["user", "instructions_start"]
    search_fields = ["user__username"]
    list_select_related = ["user"]
    raw_id_fields = ["user"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="instructions")
    def instructions_start(self, row: UserSettings) -> str:
        return row.instructions[:80] + ("…" if len(row.instructions) > 80 else "")

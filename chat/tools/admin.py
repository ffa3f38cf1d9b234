"""Staff's policy for each built-in tool: run, ask the user first, or never (not
offered). A built-in tool without a policy here runs."""

from django import forms
from django.contrib import admin

from chat.audit import AuditedAdmin
from chat.models import BuiltinTool
from chat.tools.registry import all_tools


class BuiltinToolForm(forms.ModelForm):
    name = forms.ChoiceField(choices=lambda: [(t.name, t.name) for t in all_tools()])

    class Meta:
        model = BuiltinTool
        fields = ["name", "policy"]


@admin.register(BuiltinTool)
class BuiltinToolAdmin(AuditedAdmin):
    form = BuiltinToolForm
    list_display = ["name", "policy", "description"]
    list_editable = ["policy"]

    @admin.display(description="What it does")
    def description(self, row: BuiltinTool) -> str:
        return next((t.description for t in all_tools() if t.name == row.name), "(no longer built in)")

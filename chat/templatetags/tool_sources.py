"""The conversation page's list of MCP servers the user may use, each with a
switch for this conversation: `{% tool_sources current %}`. A tag, so the page
view stays as it is and a user with no server sees nothing."""

from django import template

from chat.mcp.views import sources

register = template.Library()


@register.inclusion_tag("chat/_tool_sources.html", takes_context=True)
def tool_sources(context, conversation) -> dict:
    return {**sources(context["request"].user.pk, conversation), "request": context["request"]}

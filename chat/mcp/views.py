"""The user's Approve or Deny on a tool call that asks first, and switching a
server's tools off (or on again) for one conversation. Ownership through chat/ownership.py:
another user's call or conversation is a 404, and so is a
server not shared with the user."""

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.template.loader import render_to_string
from django.views.decorators.http import require_POST

from chat.eventlog import get_event_log
from chat.mcp import approval
from chat.mcp.catalog import servers_for
from chat.ownership import atool_call_for, conversation_for
from chat.serving.login import login_required

DECISIONS = {"approve": True, "deny": False}


@require_POST
@login_required
async def decide(request: HttpRequest, call_id: int) -> HttpResponse:
    """The card changes by the answer's own events (approved and running, or the
    refusal as its result), in every open view alike; this answers only whether
    the decision was taken: 409 when the call no longer waits for one."""
    call = await atool_call_for(request, call_id)
    decision = request.POST.get("decision")
    if decision not in DECISIONS:
        return HttpResponseBadRequest("decision must be approve or deny")
    taken = await approval.decide(get_event_log(), call, DECISIONS[decision])
    return HttpResponse(status=204 if taken else 409)


@require_POST
@login_required
def switch_server(request: HttpRequest, conversation_id: int, server_id: int) -> HttpResponse:
    """The next answers of the conversation are offered the server's tools, or not."""
    conversation = conversation_for(request, conversation_id)
    server = servers_for(request.user.pk).filter(pk=server_id).first()
    if server is None:
        raise Http404
    if request.POST.get("on") == "1":
        server.off_in.remove(conversation)
    else:
        server.off_in.add(conversation)
    html = render_to_string("chat/_tool_sources.html", sources(request.user.pk, conversation), request=request)
    return HttpResponse(html)


def sources(user_id: int, conversation) -> dict:
    """The servers the user may use, each on or off in the conversation."""
    off = set(conversation.mcp_servers_off.values_list("pk", flat=True))
    servers = [{"server": s, "on": s.pk not in off} for s in servers_for(user_id).order_by("name")]
    return {"current": conversation, "sources": servers}

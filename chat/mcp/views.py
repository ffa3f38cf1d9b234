"""The user's Approve or Deny on a tool call that asks first. Ownership through chat/ownership.py:
another user's call is a 404."""

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.views.decorators.http import require_POST

from chat.eventlog import get_event_log
from chat.mcp import approval
from chat.ownership import atool_call_for
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

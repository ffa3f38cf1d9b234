"""The user's decision on a tool call that asks first.

The decision is stored on the call's row by whichever worker the user's click
reaches (the first decision wins: a conditional update), then announced through
the event log, which wakes the generation wherever it runs. The generation reads
the row after every wake and at least every DECISION_POLL seconds, so a lost
announcement (an event log outage) delays a decision, never loses it. Nobody
deciding within CHAT_APPROVAL_TIMEOUT seconds is an outcome of its own."""

import time

from django.conf import settings

from chat.eventlog import EventLog
from chat.models import Approval, ToolCall

DECISION_POLL = 5

DENIED = "You denied this tool call, so it did not run."
TIMED_OUT = "Nobody approved this tool call within {seconds:g} seconds, so it did not run."


async def wait_for_decision(log: EventLog, call: ToolCall) -> str:
    """APPROVED, DENIED or TIMED_OUT, as stored."""
    deadline = time.monotonic() + settings.CHAT_APPROVAL_TIMEOUT
    while True:
        decided = await ToolCall.objects.filter(pk=call.pk).values_list("approval", flat=True).afirst()
        if decided != Approval.PENDING:
            return decided
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if await ToolCall.objects.filter(pk=call.pk, approval=Approval.PENDING).aupdate(
                approval=Approval.TIMED_OUT
            ):
                return Approval.TIMED_OUT
            # Decided in the same moment: that decision stands.
            continue
        await log.wait_for_decision(call.message_id, call.pk, min(remaining, DECISION_POLL))


def refusal(decision: str) -> str:
    """What the model and the user are told of a call that did not run."""
    if decision == Approval.DENIED:
        return DENIED
    return TIMED_OUT.format(seconds=settings.CHAT_APPROVAL_TIMEOUT)


async def decide(log: EventLog, call: ToolCall, approve: bool) -> bool:
    """Store the user's decision on a call that waits for one; False when it no
    longer waits (decided elsewhere, timed out, or its answer ended)."""
    decision = Approval.APPROVED if approve else Approval.DENIED
    waiting = ToolCall.objects.filter(pk=call.pk, approval=Approval.PENDING, state=ToolCall.State.RUNNING)
    if not await waiting.aupdate(approval=decision):
        return False
    await log.announce_decision(call.message_id, call.pk)
    return True

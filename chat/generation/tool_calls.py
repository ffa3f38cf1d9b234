"""Running the tools a reply asks for: each call announced (`tool_start`, its
row stored), all run in parallel, each reported as it ends (`tool_result`), and
the results handed back for the model's next request. A call of a tool that asks
first waits for the user's decision (`tool_approval`, chat/mcp/approval.py);
one denied, or not decided in time, is reported as a refusal. Tool output is
untrusted: bounded and made storable before it is stored or shown."""

import asyncio
import logging
import time

from django.conf import settings
from django.utils import timezone

from chat import events
from chat.generation.publisher import Publisher
from chat.generation.recorder import Recorder
from chat.live_markdown import LiveMarkdown
from chat.mcp import approval
from chat.models import Approval, Message, ToolCall
from chat.provider.reply import PendingCall, Reply
from chat.storable import storable
from chat.tools import ToolContext, ToolError
from chat.tools.toolbox import Toolbox

logger = logging.getLogger("chat.generation")

UNFINISHED_TOOL = "The answer ended before the tool finished."


class ToolCalls:
    """The tool calls of one answer, earlier attempts' first, as the page shows them."""

    def __init__(
        self, message: Message, publisher: Publisher, recorder: Recorder, live: LiveMarkdown, rows: list[ToolCall]
    ) -> None:
        self.message = message
        self.publisher = publisher
        self.recorder = recorder
        # A card ends the text before it: its open part is settled with the card.
        self.live = live
        self.rows = rows
        # This attempt started one (and may have left it running).
        self.started = False
        # Statements that wrote a row.
        self.writes = 0
        # The tools on offer, with their policies; the answer loads them.
        self.toolbox = Toolbox()
        # Calls waiting for the user's decision now, and when the last wait ended:
        # a wait for a person is not an answer nobody watches.
        self.awaiting = 0
        self.awaited_at: float | None = None

    async def run(self, reply: Reply) -> list[dict]:
        """Announce every call of `reply`, run them in parallel, report each as it
        ends. Returns the messages that give the model the results."""
        # The card sits after the text that preceded it: store that text first.
        await self.recorder.flush()
        rows = [await self._start(call) for call in reply.calls]
        context = ToolContext(user_id=self.message.conversation.owner_id, conversation_id=self.message.conversation_id)
        await asyncio.gather(*(self._run(row, context) for row in rows))
        assistant = {
            "role": "assistant",
            "content": reply.text or None,
            "tool_calls": [
                {"id": r.call_id, "type": "function", "function": {"name": r.name, "arguments": r.arguments}}
                for r in rows
            ],
        }
        results = [
            {
                "role": "tool",
                "tool_call_id": r.call_id,
                "content": r.result if r.state == ToolCall.State.OK else f"Error: {r.error}",
            }
            for r in rows
        ]
        return [assistant, *results]

    async def _start(self, call: PendingCall) -> ToolCall:
        self.started = True
        self.writes += 1
        offer = self.toolbox.offer(call.name)
        async with self.publisher.turn:
            row = await ToolCall.objects.acreate(
                message_id=self.message.pk,
                # Model-made strings: bounded like every stored field, and storable.
                call_id=storable(call.id[:200]),
                name=storable(call.name[:100]),
                arguments=storable(call.arguments),
                text_offset=self.recorder.length,
                start_seq=self.publisher.next_seq,
                server=offer.server if offer else "",
                approval=Approval.PENDING if offer and offer.asks else "",
            )
            self.rows.append(row)
            data = {"call_id": row.call_id, "name": row.name, "arguments": row.arguments, "settled": self.live.close()}
            if row.server:
                data["server"] = row.server
            event = await self.publisher.publish_in_turn(events.TOOL_START, data)
        self.recorder.advance(event.seq)
        return row

    async def _run(self, row: ToolCall, context: ToolContext) -> None:
        if row.approval == Approval.PENDING:
            row.approval = await self._ask(row)
        started = time.monotonic()
        try:
            if row.approval not in ("", Approval.APPROVED):
                raise ToolError(approval.refusal(row.approval))
            # Tool output is untrusted: it may echo what the model sent, or anything.
            async with asyncio.timeout(settings.CHAT_TOOL_TIMEOUT):
                result = await self.toolbox.call(row.name, row.arguments, context)
            row.result = storable(_bounded(result))
            row.state = ToolCall.State.OK
        except ToolError as exc:
            row.error, row.state = storable(str(exc)), ToolCall.State.ERROR
        except TimeoutError:
            row.error = f"The tool took longer than {settings.CHAT_TOOL_TIMEOUT:g} seconds."
            row.state = ToolCall.State.ERROR
        except Exception as exc:
            logger.exception("tool %s failed", row.name)
            row.error, row.state = f"The tool failed ({type(exc).__name__}).", ToolCall.State.ERROR
        row.finished_at = timezone.now()
        duration_ms = round((time.monotonic() - started) * 1000)
        async with self.publisher.turn:
            row.result_seq = self.publisher.next_seq
            self.writes += 1
            await row.asave(update_fields=["result", "error", "state", "finished_at", "result_seq"])
            data = {"call_id": row.call_id, "name": row.name, "arguments": row.arguments, "duration_ms": duration_ms}
            data.update({"result": row.result} if row.state == ToolCall.State.OK else {"error": row.error})
            if row.server:
                data["server"] = row.server
            if row.approval:
                data["approval"] = row.approval
            event = await self.publisher.publish_in_turn(events.TOOL_RESULT, data)
        self.recorder.advance(event.seq)

    async def _ask(self, row: ToolCall) -> str:
        """Show the user the call with Approve and Deny, and wait for the decision
        (stored on the row by whichever worker gets it)."""
        await self._publish_approval(row, Approval.PENDING)
        self.awaiting += 1
        try:
            decision = await approval.wait_for_decision(self.publisher.log, row)
        finally:
            self.awaiting -= 1
            self.awaited_at = time.monotonic()
        if decision == Approval.APPROVED:
            # Every open view: the buttons go, the card runs.
            await self._publish_approval(row, decision)
        return decision

    async def _publish_approval(self, row: ToolCall, decision: str) -> None:
        data = {
            "call_id": row.call_id,
            "name": row.name,
            "arguments": row.arguments,
            "server": row.server,
            "id": row.pk,
            "approval": decision,
        }
        event = await self.publisher.publish(events.TOOL_APPROVAL, data)
        self.recorder.advance(event.seq)


def _bounded(result: str) -> str:
    """A tool's result as the model and the page get it. A longer one is cut with
    a note, not refused: what the tool found is still worth answering from, and
    the note tells the model it has not seen all of it."""
    limit = settings.CHAT_MAX_TOOL_RESULT_CHARS
    if len(result) <= limit:
        return result
    note = f"[Cut here: the result was {len(result):,} characters long; only the first {limit:,} are given.]"
    return f"{result[:limit]}\n{note}"

"""The generation loop: one answer attempt, running apart from any request.

model stream ─► text_delta events, tool calls ─► tool_start / run / tool_result ─►
model again ... until a text answer, then done (or error). Every event goes to the
event log with the next sequence number; the text goes to the database in batches
(chat/recorder.py). Stop, a viewerless answer and a crash each end it cleanly.
"""

import asyncio
import contextvars
import json
import logging
import time
from dataclasses import dataclass, field

import httpx2
import openai
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, transaction
from django.utils import timezone

from chat import events
from chat.eventlog import get_event_log
from chat.events import Event
from chat.models import Generation, Message, Status, StopReason, ToolCall
from chat.provider import stream as provider_stream
from chat.provider.client import FILTERED, describe_error, error_detail, get_client
from chat.provider.prompt import build_messages, load_history
from chat.recorder import Recorder
from chat.rendering import render_message
from chat.serving import collector
from chat.serving.db_threads import shared_context
from chat.storable import LARGEST_COUNT, reason, refused, storable
from chat.tools import ToolContext, ToolError, all_tools, get_tool

logger = logging.getLogger("chat.generation")

UNFINISHED_TOOL = "The answer ended before the tool finished."
# ToolCall.name's length: no tool has a longer name.
MAX_TOOL_NAME = 100
UNSTORABLE = "The rest of this answer could not be saved, so it was stopped here. What was saved is kept."
UNSAVED_END = (
    "The end of this answer could not be saved: the database is not answering. "
    "Reload the page in a moment; what was saved can be continued."
)
DELETED = "This conversation was deleted."

# Running generations of this process, so they are not garbage-collected and
# tests can wait for them.
_running: dict[int, asyncio.Task] = {}


def start(generation: Generation, earlier: list[Message] | None = None) -> asyncio.Task:
    """Start generating in the background. `generation.message` (with its
    conversation) is the generation's from now on; `earlier`, the messages before
    it, when the caller knows them. A fresh context: the task must not inherit the
    request's (its thread-sensitive ORM executor ends with it)."""
    message_id = generation.message_id
    task = asyncio.get_running_loop().create_task(
        _run(generation, earlier), context=contextvars.Context(), name=f"generation-{message_id}"
    )
    _running[message_id] = task
    task.add_done_callback(lambda t: _running.pop(message_id, None) if _running.get(message_id) is t else None)
    return task


def running_task(message_id: int) -> asyncio.Task | None:
    return _running.get(message_id)


async def _run(generation: Generation, earlier: list[Message] | None) -> None:
    async with shared_context():
        try:
            await Answer(generation, earlier).run()
        except BaseException as exc:
            # The final save releases the thread's connection in its own trip
            # (_store_end); an answer that failed before or during it, here.
            await sync_to_async(close_old_connections)()
            if not isinstance(exc, Exception):
                raise
            # Answer.run() ends every answer itself; should that fail, it is
            # said here, not by asyncio when the task is collected.
            logger.exception("generation failed message=%s", generation.message_id)


@dataclass
class Outcome:
    status: str
    reason: str = StopReason.NONE
    error: str = ""


class ProviderFailure(Exception):
    """The model provider failed. The message is what the user reads; `detail`,
    the provider's own account, is for the log and staff only."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail


class AnswerTooLong(Exception):
    pass


class OutputLimit(Exception):
    """The model or its provider sent more than a limit allows; the message is
    what the user reads."""


class MessageGone(Exception):
    """The answer's rows were deleted (its conversation was) while it ran."""


@dataclass
class PendingCall:
    id: str = ""
    name: str = ""
    # Joined once, when needed (see Round.text).
    argument_parts: list[str] = field(default_factory=list)
    argument_chars: int = 0

    @property
    def arguments(self) -> str:
        return "".join(self.argument_parts)


@dataclass
class Round:
    parts: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    calls: list[PendingCall] = field(default_factory=list)

    @property
    def text(self) -> str:
        # Joined once, when needed: `text += delta` copies the whole text per token.
        return "".join(self.parts)


class Answer:
    def __init__(self, generation: Generation, earlier: list[Message] | None) -> None:
        self.generation = generation
        self.message = generation.message
        self.message_id = self.message.pk
        self.generation_id = generation.pk
        self.earlier = earlier
        # The message's tool calls, earlier attempts' first, as the page shows them.
        self.tool_calls: list[ToolCall] = []
        self.log = get_event_log()
        self._emit_lock = asyncio.Lock()
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.started = time.monotonic()
        # Database writes besides the recorder's: tool calls, the end of the answer.
        self.other_writes = 0
        self.tool_calls_started = False
        self.log_failed = False
        # This attempt's first text (a Continue's message has an older one).
        self.first_token: float | None = None
        # The database refused the answer's text: its end keeps what was stored.
        self.text_refused = False
        # The provider's own account of its failure, for staff.
        self.error_detail = ""

    def _request_from_history(self) -> list[dict]:
        """The messages for the model, the history read from the database."""
        earlier, calls = load_history(self.message)
        self.tool_calls = calls.get(self.message_id, [])
        return build_messages(self.message, earlier, calls)

    async def run(self) -> None:
        self.recorder = Recorder(self.message)
        self.seq = self.message.last_seq
        failure = None
        try:
            if self.earlier is None:
                messages = await sync_to_async(self._request_from_history)()
            else:
                # Known to the caller: a new answer, so no tool calls of its own yet.
                messages = build_messages(self.message, self.earlier, {})
            outcome = await self._until_finished(messages)
        except asyncio.CancelledError:
            # The server is shutting down: record what we have, then let go.
            await asyncio.shield(self._finish(Outcome(Status.INTERRUPTED, StopReason.SERVER_RESTART)))
            raise
        except Exception as exc:
            # Logged by _finish, which knows whether the rows were deleted meanwhile.
            failure = exc
            outcome = Outcome(Status.ERROR, StopReason.INTERNAL_ERROR, f"The server failed while answering ({type(exc).__name__}).")
        await self._finish(outcome, failure)

    async def _until_finished(self, messages: list[dict]) -> Outcome:
        work = asyncio.create_task(self._rounds(messages))
        stop = asyncio.create_task(self.log.wait_for_stop(self.message_id))
        unwatched = asyncio.create_task(self._until_unwatched())
        self.recorder.start()
        refused_text = self.recorder.refused
        try:
            done, _ = await asyncio.wait({work, stop, unwatched, refused_text}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (work, stop, unwatched):
                task.cancel()
            # Cancelling `work` closes the provider's response: the provider stops
            # producing, not only the display.
            await asyncio.gather(work, stop, unwatched, return_exceptions=True)
            self.recorder.stop()
        if refused_text in done:
            self.text_refused = True
            return Outcome(Status.ERROR, StopReason.INTERNAL_ERROR, UNSTORABLE)
        if work in done:
            return work.result()
        if stop in done:
            return Outcome(Status.STOPPED, StopReason.USER_STOP)
        return Outcome(
            Status.INTERRUPTED,
            StopReason.UNWATCHED,
            f"Nobody watched this answer for {settings.CHAT_UNWATCHED_LIMIT:g} seconds, so it was paused.",
        )

    async def _until_unwatched(self) -> None:
        limit = settings.CHAT_UNWATCHED_LIMIT
        while True:
            await asyncio.sleep(min(limit / 4, 5))
            since = await self.log.seconds_since_viewed(self.message_id)
            if since is None:
                since = time.monotonic() - self.started
            if since > limit:
                return

    # The model loop.

    async def _rounds(self, messages: list[dict]) -> Outcome:
        tools = [tool.schema() for tool in all_tools()]
        tool_rounds = 0
        while True:
            try:
                round = await self._stream_round(messages, tools)
            except ProviderFailure as exc:
                self._provider_failed(exc)
                return Outcome(Status.ERROR, StopReason.PROVIDER_ERROR, str(exc))
            except AnswerTooLong:
                return Outcome(
                    Status.STOPPED,
                    StopReason.ANSWER_LIMIT,
                    f"The answer reached the length limit of {settings.CHAT_MAX_ANSWER_CHARS} characters.",
                )
            except OutputLimit as exc:
                logger.warning("output limit message=%s: %s", self.message_id, exc)
                return Outcome(Status.ERROR, StopReason.OUTPUT_LIMIT, str(exc))
            if round.calls:
                if tool_rounds >= settings.CHAT_MAX_TOOL_ROUNDS:
                    return Outcome(
                        Status.ERROR,
                        StopReason.TOOL_ROUND_LIMIT,
                        f"The model kept calling tools ({settings.CHAT_MAX_TOOL_ROUNDS} rounds); stopped here.",
                    )
                tool_rounds += 1
                messages.extend(await self._run_tools(round))
                continue
            if round.finish_reason == "length":
                return Outcome(Status.STOPPED, StopReason.TOKEN_LIMIT, "The answer reached the model's token limit.")
            if round.finish_reason == "content_filter":
                # The provider cut the answer short: not a complete one.
                return Outcome(Status.ERROR, StopReason.PROVIDER_ERROR, FILTERED)
            return Outcome(Status.COMPLETE)

    async def _stream_round(self, messages: list[dict], tools: list[dict]) -> Round:
        """One chat-completions request, streamed: text goes out as it comes,
        tool-call deltas are gathered until complete."""
        round = Round()
        by_index: dict[int, PendingCall] = {}
        idle = settings.CHAT_IDLE_TIMEOUT
        max_line_bytes = settings.CHAT_MAX_PROVIDER_LINE_BYTES
        max_bytes = settings.CHAT_MAX_PROVIDER_RESPONSE_BYTES
        loop = asyncio.get_running_loop()
        try:
            async with provider_stream.completion(get_client(), _request_body(messages, tools)) as response:
                # The idle timeout: at least `idle` seconds without a chunk, at
                # most a quarter more. The timer moves only when the deadline comes
                # within `idle`, not once per token.
                deadline = loop.time() + idle
                async with asyncio.timeout_at(deadline) as timer:
                    async for chunk in provider_stream.chunks(
                        response, max_line_bytes=max_line_bytes, max_bytes=max_bytes
                    ):
                        now = loop.time()
                        if deadline - now < idle:
                            deadline = now + idle * 1.25
                            timer.reschedule(deadline)
                        await self._chunk(chunk, round, by_index)
        except provider_stream.LineTooLong:
            raise OutputLimit(
                f"The model provider sent more than {max_line_bytes:,} bytes in one piece; stopped here."
            ) from None
        except provider_stream.ResponseTooLarge:
            raise OutputLimit(f"The model provider sent more than {max_bytes:,} bytes in one reply; stopped here.") from None
        except (TimeoutError, httpx2.TimeoutException) as exc:
            # Ours, or the client's read timeout (the same length) if it fired first.
            raise ProviderFailure(f"The model provider sent nothing for {idle:g} seconds.", error_detail(exc)) from None
        except (openai.APIError, OSError, ValueError) as exc:
            raise ProviderFailure(describe_error(exc), error_detail(exc)) from exc
        except Exception as exc:
            # httpx2 transport errors mid-stream are not wrapped by the SDK.
            if type(exc).__module__.startswith(("httpx2", "httpcore2")):
                raise ProviderFailure(describe_error(exc), error_detail(exc)) from exc
            raise
        if round.finish_reason is None:
            raise ProviderFailure(
                "The model's answer ended without finishing (the stream was cut off).",
                "The stream ended without a finish_reason.",
            )
        return round

    def _provider_failed(self, failure: ProviderFailure) -> None:
        """The provider's own account of a failure goes to the log and, for staff,
        to the attempt's row (stored with the end of the answer)."""
        logger.warning(
            "provider failed message=%s generation=%s: %s", self.message_id, self.generation_id, failure.detail
        )
        self.error_detail = storable(failure.detail)

    async def _chunk(self, chunk: dict, round: Round, by_index: dict[int, PendingCall]) -> None:
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            earlier = self.message
            self.prompt_tokens = _tokens(self.prompt_tokens, usage.get("prompt_tokens"), earlier.prompt_tokens)
            self.completion_tokens = _tokens(
                self.completion_tokens, usage.get("completion_tokens"), earlier.completion_tokens
            )
        choices = chunk.get("choices")
        if not choices:
            return
        choice = choices[0] if isinstance(choices, list) else None
        if not isinstance(choice, dict):
            raise ValueError("a chunk of the stream has no usable choice")
        delta = choice.get("delta") or {}
        if not isinstance(delta, dict):
            raise ValueError("a chunk of the stream has a delta that is not an object")
        text = delta.get("content")
        if text and isinstance(text, str):
            text = storable(text)
            round.parts.append(text)
            await self._text(text)
        for call_delta in delta.get("tool_calls") or ():
            if isinstance(call_delta, dict):
                _gather_call(round, by_index, call_delta)
        if choice.get("finish_reason"):
            round.finish_reason = str(choice["finish_reason"])

    async def _text(self, text: str) -> None:
        if self.first_token is None:
            self.first_token = time.monotonic()
        if self.recorder.length + len(text) > settings.CHAT_MAX_ANSWER_CHARS:
            text = text[: settings.CHAT_MAX_ANSWER_CHARS - self.recorder.length]
            if text:
                event = await self._emit(events.TEXT_DELTA, {"text": text})
                self.recorder.add_text(text, event.seq)
            raise AnswerTooLong
        event = await self._emit(events.TEXT_DELTA, {"text": text})
        self.recorder.add_text(text, event.seq)

    # Tools.

    async def _run_tools(self, round: Round) -> list[dict]:
        """Announce every call, run them in parallel, report each as it ends.
        Returns the messages that give the model the results."""
        # The card sits after the text that preceded it: store that text first.
        await self.recorder.flush()
        rows = []
        for call in round.calls:
            rows.append(await self._tool_start(call))
        context = ToolContext(user_id=self.message.conversation.owner_id, conversation_id=self.message.conversation_id)
        await asyncio.gather(*(self._run_tool(row, context) for row in rows))
        assistant = {
            "role": "assistant",
            "content": round.text or None,
            "tool_calls": [
                {"id": r.call_id, "type": "function", "function": {"name": r.name, "arguments": r.arguments}}
                for r in rows
            ],
        }
        results = [
            {"role": "tool", "tool_call_id": r.call_id, "content": r.result if r.state == ToolCall.State.OK else f"Error: {r.error}"}
            for r in rows
        ]
        return [assistant, *results]

    async def _tool_start(self, call: PendingCall) -> ToolCall:
        self.tool_calls_started = True
        self.other_writes += 1
        async with self._emit_lock:
            row = await ToolCall.objects.acreate(
                message_id=self.message_id,
                # Model-made strings: bounded like every stored field, and storable.
                call_id=storable(call.id[:200]),
                name=storable(call.name[:100]),
                arguments=storable(call.arguments),
                text_offset=self.recorder.length,
                start_seq=self.seq + 1,
            )
            self.tool_calls.append(row)
            event = await self._publish(
                events.TOOL_START, {"call_id": row.call_id, "name": row.name, "arguments": row.arguments}
            )
        self.recorder.advance(event.seq)
        return row

    async def _run_tool(self, row: ToolCall, context: ToolContext) -> None:
        started = time.monotonic()
        try:
            # Tool output is untrusted: it may echo what the model sent, or anything.
            row.result = storable(_bounded_result(await _call_tool(row.name, row.arguments, context)))
            row.state = ToolCall.State.OK
        except ToolError as exc:
            row.error, row.state = storable(str(exc)), ToolCall.State.ERROR
        except TimeoutError:
            row.error, row.state = f"The tool took longer than {settings.CHAT_TOOL_TIMEOUT:g} seconds.", ToolCall.State.ERROR
        except Exception as exc:
            logger.exception("tool %s failed", row.name)
            row.error, row.state = f"The tool failed ({type(exc).__name__}).", ToolCall.State.ERROR
        row.finished_at = timezone.now()
        duration_ms = round((time.monotonic() - started) * 1000)
        async with self._emit_lock:
            row.result_seq = self.seq + 1
            self.other_writes += 1
            await row.asave(update_fields=["result", "error", "state", "finished_at", "result_seq"])
            data = {"call_id": row.call_id, "name": row.name, "arguments": row.arguments, "duration_ms": duration_ms}
            data.update({"result": row.result} if row.state == ToolCall.State.OK else {"error": row.error})
            event = await self._publish(events.TOOL_RESULT, data)
        self.recorder.advance(event.seq)

    # Events.

    async def _emit(self, type: str, data: dict) -> Event:
        async with self._emit_lock:
            return await self._publish(type, data)

    async def _publish(self, type: str, data: dict) -> Event:
        """Caller holds the lock: sequence numbers reach the log in order."""
        self.seq += 1
        event = Event(self.seq, type, data)
        try:
            await self.log.publish(self.message_id, event)
        except Exception:
            # The log is unreachable (Redis down): the text still reaches the
            # database, and viewers are told by their stream. Said once per answer,
            # not once per token.
            if not self.log_failed:
                self.log_failed = True
                logger.warning("event log publish failed message=%s seq=%s", self.message_id, self.seq, exc_info=True)
        return event

    def _store_end(self, outcome: Outcome, now) -> tuple[int, str | None]:
        """The end of the answer in one transaction and one trip to the database
        thread: the rows, then the answer rendered as every viewer's terminal frame
        shows it (once, not once per viewer). Returns the statements that wrote,
        and the HTML (None if it could not be rendered: viewers render their own)."""
        try:
            writes = self._save_end(outcome, now)
            html = self._render_end(now)
        finally:
            # The generation is done with its thread's connection (rendering may
            # still read feedback): kept or closed as at the end of a request, in
            # this trip rather than one more.
            close_old_connections()
        return writes, html

    def _render_end(self, now) -> str | None:
        for call in self.tool_calls:
            if call.state == ToolCall.State.RUNNING:  # as _save_end stored it
                call.state, call.error, call.finished_at = ToolCall.State.ERROR, UNFINISHED_TOOL, now
        try:
            return render_message(self.message, tool_calls=self.tool_calls)
        except Exception:
            logger.exception("rendering the finished answer failed message=%s", self.message_id)
            return None

    def _save_end(self, outcome: Outcome, now) -> int:
        """The rows, in one transaction; the statements that wrote. The message
        takes the values stored once they are."""
        message = self.message
        fields = {
            "content": self.recorder.content,
            "status": outcome.status,
            "stop_reason": outcome.reason,
            "error": storable(outcome.error),
            "finished_at": now,
            "heartbeat_at": now,
            "first_token_at": self.recorder.first_token_at,
            # The terminal event's.
            "last_seq": self.seq + 1,
            # Each kept storable as it was counted (_tokens).
            "prompt_tokens": (message.prompt_tokens or 0) + self.prompt_tokens,
            "completion_tokens": (message.completion_tokens or 0) + self.completion_tokens,
        }
        with transaction.atomic():
            row = Message.objects.filter(pk=message.pk)
            if self.text_refused:
                # The text as last stored: what came after, the database refused.
                fields["content"] = row.values_list("content", flat=True).first()
            if fields["content"] is None or not row.update(**fields):
                raise MessageGone
            Generation.objects.filter(pk=self.generation_id).update(
                status=outcome.status,
                stop_reason=outcome.reason,
                error=fields["error"],
                error_detail=self.error_detail,
                finished_at=now,
                first_token_at=self.recorder.first_token_at if self.generation.text_offset == 0 else None,
                prompt_tokens=self.prompt_tokens,
                completion_tokens=self.completion_tokens,
            )
            writes = 2
            if self.tool_calls_started:
                # Only this attempt can have left a call running: a crashed one's
                # were closed when its message was marked interrupted.
                ToolCall.objects.filter(message_id=message.pk, state=ToolCall.State.RUNNING).update(
                    state=ToolCall.State.ERROR, error=UNFINISHED_TOOL, finished_at=now
                )
                writes += 1
        for name, value in fields.items():
            setattr(message, name, value)
        return writes

    async def _store_end_or_retry(self, outcome: Outcome, now) -> tuple[Outcome, str | None]:
        """_store_end(), tried again while the database fails (Django replaces a
        lost connection), for about as long as a heartbeat takes to go stale. A
        text the database refuses ends the answer with what was stored instead.
        The outcome stored and the HTML; raises if the end could not be stored."""
        deadline = time.monotonic() + settings.CHAT_HEARTBEAT_STALE
        # The first try again is at once: a connection killed while the answer
        # streamed fails its first statement, and viewers wait for the end.
        delay = 0.0
        while True:
            try:
                writes, html = await sync_to_async(self._store_end)(outcome, now)
            except MessageGone:
                raise
            except Exception as exc:
                if refused(exc) and not self.text_refused:
                    logger.warning("the text of answer %s cannot be stored: %s", self.message_id, reason(exc))
                    self.text_refused = True
                    outcome = Outcome(Status.ERROR, StopReason.INTERNAL_ERROR, UNSTORABLE)
                    continue
                if refused(exc) or time.monotonic() + delay > deadline:
                    raise
                logger.warning("saving the end of answer %s failed, trying again", self.message_id, exc_info=True)
                await asyncio.sleep(delay)
                delay = max(delay * 2, settings.CHAT_FLUSH_INTERVAL)
                continue
            self.other_writes += writes
            return outcome, html

    def _render_notice(self, notice: str) -> str | None:
        """The answer as it was streamed, ended by `notice`: what viewers are
        shown when its end could not be stored (rendered without the database)."""
        self.message.content = self.recorder.content
        try:
            return render_message(self.message, notice=notice, tool_calls=self.tool_calls)
        except Exception:
            logger.exception("rendering the unsaved answer failed message=%s", self.message_id)
            return None

    async def _finish(self, outcome: Outcome, failure: Exception | None = None) -> None:
        """Store the end of the answer and publish it. It does not fail: an end
        the database does not store is logged and told to the viewers, and the
        answer, `streaming` with a stale heartbeat and no generation, is marked
        interrupted by the liveness check (chat/liveness.py)."""
        now = timezone.now()
        gone = False
        try:
            outcome, html = await self._store_end_or_retry(outcome, now)
        except MessageGone:
            gone = True
            logger.info("message %s was deleted while it was being answered", self.message_id)
            outcome = Outcome(Status.ERROR, outcome.reason, DELETED)
            html = self._render_notice(DELETED)
        except Exception as exc:
            # A refused row's traceback would quote the row: its text.
            traceback = None if refused(exc) else exc
            logger.error("the end of answer %s was not saved: %s", self.message_id, reason(exc), exc_info=traceback)
            outcome = Outcome(Status.ERROR, StopReason.INTERNAL_ERROR, UNSAVED_END)
            html = self._render_notice(UNSAVED_END)
        if failure is not None and not gone:
            logger.error("generation failed message=%s", self.message_id, exc_info=failure)
        async with self._emit_lock:
            data = {"status": outcome.status, "reason": outcome.reason}
            if html is not None:
                data["html"] = html
            if outcome.status == Status.ERROR:
                await self._publish(events.ERROR, {**data, "message": outcome.error})
            else:
                await self._publish(events.DONE, data)
        try:
            await self.log.finish(self.message_id)
        except Exception:
            logger.warning("event log finish failed message=%s", self.message_id, exc_info=True)
        _log_outcome(self.message, self, outcome)
        collector.tune_once_warm()


def _request_body(messages: list[dict], tools: list[dict]) -> dict:
    """One chat-completions request, as the provider reads it."""
    body = {
        "model": settings.CHAT_MODEL,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": settings.CHAT_MAX_TOKENS,
    }
    if tools:
        body["tools"] = tools
    return body


def _tokens(total: int, reported, earlier: int | None) -> int:
    """`total` plus a count the provider reported, if it is one, kept storable
    with the message's `earlier` attempts' count."""
    if not isinstance(reported, int) or reported <= 0:
        return total
    return min(total + reported, LARGEST_COUNT - (earlier or 0))


def _gather_call(round: Round, by_index: dict[int, PendingCall], delta: dict) -> None:
    """Tool-call deltas arrive in pieces keyed by index; some servers reuse index
    0 for every call, so a new id at a known index starts a new call. The number
    of calls, their names and arguments are bounded as they arrive."""
    index = delta.get("index") if isinstance(delta.get("index"), int) else 0
    call_id = delta.get("id") if isinstance(delta.get("id"), str) else None
    call = by_index.get(index)
    if call is None or (call_id and call.id and call_id != call.id):
        if len(round.calls) >= settings.CHAT_MAX_TOOL_CALLS:
            limit = settings.CHAT_MAX_TOOL_CALLS
            raise OutputLimit(f"The model asked for more than {limit} tool calls at once; stopped here.")
        call = by_index[index] = PendingCall()
        round.calls.append(call)
    if call_id:
        call.id = call_id
    function = delta.get("function")
    if isinstance(function, dict):
        name, arguments = function.get("name"), function.get("arguments")
        if isinstance(name, str):
            call.name += name
            if len(call.name) > MAX_TOOL_NAME:
                raise OutputLimit(f"The model sent a tool name longer than {MAX_TOOL_NAME} characters; stopped here.")
        if isinstance(arguments, str) and arguments:
            call.argument_chars += len(arguments)
            if call.argument_chars > settings.CHAT_MAX_TOOL_ARGUMENT_CHARS:
                limit = settings.CHAT_MAX_TOOL_ARGUMENT_CHARS
                raise OutputLimit(f"The model sent tool arguments longer than {limit:,} characters; stopped here.")
            call.argument_parts.append(arguments)
    if not call.id:
        call.id = f"call_{len(round.calls)}"


async def _call_tool(name: str, arguments: str, context: ToolContext) -> str:
    tool = get_tool(name)
    if tool is None:
        raise ToolError(f"There is no tool named {name!r}.")
    try:
        args = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        raise ToolError("The arguments were not valid JSON.") from None
    except RecursionError:
        raise ToolError("The arguments are nested too deeply.") from None
    if not isinstance(args, dict):
        raise ToolError("The arguments must be a JSON object.")
    async with asyncio.timeout(settings.CHAT_TOOL_TIMEOUT):
        return await tool.run(args, context)


def _bounded_result(result: str) -> str:
    """A tool's result as the model and the page get it. A longer one is cut with
    a note, not refused: what the tool found is still worth answering from, and
    the note tells the model it has not seen all of it."""
    limit = settings.CHAT_MAX_TOOL_RESULT_CHARS
    if len(result) <= limit:
        return result
    note = f"[Cut here: the result was {len(result):,} characters long; only the first {limit:,} are given.]"
    return f"{result[:limit]}\n{note}"


def _log_outcome(message: Message, answer: Answer, outcome: Outcome) -> None:
    """One structured line per answer: no prompt text, no secrets."""
    first_token = round(answer.first_token - answer.started, 3) if answer.first_token is not None else None
    logger.info(
        "answer %s",
        json.dumps(
            {
                "user_id": message.conversation.owner_id,
                "message_id": message.pk,
                "model": message.model,
                "prompt_tokens": answer.prompt_tokens,
                "completion_tokens": answer.completion_tokens,
                "first_token_s": first_token,
                "duration_s": round(time.monotonic() - answer.started, 3),
                "outcome": outcome.status,
                "reason": outcome.reason,
                "db_writes": answer.recorder.writes + answer.other_writes,
            }
        ),
    )

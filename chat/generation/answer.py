"""One answer attempt, from the model's first reply to its stored end.

model reply ─► reasoning_delta and text_delta events, tool calls ─► tool_start /
run / tool_result ─► model again ... until a text answer, then done (or error).
The parts:
- the model's replies are read by chat/provider/reply.py;
- a reasoning model's thinking is published as it comes and timed: from its
  first piece to the first text after it (stretches of thinking between tool
  rounds add up), the text that ends it carrying the total for the page;
- every event is numbered and published by `Publisher`, text deltas with their
  Markdown rendered once for every viewer (chat/live_markdown.py);
- the text reaches the database in batches through `Recorder`;
- tools run in `ToolCalls`;
- the end is stored and rendered by chat/generation/ending.py.
Stop, a viewerless answer, a refused text and a crash each end it cleanly.
"""

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

from chat import events
from chat.eventlog import get_event_log
from chat.generation.ending import UNSTORABLE, AttemptEnd, MessageGone, Outcome, render_unsaved, store_end_with_retries
from chat.generation.publisher import Publisher
from chat.generation.recorder import Recorder
from chat.generation.tool_calls import ToolCalls
from chat.live_markdown import LiveMarkdown
from chat.models import Generation, Message, Status, StopReason
from chat.provider.catalog import ModelChoice
from chat.provider.client import FILTERED
from chat.provider.prompt import build_messages, load_history
from chat.provider.reply import OutputLimit, ProviderFailure, Reply, read_reply, request_body
from chat.rendering import growing_text
from chat.serving import collector
from chat.storable import LARGEST_COUNT, reason, refused, storable
from chat.tools import ToolContext
from chat.tools.toolbox import Toolbox

logger = logging.getLogger("chat.generation")

UNSAVED_END = (
    "The end of this answer could not be saved: the database is not answering. "
    "Reload the page in a moment; what was saved can be continued."
)
DELETED = "This conversation was deleted."


class AnswerTooLong(Exception):
    pass


# How long the end of an answer waits for its cancelled watchers (the Stop
# request's blocking Redis read, the unwatched timer) to let go.
LET_GO_SECONDS = 1.0


async def _let_go(*tasks: asyncio.Task) -> None:
    """Wait a moment for cancelled `tasks` to end, never longer: a blocking Redis
    read being cancelled closes its connection, which has been seen to hang in
    the client (a test on PostgreSQL + Redis waited for it forever), and the
    answer's end must not wait on the event log's watcher."""
    _, pending = await asyncio.wait(tasks, timeout=LET_GO_SECONDS)
    for task in pending:
        logger.warning("a cancelled watcher of an answer did not end in %g s: %s", LET_GO_SECONDS, task.get_name())
        # Whatever it ends with later is read, so asyncio has nothing to report.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())


@dataclass
class Setup:
    """What an answer starts with besides its rows, read when it was stored: the
    model that writes it, the system message it is sent (the site's and its
    user's instructions), and the models its finished form offers to retry with."""

    choice: ModelChoice
    system: str
    retry_models: list[tuple[str, str]] = field(default_factory=list)


class Answer:
    def __init__(self, generation: Generation, earlier: list[Message] | None, setup: Setup) -> None:
        self.generation = generation
        self.message = generation.message
        self.message_id = self.message.pk
        # The messages before the answer, when the caller knew them.
        self.earlier = earlier
        self.setup = setup
        self.choice = setup.choice
        self.log = get_event_log()
        self.publisher = Publisher(self.log, self.message_id, self.message.last_seq)
        self.recorder = Recorder(self.message)
        # The text after the last tool card, as the page shows it (a Continue's
        # earlier text is fed in once the tool calls are known).
        self.live = LiveMarkdown()
        self.tools = ToolCalls(self.message, self.publisher, self.recorder, self.live, [])
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.started = time.monotonic()
        # This attempt's first text (a Continue's message has an older one).
        self.first_token: float | None = None
        # Seconds thought (a Continue's earlier attempts' included); when the
        # stretch of thinking under way started (monotonic); whether the page
        # shows "Thinking…" (until text comes).
        self.thought = self.message.reasoning_seconds or 0.0
        self.thinking_since: float | None = None
        self.thinking = False
        # No reasoning yet in the model's reply being read.
        self.reply_unreasoned = True
        # The database refused the answer's text: its end keeps what was stored.
        self.text_refused = False
        # The provider's own account of its failure, for staff.
        self.error_detail = ""

    def _request_from_history(self) -> list[dict]:
        """The messages for the model, the history read from the database (and
        the tools on offer, in the same trip)."""
        self.tools.toolbox = Toolbox.read(self._tool_context())
        earlier, calls = load_history(self.message)
        self.tools.rows = calls.get(self.message_id, [])
        return self._messages(earlier, calls)

    def _messages(self, earlier: list[Message], calls: dict) -> list[dict]:
        return build_messages(
            self.message,
            earlier,
            calls,
            system=self.setup.system,
            context_chars=self.choice.context_chars,
            send_reasoning=self.choice.send_reasoning,
        )

    def _tool_context(self) -> ToolContext:
        return ToolContext(user_id=self.message.conversation.owner_id, conversation_id=self.message.conversation_id)

    async def run(self) -> None:
        failure = None
        try:
            if self.earlier is None:
                messages = await sync_to_async(self._request_from_history)()
                self.live.feed(growing_text(self.message.content, self.tools.rows))
            else:
                # Known to the caller: a new answer, so no tool calls of its own yet.
                messages = self._messages(self.earlier, {})
                self.tools.toolbox = await sync_to_async(Toolbox.read)(self._tool_context())
            outcome = await self._until_finished(messages)
        except asyncio.CancelledError:
            # The server is shutting down: record what we have, then let go.
            await asyncio.shield(self._finish(Outcome(Status.INTERRUPTED, StopReason.SERVER_RESTART)))
            raise
        except Exception as exc:
            # Logged by _finish, which knows whether the rows were deleted meanwhile.
            failure = exc
            outcome = Outcome(
                Status.ERROR, StopReason.INTERNAL_ERROR, f"The server failed while answering ({type(exc).__name__})."
            )
        await self._finish(outcome, failure)

    async def _until_finished(self, messages: list[dict]) -> Outcome:
        work = asyncio.create_task(self._replies(messages))
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
            await asyncio.gather(work, return_exceptions=True)
            await _let_go(stop, unwatched)
            try:
                # No MCP server process outlives its answer, however it ended.
                await self.tools.toolbox.close()
            finally:
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
            if self.tools.awaiting:
                # Waiting for a person's decision, bounded by CHAT_APPROVAL_TIMEOUT.
                continue
            if self.tools.awaited_at is not None:
                since = min(since, time.monotonic() - self.tools.awaited_at)
            if since > limit:
                return

    # The model loop.

    async def _replies(self, messages: list[dict]) -> Outcome:
        """The model's replies, with the tools each asks for run in between,
        until one answers in text; how the answer ended."""
        tools = self.tools.toolbox.schemas()
        tool_rounds = 0
        while True:
            reply = Reply()
            self.reply_unreasoned = True
            try:
                await read_reply(
                    self.choice, request_body(self.choice, messages, tools), reply, self._text, self._reasoning
                )
            except ProviderFailure as failure:
                # The provider's words as stored: a lone surrogate cannot be encoded
                # in UTF-8, so a log file would lose the whole line.
                self.error_detail = storable(failure.detail)
                logger.warning(
                    "provider failed message=%s generation=%s: %s",
                    self.message_id,
                    self.generation.pk,
                    self.error_detail,
                )
                return Outcome(Status.ERROR, StopReason.PROVIDER_ERROR, str(failure))
            except AnswerTooLong:
                return Outcome(
                    Status.STOPPED,
                    StopReason.ANSWER_LIMIT,
                    f"The answer reached the length limit of {settings.CHAT_MAX_ANSWER_CHARS} characters.",
                )
            except OutputLimit as exc:
                logger.warning("output limit message=%s: %s", self.message_id, exc)
                return Outcome(Status.ERROR, StopReason.OUTPUT_LIMIT, str(exc))
            finally:
                self._count_tokens(reply)
                # Running tools is not thinking.
                self._stop_thinking_clock()
            if reply.calls:
                if tool_rounds >= settings.CHAT_MAX_TOOL_ROUNDS:
                    return Outcome(
                        Status.ERROR,
                        StopReason.TOOL_ROUND_LIMIT,
                        f"The model kept calling tools ({settings.CHAT_MAX_TOOL_ROUNDS} rounds); stopped here.",
                    )
                tool_rounds += 1
                messages.extend(await self.tools.run(reply))
                continue
            if reply.finish_reason == "length":
                return Outcome(Status.STOPPED, StopReason.TOKEN_LIMIT, "The answer reached the model's token limit.")
            if reply.finish_reason == "content_filter":
                # The provider cut the answer short: not a complete one.
                return Outcome(Status.ERROR, StopReason.PROVIDER_ERROR, FILTERED)
            return Outcome(Status.COMPLETE)

    def _count_tokens(self, reply: Reply) -> None:
        """This attempt's counts, kept storable with the message's earlier attempts'."""
        room_prompt = LARGEST_COUNT - (self.message.prompt_tokens or 0)
        room_completion = LARGEST_COUNT - (self.message.completion_tokens or 0)
        self.prompt_tokens = min(self.prompt_tokens + reply.prompt_tokens, room_prompt)
        self.completion_tokens = min(self.completion_tokens + reply.completion_tokens, room_completion)

    async def _text(self, text: str) -> None:
        if self.first_token is None:
            self.first_token = time.monotonic()
        room = settings.CHAT_MAX_ANSWER_CHARS - self.recorder.length
        if len(text) > room:
            if room > 0:
                await self._publish_text(text[:room])
            raise AnswerTooLong
        await self._publish_text(text)

    async def _publish_text(self, text: str) -> None:
        update = self.live.feed(text)
        data = {"text": text, **update.as_data()}
        thought = None
        if self.thinking:
            # The first text after thinking closes the block: "Thought for N s".
            self._stop_thinking_clock()
            self.thinking = False
            data["thought_seconds"] = thought = self._thought_seconds()
        event = await self.publisher.publish(events.TEXT_DELTA, data)
        self.recorder.add_text(text, event.seq, thought)

    async def _reasoning(self, text: str) -> None:
        """A piece of the model's thinking. It has a length limit of its own,
        the answer's: beyond it the thinking is neither shown nor kept, and the
        answer goes on (its text has all its room)."""
        if self.reply_unreasoned:
            self.reply_unreasoned = False
            # The thinking of another reply (after tools, or a Continue's) is a
            # paragraph of its own.
            if self.recorder.reasoning_length and not self.recorder.reasoning.endswith("\n"):
                text = "\n\n" + text
        room = settings.CHAT_MAX_ANSWER_CHARS - self.recorder.reasoning_length
        text = text[: max(room, 0)]
        if not text:
            return
        if self.thinking_since is None:
            self.thinking_since = time.monotonic()
        started = not self.thinking
        self.thinking = True
        data = {"text": text, "started": True} if started else {"text": text}
        event = await self.publisher.publish(events.REASONING_DELTA, data)
        self.recorder.add_reasoning(text, event.seq, started)

    def _stop_thinking_clock(self) -> None:
        if self.thinking_since is not None:
            self.thought += time.monotonic() - self.thinking_since
            self.thinking_since = None

    def _thought_seconds(self) -> float:
        return round(self.thought, 1)

    # The end.

    async def _finish(self, outcome: Outcome, failure: Exception | None = None) -> None:
        """Store the end of the answer and publish it. It does not fail: an end
        the database does not store is logged and told to the viewers, and the
        answer, `streaming` with a stale heartbeat and no generation, is marked
        interrupted by the liveness check (chat/generation/liveness.py)."""
        now = timezone.now()
        self._stop_thinking_clock()
        end = AttemptEnd(
            message=self.message,
            generation=self.generation,
            content=self.recorder.content,
            reasoning=self.recorder.reasoning,
            # An answer that ends while thinking keeps the time it thought.
            reasoning_seconds=self._thought_seconds() if self.recorder.reasoning else None,
            first_token_at=self.recorder.first_token_at,
            last_seq=self.publisher.next_seq,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            error_detail=self.error_detail,
            tool_calls=self.tools.rows,
            tool_calls_started=self.tools.started,
            text_refused=self.text_refused,
            retry_models=self.setup.retry_models,
        )
        writes = 0
        gone = False
        # Every event published so far is in the log before the end is stored:
        # once it is, a Continue may start a new attempt on the message, whose
        # events must not meet this one's still on their way.
        await self.publisher.flush()
        try:
            outcome, writes, html = await store_end_with_retries(end, outcome, now)
        except MessageGone:
            gone = True
            logger.info("message %s was deleted while it was being answered", self.message_id)
            outcome = Outcome(Status.ERROR, outcome.reason, DELETED)
            html = render_unsaved(end, DELETED)
        except Exception as exc:
            # A refused row's traceback would quote the row: its text.
            traceback = None if refused(exc) else exc
            logger.error("the end of answer %s was not saved: %s", self.message_id, reason(exc), exc_info=traceback)
            outcome = Outcome(Status.ERROR, StopReason.INTERNAL_ERROR, UNSAVED_END)
            html = render_unsaved(end, UNSAVED_END)
        if failure is not None and not gone:
            logger.error("generation failed message=%s", self.message_id, exc_info=failure)
        data = {"status": outcome.status, "reason": outcome.reason}
        if html is not None:
            data["html"] = html
        if outcome.status == Status.ERROR:
            await self.publisher.publish(events.ERROR, {**data, "message": outcome.error})
        else:
            await self.publisher.publish(events.DONE, data)
        await self.publisher.finish()
        self._log_outcome(outcome, writes)
        collector.tune_once_warm()

    def _log_outcome(self, outcome: Outcome, end_writes: int) -> None:
        """One structured line per answer: no prompt text, no secrets."""
        first_token = round(self.first_token - self.started, 3) if self.first_token is not None else None
        logger.info(
            "answer %s",
            json.dumps(
                {
                    "user_id": self.message.conversation.owner_id,
                    "message_id": self.message_id,
                    "model": self.message.model,
                    "prompt_tokens": self.prompt_tokens,
                    "completion_tokens": self.completion_tokens,
                    "first_token_s": first_token,
                    "duration_s": round(time.monotonic() - self.started, 3),
                    "outcome": outcome.status,
                    "reason": outcome.reason,
                    "db_writes": self.recorder.writes + self.tools.writes + end_writes,
                }
            ),
        )

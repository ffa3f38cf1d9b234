"""The in-process event log: what a finished answer keeps for late readers."""

import asyncio
import gc

from chat.eventlog.memory import MemoryEventLog
from chat.events import DONE, TEXT_DELTA, TOOL_START, Event

EVENTS = [
    Event(1, TEXT_DELTA, {"text": "Let me "}),
    Event(2, TOOL_START, {"call_id": "c1", "name": "calculator", "arguments": "{}"}),
    Event(3, TEXT_DELTA, {"text": "see: <b>"}),
    Event(4, DONE, {"status": "complete", "reason": "", "html": "<p>Let me see.</p>"}),
]


async def finished_log() -> MemoryEventLog:
    log = MemoryEventLog()
    for event in EVENTS:
        await log.publish(7, event)
    await log.finish(7)
    return log


async def test_a_finished_answer_is_read_back_exactly_from_any_cursor():
    log = await finished_log()
    for cursor in range(len(EVENTS) + 1):
        assert await log.read_after(7, cursor, 0) == EVENTS[cursor:]


async def test_a_finished_answer_leaves_nothing_for_the_garbage_collector_to_walk():
    """Full collections pause every stream; the events of the finished answers of
    the last minutes must not lengthen them."""
    log = await finished_log()
    kept = log._answers[7]
    assert kept.events == []
    assert kept.finished and not any(gc.is_tracked(raw) for raw in kept.finished)


async def test_a_new_attempt_after_the_end_starts_the_log_again():
    """Continue: the new events follow; readers from before fall back to the database."""
    log = await finished_log()
    more = Event(5, TEXT_DELTA, {"text": " More."})
    await log.publish(7, more)
    assert await log.read_after(7, 4, 0) == [more]
    assert await log.read_after(7, 0, 0) == []


async def test_finished_answers_and_unknown_ones_leave_after_the_ttl(settings):
    """Kept for late readers for CHAT_EVENT_LOG_TTL, then dropped, as is the entry
    a reader makes for an answer this log never saw (finished before a restart)."""
    settings.CHAT_EVENT_LOG_TTL = 0.05
    log = await finished_log()
    assert await log.read_after(8, 0, 0) == []  # an answer the log never saw
    await asyncio.sleep(0.1)
    await log.publish(9, EVENTS[0])  # a new answer sweeps
    assert set(log._answers) == {9}


async def test_an_answer_that_streams_again_is_not_dropped_by_its_old_expiry(settings):
    settings.CHAT_EVENT_LOG_TTL = 0.05
    log = await finished_log()
    more = Event(5, TEXT_DELTA, {"text": " More."})
    await log.publish(7, more)  # Continue, still streaming past the first expiry
    await asyncio.sleep(0.1)
    await log.publish(9, EVENTS[0])
    assert await log.read_after(7, 4, 0) == [more]


async def test_a_users_streams_beyond_the_limit_are_replaced_oldest_first_and_forgotten_when_closed():
    log = MemoryEventLog()
    assert [await log.open_stream(1, s, 2) for s in ("a", "b", "c", "d")] == [[], [], ["a"], ["b"]]
    assert await log.open_stream(2, "x", 2) == []  # another user's count
    assert [await log.is_stream_open(1, s) for s in ("a", "b", "c", "d")] == [False, False, True, True]
    await log.close_stream(1, "c")
    assert await log.open_stream(1, "e", 2) == []
    for stream in ("d", "e"):
        await log.close_stream(1, stream)
    await log.close_stream(2, "x")
    assert log._streams == {}


async def test_a_decision_wakes_its_waiter_and_stays_announced():
    log = MemoryEventLog()
    waiting = asyncio.create_task(log.wait_for_decision(7, 3, 30))
    await asyncio.sleep(0)
    assert not waiting.done()
    await log.announce_decision(7, 3)
    await asyncio.wait_for(waiting, 1)
    await asyncio.wait_for(log.wait_for_decision(7, 3, 30), 1)
    # Nothing announced for another call: the wait ends after its timeout.
    await asyncio.wait_for(log.wait_for_decision(7, 4, 0.05), 1)

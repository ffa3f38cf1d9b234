"""An answer's events reach Redis in batches (chat/generation/publisher.py): the
first goes at once, what comes while a write is under way goes together in the
next one. Against a real Redis; two RedisEventLog objects stand for two
workers. A private redis-server where commands are counted, paused (CLIENT
PAUSE holds a write under way) or killed."""

import asyncio
import logging

import pytest
import redis

from chat import events
from chat.eventlog.memory import MemoryEventLog
from chat.eventlog.redis import RedisEventLog
from chat.events import Event
from chat.generation.publisher import Publisher
from tests.test_eventlog_redis import SHARED_REDIS_URL, keys_of_this_test
from tests.waiting import wait_until_async


@pytest.fixture
def shared_prefix():
    yield from keys_of_this_test("test-batches")


def part(seq: int) -> dict:
    return {"text": f"part {seq}\n"}


def text(seq: int) -> Event:
    return Event(seq, events.TEXT_DELTA, part(seq))


def writes(admin: redis.Redis) -> int:
    """EVALSHA calls since the statistics were reset: the publishes."""
    return admin.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)


async def publish_while_a_write_is_held(admin: redis.Redis, publisher: Publisher, seqs: range) -> None:
    """Redis holds every write until it is unpaused (or killed): the first of
    `seqs` is published and its write held, then the rest are published."""
    admin.client_pause(60_000, all=False)
    await publisher.publish(events.TEXT_DELTA, part(seqs[0]))
    await wait_until_async(lambda: admin.info("clients")["blocked_clients"] == 1, message="no write was held")
    for seq in seqs[1:]:
        await publisher.publish(events.TEXT_DELTA, part(seq))


async def test_what_comes_during_a_write_goes_in_the_next_one(private_redis):
    log = RedisEventLog(private_redis.url, prefix="burst")
    other = RedisEventLog(private_redis.url, prefix="burst")
    admin = redis.Redis.from_url(private_redis.url)
    publisher = Publisher(log, 1, 0)
    await publisher.publish(events.TEXT_DELTA, part(1))
    await publisher.flush()
    admin.config_resetstat()

    await publish_while_a_write_is_held(admin, publisher, range(2, 201))
    admin.client_unpause()
    await publisher.flush()

    # Event 2 alone, then everything that came while it was under way.
    assert writes(admin) == 2
    assert await other.read_after(1, 0, 0) == [text(seq) for seq in range(1, 201)]
    # The entry ids are the sequence numbers, without a gap.
    ids = [entry_id for entry_id, _ in admin.xrange("burst:events:1")]
    assert ids == [f"{seq}-0".encode() for seq in range(1, 201)]


async def test_a_batch_is_checked_for_continuity_once_and_kept_once(private_redis):
    log = RedisEventLog(private_redis.url, prefix="continuity")
    await log.publish(1, *[text(seq) for seq in range(1, 6)])
    # The same batch again (a retry after its reply was lost) changes nothing.
    await log.publish(1, *[text(seq) for seq in range(1, 6)])
    assert await log.read_after(1, 0, 0) == [text(seq) for seq in range(1, 6)]
    await log.publish(1, *[text(seq) for seq in range(6, 9)])
    assert await log.read_after(1, 4, 0) == [text(seq) for seq in range(5, 9)]
    # A batch that does not follow (a new generation after a crash) starts over.
    await log.publish(1, *[text(seq) for seq in range(20, 23)])
    assert await log.read_after(1, 0, 0) == []
    assert await log.read_after(1, 19, 0) == [text(20), text(21), text(22)]


async def test_a_reader_on_another_worker_sees_every_event_once(shared_prefix):
    log = RedisEventLog(SHARED_REDIS_URL, prefix=shared_prefix)
    other = RedisEventLog(SHARED_REDIS_URL, prefix=shared_prefix)
    publisher = Publisher(log, 1, 0)
    count = 600
    seen: list[Event] = []

    async def read() -> None:
        cursor = 0
        while cursor < count:
            batch = await other.read_after(1, cursor, timeout=5)
            assert batch, "the reader waited for nothing"
            seen.extend(batch)
            cursor = batch[-1].seq

    reader = asyncio.create_task(read())
    for seq in range(1, count + 1):
        await publisher.publish(events.TEXT_DELTA, part(seq))
        if seq % 7 == 0:
            # The model's next chunk is not always there yet.
            await asyncio.sleep(0)
    await publisher.finish()
    await asyncio.wait_for(reader, 20)
    assert seen == [text(seq) for seq in range(1, count + 1)]


async def test_the_end_of_an_answer_is_written_before_finish_returns(shared_prefix, settings):
    settings.CHAT_EVENT_LOG_TTL = 30
    log = RedisEventLog(SHARED_REDIS_URL, prefix=shared_prefix)
    other = RedisEventLog(SHARED_REDIS_URL, prefix=shared_prefix)
    publisher = Publisher(log, 1, 0)
    for seq in range(1, 101):
        await publisher.publish(events.TEXT_DELTA, part(seq))
    done = await publisher.publish(events.DONE, {"status": "complete", "reason": ""})
    await publisher.finish()
    read = await other.read_after(1, 0, 0)
    assert read[-1] == done and [e.seq for e in read] == list(range(1, 102))
    # Finished after the last write: kept for late readers, not for a day.
    assert 0 < redis.Redis.from_url(SHARED_REDIS_URL).pttl(f"{shared_prefix}:events:1") <= 30_000


async def test_a_pause_after_each_write_gathers_what_comes_during_it(private_redis, settings):
    settings.CHAT_EVENT_LOG_COALESCE_MS = 300
    log = RedisEventLog(private_redis.url, prefix="pause")
    admin = redis.Redis.from_url(private_redis.url)
    publisher = Publisher(log, 1, 0)
    await log.publish(2, text(1))  # the script is loaded
    admin.config_resetstat()
    await publisher.publish(events.TEXT_DELTA, part(1))
    # The first goes at once ...
    await wait_until_async(lambda: log.read_after(1, 0, 0), message="the first event waited")
    # ... those that follow wait for the end of the pause, together, though each
    # comes later than a round trip (without the pause each would go alone).
    for seq in range(2, 6):
        await asyncio.sleep(0.02)
        await publisher.publish(events.TEXT_DELTA, part(seq))
    await publisher.flush()
    assert writes(admin) == 2
    assert await log.read_after(1, 0, 0) == [text(seq) for seq in range(1, 6)]


async def test_a_redis_outage_during_a_write_costs_the_log_not_the_answer(private_redis, caplog):
    caplog.set_level(logging.WARNING, logger="chat")
    log = RedisEventLog(private_redis.url, prefix="outage")
    admin = redis.Redis.from_url(private_redis.url)
    publisher = Publisher(log, 1, 0)
    for seq in (1, 2):
        await publisher.publish(events.TEXT_DELTA, part(seq))
    await publisher.flush()

    await publish_while_a_write_is_held(admin, publisher, range(3, 11))
    private_redis.kill()
    # Neither the batch under way nor the next one raises; the answer goes on.
    for seq in range(11, 21):
        await publisher.publish(events.TEXT_DELTA, part(seq))
    await asyncio.wait_for(publisher.flush(), 30)
    failures = [r for r in caplog.records if "event log publish failed" in r.getMessage()]
    assert len(failures) == 1

    private_redis.start()  # same port, empty
    for seq in (21, 22):
        await publisher.publish(events.TEXT_DELTA, part(seq))
    await publisher.finish()
    assert await log.read_after(1, 20, 0) == [text(21), text(22)]
    # A reader from before the outage is sent to the database.
    assert await log.read_after(1, 2, 0) == []


async def test_the_in_process_log_has_each_event_when_publish_returns():
    log = MemoryEventLog()
    publisher = Publisher(log, 1, 0)
    for seq in range(1, 4):
        await publisher.publish(events.TEXT_DELTA, part(seq))
        assert (await log.read_after(1, seq - 1, 0)) == [text(seq)]

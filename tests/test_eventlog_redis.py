"""The Redis Streams event log against a real Redis: two RedisEventLog objects
with the same prefix stand for two workers. The outage tests run a private
redis-server, kill it and start it again on the same port."""

import asyncio
import os
import secrets
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
import redis.asyncio
from redis.exceptions import RedisError

from chat.eventlog.redis import MAX_BLOCK, RedisEventLog
from chat.events import Event
from tests.waiting import wait_until_async

SHARED_REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"


def shared_redis_or_skip(url: str = SHARED_REDIS_URL) -> None:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except (RedisError, OSError) as exc:
        pytest.skip(f"Redis is not reachable at {url} ({exc}); start it or set REDIS_URL")


def keys_of_this_test(label: str) -> Iterator[str]:
    """A key prefix of the test's own on the shared Redis; its keys are deleted
    afterwards."""
    shared_redis_or_skip()
    prefix = f"{label}-{secrets.token_hex(6)}"
    yield prefix
    client = redis.Redis.from_url(SHARED_REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def prefix():
    yield from keys_of_this_test("test-eventlog")


def named(url: str, name: str) -> str:
    """The URL with a name for the client's connections (CLIENT SETNAME)."""
    return f"{url}{'&' if '?' in url else '?'}client_name={name}"


@pytest.fixture
def worker_a(prefix) -> RedisEventLog:
    return RedisEventLog(named(SHARED_REDIS_URL, f"{prefix}-a"), prefix=prefix)


@pytest.fixture
def worker_b(prefix) -> RedisEventLog:
    return RedisEventLog(named(SHARED_REDIS_URL, f"{prefix}-b"), prefix=prefix)


async def blocking(log: RedisEventLog, count: int = 1) -> bool:
    """Whether Redis holds `count` of the log's connections in a blocking read
    (XREAD BLOCK): the reader is waiting, and found nothing to read at once."""
    name = parse_qs(urlsplit(log.url).query)["client_name"][0]
    admin = redis.asyncio.Redis.from_url(SHARED_REDIS_URL)
    try:
        clients = await admin.client_list()
    finally:
        await admin.aclose()
    return sum(1 for c in clients if c["name"] == name and "b" in c["flags"]) >= count


def text(seq: int) -> Event:
    return Event(seq, "text_delta", {"text": f"part {seq}\n"})


async def publish(log: RedisEventLog, message_id: int, seqs) -> None:
    for seq in seqs:
        await log.publish(message_id, text(seq))


async def test_it_reads_what_another_worker_published_after_a_cursor(worker_a, worker_b):
    await publish(worker_a, 1, range(1, 6))
    assert await worker_b.read_after(1, 0, 0) == [text(s) for s in range(1, 6)]
    assert await worker_b.read_after(1, 3, 0) == [text(4), text(5)]
    assert await worker_b.read_after(1, 5, 0) == []
    # Another message has a log of its own.
    assert await worker_b.read_after(2, 0, 0) == []


async def test_it_keeps_the_whole_event(worker_a, worker_b):
    event = Event(1, "tool_result", {"call_id": "c1", "result": "<b>\r\n\u00e9</b>", "duration_ms": 3})
    await worker_a.publish(7, event)
    assert await worker_b.read_after(7, 0, 0) == [event]


async def test_a_waiting_reader_wakes_up_when_another_worker_publishes(worker_a, worker_b):
    await publish(worker_a, 1, [1, 2])
    reader = asyncio.create_task(worker_b.read_after(1, 2, timeout=4))
    await wait_until_async(lambda: blocking(worker_b), message="the reader never waited")
    assert not reader.done()
    started = time.monotonic()
    await publish(worker_a, 1, [3])
    assert await asyncio.wait_for(reader, 10) == [text(3)]
    # Woken by the event, not by the end of its wait.
    assert time.monotonic() - started < 3


async def test_a_worker_carries_more_waiting_readers_than_redis_pys_default_pool(worker_a, worker_b):
    """Each stream waiting for events holds a connection for its blocking read
    (and each generation one for its Stop watch): redis-py's default pool of 100
    failed a worker's fiftieth answer with "Too many connections"."""
    readers = 150
    waiting = [asyncio.create_task(worker_b.read_after(m, 0, timeout=4)) for m in range(1, readers + 1)]
    await wait_until_async(lambda: blocking(worker_b, readers), message="not every reader waited")
    for m in range(1, readers + 1):
        await worker_a.publish(m, text(1))
    assert await asyncio.wait_for(asyncio.gather(*waiting), 10) == [[text(1)]] * readers


async def test_a_reader_gets_nothing_when_nothing_comes(worker_b):
    started = time.monotonic()
    assert await worker_b.read_after(1, 0, timeout=0.2) == []
    assert time.monotonic() - started >= 0.15


async def test_a_sequence_that_does_not_follow_starts_the_log_over(worker_a, worker_b):
    await publish(worker_a, 1, [1, 2, 3])
    # A new generation after a crash: the log no longer reaches back to 0.
    await publish(worker_a, 1, [7, 8])
    assert await worker_b.read_after(1, 0, 0) == []
    assert await worker_b.read_after(1, 3, 0) == []
    assert await worker_b.read_after(1, 6, 0) == [text(7), text(8)]
    # A lower sequence number starts it over too.
    await publish(worker_a, 1, [2])
    assert await worker_b.read_after(1, 1, 0) == [text(2)]


async def test_the_same_event_twice_is_kept_once(worker_a, worker_b):
    """What redis-py's retry does after a reply was lost."""
    await publish(worker_a, 1, [1, 2, 2])
    assert await worker_b.read_after(1, 0, 0) == [text(1), text(2)]


async def test_a_stream_that_no_longer_reaches_the_cursor_sends_the_reader_to_the_database(
    worker_a, worker_b, settings
):
    settings.CHAT_REDIS_STREAM_MAXLEN = 3
    await publish(worker_a, 1, range(1, 7))
    assert await worker_b.read_after(1, 3, 0) == [text(4), text(5), text(6)]
    assert await worker_b.read_after(1, 2, 0) == []
    assert await worker_b.read_after(1, 0, 0) == []


async def test_a_reader_the_stream_no_longer_reaches_waits_out_its_timeout(worker_a, worker_b):
    """After a Redis restart the stream starts at the first event published since:
    a reader from before gets nothing from it, and not at once, or the stream
    view would ask the database in a loop until the answer ends."""
    await publish(worker_a, 1, [7, 8])
    started = time.monotonic()
    assert await worker_b.read_after(1, 3, timeout=0.3) == []
    assert time.monotonic() - started >= 0.25


async def test_finish_keeps_the_events_for_a_while_then_lets_them_go(worker_a, worker_b, settings):
    settings.CHAT_EVENT_LOG_TTL = 0.5
    await publish(worker_a, 1, [1, 2])
    await worker_a.finish(1)
    assert await worker_b.read_after(1, 0, 0) == [text(1), text(2)]

    async def gone() -> bool:
        return await worker_b.read_after(1, 0, 0) == []

    await wait_until_async(gone, interval=0.1, message="the finished log was kept")
    assert await worker_b.read_after(1, 0, 0) == []


async def test_publishing_again_after_finish_keeps_the_log(worker_a, prefix, settings):
    settings.CHAT_EVENT_LOG_TTL = 1
    await publish(worker_a, 1, [1])
    await worker_a.finish(1)
    await publish(worker_a, 1, [2])  # Continue
    ttl = redis.Redis.from_url(SHARED_REDIS_URL).pttl(f"{prefix}:events:1")
    assert ttl > 60_000


async def test_a_stop_requested_on_one_worker_reaches_the_other(worker_a, worker_b):
    waiting = asyncio.create_task(worker_a.wait_for_stop(1))
    await wait_until_async(lambda: blocking(worker_a), message="the generation never waited for Stop")
    assert not waiting.done()
    await worker_b.request_stop(1)
    await asyncio.wait_for(waiting, 10)
    # It stays requested until cleared ...
    await asyncio.wait_for(worker_a.wait_for_stop(1), 10)
    # ... and is only for that message.
    other = asyncio.create_task(worker_a.wait_for_stop(2))
    await worker_b.clear_stop(1)
    again = asyncio.create_task(worker_a.wait_for_stop(1))
    # Both read their stop stream and found nothing: Redis holds them waiting.
    await wait_until_async(lambda: blocking(worker_a, 2), message="the generations never waited for Stop")
    assert not again.done() and not other.done()
    for task in (again, other):
        task.cancel()
    await asyncio.gather(again, other, return_exceptions=True)


async def test_a_waiting_generation_gives_its_connection_back_when_cancelled(worker_a, worker_b):
    tasks = [asyncio.create_task(worker_a.wait_for_stop(n)) for n in range(1, 4)]
    await wait_until_async(lambda: blocking(worker_a, 3), message="the generations never waited for Stop")
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    # The log still works on the same client.
    await publish(worker_a, 1, [1])
    assert await worker_b.read_after(1, 0, 0) == [text(1)]


async def test_it_knows_when_somebody_last_watched(worker_a, worker_b):
    assert await worker_b.seconds_since_viewed(1) is None
    await worker_a.touch_viewer(1)
    # The time that passes is what is measured.
    await asyncio.sleep(0.2)
    since = await worker_b.seconds_since_viewed(1)
    assert 0.1 <= since < 5
    await worker_a.touch_viewer(1)
    assert await worker_b.seconds_since_viewed(1) < since
    assert await worker_b.seconds_since_viewed(2) is None


def test_one_log_serves_several_event_loops(worker_a, worker_b):
    """Tests run a loop each; a redis.asyncio client must not cross loops."""
    asyncio.run(publish(worker_a, 1, [1]))
    asyncio.run(publish(worker_a, 1, [2]))
    assert asyncio.run(worker_b.read_after(1, 0, 0)) == [text(1), text(2)]


# Outage: a private redis-server, killed and started again.


@pytest.mark.slow
async def test_it_raises_while_redis_is_down_and_works_again_when_it_is_back(private_redis, settings):
    log = RedisEventLog(private_redis.url, prefix="outage")
    other = RedisEventLog(private_redis.url, prefix="outage")
    await publish(log, 1, [1, 2])
    assert await other.read_after(1, 0, 0) == [text(1), text(2)]
    stop = asyncio.create_task(log.wait_for_stop(1))

    private_redis.kill()
    for call in (
        lambda: log.publish(1, text(3)),
        lambda: other.read_after(1, 2, 0),
        lambda: other.read_after(1, 2, 1),
        lambda: other.touch_viewer(1),
        lambda: log.finish(1),
        lambda: other.request_stop(1),
        lambda: log.clear_stop(1),
    ):
        with pytest.raises(RedisError):
            await asyncio.wait_for(call(), 15)
    # The generation's own watchers ride it out: an outage is not a Stop.
    assert await log.seconds_since_viewed(1) is None
    # Nothing must happen: the waiting generation keeps meeting the outage
    # (it retries) for a while, and is not stopped.
    await asyncio.sleep(0.5)
    assert not stop.done()

    private_redis.start()  # same port, empty
    await publish(log, 1, [1])
    assert await other.read_after(1, 0, 0) == [text(1)]
    await other.request_stop(1)
    await asyncio.wait_for(stop, 15)
    await other.touch_viewer(1)
    assert await log.seconds_since_viewed(1) is not None


async def test_a_users_streams_are_counted_across_workers(worker_a, worker_b, prefix):
    """The oldest beyond the limit is replaced whichever worker opened it; the
    list of ids is gone once the streams are."""
    assert await worker_a.open_stream(1, "a", 2) == []
    assert await worker_b.open_stream(1, "b", 2) == []
    assert await worker_b.open_stream(2, "x", 2) == []  # another user's count
    assert await worker_b.open_stream(1, "c", 2) == ["a"]
    assert not await worker_a.is_stream_open(1, "a")
    assert await worker_a.is_stream_open(1, "b") and await worker_b.is_stream_open(1, "c")
    await worker_a.close_stream(1, "b")
    assert await worker_a.open_stream(1, "d", 2) == []
    for stream in ("c", "d"):
        await worker_b.close_stream(1, stream)
    await worker_a.close_stream(2, "x")
    assert list(redis.Redis.from_url(SHARED_REDIS_URL).scan_iter(match=f"{prefix}:streams:*")) == []


async def test_a_decision_announced_on_one_worker_wakes_the_other(worker_a, worker_b):
    started = time.monotonic()
    waiting = asyncio.create_task(worker_a.wait_for_decision(1, 5, 30))
    await wait_until_async(lambda: blocking(worker_a), message="the generation never waited for a decision")
    await worker_b.announce_decision(1, 5)
    await asyncio.wait_for(waiting, 10)
    # Not by the end of its wait (bounded by MAX_BLOCK), but by the announcement.
    assert time.monotonic() - started < MAX_BLOCK
    # It stays announced; another call of the message is not.
    await asyncio.wait_for(worker_a.wait_for_decision(1, 5, 30), 1)
    other = asyncio.create_task(worker_a.wait_for_decision(1, 6, 30))
    await wait_until_async(lambda: blocking(worker_a), message="the other call's wait did not block")
    assert not other.done()
    other.cancel()
    await asyncio.gather(other, return_exceptions=True)
    # A wait with nothing announced ends after its timeout; the caller reads the database.
    started = time.monotonic()
    await worker_a.wait_for_decision(2, 1, 0.2)
    assert time.monotonic() - started < 2

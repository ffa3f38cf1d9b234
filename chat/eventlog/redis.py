"""The event log in Redis Streams, shared by every worker: a prompt posted to one
daphne process can be streamed from another, and Stop reaches the process that
generates. Same semantics as chat/eventlog/memory.py.

Keys, under settings.CHAT_REDIS_PREFIX:
  {prefix}:events:{id}  a stream, one entry per event with entry id "{seq}-0", so
                        a cursor is a stream id and XREAD BLOCK follows it
  {prefix}:stop:{id}    a stream whose first entry is the stop request, so the
                        generation waits for it with XREAD BLOCK too
  {prefix}:decision:{id}:{call}  a stream whose first entry says the user decided
                        on a tool call that asked (the decision is in the database)
  {prefix}:viewed:{id}  its remaining lifetime says when somebody last watched
                        (Redis's clock only: the workers' clocks may disagree)
  {prefix}:streams:{user}  a list of the user's open streams, oldest first

When Redis cannot be reached the methods raise, except the two the generation
keeps polling while it runs (wait_for_stop, seconds_since_viewed): an outage
must neither look like a Stop nor stop the answer. redis-py reconnects by itself
once Redis is back.
"""

import asyncio
import logging
from dataclasses import dataclass

from django.conf import settings
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from chat.events import Event

logger = logging.getLogger("chat.eventlog")

CONNECT_TIMEOUT = 2
# Bounds every command when Redis stops answering; blocking reads stay shorter.
SOCKET_TIMEOUT = 10
MAX_BLOCK = 5
# The events of an answer whose generation died without finishing, and stop
# requests nobody picked up, are let go after this long.
LIVE_TTL = 24 * 3600
# How long Stop keeps waiting between attempts while Redis is unreachable.
MAX_RECONNECT_DELAY = 5
# The largest stream id Redis accepts; a larger cursor reads nothing.
MAX_SEQ = 2**64 - 1

# Append a batch of events (ARGV: maxlen, lifetime, then seq and JSON of each),
# in one round trip and one check. A first sequence number that does not follow
# the last one starts the stream over (a new generation after a crash), as
# memory.py does. A batch whose last event is already the stream's last is a
# client retry after a lost reply (the script is atomic: all of it was stored),
# not a restart. Trimmed once, by the last XADD.
PUBLISH = """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
local n = #ARGV
if last then
  local last_seq = tonumber(string.match(last[1], '^%d+'))
  if last_seq == tonumber(ARGV[n - 1]) and last[2][2] == ARGV[n] then
    return 0
  end
  if last_seq + 1 ~= tonumber(ARGV[3]) then
    redis.call('DEL', KEYS[1])
  end
end
for i = 3, n - 3, 2 do
  redis.call('XADD', KEYS[1], ARGV[i] .. '-0', 'e', ARGV[i + 1])
end
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], ARGV[n - 1] .. '-0', 'e', ARGV[n])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# Count a stream as open; the user's oldest beyond the limit are taken out and
# returned, for their readers (on any worker) to end. The list lives as long as
# the user keeps opening or reading streams: the ids a crashed worker left in it
# are the oldest, the first to go.
OPEN_STREAM = """
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local over = redis.call('LLEN', KEYS[1]) - tonumber(ARGV[2])
if over <= 0 then
  return {}
end
local replaced = redis.call('LRANGE', KEYS[1], 0, over - 1)
redis.call('LTRIM', KEYS[1], over, -1)
return replaced
"""


@dataclass
class _Client:
    loop: asyncio.AbstractEventLoop
    redis: Redis
    publish: AsyncScript
    open_stream: AsyncScript


class RedisEventLog:
    # Every write is a round trip: the Publisher sends an answer's events in batches.
    remote = True

    def __init__(self, url: str, prefix: str | None = None) -> None:
        self.url = url
        self.prefix = settings.CHAT_REDIS_PREFIX if prefix is None else prefix
        # A redis.asyncio client belongs to the event loop it first ran on;
        # tests run many loops, a server one.
        self._clients: dict[int, _Client] = {}

    def _client(self) -> _Client:
        loop = asyncio.get_running_loop()
        client = self._clients.get(id(loop))
        if client is None or client.loop is not loop:
            for key in [k for k, c in self._clients.items() if c.loop.is_closed()]:
                del self._clients[key]
            connection = Redis.from_url(
                self.url,
                # redis-py's default (100) fails a worker's fiftieth answer.
                max_connections=settings.CHAT_REDIS_MAX_CONNECTIONS,
                decode_responses=True,
                socket_connect_timeout=CONNECT_TIMEOUT,
                socket_timeout=SOCKET_TIMEOUT,
                # One immediate retry replaces a pooled connection that died with
                # a Redis restart; more would only delay the error while it is down.
                retry=Retry(NoBackoff(), 1),
            )
            client = self._clients[id(loop)] = _Client(
                loop, connection, connection.register_script(PUBLISH), connection.register_script(OPEN_STREAM)
            )
        return client

    def _key(self, kind: str, message_id: int) -> str:
        return f"{self.prefix}:{kind}:{message_id}"

    async def publish(self, message_id: int, *events: Event) -> None:
        if not events:
            return
        client = self._client()
        args = [settings.CHAT_REDIS_STREAM_MAXLEN, LIVE_TTL * 1000]
        for event in events:
            args += (event.seq, event.to_json())
        await client.publish(keys=[self._key("events", message_id)], args=args, client=client.redis)

    async def read_after(self, message_id: int, cursor: int, timeout: float) -> list[Event]:
        if cursor >= MAX_SEQ:
            return []
        # Never longer than the socket timeout; returning [] early is allowed.
        block = max(1, round(min(timeout, MAX_BLOCK) * 1000)) if timeout > 0 else None
        reply = await self._client().redis.xread({self._key("events", message_id): f"{cursor}-0"}, block=block)
        events = [Event.from_json(fields["e"]) for _, entries in reply or [] for _, fields in entries]
        if events and events[0].seq > cursor + 1:
            # The stream no longer reaches back to the cursor (trimmed, or
            # started over, as after a Redis restart): the caller falls back to
            # the database. After the wait it asked for, as if nothing came: the
            # entries after the cursor would answer its next read at once, and
            # it would ask the database in a loop until the answer ends.
            if block:
                await asyncio.sleep(block / 1000)
            return []
        return events

    async def finish(self, message_id: int) -> None:
        ttl = round(settings.CHAT_EVENT_LOG_TTL * 1000)
        async with self._client().redis.pipeline(transaction=True) as pipe:
            pipe.pexpire(self._key("events", message_id), ttl)
            pipe.pexpire(self._key("stop", message_id), ttl)
            await pipe.execute()

    async def request_stop(self, message_id: int) -> None:
        key = self._key("stop", message_id)
        async with self._client().redis.pipeline(transaction=True) as pipe:
            pipe.xadd(key, {"stop": "1"}, maxlen=1)
            pipe.pexpire(key, LIVE_TTL * 1000)
            await pipe.execute()

    async def wait_for_stop(self, message_id: int) -> None:
        """Blocks in bounded rounds (a pooled connection is never held for
        longer than MAX_BLOCK), and rides out an outage instead of raising:
        the generation would take an error here for a Stop."""
        key = self._key("stop", message_id)
        delay = 0.0
        while True:
            try:
                if await self._client().redis.xread({key: "0-0"}, count=1, block=MAX_BLOCK * 1000):
                    return
                delay = 0.0
            except (RedisError, OSError) as exc:
                if not delay:
                    logger.warning("event log unreachable, Stop waits for it message=%s: %s", message_id, exc)
                delay = min(max(delay * 2, 0.25), MAX_RECONNECT_DELAY)
                await asyncio.sleep(delay)

    async def clear_stop(self, message_id: int) -> None:
        await self._client().redis.delete(self._key("stop", message_id))

    async def announce_decision(self, message_id: int, call_id: int) -> None:
        key = self._key("decision", message_id) + f":{call_id}"
        async with self._client().redis.pipeline(transaction=True) as pipe:
            pipe.xadd(key, {"decided": "1"}, maxlen=1)
            pipe.pexpire(key, LIVE_TTL * 1000)
            await pipe.execute()

    async def wait_for_decision(self, message_id: int, call_id: int, timeout: float) -> None:
        """An outage is waited out, not raised: the caller reads the database
        after each wait, so a decision still arrives, only later."""
        key = self._key("decision", message_id) + f":{call_id}"
        block = max(1, round(min(timeout, MAX_BLOCK) * 1000))
        try:
            await self._client().redis.xread({key: "0-0"}, count=1, block=block)
        except (RedisError, OSError) as exc:
            logger.warning("event log unreachable, decision read from the database message=%s: %s", message_id, exc)
            await asyncio.sleep(block / 1000)

    async def touch_viewer(self, message_id: int) -> None:
        # The key holds its own lifetime, so its age is lifetime - remaining.
        ttl_ms = round(max(2 * settings.CHAT_UNWATCHED_LIMIT, 3600) * 1000)
        await self._client().redis.set(self._key("viewed", message_id), ttl_ms, px=ttl_ms)

    async def seconds_since_viewed(self, message_id: int) -> float | None:
        """None also when Redis cannot say: an outage is no reason to pause an
        answer somebody may be watching."""
        key = self._key("viewed", message_id)
        try:
            async with self._client().redis.pipeline(transaction=True) as pipe:
                pipe.get(key)
                pipe.pttl(key)
                lifetime, remaining = await pipe.execute()
        except (RedisError, OSError) as exc:
            logger.warning("event log unreachable, viewers unknown message=%s: %s", message_id, exc)
            return None
        if lifetime is None or remaining < 0:
            return None
        return max(int(lifetime) - remaining, 0) / 1000

    async def open_stream(self, user_id: int, stream_id: str, limit: int) -> list[str]:
        client = self._client()
        return await client.open_stream(
            keys=[self._key("streams", user_id)], args=[stream_id, limit, LIVE_TTL * 1000], client=client.redis
        )

    async def is_stream_open(self, user_id: int, stream_id: str) -> bool:
        key = self._key("streams", user_id)
        async with self._client().redis.pipeline(transaction=False) as pipe:
            pipe.lpos(key, stream_id)
            pipe.pexpire(key, LIVE_TTL * 1000)
            position, _ = await pipe.execute()
        return position is not None

    async def close_stream(self, user_id: int, stream_id: str) -> None:
        await self._client().redis.lrem(self._key("streams", user_id), 1, stream_id)

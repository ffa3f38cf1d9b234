"""Sessions for one process: Django's cached_db store, with the cache in this
process's memory read on the event loop.

Why: Django's async session load asks the cache through `sync_to_async`, a round
trip to a thread on every request (~230 µs of CPU here), for what is a dictionary
lookup under a lock when the cache is in local memory. A miss still reads the
database as Django does. Only for one process (settings choose it without
REDIS_URL): a memory cache per process would let one process accept a session
that another has logged out.

What would let it go: Django's local-memory cache answering async reads without
a thread.
"""

from django.conf import settings
from django.contrib.sessions.backends import cached_db
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache


class SessionStore(cached_db.SessionStore):
    async def aload(self):
        cache = caches[settings.SESSION_CACHE_ALIAS]
        if isinstance(cache, LocMemCache):
            try:
                data = cache.get(await self.acache_key())
            except Exception:  # as Django: an unusable key is a new session
                data = None
            if data is not None:
                return data
        return await super().aload()

"""Sessions for one process: Django's cached_db store, with the cache in this
process's memory read on the event loop.

Django's async session load asks the cache through `sync_to_async`, a round trip
to a thread on every request, for what is a dictionary lookup under a lock when
the cache is in local memory. A miss still reads the database as Django does.
"""

from django.contrib.sessions.backends import cached_db
from django.core.cache.backends.locmem import LocMemCache


class SessionStore(cached_db.SessionStore):
    async def aload(self):
        if isinstance(self._cache, LocMemCache):
            try:
                data = self._cache.get(await self.acache_key())
            except Exception:  # as Django: an unusable key is a new session
                data = None
            if data is not None:
                return data
        return await super().aload()

"""Django's ASGI handler, with a request that leaves no reference cycle when its
client goes away.

Why: when a client disconnects, Django's `listen_for_disconnect` raises
RequestAborted, and `handle()` keeps the task that raised it in a local list: the
exception's traceback holds handle()'s frame, the frame the list, the list the
task, the task the exception. That cycle holds the whole request (both tasks, the
response, an answer stream's generator) until a full pass of the garbage
collector, which chat/serving/collector.py makes rare, and forever if it is alive
when the collector freezes the process's objects (Django ticket #36700; measured
with bench/stream_memory.py: 3,971 of 4,000 closed streams still in memory two
minutes later). Django 5.2's handle() ends the request the same way when the
listener returns as when it raises (asyncio.wait FIRST_COMPLETED, then it
cancels the request's task), so here it returns.

Verified on Django 5.2 (chat/serving/middleware.py's VERIFIED_ON; the sources of
handle() and listen_for_disconnect() are fingerprinted in
tests/test_served_app.py, and tests/test_stream_limits.py fails if a disconnect
stops ending the stream). What would let it go: the fix of that ticket.
"""

from django.core.handlers.asgi import ASGIHandler


class ChatASGIHandler(ASGIHandler):
    async def listen_for_disconnect(self, receive):
        message = await receive()
        if message["type"] != "http.disconnect":
            # As Django: this never happens.
            raise AssertionError(f"Invalid ASGI message after request body: {message['type']}")

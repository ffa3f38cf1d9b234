"""Django's own middleware with its hooks run on the event loop, for the ASGI server.

Under ASGI, Django runs every hook of a `MiddlewareMixin` middleware through
`sync_to_async`: a round trip to a thread and back for each one, thirteen per
request with this project's list, which on a busy server is the largest part of
what a small request costs. The hooks of the middleware below only read and
write headers, cookies, the request body and settings, so they run inline. The
two that can reach the database do so only to save something (a changed
session, messages to store), and then still go to the thread.

The request leaves no reference cycle behind either. Django's authentication and
messages middleware and django-htmx hang objects on the request that refer back
to it; here they refer to it weakly (whoever reaches them holds the request). A
request in a cycle is freed only by the garbage collector's full passes, which a
busy server makes rare, and never once chat/generation.py has frozen it with
gc.freeze(): every request in flight at that moment, and every stream open then,
would stay in memory for the life of the process (measured with
bench/stream_memory.py). tests/test_stream_limits.py checks that a request
through this handler leaves nothing for the collector.

`settings.MIDDLEWARE` keeps Django's paths, which the system checks look for;
`InlineMiddlewareASGIHandler` (chatproject/asgi.py) loads these in their place.
"""

import weakref
from functools import partial

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.messages.storage import default_storage
from django.contrib.sessions import middleware as sessions
from django.core.handlers.asgi import ASGIHandler
from django.middleware import clickjacking, common, csrf, security
from django.utils.functional import SimpleLazyObject
from django_htmx import middleware as htmx
from django_htmx.middleware import HtmxDetails


class InlineHooks:
    """For a MiddlewareMixin subclass whose hooks never touch the database."""

    def response_needs_thread(self, request) -> bool:
        return False

    async def __acall__(self, request):
        response = self.process_request(request) if hasattr(self, "process_request") else None
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            if self.response_needs_thread(request):
                return await sync_to_async(self.process_response)(request, response)
            response = self.process_response(request, response)
        return response


class SecurityMiddleware(InlineHooks, security.SecurityMiddleware):
    pass


class SessionMiddleware(InlineHooks, sessions.SessionMiddleware):
    def response_needs_thread(self, request) -> bool:
        session = getattr(request, "session", None)
        return session is not None and (session.modified or settings.SESSION_SAVE_EVERY_REQUEST)


class CommonMiddleware(InlineHooks, common.CommonMiddleware):
    pass


class CsrfViewMiddleware(InlineHooks, csrf.CsrfViewMiddleware):
    # The handler sends a synchronous process_view to a thread too.
    async def process_view(self, request, callback, callback_args, callback_kwargs):
        return super().process_view(request, callback, callback_args, callback_kwargs)


class AuthenticationMiddleware(InlineHooks, auth.AuthenticationMiddleware):
    def process_request(self, request):
        super().process_request(request)
        # Django's lazy user and auser hold their request: a cycle (see the module's docstring).
        request.user = SimpleLazyObject(partial(auth.get_user, weakref.proxy(request)))
        request.auser = partial(auth.auser, weakref.proxy(request))


class MessageMiddleware(InlineHooks, messages.MessageMiddleware):
    def process_request(self, request):
        # Django's storage holds its request: a cycle (see the module's docstring).
        request._messages = default_storage(weakref.proxy(request))

    def response_needs_thread(self, request) -> bool:
        storage = getattr(request, "_messages", None)
        return storage is not None and (storage.used or storage.added_new)


class XFrameOptionsMiddleware(InlineHooks, clickjacking.XFrameOptionsMiddleware):
    pass


class HtmxMiddleware(htmx.HtmxMiddleware):
    async def __acall__(self, request):
        # django-htmx's details hold their request: a cycle (see the module's docstring).
        request.htmx = HtmxDetails(weakref.proxy(request))
        return await self.get_response(request)


INLINE = {
    f"{base.__module__}.{base.__name__}": f"{__name__}.{cls.__name__}"
    for cls in (
        SecurityMiddleware,
        SessionMiddleware,
        CommonMiddleware,
        CsrfViewMiddleware,
        AuthenticationMiddleware,
        MessageMiddleware,
        XFrameOptionsMiddleware,
        HtmxMiddleware,
    )
    for base in cls.__bases__[-1:]
}


class InlineMiddlewareASGIHandler(ASGIHandler):
    def load_middleware(self, is_async=False):
        # Django builds the chain from settings.MIDDLEWARE; it is swapped only
        # while this handler is built, at start-up, before any request.
        configured = settings.MIDDLEWARE
        settings.MIDDLEWARE = [INLINE.get(path, path) for path in configured]
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = configured

    async def listen_for_disconnect(self, receive):
        """Django raises RequestAborted here when the client goes, and its handle()
        keeps the task that raised it in a local list: the exception's traceback
        holds handle()'s frame, the frame the list, the list the task, the task the
        exception, a cycle that holds the whole request: both tasks, the response,
        an answer stream's generator (https://code.djangoproject.com/ticket/36700).
        Django 5.2's handle() ends the request the same way when this returns
        (asyncio.wait FIRST_COMPLETED, then it cancels the request's task), so it
        returns. tests/test_stream_limits.py fails if a disconnect stops ending
        the stream on a later Django."""
        message = await receive()
        if message["type"] != "http.disconnect":
            # As Django: this never happens.
            raise AssertionError(f"Invalid ASGI message after request body: {message['type']}")

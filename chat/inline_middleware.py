"""Django's own middleware with its hooks run on the event loop, for the ASGI server.

Under ASGI, Django runs every hook of a `MiddlewareMixin` middleware through
`sync_to_async`: a round trip to a thread and back for each one, thirteen per
request with this project's list, which on a busy server is the largest part of
what a small request costs. The hooks of the middleware below only read and
write headers, cookies, the request body and settings, so they run inline. The
two that can reach the database do so only to save something (a changed
session, messages to store), and then still go to the thread.

`settings.MIDDLEWARE` keeps Django's paths, which the system checks look for;
`InlineMiddlewareASGIHandler` (chatproject/asgi.py) loads these in their place.
"""

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.core.handlers.asgi import ASGIHandler
from django.middleware import clickjacking, common, csrf, security


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
    pass


class MessageMiddleware(InlineHooks, messages.MessageMiddleware):
    def response_needs_thread(self, request) -> bool:
        storage = getattr(request, "_messages", None)
        return storage is not None and (storage.used or storage.added_new)


class XFrameOptionsMiddleware(InlineHooks, clickjacking.XFrameOptionsMiddleware):
    pass


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
    )
    for base in cls.__bases__[1:]
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

"""Django's own middleware, with the hooks that need no thread run on the event loop.

Why: under ASGI, Django runs every hook of a `MiddlewareMixin` middleware through
`sync_to_async`, a round trip to a thread and back for each one: thirteen per
request with this project's list, which on a busy server was the largest part of
what a small request cost (docs/benchmarks.md). The hooks of the middleware below
only read and write headers, cookies, the request body and settings, so they run
on the event loop. The two that can reach the database do so only to save
something (a changed session, messages to store), and then still go to a thread;
so does the CSRF check of a body that is large or multipart (parsing it may write
temporary files).

How: each class is a subclass of Django's, listed in settings.MIDDLEWARE in its
place (Django's own checks accept subclasses), declared async-only, and called
through the public middleware protocol (`__call__`) with Django's public hooks
(`process_request`, `process_view`, `process_response`).

The request leaves no reference cycle behind either. Django's authentication and
messages middleware and django-htmx hang objects on the request that refer back
to it; here they refer to it weakly (whoever reaches them holds the request). A
request in a cycle is freed only by the garbage collector's full passes, which
chat/serving/collector.py makes rare, and never once the collector has frozen it:
every request in flight then, and every stream open then, would stay in memory
for the life of the process (measured with bench/stream_memory.py;
tests/test_stream_limits.py checks that a request leaves nothing for the
collector).

Verified on Django 5.2 (`VERIFIED_ON`): tests/test_served_app.py compares the
served app with plain Django request by request, and fails loudly when a Django
upgrade changes the source of a hook run here, so it is read again before the
version moves. What would let it go: Django running these hooks natively async.
"""

import weakref
from functools import partial

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.messages.storage import default_storage
from django.contrib.sessions import middleware as sessions
from django.core import checks
from django.middleware import clickjacking, common, csrf, security
from django.utils.functional import SimpleLazyObject
from django.utils.module_loading import import_string
from django_htmx import middleware as htmx

VERIFIED_ON = (5, 2)

# A form body above this size, or any multipart body, is parsed in a thread.
INLINE_BODY_LIMIT = 64 * 1024


class OnTheLoop:
    """For a subclass of a Django `MiddlewareMixin` middleware whose hooks never
    block: they run on the event loop."""

    sync_capable = False
    async_capable = True

    def response_needs_thread(self, request) -> bool:
        return False

    async def __call__(self, request):
        response = self.process_request(request) if hasattr(self, "process_request") else None
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            if self.response_needs_thread(request):
                return await sync_to_async(self.process_response)(request, response)
            response = self.process_response(request, response)
        return response


class SecurityMiddleware(OnTheLoop, security.SecurityMiddleware):
    pass


class SessionMiddleware(OnTheLoop, sessions.SessionMiddleware):
    def response_needs_thread(self, request) -> bool:
        session = getattr(request, "session", None)
        return session is not None and (session.modified or settings.SESSION_SAVE_EVERY_REQUEST)


class CommonMiddleware(OnTheLoop, common.CommonMiddleware):
    pass


class CsrfViewMiddleware(OnTheLoop, csrf.CsrfViewMiddleware):
    async def process_view(self, request, callback, callback_args, callback_kwargs):
        # The check reads the token from a POST body: a small form is parsed in
        # microseconds, a large or multipart one goes to a thread.
        check = super().process_view
        if request.method == "POST" and _heavy_body(request):
            return await sync_to_async(check)(request, callback, callback_args, callback_kwargs)
        return check(request, callback, callback_args, callback_kwargs)


class AuthenticationMiddleware(OnTheLoop, auth.AuthenticationMiddleware):
    def process_request(self, request):
        super().process_request(request)
        # Django's lazy user and auser hold their request: a cycle (see above).
        request.user = SimpleLazyObject(partial(auth.get_user, weakref.proxy(request)))
        request.auser = partial(auth.auser, weakref.proxy(request))


class MessageMiddleware(OnTheLoop, messages.MessageMiddleware):
    def process_request(self, request):
        # Django's storage holds its request: a cycle (see above).
        request._messages = default_storage(weakref.proxy(request))

    def response_needs_thread(self, request) -> bool:
        storage = getattr(request, "_messages", None)
        return storage is not None and (storage.used or storage.added_new)


class XFrameOptionsMiddleware(OnTheLoop, clickjacking.XFrameOptionsMiddleware):
    pass


class HtmxMiddleware(htmx.HtmxMiddleware):
    sync_capable = False
    async_capable = True

    async def __call__(self, request):
        # django-htmx's details hold their request: a cycle (see above).
        request.htmx = htmx.HtmxDetails(weakref.proxy(request))
        return await self.get_response(request)


def _heavy_body(request) -> bool:
    if request.content_type.startswith("multipart/"):
        return True
    # A body sent without its length (chunked) is as large as it says when read.
    try:
        return int(request.META["CONTENT_LENGTH"]) > INLINE_BODY_LIMIT
    except (KeyError, ValueError):
        return True


ON_THE_LOOP = (
    SecurityMiddleware,
    SessionMiddleware,
    CommonMiddleware,
    CsrfViewMiddleware,
    AuthenticationMiddleware,
    MessageMiddleware,
    XFrameOptionsMiddleware,
    HtmxMiddleware,
)


@checks.register(checks.Tags.security, deploy=True)
def check_security_middleware(app_configs, **kwargs) -> list[checks.Warning]:
    """Django's deploy checks security.W001-W003 look for its middleware by exact
    path, so settings silence them; this is the same check for any subclass."""
    installed = [import_string(path) for path in settings.MIDDLEWARE]
    wanted = (security.SecurityMiddleware, clickjacking.XFrameOptionsMiddleware, csrf.CsrfViewMiddleware)
    return [
        checks.Warning(f"No {cls.__module__}.{cls.__name__} (or a subclass) in MIDDLEWARE.", id="chat.W001")
        for cls in wanted
        if not any(isinstance(m, type) and issubclass(m, cls) for m in installed)
    ]

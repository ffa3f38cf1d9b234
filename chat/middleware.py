"""Headers every response of the app carries, set once here rather than in each view."""

from urllib.parse import urlsplit

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.utils.cache import patch_cache_control


def _form_action() -> str:
    """Where the page's forms may send the browser: this site, and the single
    sign-on provider's end-session endpoint if there is one. Logging out posts a
    form whose answer redirects there, and browsers hold each redirect after a
    form to form-action (Chromium blocks the logout otherwise)."""
    endpoint = urlsplit(settings.OIDC_OP_END_SESSION_ENDPOINT)
    return f"'self' {endpoint.scheme}://{endpoint.netloc}" if endpoint.netloc else "'self'"


POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    f"form-action {_form_action()}; frame-ancestors 'none'"
)


class _ResponseHeaders:
    """A middleware that only adds headers to the response, sync or async."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.async_mode:
            return self.__acall__(request)
        return self._add(self.get_response(request))

    async def __acall__(self, request):
        return self._add(await self.get_response(request))

    @staticmethod
    def _add(response):
        raise NotImplementedError


class ContentSecurityPolicyMiddleware(_ResponseHeaders):
    """Content-Security-Policy for every response: scripts and styles only from
    this site, no inline script, no eval. htmx runs under it (see the htmx-config
    meta tag in base.html)."""

    @staticmethod
    def _add(response):
        # A view that needs another policy sets its own header. The admin needs
        # none: Django's admin has no inline script or style (tests/test_deploy.py).
        response.headers.setdefault("Content-Security-Policy", POLICY)
        return response


class PrivateResponsesMiddleware(_ResponseHeaders):
    """`Cache-Control: private, no-store` on every response: pages, fragments and
    streams show one user's conversations, and neither a shared cache nor the
    browser's disk may keep them (after a logout, on a shared computer, Back must
    not show them again). Nothing the app renders is the same for everyone; static
    files are served before this, with their own headers. A view's own directives
    (the stream's no-cache) are kept."""

    @staticmethod
    def _add(response):
        patch_cache_control(response, private=True, no_store=True)
        return response

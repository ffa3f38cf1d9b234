"""The pages of signing in and out, with single sign-on beside (or instead of)
the accounts' passwords."""

import logging
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import views as auth_views
from django.core.exceptions import SuspiciousOperation
from django.http import HttpResponseRedirect
from django.shortcuts import redirect
from django.urls import reverse
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView

logger = logging.getLogger(__name__)


class SignInView(auth_views.LoginView):
    """The login page: the username and password form while local accounts sign
    in (CHAT_LOCAL_LOGIN), and "Sign in with …" while single sign-on is on."""

    def get_context_data(self, **kwargs):
        return {
            **super().get_context_data(**kwargs),
            "local_login": settings.CHAT_LOCAL_LOGIN,
            "sign_on_provider": settings.OIDC_PROVIDER_NAME if settings.OIDC_ISSUER else "",
        }

    def post(self, request, *args, **kwargs):
        if not settings.CHAT_LOCAL_LOGIN:
            # A form from before local accounts were switched off, or a script.
            context = self.get_context_data(local_login_refused=True)
            return self.render_to_response(context, status=403)
        return super().post(request, *args, **kwargs)


def admin_login(request):
    """The admin's login: its own form while local accounts sign in; else the
    site's login page, whose single sign-on then comes back to the admin."""
    if settings.CHAT_LOCAL_LOGIN:
        return admin.site.login(request)
    return redirect(f"{reverse('login')}?{urlencode({'next': request.GET.get('next') or reverse('admin:index')})}")


class SignOnCallback(OIDCAuthenticationCallbackView):
    """Where the provider sends the browser back. A sign-in that does not
    complete (refused at the provider, a code used twice, a token that does not
    hold) goes back to the login page saying so, with no session."""

    def get(self, request):
        try:
            return super().get(request)
        except SuspiciousOperation as exc:
            # A state this browser did not start: an old or copied callback URL.
            logger.warning("sign-in with %s refused: %s", settings.OIDC_PROVIDER_NAME, exc)
            return self.login_failure()

    def login_failure(self):
        if self.request.GET.get("error"):
            text = f"{settings.OIDC_PROVIDER_NAME} did not sign you in."
        else:
            text = f"Signing in with {settings.OIDC_PROVIDER_NAME} did not complete. Please try again."
        messages.error(self.request, text)
        return redirect("login")


class SignOutView(auth_views.LogoutView):
    """Logging out ends the session here and, after a single sign-on whose
    provider offers it, the provider's session too: the browser is sent to its
    end-session endpoint, which sends it back to the login page."""

    def post(self, request, *args, **kwargs):
        provider_logout = self.provider_logout_url(request)
        response = super().post(request, *args, **kwargs)
        return HttpResponseRedirect(provider_logout) if provider_logout else response

    @staticmethod
    def provider_logout_url(request) -> str:
        """Read before the session ends, which holds the ID token."""
        id_token = request.session.get("oidc_id_token")
        if not (settings.OIDC_OP_END_SESSION_ENDPOINT and id_token and request.user.is_authenticated):
            return ""
        query = urlencode(
            {
                "id_token_hint": id_token,
                "client_id": settings.OIDC_RP_CLIENT_ID,
                "post_logout_redirect_uri": request.build_absolute_uri(reverse("login")),
            }
        )
        return f"{settings.OIDC_OP_END_SESSION_ENDPOINT}?{query}"

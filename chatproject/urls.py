from django.conf import settings
from django.contrib import admin
from django.urls import include, path, register_converter
from mozilla_django_oidc.views import OIDCAuthenticationRequestView

from chat import dashboard, data_views, listing, sharing, stream, views
from chat.mcp import views as mcp_views
from chat.sso import views as sso_views


class IdConverter:
    """A database id: a number that fits the 64-bit id columns. A larger one is
    no match, so a 404, where the database driver would raise (SQLite's
    OverflowError, PostgreSQL's out-of-range error: a 500)."""

    regex = "[0-9]{1,19}"
    largest = 2**63 - 1

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > self.largest:
            raise ValueError(f"{value} is not a database id")
        return number

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "id")

# /c/<conversation>/m/<message>/...: actions on one message.
message_urls = [
    path("stream/", stream.stream, name="chat-stream"),
    path("stop/", views.stop, name="chat-stop"),
    path("continue/", views.continue_answer, name="chat-continue"),
    path("retry/", views.retry, name="chat-retry"),
    path("feedback/", views.feedback, name="chat-feedback"),
    # On any message: a prompt's edit, the branch of a prompt or answer shown.
    path("edit/", views.edit, name="chat-edit"),
    path("switch/", views.switch, name="chat-switch"),
]

# /c/<conversation>/...: one conversation.
conversation_urls = [
    path("", views.conversation, name="chat-conversation"),
    path("send/", views.send, name="chat-send"),
    path("rename/", views.rename, name="chat-rename"),
    path("delete/", views.delete, name="chat-delete"),
    path("pin/", listing.pin, name="chat-pin"),
    path("archive/", listing.archive, name="chat-archive"),
    path("share/", sharing.share, name="chat-share"),
    path("share/revoke/", sharing.revoke, name="chat-share-revoke"),
    path("m/<id:message_id>/", include(message_urls)),
    path("tools/<id:server_id>/", mcp_views.switch_server, name="chat-tool-source"),
]

# Logging in and out: the pages link nothing else. No mail is sent, so there is no
# password reset; passwords are set in the admin or with manage.py changepassword.
account_urls = [
    path("login/", sso_views.SignInView.as_view(), name="login"),
    path("logout/", sso_views.SignOutView.as_view(), name="logout"),
]
# Single sign-on, when OIDC_ISSUER is set: to the provider and back. The names
# are mozilla-django-oidc's, which it reverses.
if settings.OIDC_ISSUER:
    account_urls += [
        path("oidc/authenticate/", OIDCAuthenticationRequestView.as_view(), name="oidc_authentication_init"),
        path("oidc/callback/", sso_views.SignOnCallback.as_view(), name="oidc_authentication_callback"),
    ]

# /settings/...: the user's own settings.
settings_urls = [
    path("", views.settings_page, name="chat-settings"),
    path("instructions/", views.save_instructions, name="chat-settings-save"),
]

urlpatterns = [
    path("", views.home, name="chat-home"),
    path("settings/", include(settings_urls)),
    path("c/new/", views.new_conversation, name="chat-new"),
    path("tools/<id:call_id>/decide/", mcp_views.decide, name="chat-tool-decide"),
    path("conversations/", listing.conversation_list, name="chat-list"),
    path("archived/", listing.archived, name="chat-archived"),
    path("search/", listing.search, name="chat-search"),
    # A shared branch, read-only: the token is the only key.
    path("s/<slug:token>/", sharing.shared, name="chat-shared"),
    path("data/", data_views.data, name="chat-data"),
    path("data/export/", data_views.export, name="chat-export"),
    path("data/import/", data_views.import_file, name="chat-import"),
    path("c/<id:conversation_id>/", include(conversation_urls)),
    path("accounts/", include(account_urls)),
    # Before the admin's own: with local accounts off, its login is the site's.
    path("admin/login/", sso_views.admin_login, name="chat-admin-login"),
    # Staff only, as every admin page (admin_view checks is_staff and the session).
    path("admin/dashboard/", admin.site.admin_view(dashboard.page), name="chat-dashboard"),
    path("admin/", admin.site.urls),
]

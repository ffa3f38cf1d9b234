"""Single sign-on in a real browser: "Sign in with …" on the login page, the
provider's forms (tests/oidc_provider, a process of its own), back in the chat,
and logging out of both, all under the app's Content-Security-Policy."""

import pytest

from tests.live import free_port
from tests.sign_on import Provider

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def app_and_provider(live_server_factory, tmp_path_factory):
    port = free_port()
    directory = {"carol": {"password": "carol-at-provider", "email": "carol@example.com", "groups": ["sales"]}}
    provider = Provider(tmp_path_factory.mktemp("provider"), f"http://127.0.0.1:{port}", directory).start()
    try:
        yield live_server_factory(provider.app_env(), port=port), provider
    finally:
        provider.stop()


def test_signing_in_and_out_with_the_provider(open_chat, app_and_provider):
    app, provider = app_and_provider
    chat = open_chat(server=app, login=False)
    page = chat.page
    assert "/accounts/login/" in page.url
    page.get_by_role("link", name="Sign in with Example ID").click()

    page.wait_for_url(f"{provider.issuer.removesuffix('/o')}/login/**")
    page.fill('input[name="username"]', "carol")
    page.fill('input[name="password"]', "carol-at-provider")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Authorize").click()

    page.wait_for_url(app.url + "/")
    page.wait_for_selector("#composer textarea")
    assert "carol" in page.locator(".sidebar-foot").inner_text()

    # Logging out goes by the provider's end-session page and back to the login page.
    page.locator(".sidebar-foot button.link").click()
    page.wait_for_url(app.url + "/accounts/login/")
    assert any("/o/logout/?id_token_hint=" in url for url in chat.requests), chat.requests
    page.goto(app.url + "/")
    assert "/accounts/login/" in page.url
    # The provider's own pages lack a stylesheet and an icon: not the app's errors.
    provider_origin = provider.issuer.removesuffix("/o")
    assert not [e for e in chat.console_errors if provider_origin not in e], chat.console_errors

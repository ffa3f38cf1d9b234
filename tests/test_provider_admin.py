"""Providers and their models in the admin: the key is write-only and encrypted
at rest, never shown back (the admin, the chat, the logs, the exports); a
provider's model list is fetched on save and on demand, and a provider that is
down or refuses the key is said in one fixed sentence, nothing crashing.

Personas: `admin_client` is a superuser; `alice` chats and is not staff.
"""

import json
import logging
import re

import pytest
from cryptography.fernet import Fernet

from chat import secrets
from chat.export import conversations_as_csv, conversations_as_json
from chat.models import Conversation, OfferedModel, Provider, SiteSettings, UserSettings
from chat.provider import catalog
from tests.conftest import finished, send
from tests.live import free_port
from tests.openai_stub import Status, Stream

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast")]

KEY = "sk-test-Wq8zV3kPpL0rT7yN5mB2cX9dF4gH1jK6-9876"
ADD = "/admin/chat/provider/add/"


def change_url(provider: Provider) -> str:
    return f"/admin/chat/provider/{provider.pk}/change/"


def provider_form(base_url: str, *, name: str = "Stub", offered: list[dict] | None = None, **fields) -> dict:
    """The provider's admin form as a browser posts it, with its offered models."""
    offered = offered or []
    data = {
        "name": name,
        "base_url": base_url,
        "enabled": "on",
        "api_key": "",
        "api_key_env": "",
        "offered_models-TOTAL_FORMS": str(len(offered)),
        "offered_models-INITIAL_FORMS": str(sum(1 for o in offered if "id" in o)),
        "offered_models-MIN_NUM_FORMS": "0",
        "offered_models-MAX_NUM_FORMS": "1000",
        **fields,
    }
    for i, model in enumerate(offered):
        row = {"enabled": "on", "position": "0", "parameters": "{}", **model}
        data.update({f"offered_models-{i}-{k}": v for k, v in row.items()})
    return data


@pytest.fixture
def key_logs(caplog):
    caplog.set_level(logging.DEBUG)
    return caplog


def assert_no_key(*texts: str) -> None:
    for text in texts:
        assert KEY not in text
        # Nor a recognisable part of it beyond the last four characters.
        assert KEY[:-4] not in text


# The key


def test_a_key_is_stored_encrypted_and_never_shown_back(admin_client, alice_client, stub, key_logs):
    stub.models = ["model-a"]
    response = admin_client.post(ADD, provider_form(stub.base_url, api_key=KEY))
    assert response.status_code == 302, response.content.decode()
    provider = Provider.objects.get()
    # Ciphertext in the row: not the key, and readable only with the encryption keys.
    assert provider.api_key_encrypted and KEY not in provider.api_key_encrypted
    assert secrets.decrypt(provider.api_key_encrypted) == KEY
    assert stub.authorizations == [f"Bearer {KEY}"]

    change = admin_client.get(change_url(provider)).content.decode()
    assert "Set, ending in …9876" in change
    # A password input that is never filled in.
    field = re.search(r'<input type="password" name="api_key"[^>]*>', change)[0]
    assert "value=" not in field
    listing = admin_client.get("/admin/chat/provider/").content.decode()
    chat = alice_client.get("/").content.decode()
    assert_no_key(change, listing, chat, key_logs.text)


def test_saving_without_a_new_key_keeps_it_and_clearing_removes_it(admin_client, stub):
    admin_client.post(ADD, provider_form(stub.base_url, api_key=KEY))
    provider = Provider.objects.get()
    stored = provider.api_key_encrypted
    admin_client.post(change_url(provider), provider_form(stub.base_url, name="Renamed"))
    provider.refresh_from_db()
    assert (provider.name, provider.api_key_encrypted) == ("Renamed", stored)
    admin_client.post(change_url(provider), provider_form(stub.base_url, name="Renamed", clear_key="on"))
    provider.refresh_from_db()
    assert provider.api_key_encrypted == ""
    assert "Not set" in admin_client.get(change_url(provider)).content.decode()


def test_a_key_can_come_from_a_named_environment_variable_only(admin_client, stub, monkeypatch):
    monkeypatch.setenv("STUB_API_KEY", KEY)
    for name in ("SECRET_KEY", "DATABASE_URL", "stub_api_key", "STUB_API_KEY;rm"):
        response = admin_client.post(ADD, provider_form(stub.base_url, api_key_env=name))
        assert response.status_code == 200 and "ending in _API_KEY" in response.content.decode(), name
    response = admin_client.post(ADD, provider_form(stub.base_url, api_key_env="STUB_API_KEY"))
    assert response.status_code == 302
    provider = Provider.objects.get()
    assert provider.api_key_encrypted == "" and catalog.provider_key(provider) == KEY
    page = admin_client.get(change_url(provider)).content.decode()
    assert "From the environment variable STUB_API_KEY (set)" in page
    assert_no_key(page)
    # Both at once is refused.
    response = admin_client.post(
        ADD, provider_form(stub.base_url, name="Both", api_key="x" * 20, api_key_env="A_API_KEY")
    )
    assert response.status_code == 200 and "not both" in response.content.decode()


def test_the_key_reaches_no_export_and_no_answer_log(admin_client, alice_async, alice, stub, key_logs):
    provider = Provider.objects.create(name="Stub", base_url=stub.base_url, api_key_encrypted=secrets.encrypt(KEY))
    option = OfferedModel.objects.create(provider=provider, model_id="model-a", label="Model A")
    conversation = Conversation.objects.create(owner=alice, model_option=option)
    stub.script(Stream(["Hello."]), Status(401, f"Incorrect API key provided: {KEY}"))
    from asgiref.sync import async_to_sync

    async def two_answers():
        await finished((await send(alice_async, conversation, "Hi")).pk)
        return await finished((await send(alice_async, conversation, "Again")).pk)

    refused = async_to_sync(two_answers)()
    assert refused.status == "error" and "credentials" in refused.error
    exported = conversations_as_json(Conversation.objects.all()) + conversations_as_csv(Conversation.objects.all())
    page = async_to_sync(alice_async.get)(f"/c/{conversation.pk}/")
    assert_no_key(exported, page.content.decode(), key_logs.text)
    assert provider.api_key_encrypted not in exported


def test_keys_rotate_the_first_encrypts_and_all_decrypt(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.CHAT_ENCRYPTION_KEYS = (old,)
    token = secrets.encrypt(KEY)
    settings.CHAT_ENCRYPTION_KEYS = (new, old)
    assert secrets.decrypt(token) == KEY
    assert Fernet(new.encode()).decrypt(secrets.encrypt(KEY).encode()).decode() == KEY
    settings.CHAT_ENCRYPTION_KEYS = (new,)
    with pytest.raises(secrets.KeyUnreadable):
        secrets.decrypt(token)
    # Without any: a key derived from SECRET_KEY, so another SECRET_KEY cannot read it.
    settings.CHAT_ENCRYPTION_KEYS = ()
    derived = secrets.encrypt(KEY)
    assert secrets.decrypt(derived) == KEY
    settings.SECRET_KEY = "another-secret-key-" + "y" * 40
    with pytest.raises(secrets.KeyUnreadable):
        secrets.decrypt(derived)


def test_a_key_that_cannot_be_decrypted_is_said_so(admin_client, stub):
    other = Fernet(Fernet.generate_key())
    provider = Provider.objects.create(
        name="Stub", base_url=stub.base_url, api_key_encrypted=other.encrypt(KEY.encode()).decode()
    )
    assert "cannot be decrypted" in admin_client.get(change_url(provider)).content.decode()
    assert catalog.provider_key(provider) == ""


# The model list


def test_saving_a_provider_lists_its_models_for_the_offered_models_form(admin_client, stub):
    stub.models = ["model-b", "model-a", '<img src=x onerror="alert(1)">']
    response = admin_client.post(ADD, provider_form(stub.base_url, offered=[{"model_id": "model-a", "label": "A"}]))
    assert response.status_code == 302
    provider = Provider.objects.get()
    assert provider.listed_models == ['<img src=x onerror="alert(1)">', "model-a", "model-b"]
    assert provider.listed_at is not None and provider.list_error == ""
    page = admin_client.get(change_url(provider)).content.decode()
    datalist = re.search(r'<datalist id="listed-models">(.*?)</datalist>', page)[1]
    assert '<option value="model-a">' in datalist and '<option value="model-b">' in datalist
    assert "<img src=x" not in page and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in datalist
    assert re.search(r'name="offered_models-0-model_id"[^>]*list="listed-models"', page)
    assert "3 models listed" in page
    assert list(provider.offered_models.values_list("model_id", "label")) == [("model-a", "A")]


def test_a_provider_that_is_down_is_said_plainly(admin_client, stub, key_logs):
    closed = f"http://127.0.0.1:{free_port()}/v1"
    response = admin_client.post(ADD, provider_form(closed, api_key=KEY), follow=True)
    assert response.status_code == 200
    provider = Provider.objects.get()
    assert provider.list_error == catalog.LIST_UNREACHABLE
    assert catalog.LIST_UNREACHABLE in response.content.decode()
    page = admin_client.get(change_url(provider)).content.decode()
    assert catalog.LIST_UNREACHABLE in page
    assert catalog.LIST_UNREACHABLE in admin_client.get("/admin/chat/provider/").content.decode()
    assert_no_key(page, key_logs.text)


def test_a_refused_key_is_said_plainly_without_the_providers_words(admin_client, stub, key_logs):
    stub.models_reply = Status(401, f"Incorrect API key provided: {KEY}. You can find your API key at ...")
    response = admin_client.post(ADD, provider_form(stub.base_url, api_key=KEY), follow=True)
    provider = Provider.objects.get()
    assert provider.list_error == catalog.LIST_KEY_REFUSED
    page = response.content.decode()
    assert catalog.LIST_KEY_REFUSED in page and "Incorrect API key" not in page
    # The log has the provider's account, with the key scrubbed out.
    assert "Incorrect API key provided: [key]" in key_logs.text
    assert_no_key(page, key_logs.text, provider.list_error)


def test_the_refresh_action_fetches_the_lists_again(admin_client, stub):
    stub.models_reply = Status(503, "busy")
    admin_client.post(ADD, provider_form(stub.base_url))
    provider = Provider.objects.get()
    assert provider.list_error == catalog.LIST_FAILED.format(status=503) and provider.listed_models == []
    stub.models_reply = None
    stub.models = ["fresh-model"]
    response = admin_client.post(
        "/admin/chat/provider/",
        {"action": "refresh_model_lists", "_selected_action": [provider.pk]},
        follow=True,
    )
    assert "Stub: 1 models listed." in response.content.decode()
    provider.refresh_from_db()
    assert (provider.listed_models, provider.list_error) == (["fresh-model"], "")


# Offered models and the site's settings


def test_offered_model_parameters_are_checked(admin_client, stub):
    bad = [
        ({"parameters": '{"model": "other"}'}, "cannot be set here"),
        ({"parameters": '{"messages": [], "stream": false}'}, "messages, stream cannot be set here"),
        ({"parameters": "[1, 2]"}, "Give a JSON object"),
        ({"context_length": "4096", "max_tokens": "4096"}, "Max tokens must be less than the context length"),
    ]
    for fields, error in bad:
        offered = [{"model_id": "m", "label": "M", **fields}]
        response = admin_client.post(ADD, provider_form(stub.base_url, offered=offered))
        assert response.status_code == 200 and error in response.content.decode(), fields
    good = [{"model_id": "m", "label": "M", "parameters": '{"temperature": 0.3}', "max_tokens": "100"}]
    assert admin_client.post(ADD, provider_form(stub.base_url, offered=good)).status_code == 302
    assert OfferedModel.objects.get().parameters == {"temperature": 0.3}


def test_the_site_settings_are_one_row(admin_client, stub):
    provider = Provider.objects.create(name="Stub", base_url=stub.base_url)
    option = OfferedModel.objects.create(provider=provider, model_id="m", label="M")
    OfferedModel.objects.create(provider=provider, model_id="off", label="Off", enabled=False)
    response = admin_client.get("/admin/chat/sitesettings/")
    assert response.status_code == 302 and response["Location"] == "/admin/chat/sitesettings/add/"
    form = admin_client.get("/admin/chat/sitesettings/add/").content.decode()
    assert "M (Stub: m)" in form and "Off (Stub: off)" not in form
    response = admin_client.post(
        "/admin/chat/sitesettings/add/", {"default_model": option.pk, "instructions": "Be kind."}
    )
    assert response.status_code == 302
    row = SiteSettings.objects.get()
    assert (row.default_model_id, row.instructions) == (option.pk, "Be kind.")
    response = admin_client.get("/admin/chat/sitesettings/")
    assert response["Location"] == f"/admin/chat/sitesettings/{row.pk}/change/"
    assert admin_client.get("/admin/chat/sitesettings/add/").status_code == 403
    assert admin_client.post(f"/admin/chat/sitesettings/{row.pk}/delete/", {"post": "yes"}).status_code == 403
    assert SiteSettings.objects.count() == 1


def test_staff_see_users_settings_and_users_do_not_reach_the_admin(admin_client, alice_client, alice):
    alice_client.post("/settings/instructions/", {"instructions": "Answer briefly."})
    listing = admin_client.get("/admin/chat/usersettings/").content.decode()
    assert "alice" in listing and "Answer briefly." in listing
    row = UserSettings.objects.get()
    response = admin_client.post(f"/admin/chat/usersettings/{row.pk}/change/", {"instructions": "Staff's words"})
    assert response.status_code == 403
    assert UserSettings.objects.get().instructions == "Answer briefly."
    for url in ("/admin/chat/provider/", "/admin/chat/sitesettings/", "/admin/chat/usersettings/"):
        assert alice_client.get(url).status_code == 302, url


def test_the_stub_lists_what_the_openai_client_reads(stub):
    """The listing goes through the real client: what the stub serves is what
    staff are proposed."""
    stub.models = ["b", "a"]
    assert catalog.fetch_models(stub.base_url, "any") == ["a", "b"]
    assert json.loads(json.dumps(stub.authorizations)) == ["Bearer any"]

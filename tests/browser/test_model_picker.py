"""The model picker in the browser: the model picked next to the composer writes
the answer (the stub says which model was asked for), the answer shows its
label, the choice stays for the next prompt and a reload, and "Retry with"
regenerates an answer with another model."""

import re

import pytest

from tests.openai_stub import Stream

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def offer_two_models():
    """Model A and Model B, offered from a provider at the stub; their picker
    values. Removed at the end: with a DATABASE_URL the live servers of a test
    session share one database, and the other tests expect the environment's model."""
    servers = []

    def offer(server, base_url: str) -> dict[str, str]:
        servers.append(server)
        return _offer(server, base_url)

    yield offer
    for server in servers:
        server.manage("shell", "-c", "from chat.models import Provider\nProvider.objects.filter(name='Stub').delete()")


def _offer(server, base_url: str) -> dict[str, str]:
    server.manage(
        "shell",
        "-c",
        "from chat.models import OfferedModel, Provider\n"
        f"p, _ = Provider.objects.get_or_create(name='Stub', defaults={{'base_url': {base_url!r}}})\n"
        "OfferedModel.objects.get_or_create(provider=p, model_id='model-a', defaults={'label': 'Model A', 'position': 1})\n"
        "OfferedModel.objects.get_or_create(provider=p, model_id='model-b', defaults={'label': 'Model B', 'position': 2})\n",
    )
    rows = server.sql("SELECT label, id FROM chat_offeredmodel WHERE model_id IN ('model-a', 'model-b')")
    return {label: str(pk) for label, pk in rows}


def _answer(page, text: str):
    answer = page.locator('#messages .msg.assistant[data-status="complete"]', has_text=text)
    answer.wait_for()
    return answer


def test_pick_a_model_send_and_the_choice_stays(open_chat, live_server_factory, openai_stub_server, offer_two_models):
    server = live_server_factory()
    ids = offer_two_models(server, openai_stub_server.base_url)
    chat = open_chat(server=server)
    page = chat.page
    picker = page.locator("#composer select[name=model]")
    assert picker.locator("option").all_inner_texts() == ["Model A", "Model B"]
    assert picker.input_value() == ids["Model A"]  # the default: the first offered
    assert page.locator(".demo-badge").count() == 0

    picker.select_option(label="Model B")
    openai_stub_server.script(Stream(["Written ", "by B."]), Stream(["B ", "again."]))
    chat.send("Hello")
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    first = _answer(page, "Written by B.")
    assert openai_stub_server.requests[-1]["model"] == "model-b"
    assert first.locator(".msg-model").inner_text() == "Model B"
    # The fresh composer keeps the choice, and the next prompt uses it.
    assert page.locator("#composer select[name=model]").input_value() == ids["Model B"]
    chat.send("Again")
    _answer(page, "B again.")
    assert openai_stub_server.requests[-1]["model"] == "model-b"

    page.reload()
    page.locator("#messages .msg.assistant").first.wait_for()
    assert page.locator("#composer select[name=model]").input_value() == ids["Model B"]
    assert page.locator("#messages .msg-model").all_inner_texts() == ["Model B", "Model B"]
    assert not chat.console_errors, chat.console_errors


def test_retry_with_another_model(open_chat, live_server_factory, openai_stub_server, offer_two_models):
    server = live_server_factory()
    offer_two_models(server, openai_stub_server.base_url)
    chat = open_chat(server=server)
    page = chat.page
    openai_stub_server.script(Stream(["First ", "by A."]), Stream(["Then ", "by B."]))
    chat.send("Say something")
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    answer = _answer(page, "First by A.")
    assert openai_stub_server.requests[-1]["model"] == "model-a"

    answer.locator(".retry-with summary").click()
    answer.locator(".retry-with-panel button", has_text="Model B").click()
    retried = _answer(page, "Then by B.")
    assert openai_stub_server.requests[-1]["model"] == "model-b"
    assert retried.locator(".msg-model").inner_text() == "Model B"
    assert page.locator("#messages > .pager .pager-position").inner_text() == "2/2"
    # The composer's model is still the conversation's own.
    assert page.locator("#composer select[name=model] option:checked").inner_text() == "Model A"
    assert not chat.console_errors, chat.console_errors

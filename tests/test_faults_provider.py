"""A provider that sends malformed JSON in the middle of its stream: the answer
ends with an error the user sees, keeps the text that came before it, and the
next prompt is answered. (The wording of provider errors is chat/provider/client.py's
to choose: checked here is the status, the reason and that a message is shown.)"""

import pytest
from django.utils.html import escape

from tests.conftest import finished, read_stream, send, texts
from tests.openai_stub import Stream

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast")]

PARTIAL = ["Partial ", "answer ", "so far"]

MALFORMED = {
    "cut-off JSON": b'data: {"choices": [{"index": 0, "delta": {"content": "lost\n\n',
    "not JSON at all": b"data: <html>502 Bad Gateway</html>\n\n",
    "JSON that is not an object": b'data: ["a", "list"]\n\n',
    "a choice that is not an object": b'data: {"choices": ["text"]}\n\n',
    "a delta that is not an object": b'data: {"choices": [{"index": 0, "delta": "text"}]}\n\n',
    "bytes that are not UTF-8": b'data: {"choices": [{"delta": {"content": "\xff\xfe"}}]}\n\n',
}


@pytest.mark.parametrize("malformed", MALFORMED, ids=list(MALFORMED))
async def test_malformed_json_mid_stream_ends_the_answer_with_an_error_keeping_its_text(
    malformed, stub, alice_async, conversation
):
    stub.script(Stream([*PARTIAL, MALFORMED[malformed], "never shown"]))
    message = await send(alice_async, conversation, "Tell me something")
    frames = await read_stream(alice_async, message)

    assert frames[-1].event == "error"
    assert texts(frames) == "".join(PARTIAL)
    # The error frame shows the kept text with the error next to it.
    assert "Partial answer so far" in frames[-1].data
    stored = await finished(message.pk)
    assert (stored.status, stored.stop_reason) == ("error", "provider_error")
    # The user reads the stored error, shown as an alert.
    assert stored.error and escape(stored.error) in frames[-1].data
    assert 'role="alert"' in frames[-1].data
    assert stored.content == "".join(PARTIAL)

    stub.script(Stream(["The next ", "answer."]))
    following = await send(alice_async, conversation, "And now?")
    assert following.pk != message.pk
    frames = await read_stream(alice_async, following)
    assert frames[-1].event == "done"
    assert texts(frames) == "The next answer."
    assert (await finished(following.pk)).status == "complete"

"""The end of an answer attempt is plain synchronous code: its rows and its
rendering, checked here without an event loop or a generation."""

import pytest
from django.utils import timezone

from chat.generation.ending import AttemptEnd, MessageGone, Outcome, store_end
from chat.models import Generation, Message, Status, StopReason, ToolCall

# Transactional: store_end lets go of its connection, as at the end of a request.
pytestmark = pytest.mark.django_db(transaction=True)


def _attempt(conversation, **overrides) -> AttemptEnd:
    message = Message.objects.create(
        conversation=conversation, role=Message.Role.ASSISTANT, status=Status.STREAMING, content="Half", last_seq=3
    )
    generation = Generation.objects.create(message=message, owner_id=conversation.owner_id, text_offset=0)
    fields = {
        "message": message,
        "generation": generation,
        "content": "Half an **answer**",
        "first_token_at": timezone.now(),
        "last_seq": 5,
        "prompt_tokens": 12,
        "completion_tokens": 7,
        "error_detail": "",
        "tool_calls": [],
        "tool_calls_started": False,
    }
    return AttemptEnd(**{**fields, **overrides})


def test_it_stores_the_rows_and_renders_the_stored_answer(conversation):
    end = _attempt(conversation)
    writes, html = store_end(end, Outcome(Status.COMPLETE), timezone.now())
    message = Message.objects.get(pk=end.message.pk)
    assert (message.status, message.content, message.last_seq) == (Status.COMPLETE, "Half an **answer**", 5)
    assert (message.prompt_tokens, message.completion_tokens) == (12, 7)
    assert Generation.objects.get(pk=end.generation.pk).status == Status.COMPLETE
    assert writes == 3
    assert "<strong>answer</strong>" in html


def test_it_closes_a_tool_call_left_running(conversation):
    end = _attempt(conversation, tool_calls_started=True)
    call = ToolCall.objects.create(message=end.message, call_id="c1", name="calculator", arguments="{}")
    end.tool_calls.append(call)
    writes, html = store_end(end, Outcome(Status.STOPPED, StopReason.USER_STOP), timezone.now())
    assert writes == 4
    assert ToolCall.objects.get(pk=call.pk).state == ToolCall.State.ERROR
    assert "The answer ended before the tool finished." in html


def test_a_refused_text_ends_with_what_was_stored(conversation):
    end = _attempt(conversation, text_refused=True)
    store_end(end, Outcome(Status.ERROR, StopReason.INTERNAL_ERROR, "Could not be saved."), timezone.now())
    message = Message.objects.get(pk=end.message.pk)
    assert (message.status, message.content, message.error) == (Status.ERROR, "Half", "Could not be saved.")


def test_an_answer_whose_conversation_was_deleted_is_gone(conversation):
    end = _attempt(conversation)
    conversation.delete()
    with pytest.raises(MessageGone):
        store_end(end, Outcome(Status.COMPLETE), timezone.now())

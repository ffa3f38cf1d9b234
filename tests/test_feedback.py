"""Thumbs up or down on a finished answer, with an optional comment.

Personas: `alice` owns the conversation and rates its answers (another user gets a
404 for them: tests/test_isolation.py).
"""

import pytest

from chat.models import Feedback, Message, Status
from tests.conftest import HTMX

pytestmark = pytest.mark.django_db


def answer(conversation, status: str) -> Message:
    return Message.objects.create(
        conversation=conversation, role="assistant", status=status, content="An answer.", last_seq=2
    )


def test_it_records_a_rating_and_shows_it(alice_client, conversation):
    message = answer(conversation, Status.COMPLETE)
    url = f"/c/{conversation.pk}/m/{message.pk}/feedback/"
    response = alice_client.post(url, {"rating": "-1", "comment": "  Wrong year.  "}, headers=HTMX)
    assert response.status_code == 200
    assert 'class="thumb chosen" title="Bad answer"' in response.content.decode()
    feedback = Feedback.objects.get(message=message)
    assert (feedback.rating, feedback.comment, feedback.user.username) == (-1, "Wrong year.", "alice")
    alice_client.post(url, {"rating": "1"}, headers=HTMX)
    feedback.refresh_from_db()
    assert (feedback.rating, Feedback.objects.count()) == (1, 1)


def test_it_refuses_an_answer_still_being_written(alice_client, conversation):
    """The page offers feedback on finished answers only; a streaming answer's
    finished form is rendered once, knowing it has none."""
    message = answer(conversation, Status.STREAMING)
    response = alice_client.post(f"/c/{conversation.pk}/m/{message.pk}/feedback/", {"rating": "1"}, headers=HTMX)
    assert response.status_code == 409
    assert "Wait for the answer to finish" in response.content.decode()
    assert not Feedback.objects.exists()


def test_it_refuses_a_rating_that_is_not_up_or_down(alice_client, conversation):
    message = answer(conversation, Status.COMPLETE)
    response = alice_client.post(f"/c/{conversation.pk}/m/{message.pk}/feedback/", {"rating": "5"}, headers=HTMX)
    assert response.status_code == 400
    assert not Feedback.objects.exists()

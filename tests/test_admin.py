"""Staff review of stored conversations in the admin.

Personas: `admin_client` is a superuser reviewer; `viewer` is staff who may only
view conversations; `editor` is staff who may view and change them (but is no
superuser); `alice` owns the conversations and is not staff.
"""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat.models import Conversation, Feedback, Generation, Message, Status, StopReason, ToolCall

LIST = "/admin/chat/conversation/"
SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"


def change_url(conversation: Conversation) -> str:
    return f"/admin/chat/conversation/{conversation.pk}/change/"


def next_time(conversation: Conversation):
    """A minute after the conversation's last message (an hour ago for the first)."""
    return timezone.now() - timedelta(hours=1) + timedelta(minutes=conversation.messages.count())


def add_exchange(conversation: Conversation, prompt: str, answer: str, **answer_fields) -> Message:
    """A user prompt and its answer, one second apart, at the end of the branch on
    screen, which the answer ends; the answer."""
    start = next_time(conversation)
    leaf = Conversation.objects.values_list("active_leaf", flat=True).get(pk=conversation.pk)
    question = Message.objects.create(
        conversation=conversation, role="user", content=prompt, created_at=start, parent_id=leaf
    )
    fields = {
        "model": "demo",
        "prompt_tokens": 10,
        "completion_tokens": 20,
        "created_at": start + timedelta(seconds=1),
        "first_token_at": start + timedelta(seconds=1.5),
        "finished_at": start + timedelta(seconds=3.5),
        "last_seq": 10,
    }
    fields.update(answer_fields)
    message = Message.objects.create(
        conversation=conversation, role="assistant", content=answer, parent=question, **fields
    )
    Conversation.objects.filter(pk=conversation.pk).update(active_leaf=message)
    return message


def staff_client(django_user_model, username: str, *codenames: str) -> tuple[Client, object]:
    user = django_user_model.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="chat", codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client, user


@pytest.fixture
def viewer(django_user_model):
    return staff_client(django_user_model, "viewer", "view_conversation", "view_message")


@pytest.fixture
def editor(django_user_model):
    return staff_client(django_user_model, "editor", "view_conversation", "change_conversation")


def review_post(**fields) -> dict:
    data = {"flagged": "", "review_note": "", "reviewed": "", "_save": "Save"}
    data.update(fields)
    return data


# Who may enter


@pytest.mark.django_db
@pytest.mark.parametrize("url", [LIST, "/admin/chat/message/", "/admin/chat/feedback/"])
def test_it_redirects_anonymous_to_login(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.django_db
def test_it_redirects_non_staff_to_login(alice_client, conversation):
    for url in (LIST, change_url(conversation)):
        response = alice_client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")


@pytest.mark.django_db
def test_it_has_no_add_page(admin_client):
    for model in ("conversation", "message", "feedback"):
        assert admin_client.get(f"/admin/chat/{model}/add/").status_code == 403


# The list


@pytest.mark.django_db
def test_it_lists_with_a_constant_number_of_queries(admin_client, alice):
    def make(count: int) -> None:
        for i in range(count):
            conversation = Conversation.objects.create(owner=alice, title=f"chat {i}")
            add_exchange(conversation, "hello", "hi", status=Status.ERROR, stop_reason=StopReason.PROVIDER_ERROR)
            add_exchange(conversation, "again", "hi again")

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            response = admin_client.get(LIST)
        assert response.status_code == 200
        return len(response.context["cl"].result_list), len(captured)

    make(3)
    rows_few, queries_few = queries()
    make(27)
    rows_many, queries_many = queries()
    assert (rows_few, rows_many) == (3, 30)
    assert queries_few == queries_many


@pytest.mark.django_db
def test_it_annotates_count_tokens_and_worst_status(admin_client, conversation, alice):
    add_exchange(conversation, "a", "b", status=Status.STOPPED, stop_reason=StopReason.USER_STOP)
    add_exchange(conversation, "c", "d", prompt_tokens=None, completion_tokens=7, status=Status.INTERRUPTED)
    add_exchange(conversation, "e", "f")
    empty = Conversation.objects.create(owner=alice, title="empty")

    response = admin_client.get(LIST)

    rows = {c.pk: c for c in response.context["cl"].result_list}
    assert rows[conversation.pk].message_count == 6
    assert rows[conversation.pk].total_tokens == 30 + 7 + 30
    assert rows[conversation.pk].worst_severity == 3
    assert rows[empty.pk].message_count == 0
    assert rows[empty.pk].total_tokens == 0
    content = response.content.decode()
    assert "Interrupted" in content


def listed(client: Client, query: str) -> list[int]:
    response = client.get(LIST + query)
    assert response.status_code == 200
    return [c.pk for c in response.context["cl"].result_list]


@pytest.mark.django_db
def test_the_filters_select_the_right_conversations(admin_client, alice):
    broken = Conversation.objects.create(owner=alice, title="broken")
    add_exchange(broken, "q", "a", status=Status.ERROR, stop_reason=StopReason.PROVIDER_ERROR, model="gpt-x")
    add_exchange(broken, "q", "a", status=Status.STOPPED, stop_reason=StopReason.USER_STOP)
    stopped = Conversation.objects.create(owner=alice, title="stopped", flagged=True)
    add_exchange(stopped, "q", "a", status=Status.STOPPED, stop_reason=StopReason.USER_STOP)
    fine = Conversation.objects.create(owner=alice, title="fine", reviewed_at=timezone.now())
    add_exchange(fine, "q", "a")

    assert listed(admin_client, "?worst_status=error") == [broken.pk]
    assert listed(admin_client, "?worst_status=stopped") == [stopped.pk]
    assert listed(admin_client, "?worst_status=complete") == [fine.pk]
    assert sorted(listed(admin_client, "?stop_reason=user_stop")) == sorted([broken.pk, stopped.pk])
    assert listed(admin_client, "?model=gpt-x") == [broken.pk]
    assert listed(admin_client, "?flagged__exact=1") == [stopped.pk]
    assert sorted(listed(admin_client, "?reviewed=no")) == sorted([broken.pk, stopped.pk])
    assert listed(admin_client, "?reviewed=yes") == [fine.pk]
    assert len(listed(admin_client, f"?owner__id__exact={alice.pk}")) == 3


@pytest.mark.django_db
def test_search_finds_titles_and_message_text_once(admin_client, alice):
    many = Conversation.objects.create(owner=alice, title="about cats")
    add_exchange(many, "tell me about zebras", "zebras are striped; zebras run")
    add_exchange(many, "more zebras", "zebras again")
    other = Conversation.objects.create(owner=alice, title="zebra crossing")
    add_exchange(other, "q", "a")

    assert listed(admin_client, "?q=zebras") == [many.pk]
    assert sorted(listed(admin_client, "?q=zebra")) == sorted([many.pk, other.pk])
    assert listed(admin_client, "?q=cats") == [many.pk]
    assert listed(admin_client, "?q=cats+striped") == [many.pk]
    assert listed(admin_client, "?q=cats+crossing") == []


# The transcript


@pytest.mark.django_db
def test_the_transcript_escapes_hostile_content(admin_client, alice):
    conversation = Conversation.objects.create(owner=alice, title=SCRIPT, review_note=f"note {SCRIPT}")
    answer = add_exchange(
        conversation,
        f"prompt {SCRIPT} {IMG}",
        f"answer {SCRIPT} and {IMG}",
        status=Status.ERROR,
        error=f"error {SCRIPT} {IMG}",
        review_note=f"message note {SCRIPT}",
    )
    ToolCall.objects.create(
        message=answer,
        call_id=SCRIPT,
        name="calculator",
        arguments='{"expression": "<script>alert(1)</script>"}',
        result=f"result {SCRIPT} {IMG}",
        state="ok",
        start_seq=1,
        result_seq=2,
    )
    Feedback.objects.create(message=answer, user=alice, rating=-1, comment=f"comment {SCRIPT} {IMG}")

    response = admin_client.get(change_url(conversation))

    assert response.status_code == 200
    content = response.content.decode()
    assert "<script>alert(1)" not in content
    assert "<img src=x" not in content
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content
    for text in ("prompt", "answer", "error", "message note", "comment", "result"):
        assert f"{text} &lt;script&gt;alert(1)&lt;/script&gt;" in content
    assert "&lt;img src=x onerror=alert(1)&gt;" in content


@pytest.mark.django_db
def test_the_transcript_shows_seams_branches_tools_errors_and_metrics(admin_client, alice):
    conversation = Conversation.objects.create(owner=alice, title="review me")
    first = "The first attempt said this. "
    answer = add_exchange(
        conversation,
        "What is 6*7?",
        first + "The continuation said that.",
        status=Status.COMPLETE,
        model="gpt-test",
        prompt_tokens=123,
        completion_tokens=456,
    )
    Generation.objects.create(
        message=answer,
        owner_id=answer.conversation.owner_id,
        text_offset=0,
        start_seq=0,
        status=Status.STOPPED,
        stop_reason=StopReason.USER_STOP,
    )
    Generation.objects.create(
        message=answer,
        owner_id=answer.conversation.owner_id,
        text_offset=len(first),
        start_seq=5,
        status=Status.COMPLETE,
    )
    ToolCall.objects.create(
        message=answer,
        call_id="c1",
        name="calculator",
        arguments='{"expression": "6*7"}',
        result="42",
        state="ok",
        text_offset=len(first),
        start_seq=6,
        result_seq=7,
    )
    Feedback.objects.create(message=answer, user=alice, rating=1, comment="spot on")
    failed = add_exchange(
        conversation,
        "And now?",
        "Half an ans",
        status=Status.ERROR,
        stop_reason=StopReason.PROVIDER_ERROR,
        error="The provider timed out.",
    )
    retried = Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="A whole answer.",
        created_at=next_time(conversation),
        parent_id=failed.parent_id,
    )
    Conversation.objects.filter(pk=conversation.pk).update(active_leaf=retried)
    add_exchange(
        conversation,
        "Stop!",
        "I was cut",
        status=Status.INTERRUPTED,
        stop_reason=StopReason.SERVER_RESTART,
        error="The server stopped.",
    )

    content = admin_client.get(change_url(conversation)).content.decode()

    # Order of the conversation and the seam between the two attempts.
    positions = [
        content.index(text)
        for text in (
            "What is 6*7?",
            "The first attempt said this.",
            "— continued here —",
            'data-tool="calculator"',
            "The continuation said that.",
            "And now?",
            "Half an ans",
            "A whole answer.",
            "I was cut",
        )
    ]
    assert positions == sorted(positions)
    assert content.count("— continued here —") == 1
    # The tool call with its arguments and result.
    assert "&quot;expression&quot;: &quot;6*7&quot;" in content
    assert '<pre class="tool-result">42</pre>' in content
    # The retried answer, off the branch on screen: folded away and marked.
    assert content.count('<details class="transcript-off-branch"') == 1
    replaced = content[content.index('<details class="transcript-off-branch"') :]
    assert replaced.index("Half an ans") < replaced.index("</details>")
    assert "alternative 1 of 2" in replaced[: replaced.index("</summary>")]
    assert "Alternative 2 of 2</strong> after" in content
    # Errors and why answers stopped.
    assert "The provider timed out." in content
    assert "model provider error" in content
    assert "The server stopped." in content
    assert "Stopped by the user" in content
    # Per answer figures and feedback.
    for text in ("gpt-test", "123", "456", "0.50 s", "2.50 s", "228.0", "👍 Good", "spot on"):
        assert text in content


# Review


@pytest.mark.django_db
def test_marking_reviewed_records_who_and_when(admin_client, conversation, admin_user):
    add_exchange(conversation, "q", "a")
    before = timezone.now()

    response = admin_client.post(
        change_url(conversation), review_post(flagged="on", review_note="looked at it", reviewed="on")
    )

    assert response.status_code == 302
    conversation.refresh_from_db()
    assert conversation.flagged
    assert conversation.review_note == "looked at it"
    assert conversation.reviewed_by == admin_user
    assert conversation.reviewed_at >= before


@pytest.mark.django_db
def test_unticking_reviewed_clears_it_and_saving_leaves_content_alone(admin_client, conversation, admin_user):
    Conversation.objects.filter(pk=conversation.pk).update(reviewed_at=timezone.now(), reviewed_by=admin_user)

    admin_client.post(change_url(conversation), review_post(title="renamed by staff"))

    conversation.refresh_from_db()
    assert conversation.reviewed_at is None
    assert conversation.reviewed_by is None
    assert conversation.title == "Alice's chat"


@pytest.mark.django_db
def test_the_actions_flag_and_mark_reviewed(admin_client, conversation, alice, admin_user):
    other = Conversation.objects.create(owner=alice, title="other")
    add_exchange(conversation, "q", "a", status=Status.ERROR)

    # Through a filtered list: the filter on the annotated worst status must
    # survive into the update.
    admin_client.post(LIST + "?worst_status=error", {"action": "flag", "_selected_action": [conversation.pk]})
    admin_client.post(LIST, {"action": "mark_reviewed", "_selected_action": [conversation.pk, other.pk]})

    conversation.refresh_from_db()
    other.refresh_from_db()
    assert conversation.flagged and not other.flagged
    assert conversation.reviewed_by == other.reviewed_by == admin_user
    assert conversation.reviewed_at is not None


@pytest.mark.django_db
def test_staff_who_may_only_view_cannot_change_the_review(viewer, conversation):
    client, _ = viewer
    add_exchange(conversation, "q", "a")

    page = client.get(change_url(conversation))
    posted = client.post(change_url(conversation), review_post(flagged="on", reviewed="on"))
    client.post(LIST, {"action": "flag", "_selected_action": [conversation.pk]})

    assert page.status_code == 200
    assert 'name="flagged"' not in page.content.decode()
    assert posted.status_code == 403
    conversation.refresh_from_db()
    assert not conversation.flagged
    assert conversation.reviewed_at is None


@pytest.mark.django_db
def test_staff_who_may_change_can_review(editor, conversation):
    client, user = editor

    page = client.get(change_url(conversation))
    posted = client.post(change_url(conversation), review_post(flagged="on", reviewed="on"))

    assert 'name="flagged"' in page.content.decode()
    assert posted.status_code == 302
    conversation.refresh_from_db()
    assert conversation.flagged
    assert conversation.reviewed_by == user


# Export through the admin


@pytest.mark.django_db
def test_the_export_actions_return_attachments(admin_client, conversation):
    add_exchange(conversation, "q", "a")
    selected = {"_selected_action": [conversation.pk]}

    as_json = admin_client.post(LIST, {"action": "export_json", **selected})
    as_csv = admin_client.post(LIST, {"action": "export_csv", **selected})

    assert as_json["Content-Type"].startswith("application/json")
    assert as_json["Content-Disposition"].startswith('attachment; filename="conversations-')
    assert as_json.json()["conversations"][0]["id"] == conversation.pk
    assert as_csv["Content-Type"].startswith("text/csv")
    assert as_csv.content.decode().count("\n") == 3


# Messages and feedback


@pytest.mark.django_db
def test_the_message_admin_lists_filters_and_reviews(admin_client, conversation, admin_user, alice):
    good = add_exchange(conversation, "q", "**bold** answer")
    bad = add_exchange(conversation, "q2", "wrong", status=Status.ERROR, error="boom")
    Feedback.objects.create(message=good, user=alice, rating=1)
    Feedback.objects.create(message=bad, user=alice, rating=-1)

    def messages(query: str) -> list[int]:
        response = admin_client.get("/admin/chat/message/" + query)
        assert response.status_code == 200
        return [m.pk for m in response.context["cl"].result_list]

    assert messages("?feedback=-1") == [bad.pk]
    assert messages("?status__exact=error") == [bad.pk]
    assert len(messages("?role__exact=user")) == 2
    page = admin_client.get(f"/admin/chat/message/{good.pk}/change/").content.decode()
    assert "<strong>bold</strong> answer" in page
    assert "👍 Good" in page
    response = admin_client.post(f"/admin/chat/message/{bad.pk}/change/", review_post(flagged="on", reviewed="on"))
    assert response.status_code == 302
    bad.refresh_from_db()
    assert bad.flagged and bad.reviewed_by == admin_user
    assert bad.content == "wrong" and bad.error == "boom"


@pytest.mark.django_db
def test_feedback_is_listed_read_only(admin_client, conversation, alice):
    answer = add_exchange(conversation, "q", "a")
    feedback = Feedback.objects.create(message=answer, user=alice, rating=-1, comment="meh")

    listing = admin_client.get("/admin/chat/feedback/?rating__exact=-1")
    page = admin_client.get(f"/admin/chat/feedback/{feedback.pk}/change/")
    posted = admin_client.post(f"/admin/chat/feedback/{feedback.pk}/change/", {"rating": "1", "comment": "great"})

    assert [f.pk for f in listing.context["cl"].result_list] == [feedback.pk]
    assert page.status_code == 200
    assert posted.status_code == 403
    feedback.refresh_from_db()
    assert (feedback.rating, feedback.comment) == (-1, "meh")


@pytest.mark.django_db
def test_the_transcript_shows_every_branch_in_full(admin_client, alice):
    """An edited prompt and the branch it replaced: both in full, the one off
    screen folded, each message in its branch's order."""
    conversation = Conversation.objects.create(owner=alice, title="branches")
    add_exchange(conversation, "First prompt", "First answer")
    old = add_exchange(conversation, "Old question", "Old answer")
    add_exchange(conversation, "Old follow-up", "Old follow-up answer")
    Conversation.objects.filter(pk=conversation.pk).update(active_leaf_id=old.parent.parent_id)
    add_exchange(
        conversation, "Edited question", "Edited answer", status=Status.STOPPED, stop_reason=StopReason.USER_STOP
    )

    content = admin_client.get(change_url(conversation)).content.decode()

    order = [
        "First prompt",
        "First answer",
        "Old question",
        "Old answer",
        "Old follow-up",
        "Old follow-up answer",
        "Edited question",
        "Edited answer",
    ]
    positions = [content.index(text) for text in order]
    assert positions == sorted(positions)
    folded = re.findall(r'<details class="transcript-off-branch" id="msg-(\d+)">', content)
    assert len(folded) == 4
    assert content.count("Alternative 2 of 2</strong>") == 1
    assert "Stopped by the user" in content

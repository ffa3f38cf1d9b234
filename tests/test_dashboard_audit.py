"""The staff dashboard and the audit trail.

Personas: `admin_client` is a superuser; `alice` uses the chat and is not staff.
"""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat.dashboard import build
from chat.models import AuditEntry, Conversation, DailyUsage, Message, ModelPrice, Quota, UsageEntry

DASHBOARD = "/admin/dashboard/"


def ledger(user, *, days_ago=0, model="m1", status="complete", first_token_ms=300, tokens=(100, 50), n=1, group=""):
    when = timezone.now() - timedelta(days=days_ago)
    UsageEntry.objects.bulk_create(
        UsageEntry(
            kind="end",
            user=user,
            username=user.username,
            group=group,
            model=model,
            prompt_tokens=tokens[0],
            completion_tokens=tokens[1],
            cost=Decimal("0.01"),
            status=status,
            first_token_ms=first_token_ms,
            duration_ms=(first_token_ms or 0) + 1000,
            created_at=when,
        )
        for _ in range(n)
    )


def queries_to_build(days: int) -> int:
    build(days)  # sums the ended days once
    with CaptureQueriesContext(connection) as queries:
        build(days)
    return len(queries)


@pytest.mark.django_db
def test_the_dashboard_sums_by_day_model_user_and_group(alice, bob):
    ledger(alice, days_ago=2, n=3, group="sales")
    ledger(alice, days_ago=2, status="error", first_token_ms=None, group="sales")
    ledger(bob, days_ago=0, model="m2", status="interrupted", first_token_ms=2500, n=2)

    board = build(7)

    day = timezone.localdate() - timedelta(days=2)
    assert (board.by_day[day].answers, board.by_day[day].errors) == (4, 1)
    assert board.by_day[timezone.localdate()].interrupted == 2
    assert board.by_user["alice"].tokens == 4 * 150
    assert board.by_group["sales"].answers == 4 and board.by_group["(no group)"].answers == 2
    # 300 ms falls in the bucket up to 300 ms; 2,500 ms in the one up to 3,000 ms.
    assert (board.by_model["m1"].percentile(0.5), board.by_model["m2"].percentile(0.95)) == (300, 3000)
    # Ended days are read from their sums from now on; today from the ledger.
    assert DailyUsage.objects.filter(day=day).exists()
    assert not DailyUsage.objects.filter(day=timezone.localdate()).exists()


@pytest.mark.django_db
def test_the_dashboard_s_queries_do_not_grow_with_the_ledger(alice, bob):
    ledger(alice, days_ago=3)
    ledger(bob, days_ago=0)
    few = queries_to_build(14)
    ledger(alice, days_ago=3, n=200)
    ledger(alice, days_ago=0, n=200, status="error")
    ledger(bob, days_ago=1, n=200, model="m2")
    assert queries_to_build(14) == few


@pytest.mark.django_db
def test_a_summed_day_is_summed_once(alice):
    ledger(alice, days_ago=1, n=5)
    build(7)
    build(7)
    assert sum(DailyUsage.objects.values_list("answers", flat=True)) == 5


@pytest.mark.django_db
def test_the_dashboard_page_draws_its_charts_for_staff_only(admin_client, alice, alice_client):
    ledger(alice, days_ago=1, n=4)
    ledger(alice, days_ago=0, status="error")
    conversation = Conversation.objects.create(owner=alice, title="Failed one")
    UsageEntry.objects.filter(status="error").update(conversation_id=conversation.pk)

    page = admin_client.get(DASHBOARD).content.decode()

    assert page.count("<svg viewBox") == 2
    assert "Answers per day" in page and "Time to first token, by model" in page
    assert f'href="/admin/chat/conversation/{conversation.pk}/change/"' in page
    assert "<script" not in page.split("<body")[1].split("</body>")[0].replace('<script src="/static/', "")
    # Not staff: admin's own login, as for every admin page.
    response = alice_client.get(DASHBOARD)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.mark.django_db
def test_labels_in_the_charts_are_escaped(admin_client, django_user_model):
    hostile = django_user_model.objects.create_user("<img src=x onerror=alert(1)>", password="x")
    ledger(hostile, model="<script>alert(1)</script>")
    page = admin_client.get(DASHBOARD).content.decode()
    assert "<img src=x" not in page and "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# The audit trail


def entries(action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action))


@pytest.fixture
def alices_conversation(alice) -> Conversation:
    conversation = Conversation.objects.create(owner=alice, title="Alice's plans")
    Message.objects.create(conversation=conversation, role="user", content="Secret plans")
    return conversation


@pytest.mark.django_db
def test_opening_a_transcript_is_recorded(admin_client, admin_user, alices_conversation):
    response = admin_client.get(f"/admin/chat/conversation/{alices_conversation.pk}/change/", REMOTE_ADDR="10.1.2.3")
    assert response.status_code == 200
    [entry] = entries("opened")
    assert (entry.actor, entry.target_type, entry.target_id) == (
        admin_user,
        "chat.Conversation",
        str(alices_conversation.pk),
    )
    assert (entry.target, entry.address) == ("Alice's plans", "10.1.2.3")


@pytest.mark.django_db
def test_exporting_flagging_and_reviewing_are_recorded(admin_client, alices_conversation):
    changelist = "/admin/chat/conversation/"
    for action in ("export_json", "flag", "mark_reviewed"):
        response = admin_client.post(changelist, {"action": action, "_selected_action": [alices_conversation.pk]})
        assert response.status_code in (200, 302)
    admin_client.post(
        f"/admin/chat/conversation/{alices_conversation.pk}/change/",
        {"flagged": "", "review_note": "Looked fine", "reviewed": "on"},
    )
    assert [len(entries(a)) for a in ("exported", "flagged", "marked reviewed", "reviewed")] == [1, 1, 1, 1]
    assert "review_note" in entries("reviewed")[0].detail


@pytest.mark.django_db
def test_changing_a_quota_or_a_price_is_recorded(admin_client, alice):
    sales = Group.objects.create(name="sales")
    response = admin_client.post(
        "/admin/chat/quota/add/",
        {"group": sales.pk, "period": "day", "max_answers": "50", "max_tokens": "", "max_cost": ""},
    )
    assert response.status_code == 302, response.content
    quota = Quota.objects.get()
    admin_client.post(
        f"/admin/chat/quota/{quota.pk}/change/", {"group": sales.pk, "period": "month", "max_answers": "50"}
    )
    price = ModelPrice.objects.create(model="m1", input_per_million=1, output_per_million=2)
    admin_client.post(f"/admin/chat/modelprice/{price.pk}/delete/", {"post": "yes"})

    assert [e.target_type for e in entries("added")] == ["chat.Quota"]
    assert "period" in entries("changed")[0].detail
    assert [e.target for e in entries("deleted")] == ["m1"]


@pytest.mark.django_db
def test_a_quota_is_for_a_user_or_a_group(admin_client, alice):
    sales = Group.objects.create(name="sales")
    response = admin_client.post("/admin/chat/quota/add/", {"user": alice.pk, "group": sales.pk, "period": "day"})
    assert response.status_code == 200
    assert "Set either a user or a group" in response.content.decode()
    assert not Quota.objects.exists()


@pytest.mark.django_db
def test_audit_entries_and_the_ledger_cannot_be_edited_in_admin(admin_client, admin_user, alice):
    entry = AuditEntry.objects.create(actor=admin_user, actor_name="admin", action="opened", target="x")
    usage = UsageEntry.objects.create(kind="end", user=alice, username="alice", prompt_tokens=5)
    for url, row in ((f"/admin/chat/auditentry/{entry.pk}", entry), (f"/admin/chat/usageentry/{usage.pk}", usage)):
        page = admin_client.get(f"{url}/change/").content.decode()
        assert not re.search(r'<input type="submit" value="Save"', page)
        assert admin_client.post(f"{url}/change/", {"action": "changed"}).status_code == 403
        assert admin_client.post(f"{url}/delete/", {"post": "yes"}).status_code == 403
        assert type(row).objects.filter(pk=row.pk).exists()
    assert AuditEntry.objects.get(pk=entry.pk).action == "opened"


@pytest.mark.django_db
def test_changing_a_provider_its_models_or_the_site_settings_is_recorded(admin_client, openai_stub_server):
    response = admin_client.post(
        "/admin/chat/provider/add/",
        {
            "name": "Local",
            "base_url": openai_stub_server.base_url,
            "enabled": "on",
            "api_key": "sk-secret-provider-key-1234",
            "api_key_env": "",
            "offered_models-TOTAL_FORMS": "1",
            "offered_models-INITIAL_FORMS": "0",
            "offered_models-0-model_id": "stub-model",
            "offered_models-0-label": "Stub",
            "offered_models-0-enabled": "on",
            "offered_models-0-position": "0",
            "offered_models-0-parameters": "{}",
        },
    )
    assert response.status_code == 302, response.content
    admin_client.post("/admin/chat/sitesettings/add/", {"instructions": "Be brief."})

    recorded = [(e.action, e.target_type) for e in AuditEntry.objects.order_by("id")]
    assert recorded == [("added", "chat.Provider"), ("added", "chat.OfferedModel"), ("added", "chat.SiteSettings")]
    # The fields, never the key.
    assert not AuditEntry.objects.filter(detail__contains="sk-secret").exists()

"""Staff open the dashboard: its charts are drawn with nothing fetched from
another host (the fixture fails the test on any request off 127.0.0.1, and on a
broken Content-Security-Policy)."""

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SETUP = """
from datetime import timedelta
from django.contrib.auth import get_user_model
from django.utils import timezone
from chat.models import UsageEntry
U = get_user_model()
U.objects.filter(username="staffer").exists() or U.objects.create_superuser("staffer", password="staffer-password")
now = timezone.now()
UsageEntry.objects.bulk_create(
    UsageEntry(kind="end", username="alice", model="stub-model", status=status, prompt_tokens=100,
               completion_tokens=40, first_token_ms=250, duration_ms=1500, created_at=now - timedelta(days=days))
    for days, status in [(0, "complete"), (0, "error"), (1, "complete"), (2, "stopped"), (2, "complete")]
)
"""


def test_the_dashboard_draws_its_charts_from_this_site_only(open_chat):
    chat = open_chat(login=False)
    chat.live.manage("shell", "-c", SETUP)
    page = chat.page
    page.goto(chat.live.url + "/admin/login/?next=/admin/dashboard/")
    page.fill('input[name="username"]', "staffer")
    page.fill('input[name="password"]', "staffer-password")
    page.click('input[type="submit"]')
    page.wait_for_url("**/admin/dashboard/")

    charts = page.locator(".dashboard figure.chart > svg")
    assert charts.count() == 2
    # Bars drawn, with a size: the stacked bars of the answers per day.
    bars = page.locator(".dashboard figure.chart > svg").first.locator("rect")
    assert bars.count() >= 4
    assert bars.first.bounding_box()["height"] > 0
    assert "stub-model" in page.locator(".board-table").first.inner_text()
    assert not chat.console_errors, chat.console_errors

"""The current_time tool: formatting across zones, defaults and refusals."""

import asyncio
from datetime import UTC, datetime

import pytest

from chat.tools.clock import current_time
from chat.tools.registry import ToolContext, ToolError, get_tool

NOW = datetime(2026, 11, 21, 13, 5, 9, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("Europe/Paris", "Saturday 21 November 2026, 14:05:09 CET (UTC+01:00), Europe/Paris"),
        ("America/New_York", "Saturday 21 November 2026, 08:05:09 EST (UTC-05:00), America/New_York"),
        ("Asia/Kolkata", "Saturday 21 November 2026, 18:35:09 IST (UTC+05:30), Asia/Kolkata"),
        ("Pacific/Kiritimati", "Sunday 22 November 2026, 03:05:09 (UTC+14:00), Pacific/Kiritimati"),  # "+14" dropped
        ("UTC", "Saturday 21 November 2026, 13:05:09 UTC (UTC+00:00), UTC"),
    ],
)
def test_fixed_now(zone: str, expected: str) -> None:
    assert current_time(zone, NOW) == expected


def test_summer_time_and_single_digit_day() -> None:
    summer = datetime(2026, 7, 1, 12, 0, 0, tzinfo=UTC)
    assert current_time("Europe/Paris", summer) == "Wednesday 1 July 2026, 14:00:00 CEST (UTC+02:00), Europe/Paris"


def test_naive_now_is_utc() -> None:
    assert current_time("Europe/Paris", NOW.replace(tzinfo=None)) == current_time("Europe/Paris", NOW)


def test_default_is_utc() -> None:
    assert current_time(now=NOW).endswith("(UTC+00:00), UTC")
    assert current_time("  ", NOW).endswith("(UTC+00:00), UTC")


def test_case_is_forgiven() -> None:
    assert current_time("europe/paris", NOW) == current_time("Europe/Paris", NOW)
    assert current_time("utc", NOW) == current_time("UTC", NOW)


@pytest.mark.parametrize(
    "zone", ["Mars/Olympus_Mons", "Europe", "../../etc/passwd", "/etc/localtime", "zone.tab", "CET+1"]
)
def test_unknown_zone(zone: str) -> None:
    with pytest.raises(ToolError) as info:
        current_time(zone, NOW)
    assert str(info.value) == f"Unknown time zone '{zone}'. Use an IANA name such as Europe/Paris or America/New_York."


def test_tool_is_registered_and_runs() -> None:
    tool = get_tool("current_time")
    assert tool is not None
    assert "timezone" in tool.parameters["properties"]
    ctx = ToolContext(user_id=1, conversation_id=1)
    assert asyncio.run(tool.run({}, ctx)).endswith("(UTC+00:00), UTC")
    assert asyncio.run(tool.run({"timezone": "Asia/Tokyo"}, ctx)).endswith("JST (UTC+09:00), Asia/Tokyo")
    with pytest.raises(ToolError, match="Unknown time zone 'Nowhere'"):
        asyncio.run(tool.run({"timezone": "Nowhere"}, ctx))
    with pytest.raises(ToolError, match="must be a string"):
        asyncio.run(tool.run({"timezone": 3}, ctx))

"""The `current_time` tool: models do not know today's date, so they ask."""

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from chat.tools.registry import Tool, ToolContext, ToolError, register

DEFAULT_ZONE = "UTC"

# Fixed English names: strftime's %A and %B follow the process locale.
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


@lru_cache(maxsize=1)
def _zones_by_lower_name() -> dict[str, str]:
    # Scans the tz database on disk (~0.1 s), so only on a miss, and once.
    return {name.lower(): name for name in available_timezones()}


def _load(key: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(key)
    # ValueError: malformed keys ("../x", absolute paths) and non-TZif files in the tz directory.
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _zone(name: str) -> ZoneInfo:
    key = name.strip() or DEFAULT_ZONE
    tz = _load(key)
    if tz is None:
        # Models often send "utc" or "europe/paris"; the tz database is case-sensitive.
        exact = _zones_by_lower_name().get(key.lower())
        tz = _load(exact) if exact else None
    if tz is None:
        shown = name if len(name) <= 80 else name[:80] + "..."  # the message is echoed to the user
        raise ToolError(f"Unknown time zone '{shown}'. Use an IANA name such as Europe/Paris or America/New_York.")
    return tz


def _offset(delta: timedelta | None) -> str:
    minutes = round((delta or timedelta()).total_seconds() / 60)
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}:{minutes:02d}"


def current_time(zone: str = DEFAULT_ZONE, now: datetime | None = None) -> str:
    """E.g. "Saturday 21 November 2026, 14:05:09 CET (UTC+01:00), Europe/Paris".

    `now` is for tests; a naive `now` is taken as UTC.
    """
    tz = _zone(zone)
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    local = now.astimezone(tz)
    # Zones without a letter abbreviation report "+03"; the offset already says that.
    abbreviation = local.tzname() or ""
    abbreviation = "" if abbreviation[:1] in ("+", "-", "") else f" {abbreviation}"
    return (
        f"{_DAYS[local.weekday()]} {local.day} {_MONTHS[local.month - 1]} {local.year}, "
        f"{local:%H:%M:%S}{abbreviation} ({_offset(local.utcoffset())}), {tz.key}"
    )


async def _run(args: dict[str, Any], ctx: ToolContext) -> str:
    zone = args.get("timezone")
    if zone is None:
        zone = DEFAULT_ZONE
    if not isinstance(zone, str):
        raise ToolError("The 'timezone' argument must be a string such as Europe/Paris.")
    return current_time(zone)


register(
    Tool(
        name="current_time",
        description=(
            "Get the current date, day of the week and time in a time zone. Call this whenever the answer depends "
            'on today\'s date or the time of day ("what day is it", "how many days until ...", ages, deadlines): '
            "your own idea of the current date is out of date. Returns e.g. "
            '"Saturday 21 November 2026, 14:05:09 CET (UTC+01:00), Europe/Paris".'
        ),
        parameters={
            "type": "object",
            "properties": {
                "timezone": {
                    "type": "string",
                    "description": 'IANA time zone name, e.g. "Europe/Paris", "America/New_York", "Asia/Tokyo". '
                    f"Defaults to {DEFAULT_ZONE}. Use the user's zone if you know it.",
                },
            },
        },
        run=_run,
    )
)

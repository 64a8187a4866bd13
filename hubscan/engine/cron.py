"""Cron arithmetic, pure: when a schedule fires, read in an IANA time zone, answered in UTC.

Kept apart from ``engine.schedule`` (the long-running loop, locks, state) because the spec
validator needs the same checks at load time (``validate_cron``, ``zone``) and must not pull in
the scheduler — which imports the run path, which imports the spec.
"""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from ..errors import SpecError

__all__ = ["UTC", "validate_cron", "zone", "next_fire_time", "latest_fire_time", "due_trigger", "utc"]

UTC = timezone.utc


def validate_cron(expr: str) -> str:
    """Return ``expr`` if croniter accepts it, else raise :class:`SpecError`."""
    if not isinstance(expr, str) or not croniter.is_valid(expr):
        raise SpecError(f"invalid cron expression {expr!r} (e.g. '0 2 * * *' = every day at 02:00 UTC)")
    return expr


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (``"UTC"``, ``"Europe/Berlin"``), or :class:`SpecError`."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise SpecError(f"unknown time zone {name!r} (an IANA name such as 'UTC' or "
                        "'America/New_York')") from None


def next_fire_time(cron: str, after: datetime, tz: str = "UTC") -> datetime:
    """The first cron time strictly after ``after``, the expression read in zone ``tz``; UTC."""
    return utc(croniter(cron, utc(after).astimezone(zone(tz))).get_next(datetime))


def latest_fire_time(cron: str, at_or_before: datetime, tz: str = "UTC") -> datetime:
    """The last cron time ``<= at_or_before`` (croniter's ``get_prev`` is strict, hence the
    check), the expression read in zone ``tz``; UTC."""
    now = utc(at_or_before)
    prev = croniter(cron, now.astimezone(zone(tz))).get_prev(datetime)
    nxt = croniter(cron, prev).get_next(datetime)
    return utc(nxt) if nxt <= now else utc(prev)


def due_trigger(cron: str, since: datetime | None, now: datetime, tz: str = "UTC") -> datetime | None:
    """The cron time a run is owed for at ``now``, given the last handled time ``since``.

    Several missed cron times collapse into the latest one: a spec that missed four nightly
    runs during downtime runs once, for the latest night. ``since=None`` (never ran) is due now.
    """
    if since is None:
        return utc(now)
    latest = latest_fire_time(cron, now, tz)
    return latest if latest > utc(since) else None


def utc(t: datetime) -> datetime:
    if t.tzinfo is None:
        raise ValueError("naive datetime: the scheduler works in aware UTC datetimes")
    return t.astimezone(UTC)

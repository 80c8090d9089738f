"""Durations in words, for pages, the API, messages and emails: one wording everywhere."""

from __future__ import annotations

from datetime import timedelta

_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


def _count(number: int, unit: str) -> str:
    return f"{number} {unit}{'' if number == 1 else 's'}"


def humanize(value: timedelta | None) -> str:
    """A duration as it was granted or asked for, exactly: "8 hours", "7 days", "2 minutes
    30 seconds", "1 hour 30 minutes"; None is "until revoked".

    Nothing is rounded away: a duration a rule offers or a person picks has at most two
    units; a computed one (what is left of a grant) names every unit it has, rather than
    read shorter than it is."""
    if value is None:
        return "until revoked"
    left = max(0, int(value.total_seconds()))
    parts: list[str] = []
    for unit, size in _UNITS:
        number, left = divmod(left, size)
        if number:
            parts.append(_count(number, unit))
    return " ".join(parts) or _count(0, "second")


def time_left(delta: timedelta) -> str:
    """How long is left, rounded to the nearest day, hour or minute, so that a warning sent
    a little late still says how long is really left."""
    minutes = max(1, round(delta.total_seconds() / 60))
    if minutes >= 23 * 60 + 30:
        return _count(round(minutes / 1440), "day")
    if minutes >= 60:
        return _count(round(minutes / 60), "hour")
    return _count(minutes, "minute")

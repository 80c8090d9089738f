"""Durations in words, for pages, the API, messages and emails: one wording everywhere."""

from __future__ import annotations

from datetime import timedelta


def _count(number: int, unit: str) -> str:
    return f"{number} {unit}{'' if number == 1 else 's'}"


def humanize(value: timedelta | None) -> str:
    """A duration as a rule or a request states it: "8 hours", "7 days", "90 minutes"
    (the largest unit that divides it exactly); None is "until revoked"."""
    if value is None:
        return "until revoked"
    seconds = int(value.total_seconds())
    if seconds % 86400 == 0:
        return _count(seconds // 86400, "day")
    if seconds % 3600 == 0:
        return _count(seconds // 3600, "hour")
    return _count(max(1, seconds // 60), "minute")


def time_left(delta: timedelta) -> str:
    """How long is left, rounded to the nearest day, hour or minute, so that a warning sent
    a little late still says how long is really left."""
    minutes = max(1, round(delta.total_seconds() / 60))
    if minutes >= 23 * 60 + 30:
        return _count(round(minutes / 1440), "day")
    if minutes >= 60:
        return _count(round(minutes / 60), "hour")
    return _count(minutes, "minute")

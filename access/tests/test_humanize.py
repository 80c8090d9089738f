"""Durations in words: what was granted, exactly (access.humanize, used by pages, the API
and emails)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from access.humanize import humanize


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (150, "2 minutes 30 seconds"),
        (90 * 60, "1 hour 30 minutes"),
        (36 * 3600, "1 day 12 hours"),
        (8 * 3600, "8 hours"),
        (7 * 86400, "7 days"),
        (60, "1 minute"),
        (59, "59 seconds"),
        # A computed length (what is left of a grant) keeps every unit it has.
        (86400 + 2 * 3600 + 5 * 60 + 1, "1 day 2 hours 5 minutes 1 second"),
        (0, "0 seconds"),
    ],
)
def test_a_duration_reads_as_long_as_it_is(seconds, words):
    assert humanize(timedelta(seconds=seconds)) == words


def test_no_duration_is_until_revoked():
    assert humanize(None) == "until revoked"

"""Fixtures for the audit tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest

from audit.models import AuditEvent
from audit.services import record_event

RecordAt = Callable[..., AuditEvent]


@pytest.fixture
def record_at(db: Any) -> RecordAt:
    """record_event with the clock set to ``when`` (UTC unless the datetime says otherwise)."""

    def record(when: dt.datetime, action: str = "test.event", **kwargs: Any) -> AuditEvent:
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        with mock.patch("django.utils.timezone.now", return_value=when):
            return record_event(action, **kwargs)

    return record

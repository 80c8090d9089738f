"""Errors as people read them: a grant's last error is one line, never a web page, however
the provider or the code under it failed (access.drivers.readable, through DriverError)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from access import drivers
from access.choices import GrantSource, PropagationStatus
from access.drivers import MAX_ERROR_LENGTH, DriverError, readable
from access.models import AccessLevel, Assignment, Grant
from access.services import grants as grant_service
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db

PAGE = (
    "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title><style>p {}</style></head>\n"
    "<body><h1>Bad Gateway</h1>\n\n<p>The proxy got an invalid answer&nbsp;from AWS.</p>"
    "</body></html>"
)


def test_a_web_page_becomes_its_words_on_one_line():
    assert readable(f"Reading the IAM role Deployer: 502: {PAGE}") == (
        "Reading the IAM role Deployer: 502: Bad Gateway The proxy got an invalid answer from AWS."
    )


def test_only_the_start_of_a_huge_answer_is_read(monkeypatch: Any):
    """Pages of many unclosed tags take the patterns time growing with the square of their
    length: a hostile or broken endpoint's answer must not stall an engine thread."""
    seen: list[int] = []
    pattern = drivers._UNREAD

    class Measured:
        def sub(self, repl: str, text: str) -> str:
            seen.append(len(text))
            return pattern.sub(repl, text)

    monkeypatch.setattr(drivers, "_UNREAD", Measured())
    readable("<html>" + "<script>" * 20_000)
    assert seen and max(seen) <= drivers.READ_AT_MOST


def test_a_message_keeps_its_words_and_loses_only_line_breaks_and_length():
    assert readable("Role x:\n  the subject <any name>\tis refused") == (
        "Role x: the subject <any name> is refused"
    )
    long = readable("AccessDenied: " + "x" * 5000)
    assert len(long) == MAX_ERROR_LENGTH and long.endswith("…")
    assert DriverError(f"Throttling: {PAGE}").message == readable(f"Throttling: {PAGE}")


class Broken:
    """A driver failing outside the provider's own errors, with a web page in its text."""

    def apply(self, assignment: Assignment) -> drivers.Outcome:
        raise RuntimeError(f"the endpoint answered {PAGE}")

    remove = apply


def test_an_unexpected_error_is_recorded_as_readably(personas: Any, monkeypatch: Any):
    monkeypatch.setitem(drivers._registry, personas.resource.type, Broken())
    level = AccessLevel.objects.create(resource=personas.resource, remote_id="ps", name="Read")
    grant = grant_service.create_grant(
        user=personas.requester,
        resource=personas.resource,
        access_level=level,
        expires_at=timezone.now() + timedelta(hours=1),
        source=GrantSource.ADMIN,
        actor=personas.admin,
    )

    assert grant_service.reconcile_assignment(grant.assignment_id).action == "failed"

    grant = Grant.objects.get(pk=grant.pk)
    assert grant.propagation_status == PropagationStatus.FAILED
    assert grant.last_error == (
        "Unexpected error: RuntimeError: the endpoint answered Bad Gateway The proxy got an "
        "invalid answer from AWS."
    )
    assert grant.assignment is not None and grant.assignment.last_error == grant.last_error
    (event,) = AuditEvent.objects.filter(action="grant.apply_failed")
    assert event.details["error"] == grant.last_error

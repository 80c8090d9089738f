"""Two approvers acting at once yield one decision and one grant."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import close_old_connections, connection

from access.choices import RequestStatus
from access.models import AccessLevel, Approval, Grant
from access.services import requests as svc
from audit.models import AuditEvent
from tests.fixtures import make_user


@pytest.mark.django_db(transaction=True)
def test_two_approvers_at_once_yield_one_decision_and_one_grant(personas, monkeypatch):
    if connection.vendor == "sqlite" and connection.is_in_memory_db():  # type: ignore[attr-defined]  # SQLite's
        pytest.skip(
            "SQLite's shared-cache in-memory test database uses table locks that do not wait; "
            "the file database serialises writers with BEGIN IMMEDIATE (settings)."
        )
    second = make_user("sam.second@example.com")
    personas.resource.owners.create(user=second)
    level = AccessLevel.objects.create(resource=personas.resource, remote_id="ps", name="ReadOnly")
    request = svc.submit_requests(
        requested_by=personas.requester,
        items=[svc.RequestItem(personas.resource.pk, level.pk, timedelta(hours=1))],
        reason="incident",
    )[0]
    start = threading.Barrier(2, timeout=30)
    outcomes: list[str] = []

    # Widen the window between reading the request and deciding: both approvers have
    # loaded it as pending before either writes.
    original = svc._stage_complete

    def slow_stage_complete(*args, **kwargs):
        import time

        time.sleep(0.05)
        return original(*args, **kwargs)

    monkeypatch.setattr(svc, "_stage_complete", slow_stage_complete)

    def approve(reviewer) -> None:
        try:
            close_old_connections()
            start.wait()
            svc.decide(request, reviewer=reviewer, approve=True)
            outcomes.append("approved")
        except svc.DecisionError as exc:
            outcomes.append(f"refused: {exc}")
        except BaseException as exc:
            outcomes.append(f"error: {exc!r}")
        finally:
            connection.close()

    threads = [threading.Thread(target=approve, args=(u,)) for u in (personas.approver, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(o.split(":")[0] for o in outcomes) == ["approved", "refused"], outcomes
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED
    assert Approval.objects.filter(request=request).count() == 1
    assert Grant.objects.filter(request=request).count() == 1
    assert AuditEvent.objects.filter(action="request.approved").count() == 1


def _extend_at_once(grants: list, requester, monkeypatch) -> list[str]:
    """Each grant copy is extended by 12 hours in its own thread, both having read the
    grant before either writes."""
    start = threading.Barrier(len(grants), timeout=30)
    outcomes: list[str] = []
    original = svc._open

    def slow_open(*args, **kwargs):
        import time

        time.sleep(0.05)  # both have passed the checks before either extends
        return original(*args, **kwargs)

    monkeypatch.setattr(svc, "_open", slow_open)

    def extend(grant) -> None:
        try:
            close_old_connections()
            start.wait()
            made = svc.request_extension(
                grant, requested_by=requester, duration=timedelta(hours=12), reason="more"
            )
            outcomes.append(made.status)
        except svc.RequestInvalid as exc:
            outcomes.append(f"refused: {exc}")
        except BaseException as exc:
            outcomes.append(f"error: {exc!r}")
        finally:
            connection.close()

    threads = [threading.Thread(target=extend, args=(g,)) for g in grants]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


@pytest.mark.django_db(transaction=True)
def test_two_extensions_at_once_never_pass_the_rules_maximum(personas, monkeypatch):
    if connection.vendor == "sqlite" and connection.is_in_memory_db():  # type: ignore[attr-defined]  # SQLite's
        pytest.skip(
            "SQLite's shared-cache in-memory test database uses table locks that do not wait; "
            "the file database serialises writers with BEGIN IMMEDIATE (settings)."
        )
    import time_machine
    from django.utils import timezone

    from access.choices import ExtensionPolicy, GrantSource
    from access.models import RequestRule
    from access.services import grants as grant_service

    RequestRule.objects.create(
        resource=personas.resource,
        name="A day at most",
        max_duration=timedelta(days=1),
        extension_policy=ExtensionPolicy.AUTO_APPROVE,
        require_reason=False,
    ).stages.create(order=1, reviewers="owners", mode="any")
    level = AccessLevel.objects.create(resource=personas.resource, remote_id="ps", name="ReadOnly")
    # The clock stands still, so "a day from now" is the same instant for both threads.
    with time_machine.travel(timezone.now(), tick=False):
        grant = grant_service.create_grant(
            user=personas.requester,
            resource=personas.resource,
            access_level=level,
            expires_at=timezone.now() + timedelta(hours=12),
            source=GrantSource.ADMIN,
            actor=personas.admin,
        )
        copies = [Grant.objects.get(pk=grant.pk) for _ in range(2)]
        outcomes = _extend_at_once(copies, personas.requester, monkeypatch)
        limit = timezone.now() + timedelta(days=1)

    assert sorted(o.split(":")[0] for o in outcomes) == ["approved", "refused"], outcomes
    assert "already lasts as long as the rule allows" in " ".join(outcomes)
    grant.refresh_from_db()
    # Each alone fits (12 h left + 12 h = a day); together they would make 36 h.
    assert grant.expires_at == limit
    assert AuditEvent.objects.filter(action="grant.extended").count() == 1

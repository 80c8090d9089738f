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
    if connection.vendor == "sqlite" and connection.is_in_memory_db():
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

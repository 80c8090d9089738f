"""Email notifications: reviewers when their stage starts, the requester on each decision,
holders before their access expires. Mail leaves once the change commits."""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.db import transaction
from django.utils import timezone

from access import notifications
from access.choices import GrantSource, GrantStatus, RequestStatus, ReviewerKind, StageMode
from access.models import AccessLevel, AccessRequest, Grant, RequestRule, Resource
from access.services import requests as svc
from access.tests.test_admin_grants import FakeProvider
from config import queue
from tests.fixtures import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def inline_tasks(settings: Any) -> None:
    settings.TASKS_INLINE = True
    settings.SITE_URL = "https://portcullis.example.com"


@pytest.fixture(autouse=True)
def provider(personas, monkeypatch) -> FakeProvider:
    # Approved grants are applied inline; the stand-in provider makes them active without
    # AWS (these tests are about mail).
    from access import drivers

    fake = FakeProvider()
    monkeypatch.setitem(drivers._registry, personas.resource.type, fake)
    return fake


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Runs the block as if its transaction committed: queued mail is then sent."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def level(personas) -> AccessLevel:
    return AccessLevel.objects.create(
        resource=personas.resource, remote_id="arn:aws:sso:::permissionSet/ps-1", name="ReadOnly"
    )


def rule(personas: Any, *stages: tuple[str, str], **fields: Any) -> RequestRule:
    made = RequestRule.objects.create(resource=personas.resource, **fields)
    for order, (reviewers, mode) in enumerate(stages, start=1):
        made.stages.create(order=order, reviewers=reviewers, mode=mode)
    return made


def ask(
    personas: Any,
    level: AccessLevel,
    *,
    by: Any = None,
    user: Any = None,
    duration: timedelta | None = timedelta(hours=8),
) -> AccessRequest:
    return svc.submit_requests(
        requested_by=by or personas.requester,
        user=user,
        items=[svc.RequestItem(personas.resource.pk, level.pk, duration)],
        reason="debug the billing job",
    )[0]


def sent_to(message: mail.EmailMessage) -> list[str]:
    return sorted(message.to)


# Reviewers -----------------------------------------------------------------------------------
def test_the_reviewers_of_stage_1_are_mailed_on_submission_but_not_the_requester(
    personas, level, committed
):
    # The requester owns the resource too: still not asked to approve their own request.
    personas.resource.owners.create(user=personas.requester)
    second = make_user("sam.second@example.com")
    personas.resource.owners.create(user=second)
    with committed():
        request = ask(personas, level)
        assert mail.outbox == []  # nothing leaves before the commit
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert sent_to(message) == ["olga.owner@example.com", "sam.second@example.com"]
    assert message.subject == (
        "[Portcullis] Approve access to prod (ReadOnly) for rob.requester@example.com?"
    )
    assert "Reason: debug the billing job" in message.body
    assert "Duration: 8 hours" in message.body
    assert "Stage 1 of 1." in message.body
    assert f"https://portcullis.example.com/requests/{request.pk}/" in message.body
    assert "https://portcullis.example.com/approvals/" in message.body


def test_when_the_requester_is_the_only_owner_the_admins_are_mailed(personas, level, committed):
    with committed():
        ask(personas, level, by=personas.approver)
    assert [sent_to(m) for m in mail.outbox] == [["ada.admin@example.com"]]


def test_a_submission_that_rolls_back_mails_nobody(personas, level, committed):
    with committed(), pytest.raises(RuntimeError), transaction.atomic():
        ask(personas, level)
        raise RuntimeError("the page failed after submitting")
    assert mail.outbox == []
    assert not AccessRequest.objects.exists()


def test_the_mail_of_one_transaction_is_queued_as_one_task(personas, level, committed, monkeypatch):
    other = Resource.objects.create(
        app=personas.app, type="aws_account", remote_id="222222222222", name="staging"
    )
    other.owners.create(user=personas.manager)
    other_level = AccessLevel.objects.create(resource=other, remote_id="ps-2", name="ReadOnly")
    queued: list[tuple] = []
    monkeypatch.setattr(queue, "enqueue", lambda *args, **options: queued.append(args))
    with committed():
        svc.submit_requests(
            requested_by=personas.requester,
            items=[
                svc.RequestItem(personas.resource.pk, level.pk, timedelta(hours=8)),
                svc.RequestItem(other.pk, other_level.pk, timedelta(hours=8)),
            ],
            reason="debug the billing job",
        )
    ((task, messages),) = queued
    assert task == "access.tasks.deliver_emails"
    assert [recipients for recipients, _subject, _body in messages] == [
        ["olga.owner@example.com"],
        ["mia.manager@example.com"],
    ]


def test_mail_of_a_savepoint_that_rolls_back_is_not_sent_with_the_rest(committed):
    with committed(), transaction.atomic():
        notifications._send(["a@example.com"], "kept", "")
        with contextlib.suppress(RuntimeError), transaction.atomic():
            notifications._send(["b@example.com"], "rolled back", "")
            raise RuntimeError("the inner change failed")
        notifications._send(["c@example.com"], "kept too", "")
    assert [m.subject for m in mail.outbox] == ["kept", "kept too"]


def test_stage_2s_reviewers_are_mailed_when_stage_1_completes(personas, level, committed):
    rule(personas, (ReviewerKind.OWNERS, StageMode.ANY), (ReviewerKind.MANAGER, StageMode.ANY))
    with committed():
        request = ask(personas, level)
    assert [sent_to(m) for m in mail.outbox] == [["olga.owner@example.com"]]
    mail.outbox.clear()

    with committed():
        svc.decide(request, reviewer=personas.approver, approve=True, comment="fine by me")
    assert [sent_to(m) for m in mail.outbox] == [["mia.manager@example.com"]]
    assert "Stage 2 of 2." in mail.outbox[0].body
    mail.outbox.clear()

    with committed():
        svc.decide(request, reviewer=personas.manager, approve=True, comment="ok")
    assert [sent_to(m) for m in mail.outbox] == [["rob.requester@example.com"]]
    assert mail.outbox[0].subject == "[Portcullis] Access to prod (ReadOnly) approved"


# The requester ---------------------------------------------------------------------------------
def test_the_requester_is_mailed_when_approved_with_a_link_to_their_access(
    personas, level, committed, provider
):
    request = ask(personas, level)
    mail.outbox.clear()
    with committed():
        svc.decide(request, reviewer=personas.approver, approve=True, comment="go ahead")
    grant = Grant.objects.get(request=request)
    assert grant.status == GrantStatus.ACTIVE  # applied once the approval committed
    (message,) = mail.outbox
    assert sent_to(message) == ["rob.requester@example.com"]
    assert message.subject == "[Portcullis] Access to prod (ReadOnly) approved"
    assert "Your request for prod (ReadOnly) was approved." in message.body
    assert "Decided by olga.owner@example.com: go ahead" in message.body
    assert "https://portcullis.example.com/access/" in message.body
    assert f"https://portcullis.example.com/requests/{request.pk}/" in message.body


def test_the_requester_and_the_person_asked_for_are_mailed_when_denied(personas, level, committed):
    request = ask(personas, level, by=personas.manager, user=personas.requester)
    mail.outbox.clear()
    with committed():
        svc.decide(request, reviewer=personas.approver, approve=False, comment="use staging")
    (message,) = mail.outbox
    assert sent_to(message) == ["mia.manager@example.com", "rob.requester@example.com"]
    assert message.subject == "[Portcullis] Access to prod (ReadOnly) denied"
    assert "Decided by olga.owner@example.com: use staging" in message.body
    assert "/access/" not in message.body.replace(f"/requests/{request.pk}/", "")
    assert not Grant.objects.exists()


def test_the_requester_is_mailed_when_a_pending_request_expires(personas, level, committed):
    request = ask(personas, level)
    mail.outbox.clear()
    with committed():
        assert svc.expire_pending_requests(timezone.now() + timedelta(hours=71)) == 0
    assert mail.outbox == []
    with committed():
        assert svc.expire_pending_requests(timezone.now() + timedelta(hours=73)) == 1
    request.refresh_from_db()
    assert request.status == RequestStatus.EXPIRED
    (message,) = mail.outbox
    assert sent_to(message) == ["rob.requester@example.com"]
    assert "expired" in message.subject
    assert f"https://portcullis.example.com/requests/{request.pk}/" in message.body


def test_a_reviewer_is_not_mailed_a_decision(personas, level, committed):
    request = ask(personas, level)
    mail.outbox.clear()
    with committed():
        svc.decide(request, reviewer=personas.approver, approve=True)
    assert all("olga.owner@example.com" not in m.to for m in mail.outbox)


# Expiry warnings -------------------------------------------------------------------------------
def granted_for(personas: Any, level: AccessLevel, duration: timedelta, committed: Any) -> Grant:
    """A grant of ``duration``, approved automatically and applied."""
    rule(personas, auto_approve=True, max_duration=timedelta(days=7))
    with committed():
        request = ask(personas, level, duration=duration)
    grant = Grant.objects.get(request=request)
    assert grant.status == GrantStatus.ACTIVE
    mail.outbox.clear()
    return grant


def warn_at(moment: datetime, committed: Any) -> int:
    """The sweep's expiry warnings, run with the clock at ``moment``."""
    with time_machine.travel(moment, tick=False), committed():
        return svc.send_expiry_warnings(now=timezone.now())


def test_a_3_day_grant_is_warned_a_day_and_an_hour_before_it_ends_each_once(
    personas, level, committed
):
    grant = granted_for(personas, level, timedelta(days=3), committed)
    ends = grant.expires_at
    extend_link = f"https://portcullis.example.com/access/{grant.pk}/extend/"

    assert warn_at(ends - timedelta(days=2), committed) == 0
    assert warn_at(ends - timedelta(hours=24, minutes=1), committed) == 0
    assert mail.outbox == []

    assert warn_at(ends - timedelta(hours=23), committed) == 1
    (day,) = mail.outbox
    assert sent_to(day) == ["rob.requester@example.com"]
    # The subject says how long is really left when the warning goes out.
    assert day.subject == "[Portcullis] Your access to prod ends in 23 hours"
    assert extend_link in day.body
    assert timezone.localtime(ends).strftime("%Y-%m-%d %H:%M") in day.body
    assert warn_at(ends - timedelta(hours=22), committed) == 0
    assert warn_at(ends - timedelta(hours=2), committed) == 0
    assert len(mail.outbox) == 1

    assert warn_at(ends - timedelta(minutes=59), committed) == 1
    hour = mail.outbox[1]
    assert sent_to(hour) == ["rob.requester@example.com"]
    assert hour.subject == "[Portcullis] Your access to prod ends in 59 minutes"
    assert extend_link in hour.body
    assert warn_at(ends - timedelta(minutes=30), committed) == 0
    assert warn_at(ends + timedelta(minutes=1), committed) == 0
    assert len(mail.outbox) == 2


def test_a_3_day_grant_first_seen_in_its_last_hour_gets_only_the_hour_warning(
    personas, level, committed
):
    grant = granted_for(personas, level, timedelta(days=3), committed)
    assert warn_at(grant.expires_at - timedelta(minutes=30), committed) == 1
    assert [m.subject for m in mail.outbox] == [
        "[Portcullis] Your access to prod ends in 30 minutes"
    ]
    assert warn_at(grant.expires_at - timedelta(minutes=10), committed) == 0


def test_an_8_hour_grant_gets_no_warning(personas, level, committed):
    grant = granted_for(personas, level, timedelta(hours=8), committed)
    for before in (timedelta(hours=7), timedelta(minutes=59), timedelta(minutes=5)):
        assert warn_at(grant.expires_at - before, committed) == 0
    assert mail.outbox == []


def test_an_ended_grant_gets_no_warning(personas, level, committed):
    grant = granted_for(personas, level, timedelta(days=3), committed)
    Grant.objects.filter(pk=grant.pk).update(status=GrantStatus.REVOKED)
    assert warn_at(grant.expires_at - timedelta(hours=23), committed) == 0
    assert warn_at(grant.expires_at - timedelta(minutes=59), committed) == 0
    assert mail.outbox == []


def test_short_grants_do_not_hide_a_long_grant_from_the_warnings(personas, level, committed):
    grant = granted_for(personas, level, timedelta(days=3), committed)
    moment = grant.expires_at - timedelta(hours=23)
    Grant.objects.bulk_create(
        Grant(
            user=personas.requester,
            resource=personas.resource,
            access_level=level,
            source=GrantSource.ADMIN,
            status=GrantStatus.ACTIVE,
            starts_at=moment - timedelta(hours=1),
            expires_at=moment + timedelta(hours=7),
        )
        for _ in range(500)
    )
    assert warn_at(moment, committed) == 1


def test_a_duration_under_a_minute_more_is_mailed_and_shown_as_asked(
    personas, level, committed, client
):
    with committed():
        request = ask(personas, level, duration=timedelta(seconds=150))

    (message,) = mail.outbox
    assert "Duration: 2 minutes 30 seconds" in message.body
    client.force_login(personas.requester)
    page = client.get(f"/requests/{request.pk}/").content.decode()
    assert "2 minutes 30 seconds" in page
    assert "2 minutes<" not in page

"""The demo's portal data: a request rule with a manager stage, and requests so that each
persona finds work when they first sign in; seeded through the services (audited) and
only once, however often the demo starts on one database."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
import time_machine
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from access.choices import GrantSource, GrantStatus, RequestStatus, ResourceType, ReviewerKind
from access.models import AccessRequest, Grant, RequestRule, Resource, User
from access.services.requests import (
    RequestItem,
    decide,
    expire_pending_requests,
    submit_requests,
)
from audit.models import AuditEvent
from demo import seed
from demo.aws_app import assign_demo_owners, ensure_demo_aws_app, validate_and_sync
from demo.portal import seed_portal
from demo.portal.requests import MANAGER_RULE_NAME, SCENARIOS
from demo.users import DEMO_PEOPLE, create_demo_users

pytestmark = pytest.mark.django_db

# The smallest organization holding every type the scenarios ask for.
PORTAL = seed.SeedSize.minimal(
    "portal",
    rds_postgres_per_account=1,
    aurora_mysql_per_account=1,
    idc_groups=4,
    assignments_per_account=1,  # provisions the permission set: Identity Center roles
    workers=8,
)
ISSUER = "http://127.0.0.1:1/demo-idp"
DEMO_PEOPLE_IN_AWS = [
    seed.Person(p.email, p.first_name, p.last_name, groups=p.idc_groups) for p in DEMO_PEOPLE
]


def person(key: str):
    return next(p for p in DEMO_PEOPLE if p.key == key)


@pytest.fixture
def demo_app(aws, settings):
    settings.TASKS_INLINE = False  # the demo's task cluster applies grants; none runs here
    result = seed.seed_organization(PORTAL, region="us-east-1", people=DEMO_PEOPLE_IN_AWS)
    create_demo_users()
    app, _ = ensure_demo_aws_app(result)
    _, run = validate_and_sync(app)
    assert run.status == "succeeded", run.message
    assign_demo_owners(app, person("approver").email, issuer_url=ISSUER)
    return app


def waiting_for(key: str) -> list[AccessRequest]:
    """What the approvals page lists for the persona as theirs to decide."""
    client = Client()
    client.force_login(person_user(key))
    page = client.get(reverse("approvals"))
    assert page.status_code == 200
    return list(page.context["mine"])


def person_user(key: str) -> User:
    return User.objects.get(email=person(key).email)


def test_every_persona_finds_work_waiting_and_a_second_start_adds_nothing(demo_app):
    added = seed_portal(demo_app)
    assert len(added) == len(SCENARIOS) + 1, added  # the rule, then each request
    assert not [line for line in added if line.startswith("No requestable")], added

    rule = RequestRule.objects.get(name=MANAGER_RULE_NAME)
    assert rule.resource.type == ResourceType.RDS_POSTGRES
    assert list(rule.stages.values_list("order", "reviewers")) == [
        (1, ReviewerKind.MANAGER),
        (2, ReviewerKind.OWNERS),
    ]
    (created,) = AuditEvent.objects.filter(
        action="inventory.request_rule.created", target_id=str(rule.pk)
    )
    assert created.actor_id is None and len(created.details["after"]["stages"]) == 2

    # The manager decides stage 1 of the sensitive request; the owner and the admins theirs.
    (for_manager,) = waiting_for("manager")
    assert (for_manager.resource_id, for_manager.current_stage) == (rule.resource_id, 1)
    (for_owner,) = waiting_for("approver")
    assert for_owner.resource.name == "Security"
    assert [r.resource.type for r in waiting_for("admin")] == [ResourceType.IDC_ROLE]
    # The requester holds access to give up, and sees his requests waiting.
    rob = person_user("requester")
    (held,) = Grant.objects.filter(user=rob, source=GrantSource.REQUEST).current()
    assert held.resource.name == "Support" and held.status == GrantStatus.PENDING
    assert AccessRequest.objects.filter(user=rob, status=RequestStatus.PENDING).count() == 3
    # The auditor finds a denial with its reason in the audit log.
    (denied,) = AuditEvent.objects.filter(action="request.denied")
    assert denied.details["comment"] and denied.actor_name
    for action in ("request.created", "request.approved", "grant.created"):
        assert AuditEvent.objects.filter(action=action).exists(), action

    # Nothing waits for the requester or the outsider to decide.
    assert waiting_for("requester") == waiting_for("outsider") == []

    events, count = AuditEvent.objects.count(), AccessRequest.objects.count()
    assert seed_portal(demo_app) == []
    assert (AuditEvent.objects.count(), AccessRequest.objects.count()) == (events, count)

    # Once the manager approves, stage 2 of the sensitive request waits for the owner.
    decide(for_manager, reviewer=person_user("manager"), approve=True, comment="Go ahead")
    assert {r.resource_id for r in waiting_for("approver")} == {
        for_owner.resource_id,
        rule.resource_id,
    }


def test_a_seeded_request_that_expired_undecided_is_made_again(demo_app):
    seed_portal(demo_app)
    with time_machine.travel(timezone.now() + timedelta(days=4)):
        assert expire_pending_requests() == 3

    added = seed_portal(demo_app)

    assert len(added) == 3, added
    assert AccessRequest.objects.filter(status=RequestStatus.PENDING).count() == 3
    # The decided ones stay as they were.
    assert AccessRequest.objects.filter(status=RequestStatus.APPROVED).count() == 1
    assert AccessRequest.objects.filter(status=RequestStatus.DENIED).count() == 1


def test_a_restarted_stand_in_gets_the_same_work_and_loses_the_stale_requests(demo_app, aws):
    seed_portal(demo_app)
    stale = set(
        AccessRequest.objects.filter(status=RequestStatus.PENDING).values_list("pk", flat=True)
    )
    # The demo starts again: a fresh stand-in, with new ids for the same organization.
    requests.post(f"{aws}/moto-api/reset", timeout=10).raise_for_status()
    restarted = seed.seed_organization(PORTAL, region="us-east-1", people=DEMO_PEOPLE_IN_AWS)
    app, created = ensure_demo_aws_app(restarted)
    assert not created
    _, run = validate_and_sync(app)
    assert run.status == "succeeded", run.message
    assign_demo_owners(app, person("approver").email, issuer_url=ISSUER)

    added = seed_portal(app)

    assert not [line for line in added if line.startswith("No requestable")], added
    for key, count in (("manager", 1), ("approver", 1), ("admin", 1)):
        mine = waiting_for(key)
        assert len(mine) == count, (key, mine)
        assert all(r.resource.deleted_at is None for r in mine)
    assert set(AccessRequest.objects.filter(pk__in=stale).values_list("status", flat=True)) == {
        RequestStatus.CANCELED
    }
    assert AuditEvent.objects.filter(action="request.canceled").count() == len(stale)
    assert (
        RequestRule.objects.filter(name=MANAGER_RULE_NAME, resource__deleted_at=None).count() == 1
    )
    # A third start on the same stand-in adds nothing.
    assert seed_portal(app) == []


def test_a_request_the_requester_already_made_is_skipped_and_the_demo_still_starts(demo_app):
    rob = person_user("requester")
    security = Resource.objects.get(app=demo_app, type=ResourceType.IDC_GROUP, name="Security")
    (own,) = submit_requests(
        requested_by=rob,
        items=[RequestItem(security.pk, security.access_levels.get().pk, timedelta(hours=1))],
        reason="My own reason",
    )

    added = seed_portal(demo_app)

    (skipped,) = [line for line in added if line.startswith("Not asking for Security")]
    assert "already has a pending request" in skipped
    assert [r.pk for r in waiting_for("approver")] == [own.pk]
    (for_manager,) = waiting_for("manager")
    assert for_manager.resource.type == ResourceType.RDS_POSTGRES

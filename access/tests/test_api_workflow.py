"""The workflow API: the catalogue's request rule, requests, approvals, cancel, and revoking
and extending grants, under the same rules (and with the same audit events) as the pages."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from access.choices import (
    ExtensionPolicy,
    GrantSource,
    GrantStatus,
    RequestKind,
    RequestStatus,
    ResourceType,
    ReviewerKind,
    StageMode,
)
from access.models import (
    AccessLevel,
    AccessRequest,
    Approval,
    Grant,
    RequestRule,
    StageReviewer,
    UserGroup,
)
from access.services import requests as svc
from access.tests.test_api import AUTH_QUERIES, CLIENTS, bearer, make_grant, make_resource
from audit.models import AuditEvent
from tests.fixtures import make_user

pytestmark = pytest.mark.django_db

RESOURCES = "/api/v1/resources/"
REQUESTS = "/api/v1/requests/"
APPROVALS = "/api/v1/approvals/"
GRANTS = "/api/v1/grants/"
HOUR = 3600
DAY = 24 * HOUR


@pytest.fixture
def level(personas) -> AccessLevel:
    return AccessLevel.objects.create(
        resource=personas.resource, remote_id="arn:aws:sso:::permissionSet/ps-1", name="ReadOnly"
    )


def rule(personas, *stages, **fields) -> RequestRule:
    made = RequestRule.objects.create(resource=personas.resource, **fields)
    for order, (reviewers, mode) in enumerate(stages, start=1):
        made.stages.create(order=order, reviewers=reviewers, mode=mode)
    return made


def body(level: AccessLevel, duration: int | None = 8 * HOUR, **extra) -> dict:
    return {
        "items": [
            {"resource": level.resource_id, "access_level": level.pk, "duration_seconds": duration}
        ],
        "reason": "debug the payments outage",
        **extra,
    }


def ask(personas, level, *, user=None, duration=timedelta(hours=8)) -> AccessRequest:
    """A pending request made through the service (the API's own creation is tested below)."""
    return svc.submit_requests(
        requested_by=user or personas.requester,
        items=[svc.RequestItem(personas.resource.pk, level.pk, duration)],
        reason="debug prod",
    )[0]


def events(action: str, target) -> int:
    return AuditEvent.objects.filter(action=action, target_id=str(target.pk)).count()


def second_owner(personas):
    other = make_user("sam.second@example.com", first_name="Sam")
    personas.resource.owners.create(user=other)
    return other


# Anonymous callers and wrong methods ----------------------------------------------------------


ENDPOINTS = [
    ("get", REQUESTS),
    ("post", REQUESTS),
    ("get", "request"),
    ("post", "request/approve"),
    ("post", "request/deny"),
    ("post", "request/cancel"),
    ("get", APPROVALS),
    ("get", "grant"),
    ("post", "grant/revoke"),
    ("post", "grant/extend"),
]


def url_of(name: str, request: AccessRequest, grant: Grant) -> str:
    if name.startswith("request"):
        return f"{REQUESTS}{request.pk}/{name.partition('/')[2]}".rstrip("/") + "/"
    if name.startswith("grant"):
        return f"{GRANTS}{grant.pk}/{name.partition('/')[2]}".rstrip("/") + "/"
    return name


@pytest.fixture
def held(personas, level) -> Grant:
    """The requester's active grant on prod, expiring in a day."""
    return make_grant(
        personas.requester,
        personas.resource,
        level=level.remote_id,
        source=GrantSource.REQUEST,
        expires_at=timezone.now() + timedelta(days=1),
    )


@pytest.mark.parametrize(("method", "name"), ENDPOINTS)
def test_anonymous_callers_get_401(personas, level, held, method, name):
    url = url_of(name, ask(personas, level), held)

    response = getattr(APIClient(), method)(url, {}, format="json")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert AccessRequest.objects.count() == 1


@pytest.mark.parametrize(
    ("method", "name"),
    [
        ("get", "request/approve"),
        ("get", "request/deny"),
        ("get", "request/cancel"),
        ("put", "request"),
        ("delete", "request"),
        ("post", APPROVALS),
        ("get", "grant/revoke"),
        ("get", "grant/extend"),
        ("delete", "grant"),
    ],
)
def test_actions_refuse_the_wrong_method(personas, level, held, method, name):
    request = ask(personas, level)

    response = getattr(bearer(personas.admin), method)(url_of(name, request, held))

    assert response.status_code == 405
    request.refresh_from_db()
    assert request.status == RequestStatus.PENDING
    assert not request.approvals.exists()


# The catalogue ----------------------------------------------------------------------------------


def test_a_resource_detail_says_the_default_rule_in_plain_words(personas, level):
    body = bearer(personas.requester).get(f"{RESOURCES}{personas.resource.pk}/").json()

    assert [lv["id"] for lv in body["access_levels"]] == [level.pk]
    rule = body["request_rule"]
    assert rule["description"] == [
        "Stage 1: any one of the resource's owners approves.",
        "Access lasts at most 7 days.",
        "A request needs a reason.",
        "Extensions are approved like a new request.",
    ]
    assert [c["seconds"] for c in rule["duration_choices"]] == [
        HOUR,
        4 * HOUR,
        8 * HOUR,
        DAY,
        3 * DAY,
        7 * DAY,
    ]
    assert rule["duration_choices"][2] == {"seconds": 8 * HOUR, "label": "8 hours"}
    assert rule["default_duration_seconds"] == 8 * HOUR
    assert rule["max_duration_seconds"] == 7 * DAY
    assert rule["require_reason"] is True
    assert rule["require_ticket"] is False
    assert rule["allow_until_revoked"] is False
    assert rule["allow_requests"] is True


def test_a_resource_detail_shows_the_rule_that_applies_to_the_caller(personas, level):
    contractors = UserGroup.objects.create(name="Contractors")
    contractors.members.add(personas.outsider)
    rule(
        personas,
        (ReviewerKind.MANAGER, StageMode.ANY),
        (ReviewerKind.OWNERS, StageMode.ALL),
        requester_group=contractors,
        priority=200,
        max_duration=timedelta(days=1),
        recommended_duration=timedelta(hours=4),
        require_ticket=True,
    )
    rule(personas, auto_approve=True, allow_until_revoked=True, max_duration=None)
    url = f"{RESOURCES}{personas.resource.pk}/"

    contractor = bearer(personas.outsider).get(url).json()["request_rule"]
    employee = bearer(personas.requester).get(url).json()["request_rule"]

    assert contractor["description"][:2] == [
        # The contractor has no manager: the admins decide that stage for them.
        "Stage 1: the requester has no manager, so an admin approves.",
        "Stage 2: every one of the resource's owners approves.",
    ]
    assert "A request needs a reason and a ticket reference." in contractor["description"]
    assert contractor["duration_choices"][-1]["seconds"] == DAY
    assert contractor["default_duration_seconds"] == 4 * HOUR
    assert contractor["require_ticket"] is True
    assert employee["description"][0] == "Requests are approved automatically."
    assert employee["duration_choices"][-1] == {"seconds": None, "label": "until revoked"}
    assert employee["allow_until_revoked"] is True
    assert employee["max_duration_seconds"] is None


def test_a_resource_that_cannot_be_requested_says_so(personas):
    rule(personas, allow_requests=False)

    body = bearer(personas.requester).get(f"{RESOURCES}{personas.resource.pk}/").json()

    assert body["request_rule"]["allow_requests"] is False
    assert body["request_rule"]["description"] == ["Access to this resource cannot be requested."]


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("payments", ["billing-role"]),
        ("PAY", ["billing-role"]),
        ("eu-central", ["billing-role"]),
        ("team", ["billing-role"]),  # a tag key finds what carries it
        ("Zürich", ["zurich-role"]),
        ('"', []),
        ("nothing-like-it", []),
    ],
)
def test_the_catalogue_finds_resources_by_tag(personas, search, expected):
    make_resource(personas.app, "billing-role", tags={"team": "payments", "home": "eu-central-1"})
    make_resource(personas.app, "zurich-role", tags={"office": "Zürich"})
    make_resource(personas.app, "plain-role")

    response = bearer(personas.requester).get(RESOURCES, {"search": search})

    assert response.status_code == 200
    assert [row["name"] for row in response.json()["results"]] == expected


# Creating requests ------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", CLIENTS)
def test_it_creates_a_request_that_waits_for_the_owners(personas, level, auth):
    response = CLIENTS[auth](personas.requester).post(REQUESTS, body(level), format="json")

    assert response.status_code == 201, response.content
    [made] = response.json()["requests"]
    request = AccessRequest.objects.get()
    assert made["id"] == request.pk
    assert made["status"] == "pending"
    assert made["kind"] == "new"
    assert made["user"]["id"] == made["requested_by"]["id"] == personas.requester.pk
    assert made["access_level"] == {"id": level.pk, "name": "ReadOnly"}
    assert made["duration_seconds"] == 8 * HOUR
    assert made["duration_display"] == "8 hours"
    assert made["stages"] == [{"order": 1, "reviewers": "owners", "mode": "any"}]
    assert [r["email"] for r in made["stage_reviewers"]] == ["olga.owner@example.com"]
    assert made["granted"] == []
    assert events("request.created", request) == 1
    assert AuditEvent.objects.get(action="request.created").actor_id == personas.requester.pk


def test_a_request_the_rule_approves_comes_back_approved_with_its_grant(personas, level):
    rule(personas, auto_approve=True)

    response = bearer(personas.requester).post(REQUESTS, body(level), format="json")

    assert response.status_code == 201, response.content
    [made] = response.json()["requests"]
    grant = Grant.objects.get()
    assert made["status"] == "approved"
    assert made["auto_approved"] is True
    assert made["granted"] == [grant.pk]
    assert grant.user == personas.requester
    assert grant.expires_at is not None
    assert events("request.approved", AccessRequest.objects.get()) == 1
    assert events("grant.created", grant) == 1


def test_several_items_make_one_request_each(personas, level):
    other = AccessLevel.objects.create(resource=personas.resource, remote_id="ps-2", name="Admin")
    payload = body(level)
    payload["items"].append(
        {"resource": personas.resource.pk, "access_level": other.pk, "duration_seconds": HOUR}
    )

    response = bearer(personas.requester).post(REQUESTS, payload, format="json")

    assert response.status_code == 201, response.content
    assert [r["access_level"]["name"] for r in response.json()["requests"]] == [
        "ReadOnly",
        "Admin",
    ]
    assert AuditEvent.objects.filter(action="request.created").count() == 2


def test_a_manager_asks_on_behalf_of_their_report(personas, level):
    response = bearer(personas.manager).post(
        REQUESTS, body(level, user=personas.requester.pk), format="json"
    )

    assert response.status_code == 201, response.content
    request = AccessRequest.objects.get()
    assert request.user == personas.requester
    assert request.requested_by == personas.manager
    assert AuditEvent.objects.get(action="request.created").actor_id == personas.manager.pk


def test_it_refuses_asking_on_behalf_of_someone_the_caller_has_no_say_over(personas, level):
    client = bearer(personas.outsider)

    response = client.post(REQUESTS, body(level, user=personas.requester.pk), format="json")

    assert response.status_code == 400
    assert "You cannot ask for access to prod for this person" in response.json()["items"]["0"][0]
    assert not AccessRequest.objects.exists()
    assert not AuditEvent.objects.filter(action="request.created").exists()


@pytest.mark.parametrize("caller", ["outsider", "approver"])
def test_asking_on_behalf_tells_nobody_who_exists_or_who_left(personas, level, caller):
    # The outsider may ask for nobody else; the owner may ask for anyone active.
    gone = make_user("gus.gone@example.com", is_active=False)
    client = bearer(getattr(personas, caller))
    ids = [gone.pk, 999999] + ([personas.requester.pk] if caller == "outsider" else [])

    answers = [client.post(REQUESTS, body(level, user=pk), format="json") for pk in ids]

    assert [a.status_code for a in answers] == [400] * len(ids)
    assert all(a.json() == answers[0].json() for a in answers), [a.json() for a in answers]
    assert "gus.gone" not in str(answers[0].json())
    assert not AccessRequest.objects.exists()


def _bad_item(personas, level, problem: str) -> tuple[dict, str]:
    item = {"resource": personas.resource.pk, "access_level": level.pk, "duration_seconds": HOUR}
    if problem == "over the maximum":
        item["duration_seconds"] = 8 * DAY
        return item, "lasts at most 7 days; you asked for 8 days"
    if problem == "level of another resource":
        other = make_resource(personas.app, "staging")
        item["access_level"] = AccessLevel.objects.create(
            resource=other, remote_id="x", name="x"
        ).pk
        return item, "Choose one of prod's access levels"
    if problem == "deleted resource":
        gone = make_resource(personas.app, "gone", deleted_at=timezone.now())
        item["resource"] = gone.pk
        item["access_level"] = AccessLevel.objects.create(resource=gone, remote_id="x", name="x").pk
        # Deleted resources are hidden from everyone but admins and auditors.
        return item, f"Resource {gone.pk} does not exist"
    if problem == "unknown resource":
        item["resource"] = 999999
        return item, "Resource 999999 does not exist"
    if problem == "not requestable":
        rule(personas, allow_requests=False)
        return item, "Access to prod cannot be requested"
    if problem == "until revoked not allowed":
        item["duration_seconds"] = None
        return item, "must have an end"
    if problem == "already pending":
        existing = ask(personas, level)
        return item, f"already has a pending request (#{existing.pk})"
    raise AssertionError(problem)


@pytest.mark.parametrize(
    "problem",
    [
        "over the maximum",
        "level of another resource",
        "deleted resource",
        "unknown resource",
        "not requestable",
        "until revoked not allowed",
        "already pending",
    ],
)
def test_a_bad_item_is_refused_by_its_index_and_nothing_is_created(personas, level, problem):
    staging = make_resource(personas.app, "staging-account")
    other = AccessLevel.objects.create(resource=staging, remote_id="ps-2", name="Admin")
    good = {"resource": staging.pk, "access_level": other.pk, "duration_seconds": HOUR}
    bad, message = _bad_item(personas, level, problem)
    before = AccessRequest.objects.count()

    response = bearer(personas.requester).post(
        REQUESTS, {"items": [good, bad], "reason": "debug"}, format="json"
    )

    assert response.status_code == 400, response.content
    errors = response.json()
    assert list(errors["items"]) == ["1"]
    assert message in " ".join(errors["items"]["1"])
    assert AccessRequest.objects.count() == before
    assert AuditEvent.objects.filter(action="request.created").count() == before


def test_an_admin_asking_for_a_deleted_resource_is_told_it_is_gone(personas):
    gone = make_resource(personas.app, "gone", deleted_at=timezone.now())
    level = AccessLevel.objects.create(resource=gone, remote_id="x", name="x")

    response = bearer(personas.admin).post(REQUESTS, body(level), format="json")

    assert response.status_code == 400
    assert response.json()["items"]["0"] == [
        "gone no longer exists in AWS and cannot be requested."
    ]
    assert not AccessRequest.objects.exists()


def test_a_missing_reason_is_named(personas, level):
    response = bearer(personas.requester).post(REQUESTS, body(level, reason="  "), format="json")

    assert response.status_code == 400
    assert response.json()["items"]["0"] == ["Give a reason: prod's rule requires one."]
    assert not AccessRequest.objects.exists()


def test_an_empty_submission_is_refused(personas):
    response = bearer(personas.requester).post(
        REQUESTS, {"items": [], "reason": "x"}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["non_field_errors"] == ["Choose at least one resource."]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"reason": "x"}, "items"),
        ({"items": [{"resource": "prod", "access_level": 1, "duration_seconds": 1}]}, "items"),
        ({"items": [{"resource": 1, "access_level": 1, "duration_seconds": 0}]}, "items"),
        ({"items": [{"resource": 1, "access_level": 1, "duration_seconds": 10**12}]}, "items"),
        ({"items": [{"resource": 1, "access_level": 1}]}, "items"),
        ({"items": [], "user": "rob"}, "user"),
    ],
)
def test_a_malformed_submission_is_refused_and_named(personas, payload, field):
    response = bearer(personas.requester).post(REQUESTS, payload, format="json")

    assert response.status_code == 400
    assert field in response.json()
    assert not AccessRequest.objects.exists()


# Reading requests -------------------------------------------------------------------------------


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def test_my_requests_are_those_made_by_me_or_for_me(personas, level):
    mine = ask(personas, level)
    other_level = AccessLevel.objects.create(resource=personas.resource, remote_id="b", name="b")
    for_me = svc.submit_requests(
        requested_by=personas.manager,
        items=[svc.RequestItem(personas.resource.pk, other_level.pk, timedelta(hours=1))],
        reason="on call",
        user=personas.requester,
    )[0]
    someone_elses = ask(personas, level, user=personas.outsider)

    assert ids(bearer(personas.requester).get(REQUESTS)) == [for_me.pk, mine.pk]
    assert ids(bearer(personas.manager).get(REQUESTS)) == [for_me.pk]
    assert ids(bearer(personas.outsider).get(REQUESTS)) == [someone_elses.pk]
    # An admin's own list is their own too: no one else's requests.
    assert ids(bearer(personas.admin).get(REQUESTS)) == []


def test_my_requests_can_be_filtered_by_status(personas, level):
    pending = ask(personas, level)
    other_level = AccessLevel.objects.create(resource=personas.resource, remote_id="b", name="b")
    canceled = svc.cancel_request(
        svc.submit_requests(
            requested_by=personas.requester,
            items=[svc.RequestItem(personas.resource.pk, other_level.pk, timedelta(hours=1))],
            reason="x",
        )[0],
        actor=personas.requester,
    )
    client = bearer(personas.requester)

    assert ids(client.get(REQUESTS, {"status": "pending"})) == [pending.pk]
    assert ids(client.get(REQUESTS, {"status": "canceled"})) == [canceled.pk]
    assert ids(client.get(REQUESTS, {"status": ["pending", "canceled"]})) == [
        canceled.pk,
        pending.pk,
    ]
    assert client.get(REQUESTS, {"status": "granted"}).status_code == 400


@pytest.mark.parametrize(
    ("persona", "code"),
    [
        ("requester", 200),
        ("approver", 200),
        ("manager", 200),
        ("admin", 200),
        ("auditor", 200),
        ("outsider", 404),
    ],
)
def test_a_request_is_shown_to_those_involved_and_hidden_from_others(
    personas, level, persona, code
):
    request = ask(personas, level)

    response = bearer(getattr(personas, persona)).get(f"{REQUESTS}{request.pk}/")

    assert response.status_code == code
    if code == 200:
        assert response.json()["reason"] == "debug prod"


def test_an_unknown_request_is_not_found(personas):
    assert bearer(personas.admin).get(f"{REQUESTS}999999/").status_code == 404


# The approval queue -----------------------------------------------------------------------------


def test_the_queue_holds_what_awaits_the_callers_decision(personas, level):
    waiting = ask(personas, level)

    assert ids(bearer(personas.approver).get(APPROVALS)) == [waiting.pk]
    for persona in ("requester", "outsider", "manager", "auditor", "admin"):
        assert ids(bearer(getattr(personas, persona)).get(APPROVALS)) == [], persona


def test_the_queue_leaves_out_decided_requests_and_stages_already_decided(personas, level):
    other = second_owner(personas)
    rule(personas, (ReviewerKind.OWNERS, StageMode.ALL))
    request = ask(personas, level)
    decided_level = AccessLevel.objects.create(resource=personas.resource, remote_id="b", name="b")
    done = svc.submit_requests(
        requested_by=personas.requester,
        items=[svc.RequestItem(personas.resource.pk, decided_level.pk, timedelta(hours=1))],
        reason="x",
    )[0]
    svc.decide(done, reviewer=personas.approver, approve=False, comment="no")
    svc.decide(request, reviewer=personas.approver, approve=True)

    assert ids(bearer(personas.approver).get(APPROVALS)) == []
    assert ids(bearer(other).get(APPROVALS)) == [request.pk]


def test_the_queue_leaves_out_the_callers_own_requests(personas, level):
    second_owner(personas)
    own = ask(personas, level, user=personas.approver)
    assert personas.approver.pk in own.reviewer_ids

    assert ids(bearer(personas.approver).get(APPROVALS)) == []


def test_the_queue_keeps_own_requests_when_the_rule_allows_self_approval(personas, level):
    rule(personas, (ReviewerKind.OWNERS, StageMode.ANY), allow_self_approval=True)
    own = ask(personas, level, user=personas.approver)

    assert ids(bearer(personas.approver).get(APPROVALS)) == [own.pk]


def test_the_queue_lists_a_request_to_its_current_stage_reviewers_only(personas, level):
    request = ask(personas, level)
    StageReviewer.objects.filter(request=request).delete()
    StageReviewer.objects.create(request=request, stage=1, user=personas.manager)
    # A reviewer of another stage is not asked yet.
    StageReviewer.objects.create(request=request, stage=2, user=personas.outsider)

    assert ids(bearer(personas.outsider).get(APPROVALS)) == []
    assert ids(bearer(personas.approver).get(APPROVALS)) == []
    assert ids(bearer(personas.manager).get(APPROVALS)) == [request.pk]


def test_admins_list_every_pending_request_and_no_one_else_can(personas, level):
    request = ask(personas, level)

    assert ids(bearer(personas.admin).get(APPROVALS, {"all": "1"})) == [request.pk]
    for persona in ("approver", "auditor", "outsider"):
        response = bearer(getattr(personas, persona)).get(APPROVALS, {"all": "1"})
        assert response.status_code == 403, persona
        assert "Only admins" in response.json()["detail"]


# Deciding ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", CLIENTS)
def test_an_owner_approves_and_the_access_is_granted(personas, level, auth):
    request = ask(personas, level)

    response = CLIENTS[auth](personas.approver).post(
        f"{REQUESTS}{request.pk}/approve/", {"comment": "ok"}, format="json"
    )

    assert response.status_code == 200, response.content
    grant = Grant.objects.get(request=request)
    body = response.json()
    assert body["status"] == "approved"
    assert body["granted"] == [grant.pk]
    assert body["stage_reviewers"] == []
    assert body["approvals"][0]["reviewer"]["id"] == personas.approver.pk
    assert body["approvals"][0]["decision"] == "approved"
    assert body["approvals"][0]["comment"] == "ok"
    assert events("request.approved", request) == 1
    assert events("grant.created", grant) == 1
    approved = AuditEvent.objects.get(action="request.approved")
    assert approved.actor_id == personas.approver.pk
    assert approved.details["comment"] == "ok"


def test_an_owner_denies_and_nothing_is_granted(personas, level):
    request = ask(personas, level)

    response = bearer(personas.approver).post(
        f"{REQUESTS}{request.pk}/deny/", {"comment": "use staging"}, format="json"
    )

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "denied"
    assert not Grant.objects.exists()
    assert events("request.denied", request) == 1


def test_an_approval_may_start_the_next_stage(personas, level):
    rule(personas, (ReviewerKind.OWNERS, StageMode.ANY), (ReviewerKind.MANAGER, StageMode.ANY))
    request = ask(personas, level)

    response = bearer(personas.approver).post(f"{REQUESTS}{request.pk}/approve/")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "pending"
    assert body["current_stage"] == 2
    assert [r["id"] for r in body["stage_reviewers"]] == [personas.manager.pk]
    assert events("request.stage_started", request) == 1
    assert ids(bearer(personas.manager).get(APPROVALS)) == [request.pk]


@pytest.mark.parametrize("decision", ["approve", "deny"])
@pytest.mark.parametrize("persona", ["manager", "auditor"])
def test_someone_who_sees_the_request_but_does_not_review_it_is_refused(
    personas, level, decision, persona
):
    request = ask(personas, level)

    response = bearer(getattr(personas, persona)).post(f"{REQUESTS}{request.pk}/{decision}/")

    assert response.status_code == 403
    assert "not a reviewer" in response.json()["detail"]
    request.refresh_from_db()
    assert request.status == RequestStatus.PENDING
    assert not Approval.objects.exists()
    assert not AuditEvent.objects.filter(action__in=["request.approved", "request.denied"]).exists()


@pytest.mark.parametrize("decision", ["approve", "deny"])
def test_someone_elses_request_is_not_found_when_deciding(personas, level, decision):
    request = ask(personas, level)

    response = bearer(personas.outsider).post(f"{REQUESTS}{request.pk}/{decision}/")

    assert response.status_code == 404
    assert not Approval.objects.exists()


def test_it_refuses_self_approval_through_the_api(personas, level):
    second_owner(personas)
    own = ask(personas, level, user=personas.approver)

    response = bearer(personas.approver).post(f"{REQUESTS}{own.pk}/approve/")

    assert response.status_code == 409
    assert "cannot decide your own request" in response.json()["detail"]
    own.refresh_from_db()
    assert own.status == RequestStatus.PENDING
    assert not Approval.objects.exists()
    assert not Grant.objects.exists()
    assert events("request.approved", own) == 0


def test_a_second_approval_of_an_any_stage_conflicts_and_one_grant_is_made(personas, level):
    other = second_owner(personas)
    request = ask(personas, level)

    first = bearer(personas.approver).post(f"{REQUESTS}{request.pk}/approve/")
    second = bearer(other).post(f"{REQUESTS}{request.pk}/approve/")

    assert first.status_code == 200
    assert second.status_code == 409
    assert second.json()["detail"] == "This request was already approved."
    assert Grant.objects.filter(request=request).count() == 1
    assert Approval.objects.filter(request=request).count() == 1
    assert events("request.approved", request) == 1


def test_a_reviewer_cannot_decide_the_same_stage_twice(personas, level):
    second_owner(personas)
    rule(personas, (ReviewerKind.OWNERS, StageMode.ALL))
    request = ask(personas, level)
    client = bearer(personas.approver)

    assert client.post(f"{REQUESTS}{request.pk}/approve/").status_code == 200
    again = client.post(f"{REQUESTS}{request.pk}/deny/")

    assert again.status_code == 409
    assert "already decided this stage" in again.json()["detail"]
    request.refresh_from_db()
    assert request.status == RequestStatus.PENDING


def test_an_admin_overrides_through_the_api(personas, level):
    request = ask(personas, level)

    response = bearer(personas.admin).post(f"{REQUESTS}{request.pk}/approve/")

    assert response.status_code == 200, response.content
    assert response.json()["approvals"][0]["is_override"] is True
    assert Grant.objects.filter(request=request).count() == 1


# Canceling --------------------------------------------------------------------------------------


def test_the_requester_cancels_a_pending_request(personas, level):
    request = ask(personas, level)

    response = bearer(personas.requester).post(f"{REQUESTS}{request.pk}/cancel/")

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "canceled"
    assert events("request.canceled", request) == 1
    assert ids(bearer(personas.approver).get(APPROVALS)) == []


def test_canceling_twice_conflicts(personas, level):
    request = ask(personas, level)
    client = bearer(personas.requester)
    client.post(f"{REQUESTS}{request.pk}/cancel/")

    again = client.post(f"{REQUESTS}{request.pk}/cancel/")

    assert again.status_code == 409
    assert again.json()["detail"] == "Only a pending request can be canceled."
    assert events("request.canceled", request) == 1


@pytest.mark.parametrize(("persona", "code"), [("approver", 403), ("outsider", 404)])
def test_only_the_requester_cancels(personas, level, persona, code):
    request = ask(personas, level)

    response = bearer(getattr(personas, persona)).post(f"{REQUESTS}{request.pk}/cancel/")

    assert response.status_code == code
    request.refresh_from_db()
    assert request.status == RequestStatus.PENDING
    assert events("request.canceled", request) == 0


# Grants: reading, revoking, extending ------------------------------------------------------------


def test_a_grant_says_its_state_and_the_request_it_came_from(personas, level):
    request = ask(personas, level)
    svc.decide(request, reviewer=personas.approver, approve=True)
    grant = Grant.objects.get()
    Grant.objects.filter(pk=grant.pk).update(last_error="AccessDenied")

    [row] = bearer(personas.requester).get(GRANTS).json()["results"]
    detail = bearer(personas.requester).get(f"{GRANTS}{grant.pk}/")

    assert row["request"] == request.pk
    assert row["status"] == "pending"
    assert row["propagation_status"] == "in_progress"
    assert row["last_error"] == "AccessDenied"
    assert row["expires_at"] is not None
    assert detail.status_code == 200
    assert detail.json() == row


@pytest.mark.parametrize(
    ("persona", "code"),
    [("requester", 200), ("approver", 200), ("manager", 200), ("auditor", 200), ("outsider", 404)],
)
def test_a_grant_is_shown_to_those_who_may_see_it(personas, held, persona, code):
    assert bearer(getattr(personas, persona)).get(f"{GRANTS}{held.pk}/").status_code == code


def test_the_holder_gives_up_their_access_without_a_reason(personas, held):
    response = bearer(personas.requester).post(f"{GRANTS}{held.pk}/revoke/")

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "revoking"
    assert response.json()["revoke_reason"] == "Given up by the holder"
    event = AuditEvent.objects.get(action="grant.revoked", target_id=str(held.pk))
    assert event.actor_id == personas.requester.pk
    assert event.details["reason"] == "Given up by the holder"


def test_an_owner_revokes_with_a_reason_and_must_give_one(personas, held):
    client = bearer(personas.approver)

    missing = client.post(f"{GRANTS}{held.pk}/revoke/", {"reason": " "}, format="json")
    assert missing.status_code == 400
    assert missing.json()["reason"] == ["Say why the access is revoked."]
    held.refresh_from_db()
    assert held.status == GrantStatus.ACTIVE
    assert events("grant.revoked", held) == 0

    response = client.post(f"{GRANTS}{held.pk}/revoke/", {"reason": "left the team"}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["revoke_reason"] == "left the team"
    assert events("grant.revoked", held) == 1


@pytest.mark.parametrize(
    ("persona", "code"), [("manager", 403), ("auditor", 403), ("outsider", 404)]
)
def test_revoking_is_refused_to_those_without_the_right(personas, held, persona, code):
    response = bearer(getattr(personas, persona)).post(
        f"{GRANTS}{held.pk}/revoke/", {"reason": "tidy up"}, format="json"
    )

    assert response.status_code == code
    held.refresh_from_db()
    assert held.status == GrantStatus.ACTIVE
    assert events("grant.revoked", held) == 0


def test_revoking_ended_access_conflicts(personas, held):
    client = bearer(personas.requester)
    client.post(f"{GRANTS}{held.pk}/revoke/")

    again = client.post(f"{GRANTS}{held.pk}/revoke/")

    assert again.status_code == 409
    assert again.json()["detail"] == "This access has already ended."
    assert events("grant.revoked", held) == 1


def test_the_holder_asks_to_extend_their_access(personas, held):
    response = bearer(personas.requester).post(
        f"{GRANTS}{held.pk}/extend/",
        {"duration_seconds": DAY, "reason": "the migration runs late"},
        format="json",
    )

    assert response.status_code == 201, response.content
    extension = AccessRequest.objects.get()
    body = response.json()
    assert body["id"] == extension.pk
    assert body["kind"] == RequestKind.EXTENSION
    assert body["grant"] == held.pk
    assert body["status"] == "pending"
    assert body["duration_seconds"] == DAY
    assert events("request.extension_requested", extension) == 1
    assert ids(bearer(personas.approver).get(APPROVALS)) == [extension.pk]


def test_an_extension_the_rule_approves_moves_the_expiry(personas, held):
    rule(personas, extension_policy=ExtensionPolicy.AUTO_APPROVE)
    before = held.expires_at

    response = bearer(personas.requester).post(
        f"{GRANTS}{held.pk}/extend/", {"duration_seconds": DAY, "reason": "x"}, format="json"
    )

    assert response.status_code == 201, response.content
    assert response.json()["status"] == "approved"
    held.refresh_from_db()
    assert held.expires_at == before + timedelta(days=1)
    assert events("grant.extended", held) == 1


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"duration_seconds": 8 * DAY, "reason": "x"}, "lasts at most 7 days from now"),
        ({"duration_seconds": DAY}, "Give a reason"),
    ],
)
def test_a_bad_extension_is_refused_and_nothing_is_created(personas, held, payload, message):
    response = bearer(personas.requester).post(f"{GRANTS}{held.pk}/extend/", payload, format="json")

    assert response.status_code == 400
    assert message in " ".join(response.json()["non_field_errors"])
    assert not AccessRequest.objects.exists()
    held.refresh_from_db()
    assert held.expires_at < timezone.now() + timedelta(days=2)


def test_an_extension_needs_a_duration(personas, held):
    response = bearer(personas.requester).post(
        f"{GRANTS}{held.pk}/extend/", {"reason": "x"}, format="json"
    )

    assert response.status_code == 400
    assert "duration_seconds" in response.json()
    assert not AccessRequest.objects.exists()


def test_extending_access_that_does_not_expire_is_refused(personas, held):
    Grant.objects.filter(pk=held.pk).update(expires_at=None)

    response = bearer(personas.requester).post(
        f"{GRANTS}{held.pk}/extend/", {"duration_seconds": DAY, "reason": "x"}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["non_field_errors"] == [
        "This access does not expire; there is nothing to extend."
    ]


@pytest.mark.parametrize(("persona", "code"), [("auditor", 403), ("outsider", 404)])
def test_extending_is_refused_to_those_without_the_right(personas, held, persona, code):
    response = bearer(getattr(personas, persona)).post(
        f"{GRANTS}{held.pk}/extend/", {"duration_seconds": DAY, "reason": "x"}, format="json"
    )

    assert response.status_code == code
    assert not AccessRequest.objects.exists()
    assert not AuditEvent.objects.filter(action="request.extension_requested").exists()


# Query counts -----------------------------------------------------------------------------------


def _fill_requests(personas, rows: int) -> None:
    """Pending requests by the requester, each on its own resource, one of them decided in
    part so approvals are listed too."""
    while AccessRequest.objects.count() < rows:
        resource = make_resource(personas.app, f"r{AccessRequest.objects.count()}")
        resource.owners.create(user=personas.approver)
        resource.owners.create(user=make_user(f"o{resource.pk}@example.com"))
        level = AccessLevel.objects.create(resource=resource, remote_id="a", name="a")
        RequestRule.objects.create(resource=resource).stages.create(
            order=1, reviewers=ReviewerKind.OWNERS, mode=StageMode.ALL
        )
        request = svc.submit_requests(
            requested_by=personas.requester,
            items=[svc.RequestItem(resource.pk, level.pk, timedelta(hours=1))],
            reason="x",
        )[0]
        if resource.pk % 2:
            svc.decide(request, reviewer=personas.approver, approve=True, comment="ok")


@pytest.mark.parametrize("auth", CLIENTS)
def test_my_requests_cost_the_same_queries_for_10_and_50_rows(
    personas, django_assert_max_num_queries, auth
):
    client = CLIENTS[auth](personas.requester)
    client.get(REQUESTS)  # a token's first use records last_used_at
    for rows in (10, 50):
        _fill_requests(personas, rows)
        # authentication, requests, their approvals, their grants, the stages' reviewers
        with django_assert_max_num_queries(AUTH_QUERIES[auth] + 4):
            response = client.get(REQUESTS)
        assert len(response.json()["results"]) == rows
        assert all(len(row["stage_reviewers"]) for row in response.json()["results"])


def test_the_approval_queue_refuses_an_all_that_is_neither_true_nor_false(personas):
    # It used to mean "no" without a word (found by fuzzing, tests/test_api_fuzz.py).
    response = bearer(personas.admin).get(APPROVALS, {"all": "1.5e308"})

    assert response.status_code == 400
    assert response.json()["all"] == ["'1.5e308' is not true or false."]
    assert bearer(personas.admin).get(APPROVALS, {"all": "false"}).status_code == 200


@pytest.mark.parametrize(
    "query",
    [
        {"resource": "-930462432707248783360"},
        {"resource": str(2**63)},
        {"resource": "0"},
    ],
)
def test_an_id_filter_outside_the_ids_range_is_refused_not_a_server_error(personas, query):
    # A number past the database's integer reached the query and failed there (SQLite:
    # OverflowError, a 500); found by fuzzing (tests/test_api_fuzz.py).
    client = bearer(personas.requester)
    client.raise_request_exception = False
    for url in (REQUESTS, APPROVALS, "/api/v1/resources/"):
        response = client.get(url, query if "resources" not in url else {"app": query["resource"]})

        assert response.status_code == 400, url
        assert "Ensure this value is" in " ".join(next(iter(response.json().values())))


def test_a_true_or_false_filter_refuses_anything_else(personas):
    # include_deleted=26970387 was taken for "not given" (found by fuzzing).
    response = bearer(personas.admin).get("/api/v1/resources/", {"include_deleted": "26970387"})

    assert response.status_code == 400
    assert response.json() == {"include_deleted": ["'26970387' is not true or false."]}
    for word in ("true", "False", "1", "no", ""):
        assert (
            bearer(personas.admin).get("/api/v1/resources/", {"include_deleted": word}).status_code
            == 200
        ), word


def test_the_api_lists_refuse_a_page_size_that_is_not_a_whole_number(personas):
    for url in (APPROVALS, REQUESTS, "/api/v1/tokens/", "/api/v1/resources/"):
        # An empty one too (page_size= was served the default page; found by fuzzing), and
        # what Python's int() reads but a page size is not written as: the API's one
        # reading of a whole number (config.parsing.positive_int) refuses them.
        # Thousands of digits too (int() raises on them: an error page before).
        for value in ("true", "", "5_0", "+5", "\u0663", "9" * 5000):
            response = bearer(personas.requester).get(url, {"page_size": value})

            assert response.status_code == 400, (url, value)
            message = response.json()["page_size"][0]
            assert "is not a page size" in message
            if len(value) < 50:
                assert f"{value!r} is not a page size" in message
        # Above the maximum is cut to it, as documented.
        assert bearer(personas.requester).get(url, {"page_size": "99999"}).status_code == 200


@pytest.mark.parametrize(("persona", "params"), [("admin", {"all": "1"}), ("approver", {})])
def test_the_approval_queue_costs_the_same_queries_for_10_and_50_rows(
    personas, django_assert_max_num_queries, persona, params
):
    client = bearer(getattr(personas, persona))
    client.get(REQUESTS)
    for rows in (10, 50):
        _fill_requests(personas, rows)
        expected = AccessRequest.objects.filter(status=RequestStatus.PENDING).count()
        if persona == "approver":
            expected -= Approval.objects.count()
        # token, (roles), requests, their approvals, their grants, the stages' reviewers
        with django_assert_max_num_queries(6):
            response = client.get(APPROVALS, params)
        assert len(response.json()["results"]) == expected > rows // 3


def test_the_grant_list_costs_the_same_queries_for_10_and_50_rows(
    personas, django_assert_max_num_queries
):
    client = bearer(personas.requester)
    client.get(GRANTS)
    for rows in (10, 50):
        while Grant.objects.count() < rows:
            make_grant(personas.requester, make_resource(personas.app, "r"))
        # token, grants
        with django_assert_max_num_queries(2):
            response = client.get(GRANTS)
        assert len(response.json()["results"]) == rows


# Schema -----------------------------------------------------------------------------------------


def test_the_schema_documents_every_workflow_endpoint_without_warnings(personas, tmp_path):
    target = tmp_path / "schema.yaml"

    # --fail-on-warn turns any warning or error of the generator into a failure.
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--file", str(target), stderr=StringIO()
    )

    schema = target.read_text()
    for path in (
        "/api/v1/requests/:",
        "/api/v1/requests/{id}/:",
        "/api/v1/requests/{id}/approve/:",
        "/api/v1/requests/{id}/deny/:",
        "/api/v1/requests/{id}/cancel/:",
        "/api/v1/approvals/:",
        "/api/v1/grants/{id}/:",
        "/api/v1/grants/{id}/revoke/:",
        "/api/v1/grants/{id}/extend/:",
    ):
        assert path in schema, path
    assert "RequestCreate" in schema and "RequestRule" in schema


def test_an_account_name_finds_its_resources_with_a_type_filter_too(personas):
    make_resource(
        personas.app,
        "payments-prod",
        type=ResourceType.ACCOUNT,
        remote_id="222222222222",
        account_id="222222222222",
    )
    make_resource(personas.app, "deployer", account_id="222222222222")

    response = bearer(personas.requester).get(
        RESOURCES, {"search": "payments-prod", "type": ResourceType.IAM_ROLE}
    )

    assert [row["name"] for row in response.json()["results"]] == ["deployer"]

"""Grants in the admin: direct grants, revoking with a reason, the failing alert, retries,
and the read-only pages of requests and assignments."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from access import drivers
from access.admin import grants as grant_admin
from access.choices import (
    AssignmentStatus,
    GrantSource,
    GrantStatus,
    PropagationStatus,
    RequestStatus,
)
from access.models import AccessLevel, AccessRequest, Assignment, Grant, Resource
from access.services import grants as grant_service
from access.services import requests as request_service
from access.tests.test_admin import NON_ADMINS, add_url, change_url, changelist, form_errors
from access.tests.test_admin_audit import events, only_event, post_form, saved
from audit.models import AuditEvent
from tests.fixtures import make_user

# A list page costs this many queries at most, however many rows it shows.
MAX_LIST_QUERIES = 14


class FakeProvider:
    """Stands in for the AWS driver of one resource type: it holds assignments in memory
    and refuses while ``failing`` is set. These tests are about the admin, not AWS."""

    def __init__(self) -> None:
        self.held: set[int] = set()
        self.failing = ""
        self.calls = 0

    def apply(self, assignment: Assignment) -> drivers.Outcome:
        self.calls += 1
        if self.failing:
            raise drivers.DriverError(self.failing)
        self.held.add(assignment.pk)
        return drivers.Outcome(note="applied")

    def remove(self, assignment: Assignment) -> drivers.Outcome:
        self.calls += 1
        if self.failing:
            raise drivers.DriverError(self.failing)
        self.held.discard(assignment.pk)
        return drivers.Outcome(note="removed")


@pytest.fixture
def provider(personas, monkeypatch) -> FakeProvider:
    fake = FakeProvider()
    monkeypatch.setitem(drivers._registry, personas.resource.type, fake)
    return fake


@pytest.fixture
def admin_client(client, personas):
    client.force_login(personas.admin)
    return client


@pytest.fixture
def level(personas) -> AccessLevel:
    return AccessLevel.objects.create(
        resource=personas.resource, remote_id="arn:aws:sso:::permissionSet/ps-1", name="ReadOnly"
    )


def grant_to(personas: Any, level: AccessLevel, user: Any = None, **fields: Any) -> Grant:
    return grant_service.create_grant(
        user=user or personas.requester,
        resource=personas.resource,
        access_level=level,
        expires_at=fields.pop("expires_at", timezone.now() + timedelta(days=1)),
        source=fields.pop("source", GrantSource.REQUEST),
        actor=personas.approver,
    )


def make_failing(grant: Grant, *, error: str = "AccessDenied: not authorized") -> None:
    """The grant's assignment failed three times in a row and raised the alert."""
    now = timezone.now()
    Assignment.objects.filter(pk=grant.assignment_id).update(
        status=AssignmentStatus.FAILING,
        attempts=3,
        last_error=error,
        next_attempt_at=now + timedelta(minutes=2),
        alerted_at=now,
    )
    Grant.objects.filter(pk=grant.pk).update(
        propagation_status=PropagationStatus.FAILED, last_error=error
    )


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def act(client: Any, action: str, grants: list[Grant], **extra: Any) -> Any:
    return client.post(
        changelist(Grant),
        {"action": action, "_selected_action": [g.pk for g in grants], **extra},
    )


# Direct grants -------------------------------------------------------------------------
def test_an_admin_grants_directly_until_a_date(admin_client, personas, level):
    expires = timezone.localtime() + timedelta(days=3)
    saved(
        post_form(
            admin_client,
            add_url(Grant),
            {
                "user": str(personas.requester.pk),
                "resource": str(personas.resource.pk),
                "access_level": str(level.pk),
                "expires_at_0": expires.strftime("%Y-%m-%d"),
                "expires_at_1": expires.strftime("%H:%M:%S"),
                "reason": "incident INC-42",
            },
        )
    )
    grant = Grant.objects.get()
    assert (grant.user, grant.resource, grant.access_level) == (
        personas.requester,
        personas.resource,
        level,
    )
    assert (grant.source, grant.status, grant.granted_by) == (
        GrantSource.ADMIN,
        GrantStatus.PENDING,
        personas.admin,
    )
    assert grant.expires_at == expires.replace(microsecond=0)
    assert grant.assignment is not None
    event = only_event("grant.created")
    assert event.actor == personas.admin
    assert event.target_id == str(grant.pk)
    assert event.details["source"] == "admin"
    assert event.details["reason"] == "incident INC-42"
    assert event.details["expires_at"] == grant.expires_at.isoformat()
    # The service's event is the only one: the admin records nothing of its own.
    assert AuditEvent.objects.filter(target_type="access.grant").count() == 1


def test_an_admin_grants_directly_until_revoked(admin_client, personas, level):
    saved(
        post_form(
            admin_client,
            add_url(Grant),
            {
                "user": str(personas.outsider.pk),
                "resource": str(personas.resource.pk),
                "access_level": str(level.pk),
                "expires_at_0": "",
                "expires_at_1": "",
            },
        )
    )
    grant = Grant.objects.get()
    assert grant.expires_at is None
    assert (grant.user, grant.source, grant.status) == (
        personas.outsider,
        GrantSource.ADMIN,
        GrantStatus.PENDING,
    )
    event = only_event("grant.created")
    assert event.details["expires_at"] is None
    assert event.details["source"] == "admin"


def test_an_admin_cannot_grant_themselves_access_and_another_admin_can(
    client, admin_client, personas, level
):
    data = {
        "user": str(personas.admin.pk),
        "resource": str(personas.resource.pk),
        "access_level": str(level.pk),
        "expires_at_0": "",
        "expires_at_1": "",
        "reason": "I need it",
    }
    response = post_form(admin_client, add_url(Grant), data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["user"] == [
        "You cannot grant access to yourself: ask another admin to grant it, or request it "
        "so that someone else decides."
    ]
    assert not Grant.objects.exists()
    assert not Assignment.objects.exists()
    assert not events("grant.created")
    # The service refuses it whoever calls it.
    with pytest.raises(grant_service.GrantError, match="cannot grant access to yourself"):
        grant_service.create_grant(
            user=personas.admin,
            resource=personas.resource,
            access_level=level,
            expires_at=None,
            source=GrantSource.ADMIN,
            actor=personas.admin,
        )
    assert not Grant.objects.exists()
    other = make_user("alan.admin@example.com", roles=("Admin",))
    client.force_login(other)
    saved(post_form(client, add_url(Grant), data))
    grant = Grant.objects.get()
    assert (grant.user, grant.granted_by) == (personas.admin, other)


def test_it_refuses_a_direct_grant_of_another_resources_level(admin_client, personas, level):
    other = Resource.objects.create(app=personas.app, type="aws_account", remote_id="2", name="dev")
    foreign = AccessLevel.objects.create(resource=other, remote_id="ps-9", name="Admin")
    response = post_form(
        admin_client,
        add_url(Grant),
        {
            "user": str(personas.requester.pk),
            "resource": str(personas.resource.pk),
            "access_level": str(foreign.pk),
        },
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    # The form offers only the resource's own levels (Grant.clean refuses the rest too).
    assert errors["access_level"] == [
        "Choose one of the access levels listed: they are those of the resource above."
    ]
    assert not Grant.objects.exists()
    assert not Assignment.objects.exists()
    assert not events("grant.created")


def test_it_refuses_a_direct_grant_that_has_already_expired(admin_client, personas, level):
    past = timezone.localtime() - timedelta(hours=1)
    response = post_form(
        admin_client,
        add_url(Grant),
        {
            "user": str(personas.requester.pk),
            "resource": str(personas.resource.pk),
            "access_level": str(level.pk),
            "expires_at_0": past.strftime("%Y-%m-%d"),
            "expires_at_1": past.strftime("%H:%M:%S"),
        },
    )
    assert response.status_code == 200
    assert "The expiry must be in the future." in form_errors(response)
    assert not Grant.objects.exists()


def test_it_refuses_a_direct_grant_on_a_resource_gone_from_aws(admin_client, personas, level):
    Resource.objects.filter(pk=personas.resource.pk).update(deleted_at=timezone.now())
    response = post_form(
        admin_client,
        add_url(Grant),
        {
            "user": str(personas.requester.pk),
            "resource": str(personas.resource.pk),
            "access_level": str(level.pk),
        },
    )
    assert response.status_code == 200
    assert "prod no longer exists in AWS." in form_errors(response)
    assert not Grant.objects.exists()


PS_REASON = "The permission set is not tagged portcullis:requestable=true: tag it in AWS."
ROLE_REASON = "The role is not tagged portcullis:requestable=true: tag it in AWS."


def test_it_refuses_a_direct_grant_of_a_permission_set_not_tagged_requestable(
    admin_client, personas, level
):
    AccessLevel.objects.filter(pk=level.pk).update(metadata={"not_requestable": PS_REASON})
    response = post_form(
        admin_client,
        add_url(Grant),
        {
            "user": str(personas.requester.pk),
            "resource": str(personas.resource.pk),
            "access_level": str(level.pk),
        },
    )
    assert response.status_code == 200
    assert f"Access to prod (ReadOnly) cannot be requested: {PS_REASON}" in form_errors(response)
    assert not Grant.objects.exists()
    assert not Assignment.objects.exists()


def test_it_refuses_a_direct_grant_of_a_role_not_tagged_requestable(admin_client, personas):
    role = Resource.objects.create(
        app=personas.app,
        type="iam_role",
        remote_id="arn:aws:iam::111111111111:role/UntaggedAdmin",
        name="UntaggedAdmin",
        metadata={"not_requestable": ROLE_REASON},
    )
    assume = AccessLevel.objects.create(resource=role, remote_id="assume", name="Assume role")
    response = post_form(
        admin_client,
        add_url(Grant),
        {
            "user": str(personas.requester.pk),
            "resource": str(role.pk),
            "access_level": str(assume.pk),
        },
    )
    assert response.status_code == 200
    assert f"Access to UntaggedAdmin cannot be requested: {ROLE_REASON}" in form_errors(response)
    assert not Grant.objects.exists()


def test_the_grant_service_refuses_what_is_not_requestable_whoever_calls_it(personas, level):
    AccessLevel.objects.filter(pk=level.pk).update(metadata={"not_requestable": PS_REASON})
    level.refresh_from_db()
    with pytest.raises(grant_service.GrantError, match="not tagged portcullis:requestable"):
        grant_to(personas, level)
    assert not Grant.objects.exists()


def test_an_existing_grant_is_read_only_and_shows_its_state_in_aws(admin_client, personas, level):
    grant = grant_to(personas, level)
    make_failing(grant, error="ConflictException: try again")
    page = admin_client.get(change_url(grant))
    assert page.status_code == 200
    content = page.content.decode()
    assert "ConflictException: try again" in content
    assert "Failing" in content  # the assignment's state
    assert 'name="_save"' not in content
    assert reverse("admin:access_grant_delete", args=[grant.pk]) not in content

    later = timezone.now() + timedelta(days=30)
    response = admin_client.post(
        change_url(grant),
        {"expires_at_0": later.strftime("%Y-%m-%d"), "expires_at_1": "00:00:00"},
    )
    assert response.status_code == 403
    delete = reverse("admin:access_grant_delete", args=[grant.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    grant.refresh_from_db()
    assert grant.expires_at < later
    page = admin_client.get(changelist(Grant))
    actions = [name for name, _ in page.context["action_form"].fields["action"].choices]
    assert actions == ["", "revoke_grants", "retry_grants"]


# Revoking -----------------------------------------------------------------------------------
def test_revoking_asks_for_a_reason_then_revokes_each_grant(admin_client, personas, level):
    first = grant_to(personas, level)
    second = grant_to(personas, level, user=personas.outsider)
    ended = grant_to(personas, level, user=personas.manager)
    grant_service.revoke_grant(ended, actor=personas.approver, reason="left the team")

    page = act(admin_client, "revoke_grants", [first, second, ended])
    assert page.status_code == 200
    assert page.templates[0].name == "admin/access/grant/revoke.html"
    assert {g.pk for g in page.context["current"]} == {first.pk, second.pk}
    assert [g.pk for g in page.context["ended"]] == [ended.pk]
    assert len(events("grant.revoked")) == 1  # `ended`, by the approver

    refused = act(admin_client, "revoke_grants", [first, second], confirm="yes", reason="  ")
    assert refused.status_code == 200
    assert refused.context["form"].errors["reason"] == ["Say why the access is revoked."]
    first.refresh_from_db()
    assert first.status == GrantStatus.PENDING
    assert len(events("grant.revoked")) == 1

    done = act(
        admin_client, "revoke_grants", [first, second, ended], confirm="yes", reason="audit finding"
    )
    assert done.status_code == 302
    for grant in (first, second):
        grant.refresh_from_db()
        assert grant.status == GrantStatus.REVOKING
        assert grant.revoked_by == personas.admin
        assert grant.revoke_reason == "audit finding"
    revoked = [e for e in events("grant.revoked") if e.actor == personas.admin]
    assert sorted(e.target_id for e in revoked) == sorted([str(first.pk), str(second.pk)])
    assert {e.details["reason"] for e in revoked} == {"audit finding"}
    ended.refresh_from_db()
    assert ended.revoke_reason == "left the team"
    listing = admin_client.get(done["Location"])
    assert "Revoked 2 grants. Left 1 grant that had already ended." in messages_of(listing)


def test_a_revoked_grant_is_removed_from_aws_once_the_change_commits(
    admin_client, personas, level, provider, settings, django_capture_on_commit_callbacks
):
    settings.TASKS_INLINE = True
    with django_capture_on_commit_callbacks(execute=True):
        grant = grant_to(personas, level)
    assert provider.held == {grant.assignment_id}
    with django_capture_on_commit_callbacks(execute=True):
        act(admin_client, "revoke_grants", [grant], confirm="yes", reason="no longer needed")
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKED
    assert provider.held == set()


def test_only_admins_revoke_from_the_admin(client, personas, level):
    grant = grant_to(personas, level)
    for persona in NON_ADMINS:
        client.force_login(getattr(personas, persona))
        response = act(client, "revoke_grants", [grant], confirm="yes", reason="mine now")
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
        assert client.get(response["Location"]).status_code == 403
    grant.refresh_from_db()
    assert grant.status == GrantStatus.PENDING
    assert not events("grant.revoked")


# The failing alert -----------------------------------------------------------------------------
def test_the_grant_list_warns_of_failing_grants_and_filters_them(admin_client, personas, level):
    healthy = grant_to(personas, level)
    failing = grant_to(personas, level, user=personas.outsider)
    page = admin_client.get(changelist(Grant))
    assert not [m for m in messages_of(page) if "failing" in m]

    make_failing(failing)
    page = admin_client.get(changelist(Grant))
    assert any(
        "1 grant keeps failing in AWS — see the" in m and "?failing=yes" in m
        for m in messages_of(page)
    ), messages_of(page)
    assert {g.pk for g in page.context["cl"].result_list} == {healthy.pk, failing.pk}
    filtered = admin_client.get(changelist(Grant), {"failing": "yes"})
    assert [g.pk for g in filtered.context["cl"].result_list] == [failing.pk]
    content = page.content.decode()
    assert "AccessDenied: not authorized" in content  # the last error column

    # A second grant of the failing assignment fails with it; an ended one is no alarm.
    also = grant_to(personas, level, user=personas.outsider)
    assert also.assignment_id == failing.assignment_id
    page = admin_client.get(changelist(Grant))
    assert any("2 grants keep failing in AWS" in m for m in messages_of(page))
    grant_service.revoke_grant(also, actor=personas.admin, reason="dup")
    Grant.objects.filter(pk=also.pk).update(status=GrantStatus.REVOKED)
    page = admin_client.get(changelist(Grant))
    assert any("1 grant keeps failing in AWS" in m for m in messages_of(page))


def test_retry_now_applies_a_failing_grant_and_is_audited(
    admin_client, personas, level, provider, settings, django_capture_on_commit_callbacks
):
    settings.TASKS_INLINE = True
    provider.failing = "ThrottlingException: rate exceeded"
    with django_capture_on_commit_callbacks(execute=True):
        grant = grant_to(personas, level)
        other = grant_to(personas, level)  # the same assignment
    grant.refresh_from_db()
    assert grant.propagation_status == PropagationStatus.FAILED
    make_failing(grant, error="ThrottlingException: rate exceeded")
    provider.failing = ""
    calls = provider.calls

    with django_capture_on_commit_callbacks(execute=True):
        response = act(admin_client, "retry_grants", [grant, other])
    assert response.status_code == 302
    # One assignment, one attempt in AWS, however many grants share it.
    assert provider.calls == calls + 1
    assert provider.held == {grant.assignment_id}
    for g in (grant, other):
        g.refresh_from_db()
        assert (g.status, g.propagation_status) == (GrantStatus.ACTIVE, PropagationStatus.APPLIED)
    assignment = Assignment.objects.get(pk=grant.assignment_id)
    assert (assignment.status, assignment.attempts, assignment.alerted_at) == (
        AssignmentStatus.APPLIED,
        0,
        None,
    )
    requested = events("grant.retry_requested")
    assert sorted(e.target_id for e in requested) == sorted([str(grant.pk), str(other.pk)])
    assert all(e.actor == personas.admin for e in requested)
    assert requested[0].details["last_error"] == "ThrottlingException: rate exceeded"
    page = admin_client.get(response["Location"])
    assert "Queued 2 grants for another attempt in AWS." in messages_of(page)
    assert not [m for m in messages_of(page) if "keep" in m and "failing" in m]


def test_retry_now_is_refused_to_non_admins(client, personas, level):
    grant = grant_to(personas, level)
    client.force_login(personas.auditor)
    response = act(client, "retry_grants", [grant])
    assert response.status_code == 302
    assert client.get(response["Location"]).status_code == 403
    assert not events("grant.retry_requested")


# Who reaches these pages ----------------------------------------------------------------------
@pytest.mark.parametrize("persona", NON_ADMINS)
def test_it_refuses_the_grant_request_and_assignment_pages_to_non_admins(
    client, personas, level, persona
):
    grant = grant_to(personas, level)
    request = AccessRequest.objects.create(
        requested_by=personas.requester,
        user=personas.requester,
        resource=personas.resource,
        access_level=level,
    )
    client.force_login(getattr(personas, persona))
    urls = [
        changelist(Grant),
        add_url(Grant),
        change_url(grant),
        changelist(AccessRequest),
        change_url(request),
        changelist(Assignment),
        change_url(grant.assignment),
    ]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("admin:login")), url
        assert client.get(response["Location"]).status_code == 403, url
    response = post_direct_grant(client, add_url(Grant), personas, level)
    assert response.status_code == 302
    assert Grant.objects.count() == 1


def post_direct_grant(client: Any, url: str, personas: Any, level: AccessLevel) -> Any:
    return client.post(
        url,
        {
            "user": str(personas.outsider.pk),
            "resource": str(personas.resource.pk),
            "access_level": str(level.pk),
        },
    )


def test_anonymous_visitors_are_sent_to_login(client, personas):
    response = client.get(changelist(Grant))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


# Requests and assignments: read-only ------------------------------------------------------------
def test_requests_are_listed_and_shown_with_their_approvals_read_only(
    admin_client, personas, level
):
    request = request_service.submit_requests(
        requested_by=personas.requester,
        items=[request_service.RequestItem(personas.resource.pk, level.pk, timedelta(hours=8))],
        reason="deploy",
    )[0]
    request_service.decide(request, reviewer=personas.approver, approve=True, comment="go ahead")
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED

    listing = admin_client.get(changelist(AccessRequest))
    assert [r.pk for r in listing.context["cl"].result_list] == [request.pk]
    assert (
        admin_client.get(changelist(AccessRequest), {"status__exact": "pending"})
        .context["cl"]
        .result_count
        == 0
    )
    found = admin_client.get(changelist(AccessRequest), {"q": "rob.requester"})
    assert [r.pk for r in found.context["cl"].result_list] == [request.pk]

    page = admin_client.get(change_url(request))
    assert page.status_code == 200
    content = page.content.decode()
    assert "go ahead" in content and "olga.owner@example.com" in content
    assert 'name="_save"' not in content
    inline = page.context["inline_admin_formsets"][0]
    assert not inline.has_add_permission and not inline.has_change_permission
    assert not inline.has_delete_permission

    assert admin_client.get(add_url(AccessRequest)).status_code == 403
    assert admin_client.post(change_url(request), {"status": "denied"}).status_code == 403
    delete = reverse("admin:access_accessrequest_delete", args=[request.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED


def test_assignments_are_read_only_and_filter_by_state_and_failing(admin_client, personas, level):
    healthy = grant_to(personas, level)
    failing = grant_to(personas, level, user=personas.outsider)
    make_failing(failing)
    url = changelist(Assignment)
    listing = admin_client.get(url)
    assert listing.context["cl"].result_count == 2
    by_failing = admin_client.get(url, {"failing": "yes"})
    assert [a.pk for a in by_failing.context["cl"].result_list] == [failing.assignment_id]
    by_state = admin_client.get(url, {"status__exact": AssignmentStatus.ABSENT})
    assert [a.pk for a in by_state.context["cl"].result_list] == [healthy.assignment_id]
    page = admin_client.get(change_url(failing.assignment))
    assert "AccessDenied: not authorized" in page.content.decode()
    assert admin_client.get(add_url(Assignment)).status_code == 403
    assert (
        admin_client.post(change_url(failing.assignment), {"status": "applied"}).status_code == 403
    )
    delete = reverse("admin:access_assignment_delete", args=[failing.assignment_id])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert Assignment.objects.count() == 2


def test_the_history_pages_do_not_stand_in_the_way_of_deleting_a_resource(
    admin_client, personas, level
):
    # Grants, requests and assignments are never deleted on their own pages, yet the
    # admins keep the permission a resource's deletion checks for the rows it takes along.
    grant = grant_to(personas, level)
    grant_service.revoke_grant(grant, actor=personas.admin, reason="done")
    AccessRequest.objects.create(
        requested_by=personas.requester,
        user=personas.requester,
        resource=personas.resource,
        access_level=level,
    )
    url = reverse("admin:access_resource_delete", args=[personas.resource.pk])
    assert admin_client.get(url).context["perms_lacking"] == set()


# Query counts ---------------------------------------------------------------------------------
def count_queries(client: Any, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(queries)


def add_grants(personas: Any, level: AccessLevel, count: int, start: int) -> None:
    """``count`` grants for new users, each with a failing assignment and a request."""
    for i in range(start, start + count):
        user = make_user(f"user-{i}@example.com")
        grant = grant_to(personas, level, user=user)
        make_failing(grant)
        AccessRequest.objects.create(
            requested_by=user, user=user, resource=personas.resource, access_level=level
        )


@pytest.mark.parametrize("model", [Grant, AccessRequest, Assignment], ids=lambda m: m.__name__)
def test_the_lists_cost_the_same_queries_for_10_and_100_rows(
    admin_client, personas, level, model, django_assert_max_num_queries
):
    url = changelist(model)
    add_grants(personas, level, 10, 0)
    admin_client.get(url)  # warm the session and content-type caches
    with django_assert_max_num_queries(MAX_LIST_QUERIES):
        small = count_queries(admin_client, url)
    add_grants(personas, level, 90, 10)
    with django_assert_max_num_queries(MAX_LIST_QUERIES):
        large = count_queries(admin_client, url)
    assert small == large, (small, large)


def test_acting_on_every_match_past_what_the_list_counts_is_refused(
    admin_client, personas, level, monkeypatch
):
    """The list counts at most COUNT_LIMIT grants, so "Select all N" said N while acting on
    every match: more than the list counts is refused, and nothing changes."""
    monkeypatch.setattr(grant_admin, "COUNT_LIMIT", 2)
    made = [
        grant_to(personas, level, user=user)
        for user in (personas.requester, personas.outsider, personas.manager)
    ]
    for action in ("revoke_grants", "retry_grants"):
        response = admin_client.post(
            changelist(Grant),
            {
                "action": action,
                "select_across": "1",
                "_selected_action": [made[0].pk],
                "confirm": "yes",
                "reason": "bulk",
            },
            follow=True,
        )
        assert "more than the list counts" in response.content.decode()
    assert not events("grant.revoked")
    assert {g.status for g in Grant.objects.filter(pk__in=[g.pk for g in made])} == {made[0].status}

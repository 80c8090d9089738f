"""An account offers every permission set, provisioned there or not: in a fresh
organization (no assignment anywhere, nothing provisioned) each account can be requested
with each permission set an admin tagged requestable, and a grant assigns it, AWS
provisioning the permission set into the account on that first assignment. Untagged
permission sets are listed, not offered, and never assigned."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
import requests
from botocore.exceptions import ClientError
from django.test import Client
from django.urls import reverse

from access.choices import AssignmentStatus, GrantSource, GrantStatus, ResourceType
from access.drivers import DriverError
from access.models import AccessLevel, Assignment, Grant, Resource, User
from access.services import requests as request_service
from access.services.change_log import action_prefix
from audit.models import AuditEvent
from aws_integration.grants import base
from aws_integration.grants import identity_center as idc
from aws_integration.models import AwsApp
from aws_integration.sync.fetchers import organizations
from aws_integration.tests.sync_fixtures import (
    ADA_EMAIL,
    PEOPLE,
    capture,
    inventory_writes,
    level_ids,
    make_app,
    management,
    sync,
)
from demo import seed
from tests.fixtures import make_user

pytestmark = pytest.mark.django_db

T = ResourceType
# Two member accounts, three permission sets tagged requestable, and no assignment at all:
# nothing is provisioned anywhere.
FRESH_SEED = seed.SeedSize.minimal(
    "fresh", accounts=2, ous=2, permission_sets=3, idc_users=1, assignments_per_account=0
)
LEVEL_ACTIONS = tuple(
    f"{action_prefix(AccessLevel)}.{change}" for change in ("created", "updated", "gone")
)


@dataclass(frozen=True)
class FreshOrg:
    seeded: seed.SeedResult
    untagged: str  # a permission set nobody tagged requestable

    @property
    def account_ids(self) -> list[str]:
        return [self.seeded.management_account_id] + [a.account_id for a in self.seeded.accounts]

    @property
    def tagged(self) -> set[str]:
        return set(self.seeded.permission_sets.values())


@pytest.fixture(scope="module")
def _seed_cache() -> dict[str, FreshOrg]:
    return {}


@pytest.fixture
def org(moto_server: str, settings, _seed_cache) -> Iterator[FreshOrg]:
    settings.AWS_ENDPOINT_URL = moto_server
    settings.AWS_MAX_ATTEMPTS = 2
    fresh = _seed_cache.get("org")
    if fresh is None or not _still_seeded(fresh.seeded):
        requests.post(f"{moto_server}/moto-api/reset", timeout=10).raise_for_status()
        seeded = seed.seed_organization(FRESH_SEED, region=seed.REGIONS[0], people=PEOPLE)
        untagged = management("sso-admin").create_permission_set(
            InstanceArn=seeded.instance_arn, Name="Unreviewed", SessionDuration="PT1H"
        )["PermissionSet"]["PermissionSetArn"]
        fresh = _seed_cache["org"] = FreshOrg(seeded, untagged)
    # Sessions assumed before a reset of the stand-in name roles it no longer holds.
    base.forget_sessions()
    yield fresh
    _clear_assignments(fresh)


def _still_seeded(result: seed.SeedResult) -> bool:
    try:
        found = management("organizations").describe_organization()["Organization"]
    except ClientError:
        return False
    return found["Id"] == result.organization_id


def _assignments(org: FreshOrg, account_id: str, arn: str) -> list[dict[str, str]]:
    return management("sso-admin").list_account_assignments(
        InstanceArn=org.seeded.instance_arn, AccountId=account_id, PermissionSetArn=arn
    )["AccountAssignments"]


def _clear_assignments(org: FreshOrg) -> None:
    """Leaves the organization fresh for the next test, whatever this one assigned."""
    sso = management("sso-admin")
    for account_id in org.account_ids:
        for arn in [*org.tagged, org.untagged]:
            for held in _assignments(org, account_id, arn):
                sso.delete_account_assignment(
                    InstanceArn=org.seeded.instance_arn,
                    TargetId=account_id,
                    TargetType="AWS_ACCOUNT",
                    PermissionSetArn=arn,
                    PrincipalType=held["PrincipalType"],
                    PrincipalId=held["PrincipalId"],
                )


@pytest.fixture
def ada(db) -> User:
    return make_user(ADA_EMAIL.lower(), email_verified=True, first_name="Ada")


@pytest.fixture
def app(org, ada) -> AwsApp:
    # The organization tree and Identity Center: member accounts' resources play no part.
    app = make_app(org.seeded, organization_management=False)
    run = sync(app)
    assert run.status == "succeeded", run.message
    return app


def account_row(app: AwsApp, account_id: str) -> Resource:
    return Resource.objects.get(app=app, type=T.ACCOUNT, remote_id=account_id)


def level_of(row: Resource, arn: str) -> AccessLevel:
    return row.access_levels.get(remote_id=arn, deleted_at__isnull=True)


def assign(user: User, row: Resource, access_level: AccessLevel) -> Assignment:
    made = Assignment.objects.create(user=user, resource=row, access_level=access_level)
    Grant.objects.create(
        user=user,
        resource=row,
        access_level=access_level,
        source=GrantSource.ADMIN,
        status=GrantStatus.ACTIVE,
        assignment=made,
    )
    return made


def test_the_fresh_organization_has_no_assignment_and_nothing_provisioned(org):
    sso = management("sso-admin")
    for account_id in org.account_ids:
        assert (
            sso.list_permission_sets_provisioned_to_account(
                InstanceArn=org.seeded.instance_arn, AccountId=account_id
            )["PermissionSets"]
            == []
        )
        for arn in org.tagged:
            assert _assignments(org, account_id, arn) == []


def test_a_fresh_organization_offers_each_account_with_every_requestable_permission_set(
    org, app, ada
):
    for account_id in org.account_ids:
        row = account_row(app, account_id)
        if account_id == org.seeded.management_account_id:
            # Whose access controls every account: nothing is granted there, whatever is
            # tagged (an AWS admin tagging a permission set for sandboxes did not mean it).
            assert "management account" in row.not_requestable_reason
        else:
            assert row.not_requestable_reason == ""
        assert level_ids(row) == org.tagged | {org.untagged}
        for arn in org.tagged:
            assert level_of(row, arn).not_requestable_reason == ""
        assert "not tagged portcullis:requestable=true" in (
            level_of(row, org.untagged).not_requestable_reason
        )
    # Nothing is assigned, so there is no Identity Center role to request instead.
    assert not Resource.objects.filter(app=app, type=T.IDC_ROLE).exists()

    client = Client()
    client.force_login(ada)
    row = account_row(app, org.seeded.accounts[0].account_id)
    page = client.get(reverse("request-new"), {"resource": row.pk}).content.decode()
    for arn in org.tagged:
        level = level_of(row, arn)
        assert f'<option value="{level.pk}">{level.name}</option>' in page
    assert f'value="{level_of(row, org.untagged).pk}"' not in page


def test_nothing_is_granted_in_the_management_account(org, app, ada):
    row = account_row(app, org.seeded.management_account_id)
    level = level_of(row, org.seeded.permission_sets["ReadOnlyAccess"])
    with pytest.raises(request_service.RequestInvalid, match="management account"):
        request_service.submit_requests(
            requested_by=ada,
            items=[request_service.RequestItem(row.pk, level.pk, timedelta(hours=1))],
            reason="probe",
        )
    assert _assignments(org, org.seeded.management_account_id, level.remote_id) == []


def test_a_grant_applies_on_an_account_the_permission_set_was_never_provisioned_to(org, app, ada):
    account_id = org.seeded.accounts[1].account_id
    arn = org.seeded.permission_sets["ReadOnlyAccess"]
    row = account_row(app, account_id)
    assignment = assign(ada, row, level_of(row, arn))
    user_id = org.seeded.users[ADA_EMAIL]

    outcome = idc.DRIVERS[T.ACCOUNT].apply(assignment)

    # What AWS holds now: Ada's assignment. AWS provisions the permission set into the
    # account as part of CreateAccountAssignment; moto keeps no per-account provisioning
    # (ProvisionPermissionSet ignores the account, CreateAccountAssignment provisions
    # nothing), so the provisioning itself cannot be asserted here. Portcullis never calls
    # ProvisionPermissionSet: its AWS policy denies it (DenyPermissionSetChanges).
    assert _assignments(org, account_id, arn) == [
        {
            "AccountId": account_id,
            "PermissionSetArn": arn,
            "PrincipalType": "USER",
            "PrincipalId": user_id,
        }
    ]
    assert outcome.state == {"user_id": user_id}
    assignment.driver_state = outcome.state
    assignment.status = AssignmentStatus.APPLIED
    assignment.save(update_fields=["driver_state", "status"])

    idc.DRIVERS[T.ACCOUNT].remove(assignment)
    assert _assignments(org, account_id, arn) == []


def test_a_permission_set_not_tagged_requestable_is_still_refused(org, app, ada):
    account_id = org.seeded.accounts[0].account_id
    row = account_row(app, account_id)
    untagged = level_of(row, org.untagged)

    errors = request_service.validate_items(
        requested_by=ada,
        user=ada,
        items=[request_service.RequestItem(row.pk, untagged.pk, timedelta(hours=1))],
        reason="debugging",
        ticket="",
    )
    assert "not tagged portcullis:requestable=true" in " ".join(errors[0])

    # Nor is it assigned if a grant reaches the driver anyway (an admin's, or a tag
    # removed after approval).
    with pytest.raises(DriverError) as refused:
        idc.DRIVERS[T.ACCOUNT].apply(assign(ada, row, untagged))
    assert not refused.value.retryable
    assert "Unreviewed" in refused.value.message
    assert _assignments(org, account_id, org.untagged) == []


def test_a_resync_leaves_the_account_levels_alone(org, app):
    audited = AuditEvent.objects.filter(action__in=LEVEL_ACTIONS).count()
    assert audited  # the first sync recorded the levels it created

    with capture() as queries:
        run = sync(app)
    assert run.status == "succeeded", run.message
    assert inventory_writes(queries) == []
    assert AuditEvent.objects.filter(action__in=LEVEL_ACTIONS).count() == audited


@pytest.mark.parametrize(
    ("account_id", "status", "says"),
    [
        ("111111111111", "ACTIVE", ""),
        ("999999999999", "ACTIVE", "management account"),
        ("111111111111", "SUSPENDED", "the account is suspended in AWS."),
        ("111111111111", "PENDING_CLOSURE", "the account is pending closure in AWS."),
    ],
)
def test_which_accounts_portcullis_grants_in(account_id, status, says):
    reason = organizations.account_not_requestable_reason(account_id, status, "999999999999")
    assert (says in reason) if says else reason == ""

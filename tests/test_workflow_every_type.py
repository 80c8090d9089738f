"""The workflow end to end for every resource type: a request, the owner's approval, the
grant applied in the stand-in AWS (moto over HTTP) by the registered drivers, then the
clock moved past the expiry and the grant removed from AWS again. Asserted on what the
stand-in holds, on the grant's statuses and on the audit log.

Also: a trust-policy grant waiting for a user's first sign-in through the identity
provider, and a sync finding a revoked group membership back in AWS and removing it again.

The resources are the seeded organization's, as a sync records them (seeded once per
process, see aws_integration/tests/sync_fixtures.py). The stand-in has no EKS access-entry
API: those calls alone go to a botocore Stubber on the client the driver asks for
(managed.eks_client); the EKS grant's managed role itself is in the stand-in.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from django.db.models import Q

from access.choices import (
    AssignmentStatus,
    GrantSource,
    GrantStatus,
    PropagationStatus,
    RequestStatus,
    ResourceType,
)
from access.models import AccessLevel, Grant, Resource, User
from access.services import identity
from access.services.grants import expire_due_grants
from access.services.requests import RequestItem, decide, submit_requests
from audit.models import AuditEvent
from aws_integration import setup_policies
from aws_integration.grants import managed
from aws_integration.models import AwsApp
from aws_integration.services import get_aws_settings, update_aws_settings
from aws_integration.tests import test_grants_identity_center as idc_tests
from aws_integration.tests import test_grants_managed as managed_tests
from aws_integration.tests.sync_fixtures import forget_org, make_app, management, member, sync
from aws_integration.tests.test_grants_iam import CLIENT_ID, ISSUER, ISSUER_HOST
from aws_integration.tests.test_grants_identity_center import (
    accounts_holding,
    ada_id,
    assigned_users,
    level,
    members,
    resource,
)
from demo import seed
from tests.fixtures import make_user

pytestmark = pytest.mark.django_db

# The driver tests' fixtures: the seeded organization (Ada put back as seeded after each
# test), Ada in the portal, the app synced for Identity Center, the EKS access-entry stub.
org = idc_tests.org
ada = idc_tests.ada
app = idc_tests.app
eks_stub = managed_tests.eks_stub

T = ResourceType
SUBJECT = "ada-at-the-idp"
TRUSTED_ROLE = "DeveloperAccess"  # a seeded role that trusts the management account
WORKFLOW_EVENTS = {
    "request.created",
    "request.approved",
    "grant.created",
    "grant.applied",
    "grant.expired",
    "grant.removed",
}


# Fixtures --------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def tasks_inline(settings: Any) -> None:
    settings.TASKS_INLINE = True


@pytest.fixture(autouse=True)
def oidc_provider(db: Any) -> None:
    """The identity provider AWS trusts for users' sessions (as test_grants_iam sets it)."""
    aws_settings = get_aws_settings()
    aws_settings.oidc_issuer_url = ISSUER
    aws_settings.oidc_client_id = CLIENT_ID
    aws_settings.save()


@pytest.fixture
def member_app(org: seed.SeedResult, ada: User) -> Iterator[AwsApp]:
    """The organization with its first member account synced (IAM roles, EC2, EKS, RDS,
    Aurora there); a sync of one account is much quicker than a full one. A test that
    failed half-way may leave a managed role or a subject behind: the next test then
    seeds the organization afresh."""
    found = make_app(org)
    account_id = org.accounts[0].account_id
    run = sync(found, account_id=account_id)
    assert run.status == "succeeded", run.message
    yield found
    iam = member(account_id, "iam")
    trust = iam.get_role(RoleName=TRUSTED_ROLE)["Role"]["AssumeRolePolicyDocument"]
    if managed_subjects(trust) or iam.list_roles(PathPrefix=setup_policies.MANAGED_PATH)["Roles"]:
        forget_org()


@pytest.fixture
def owner(db: Any) -> User:
    return make_user("olga.owner@example.com", first_name="Olga")


# The stand-in, per resource type ---------------------------------------------------------------
def managed_subjects(trust: dict[str, Any]) -> set[str]:
    """The subjects of the PortcullisManaged statement; none when there is no such statement."""
    statements = trust["Statement"]
    statements = [statements] if isinstance(statements, dict) else statements
    for statement in statements:
        if statement.get("Sid") == setup_policies.MANAGED_STATEMENT_SID:
            subjects = statement["Condition"]["StringEquals"][f"{ISSUER_HOST}:sub"]
            return {subjects} if isinstance(subjects, str) else set(subjects)
    return set()


def role_in(account_id: str, name: str) -> dict[str, Any] | None:
    try:
        return member(account_id, "iam").get_role(RoleName=name)["Role"]
    except ClientError as error:
        assert error.response["Error"]["Code"] == "NoSuchEntity"
        return None


def managed_role(row: Resource, access_level: AccessLevel) -> managed.ManagedRole:
    return managed.ROLE_OF_TYPE[row.type](row, access_level)


def held_by_managed_role(
    seeded: seed.SeedResult, row: Resource, access_level: AccessLevel
) -> set[str]:
    role = managed_role(row, access_level)
    found = role_in(row.account_id, role.name)
    if found is None:
        return set()
    assert found["Path"] == setup_policies.MANAGED_PATH
    tags = member(row.account_id, "iam").list_role_tags(RoleName=role.name)["Tags"]
    assert {t["Key"]: t["Value"] for t in tags}[managed.RESOURCE_TAG] == row.arn
    return managed_subjects(found["AssumeRolePolicyDocument"])


def held_in_trust_policy(
    seeded: seed.SeedResult, row: Resource, access_level: AccessLevel
) -> set[str]:
    found = role_in(row.account_id, row.metadata["role_name"])
    assert found is not None, f"the role {row.name} is gone from the stand-in"
    return managed_subjects(found["AssumeRolePolicyDocument"])


def held_membership(seeded: seed.SeedResult, row: Resource, access_level: AccessLevel) -> set[str]:
    return {"member"} if ada_id(seeded) in members(seeded, row.remote_id) else set()


def held_assignment(seeded: seed.SeedResult, row: Resource, access_level: AccessLevel) -> set[str]:
    arn = row.metadata.get("permission_set_arn") or access_level.remote_id
    return (
        {row.account_id} if ada_id(seeded) in assigned_users(seeded, row.account_id, arn) else set()
    )


def held_below_ou(seeded: seed.SeedResult, row: Resource, access_level: AccessLevel) -> set[str]:
    return accounts_holding(seeded, ada_id(seeded), access_level.remote_id)


Pick = Callable[[AwsApp, seed.SeedResult], tuple[Resource, AccessLevel]]
Held = Callable[[seed.SeedResult, Resource, AccessLevel], set[str]]


def pick(type_: str, level_id: str | Callable[[seed.SeedResult], str], **filters: Any) -> Pick:
    def choose(found_app: AwsApp, seeded: seed.SeedResult) -> tuple[Resource, AccessLevel]:
        resolved = {k: v(seeded) if callable(v) else v for k, v in filters.items()}
        row = resource(found_app, type_, **resolved)
        return row, level(row, level_id(seeded) if callable(level_id) else level_id)

    return choose


def admin_set(seeded: seed.SeedResult) -> str:
    return seeded.permission_sets["AdministratorAccess"]


def read_only_set(seeded: seed.SeedResult) -> str:
    return seeded.permission_sets["ReadOnlyAccess"]


def production(seeded: seed.SeedResult) -> str:
    return seeded.accounts[0].account_id  # in Workloads > Production


def sandbox(seeded: seed.SeedResult) -> str:
    return seeded.accounts[1].account_id


@dataclass(frozen=True)
class Case:
    """One resource type: where it is synced, which resource and level Ada asks for, what
    the stand-in holds for her, and what it should hold while her grant is active."""

    type: str
    app_fixture: str
    choose: Pick
    held: Held
    expected: Callable[[seed.SeedResult], set[str]]

    def __str__(self) -> str:
        return self.type


def subject_only(seeded: seed.SeedResult) -> set[str]:
    return {SUBJECT}


EKS_VIEW = managed_tests.EKS_VIEW
CASES = [
    Case(
        T.IDC_GROUP,
        "app",
        pick(T.IDC_GROUP, "member", name="Data"),
        held_membership,
        lambda seeded: {"member"},
    ),
    Case(
        T.ACCOUNT,
        "app",
        pick(T.ACCOUNT, admin_set, remote_id=sandbox),
        held_assignment,
        lambda seeded: {sandbox(seeded)},
    ),
    Case(
        T.IDC_ROLE,
        "app",
        pick(
            T.IDC_ROLE,
            "assigned",
            remote_id=lambda seeded: f"{production(seeded)}/{read_only_set(seeded)}",
        ),
        held_assignment,
        lambda seeded: {production(seeded)},
    ),
    Case(
        T.ORGANIZATIONAL_UNIT,
        "app",
        pick(T.ORGANIZATIONAL_UNIT, admin_set, name="Workloads"),
        held_below_ou,
        lambda seeded: {production(seeded)},
    ),
    Case(
        T.IAM_ROLE,
        "member_app",
        pick(T.IAM_ROLE, "assume", name=TRUSTED_ROLE),
        held_in_trust_policy,
        subject_only,
    ),
    Case(
        T.EC2_INSTANCE,
        "member_app",
        pick(T.EC2_INSTANCE, "ssm-session"),
        held_by_managed_role,
        subject_only,
    ),
    Case(
        T.EKS_CLUSTER,
        "member_app",
        pick(T.EKS_CLUSTER, EKS_VIEW),
        held_by_managed_role,
        subject_only,
    ),
    Case(
        T.RDS_MYSQL, "member_app", pick(T.RDS_MYSQL, "app_ro"), held_by_managed_role, subject_only
    ),
    Case(
        T.RDS_POSTGRES,
        "member_app",
        pick(T.RDS_POSTGRES, "app_ro"),
        held_by_managed_role,
        subject_only,
    ),
    Case(
        T.AURORA_MYSQL,
        "member_app",
        pick(T.AURORA_MYSQL, "app_ro"),
        held_by_managed_role,
        subject_only,
    ),
    Case(
        T.AURORA_POSTGRES,
        "member_app",
        pick(T.AURORA_POSTGRES, "app_ro"),
        held_by_managed_role,
        subject_only,
    ),
]


def test_the_cases_cover_every_resource_type():
    assert sorted(case.type for case in CASES) == sorted(T.values)


# The EKS access-entry calls (stubbed) ----------------------------------------------------------
def expect_eks_mapping(stub: Stubber, role: managed.ManagedRole) -> None:
    entry = {"clusterName": role.eks_cluster, "principalArn": role.arn}
    stub.add_response("create_access_entry", {"accessEntry": entry}, {**entry, "type": "STANDARD"})
    stub.add_response(
        "associate_access_policy",
        entry,
        {**entry, "policyArn": role.eks_policy_arn, "accessScope": {"type": "cluster"}},
    )


def expect_eks_unmapping(stub: Stubber, role: managed.ManagedRole) -> None:
    stub.add_response(
        "delete_access_entry", {}, {"clusterName": role.eks_cluster, "principalArn": role.arn}
    )


# The workflow ----------------------------------------------------------------------------------
def request_and_approve(
    requester: User,
    owner: User,
    row: Resource,
    access_level: AccessLevel,
    capture: Any,
    duration: timedelta = timedelta(hours=1),
) -> Grant:
    """Ada asks for the access, its owner approves, and what the commit queued runs."""
    row.owners.create(user=owner)
    with capture(execute=True):
        (request,) = submit_requests(
            requested_by=requester,
            items=[RequestItem(row.pk, access_level.pk, duration)],
            reason="Investigating the on-call incident",
        )
        assert request.status == RequestStatus.PENDING
        decide(request, reviewer=owner, approve=True, comment="Fine for the incident")
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED
    return Grant.objects.select_related("request").get(request=request)


def expire(grant: Grant, capture: Any) -> None:
    """The clock moves past the grant's expiry and the expiry sweep runs."""
    assert grant.expires_at is not None
    with (
        time_machine.travel(grant.expires_at + timedelta(minutes=1)),
        capture(execute=True),
    ):
        assert expire_due_grants() == 1


def audit_actions(grant: Grant) -> set[str]:
    return set(
        AuditEvent.objects.filter(
            Q(target_type="access.accessrequest", target_id=str(grant.request_id))
            | Q(target_type="access.grant", target_id=str(grant.pk))
        ).values_list("action", flat=True)
    )


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_requested_and_approved_grant_is_applied_in_aws_and_removed_at_expiry(
    case: Case,
    org,
    ada,
    owner,
    request,
    django_capture_on_commit_callbacks,
):
    found_app = request.getfixturevalue(case.app_fixture)
    ada.oidc_subject = SUBJECT
    ada.oidc_issuer = ISSUER
    ada.save(update_fields=["oidc_subject", "oidc_issuer"])
    row, access_level = case.choose(found_app, org)
    assert case.held(org, row, access_level) == set(), "the seed already gave Ada this access"
    stub = request.getfixturevalue("eks_stub") if case.type == T.EKS_CLUSTER else None
    if stub is not None:
        expect_eks_mapping(stub, managed_role(row, access_level))

    grant = request_and_approve(ada, owner, row, access_level, django_capture_on_commit_callbacks)

    assert (grant.status, grant.propagation_status) == (
        GrantStatus.ACTIVE,
        PropagationStatus.APPLIED,
    ), grant.last_error
    assert grant.source == GrantSource.REQUEST
    assert case.held(org, row, access_level) == case.expected(org)

    if stub is not None:
        stub.assert_no_pending_responses()
        expect_eks_unmapping(stub, managed_role(row, access_level))
    expire(grant, django_capture_on_commit_callbacks)

    grant.refresh_from_db()
    assert (grant.status, grant.propagation_status) == (
        GrantStatus.REVOKED,
        PropagationStatus.REMOVED,
    ), grant.last_error
    assert case.held(org, row, access_level) == set()
    assert audit_actions(grant) >= WORKFLOW_EVENTS


# Waiting for the user's subject ----------------------------------------------------------------
def test_a_trust_policy_grant_waits_for_the_users_subject_and_is_applied_once_it_is_learned(
    org,
    ada,
    owner,
    member_app,
    django_capture_on_commit_callbacks,
):
    assert ada.oidc_subject == ""
    row = resource(member_app, T.IAM_ROLE, name=TRUSTED_ROLE)
    access_level = level(row, "assume")

    grant = request_and_approve(ada, owner, row, access_level, django_capture_on_commit_callbacks)

    assert (grant.status, grant.propagation_status) == (
        GrantStatus.PENDING,
        PropagationStatus.WAITING_FOR_SUBJECT,
    )
    assert "grant.waiting" in audit_actions(grant)
    assert held_in_trust_policy(org, row, access_level) == set()

    # A subject from another identity provider is not the one AWS trusts: nothing recorded.
    with django_capture_on_commit_callbacks(execute=True):
        assert not identity.learn_subject(ada, SUBJECT, issuer="https://other.example.net")
    ada.refresh_from_db()
    grant.refresh_from_db()
    assert ada.oidc_subject == ""
    assert grant.status == GrantStatus.PENDING
    assert not AuditEvent.objects.filter(action="user.subject_learned").exists()
    assert held_in_trust_policy(org, row, access_level) == set()

    with django_capture_on_commit_callbacks(execute=True):
        assert identity.learn_subject(ada, SUBJECT, issuer=get_aws_settings().oidc_issuer_url)

    grant.refresh_from_db()
    assert (grant.status, grant.propagation_status) == (
        GrantStatus.ACTIVE,
        PropagationStatus.APPLIED,
    ), grant.last_error
    assert held_in_trust_policy(org, row, access_level) == {SUBJECT}
    ada.refresh_from_db()
    assert ada.oidc_subject == SUBJECT

    expire(grant, django_capture_on_commit_callbacks)
    assert held_in_trust_policy(org, row, access_level) == set()


def test_an_issuer_change_clears_the_old_subjects_and_trust_policy_grants_wait_for_the_new_one(
    org,
    ada,
    owner,
    member_app,
    django_capture_on_commit_callbacks,
):
    new_issuer = "https://idp.new.example.com"
    with django_capture_on_commit_callbacks(execute=True):
        assert identity.learn_subject(ada, SUBJECT, issuer=ISSUER)
    row = resource(member_app, T.IAM_ROLE, name=TRUSTED_ROLE)
    access_level = level(row, "assume")
    grant = request_and_approve(ada, owner, row, access_level, django_capture_on_commit_callbacks)
    assert grant.propagation_status == PropagationStatus.APPLIED, grant.last_error
    assert held_in_trust_policy(org, row, access_level) == {SUBJECT}

    with django_capture_on_commit_callbacks(execute=True):
        update_aws_settings(get_aws_settings(), {"oidc_issuer_url": new_issuer}, owner)

    ada.refresh_from_db()
    assert (ada.oidc_subject, ada.oidc_issuer) == ("", "")
    cleared = AuditEvent.objects.get(action="user.subject_cleared")
    assert cleared.target_id == str(ada.pk)
    assert cleared.details == {
        "issuer_before": ISSUER,
        "issuer_after": new_issuer,
        "subject_before": SUBJECT,
    }
    grant.refresh_from_db()
    assert (grant.status, grant.propagation_status) == (
        GrantStatus.ACTIVE,
        PropagationStatus.WAITING_FOR_SUBJECT,
    )
    # The former issuer's statement is gone from AWS already, while the grant waits.
    assert held_in_trust_policy(org, row, access_level) == set()
    trust = role_in(row.account_id, row.metadata["role_name"])["AssumeRolePolicyDocument"]
    assert SUBJECT not in json.dumps(trust)
    # The old issuer's subject no longer counts, even offered again.
    assert not identity.learn_subject(ada, SUBJECT, issuer=ISSUER)

    with django_capture_on_commit_callbacks(execute=True):
        assert identity.learn_subject(ada, "subject-at-the-new-idp", issuer=new_issuer)

    grant.refresh_from_db()
    assert grant.propagation_status == PropagationStatus.APPLIED, grant.last_error
    trust = role_in(row.account_id, row.metadata["role_name"])["AssumeRolePolicyDocument"]
    assert "subject-at-the-new-idp" in json.dumps(trust)
    assert SUBJECT not in json.dumps(trust)

    expire(grant, django_capture_on_commit_callbacks)
    trust = role_in(row.account_id, row.metadata["role_name"])["AssumeRolePolicyDocument"]
    assert "subject-at-the-new-idp" not in json.dumps(trust)


@pytest.mark.parametrize(
    ("type_", "level_id", "held"),
    [
        (T.IAM_ROLE, "assume", held_in_trust_policy),
        (T.EC2_INSTANCE, "ssm-session", held_by_managed_role),
    ],
    ids=["iam-role", "managed-role"],
)
def test_a_grant_ending_while_it_waits_for_the_new_issuers_subject_leaves_no_old_subject(
    org,
    ada,
    owner,
    member_app,
    django_capture_on_commit_callbacks,
    type_,
    level_id,
    held,
):
    with django_capture_on_commit_callbacks(execute=True):
        assert identity.learn_subject(ada, SUBJECT, issuer=ISSUER)
    filters = {"name": TRUSTED_ROLE} if type_ == T.IAM_ROLE else {}
    row = resource(member_app, type_, **filters)
    access_level = level(row, level_id)
    grant = request_and_approve(ada, owner, row, access_level, django_capture_on_commit_callbacks)
    assert grant.propagation_status == PropagationStatus.APPLIED, grant.last_error
    assert held(org, row, access_level) == {SUBJECT}

    with django_capture_on_commit_callbacks(execute=True):
        update_aws_settings(
            get_aws_settings(), {"oidc_issuer_url": "https://idp.new.example.com"}, owner
        )
    grant.refresh_from_db()
    assert grant.propagation_status == PropagationStatus.WAITING_FOR_SUBJECT
    assert held(org, row, access_level) == set()

    expire(grant, django_capture_on_commit_callbacks)
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKED
    assert held(org, row, access_level) == set()
    if type_ == T.IAM_ROLE:
        # The revoke still denies the sessions the old subject may hold.
        revoked = member(row.account_id, "iam").get_role_policy(
            RoleName=TRUSTED_ROLE, PolicyName="PortcullisRevokedSessions"
        )["PolicyDocument"]
        assert f"*:{SUBJECT}" in json.dumps(revoked)


# A revoked membership put back in AWS ----------------------------------------------------------
def test_a_sync_removes_again_a_revoked_group_membership_put_back_in_aws(
    org,
    ada,
    owner,
    app,
    django_capture_on_commit_callbacks,
):
    group = resource(app, T.IDC_GROUP, name="Data")
    access_level = level(group, "member")
    grant = request_and_approve(ada, owner, group, access_level, django_capture_on_commit_callbacks)
    assert ada_id(org) in members(org, group.remote_id)
    expire(grant, django_capture_on_commit_callbacks)
    assert ada_id(org) not in members(org, group.remote_id)

    # Someone adds her back by hand in AWS.
    management("identitystore").create_group_membership(
        IdentityStoreId=org.identity_store_id,
        GroupId=group.remote_id,
        MemberId={"UserId": ada_id(org)},
    )
    assert ada_id(org) in members(org, group.remote_id)

    with django_capture_on_commit_callbacks(execute=True):
        run = sync(app)
    assert run.status == "succeeded", run.message

    assert ada_id(org) not in members(org, group.remote_id)
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKED
    (event,) = AuditEvent.objects.filter(
        action="grant.revoke_reapplied",
        target_type="access.assignment",
        target_id=str(grant.assignment_id),
    )
    assert event.details["user"] == ada.email
    assert not Grant.objects.filter(user=ada, resource=group, source=GrantSource.OBSERVED).exists()
    assert not Grant.objects.filter(
        user=ada, resource=group, status__in=(GrantStatus.PENDING, GrantStatus.ACTIVE)
    ).exists()


move_account = idc_tests.move_account


def test_an_account_that_joins_an_ou_gets_the_ous_grant_at_the_next_sync(
    org, ada, owner, app, move_account, django_capture_on_commit_callbacks
):
    production, sandbox = org.accounts
    arn = org.permission_sets["ReadOnlyAccess"]
    workloads = resource(app, T.ORGANIZATIONAL_UNIT, name="Workloads")
    grant = request_and_approve(
        ada, owner, workloads, level(workloads, arn), django_capture_on_commit_callbacks
    )
    assert accounts_holding(org, ada_id(org), arn) == {production.account_id}

    move_account(sandbox.account_id, org.ous["Production"])
    with django_capture_on_commit_callbacks(execute=True):
        run = sync(app)
    assert run.status == "succeeded", run.message

    assert accounts_holding(org, ada_id(org), arn) == {production.account_id, sandbox.account_id}
    grant.assignment.refresh_from_db()
    assert grant.assignment.status == AssignmentStatus.APPLIED

    expire(grant, django_capture_on_commit_callbacks)
    assert accounts_holding(org, ada_id(org), arn) == set()

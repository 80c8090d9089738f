"""Identity Center grants against the stand-in AWS (moto over HTTP): group memberships and
account assignments (account, Identity Center role, every account below an OU), what AWS
holds after apply and remove, twice each, and the errors an admin can act on."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from botocore.stub import Stubber

from access.choices import AssignmentStatus, GrantSource, GrantStatus, ResourceType
from access.drivers import DriverError, Outcome
from access.models import AccessLevel, Assignment, Grant, Resource, User
from aws_integration.grants import base
from aws_integration.grants import identity_center as idc
from aws_integration.models import AwsApp, IdentityCenterUser
from aws_integration.tests.sync_fixtures import (
    ADA_EMAIL,
    make_app,
    management,
    seeded_org,
    sync,
)
from demo import seed
from tests.fixtures import make_user

pytestmark = pytest.mark.django_db

T = ResourceType


@pytest.fixture
def org(moto_server, settings) -> Iterator[seed.SeedResult]:
    settings.AWS_ENDPOINT_URL = moto_server
    settings.AWS_MAX_ATTEMPTS = 2
    result = seeded_org()
    # Sessions assumed before a reset of the stand-in name roles it no longer holds.
    base.forget_sessions()
    yield result
    restore_ada(result)


def restore_ada(org: seed.SeedResult) -> None:
    """Puts Ada back as seeded (no account assignment, in Engineering only), so a failing
    test leaves the shared organization as the next test expects it."""
    sso, store = management("sso-admin"), management("identitystore")
    user_id = org.users[ADA_EMAIL]
    for held in sso.list_account_assignments_for_principal(
        InstanceArn=org.instance_arn, PrincipalId=user_id, PrincipalType="USER"
    )["AccountAssignments"]:
        sso.delete_account_assignment(
            InstanceArn=org.instance_arn,
            TargetId=held["AccountId"],
            TargetType="AWS_ACCOUNT",
            PermissionSetArn=held["PermissionSetArn"],
            PrincipalType="USER",
            PrincipalId=user_id,
        )
    seeded = {group for group, member in org.memberships if member == user_id}
    for membership in store.list_group_memberships_for_member(
        IdentityStoreId=org.identity_store_id, MemberId={"UserId": user_id}
    )["GroupMemberships"]:
        if membership["GroupId"] not in seeded:
            store.delete_group_membership(
                IdentityStoreId=org.identity_store_id, MembershipId=membership["MembershipId"]
            )
        seeded.discard(membership["GroupId"])
    for group_id in seeded:
        store.create_group_membership(
            IdentityStoreId=org.identity_store_id, GroupId=group_id, MemberId={"UserId": user_id}
        )


@pytest.fixture
def ada(org) -> User:
    return make_user(ADA_EMAIL.lower(), email_verified=True, first_name="Ada")


@pytest.fixture
def app(org, ada) -> AwsApp:
    # Identity Center and the organization tree only: the member accounts' resources play
    # no part in these grants.
    app = make_app(org, organization_management=False)
    run = sync(app)
    assert run.status == "succeeded", run.message
    return app


def resource(app: AwsApp, type_: str, **filters: Any) -> Resource:
    return Resource.objects.get(app=app, type=type_, deleted_at__isnull=True, **filters)


def level(row: Resource, remote_id: str) -> AccessLevel:
    return row.access_levels.get(remote_id=remote_id)


def assign(user: User, row: Resource, access_level: AccessLevel) -> Assignment:
    """An assignment with the active grant that needs it (another assignment's removal
    keeps what a grant still needs)."""
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


def apply(assignment: Assignment) -> Outcome:
    """As the grant machinery does: apply, then keep the driver's state."""
    outcome = idc.DRIVERS[assignment.resource.type].apply(assignment)
    assignment.driver_state = outcome.state
    assignment.status = AssignmentStatus.APPLIED
    assignment.save(update_fields=["driver_state", "status"])
    return outcome


def remove(assignment: Assignment) -> Outcome:
    outcome = idc.DRIVERS[assignment.resource.type].remove(assignment)
    assignment.driver_state = outcome.state
    assignment.status = AssignmentStatus.ABSENT
    assignment.save(update_fields=["driver_state", "status"])
    return outcome


def ada_id(org: seed.SeedResult) -> str:
    return org.users[ADA_EMAIL]


def members(org: seed.SeedResult, group_id: str) -> list[str]:
    memberships = management("identitystore").list_group_memberships(
        IdentityStoreId=org.identity_store_id, GroupId=group_id
    )["GroupMemberships"]
    return [m["MemberId"]["UserId"] for m in memberships]


def assigned_users(org: seed.SeedResult, account_id: str, permission_set_arn: str) -> list[str]:
    """The users AWS lists as assigned the permission set in the account (duplicates kept)."""
    found = management("sso-admin").list_account_assignments(
        InstanceArn=org.instance_arn, AccountId=account_id, PermissionSetArn=permission_set_arn
    )["AccountAssignments"]
    return [a["PrincipalId"] for a in found if a["PrincipalType"] == "USER"]


def accounts_holding(org: seed.SeedResult, user_id: str, permission_set_arn: str) -> set[str]:
    every = [org.management_account_id, *(a.account_id for a in org.accounts)]
    return {a for a in every if user_id in assigned_users(org, a, permission_set_arn)}


@pytest.fixture
def move_account(org) -> Iterator[Any]:
    """Moves seeded accounts between parents, and puts them back after the test."""
    moved: list[tuple[str, str, str]] = []
    orgs = management("organizations")

    def move(account_id: str, destination: str) -> None:
        source = orgs.list_parents(ChildId=account_id)["Parents"][0]["Id"]
        orgs.move_account(
            AccountId=account_id, SourceParentId=source, DestinationParentId=destination
        )
        moved.append((account_id, source, destination))

    yield move
    for account_id, source, destination in reversed(moved):
        orgs.move_account(
            AccountId=account_id, SourceParentId=destination, DestinationParentId=source
        )


# Identity Center groups ------------------------------------------------------------------------
def test_a_group_grant_adds_the_user_to_the_group_once_and_removes_them(org, app, ada):
    group = resource(app, T.IDC_GROUP, name="Data")
    assignment = assign(ada, group, level(group, "member"))
    assert ada_id(org) not in members(org, group.remote_id)

    outcome = apply(assignment)
    assert members(org, group.remote_id).count(ada_id(org)) == 1
    assert outcome.state["membership_id"]
    apply(assignment)
    assert members(org, group.remote_id).count(ada_id(org)) == 1

    remove(assignment)
    assert ada_id(org) not in members(org, group.remote_id)
    outcome = remove(assignment)
    assert "was not a member" in outcome.note
    assert ada_id(org) not in members(org, group.remote_id)


def test_removing_a_group_grant_leaves_the_other_members(org, app, ada):
    group = resource(app, T.IDC_GROUP, name="Engineering")
    others_before = set(members(org, group.remote_id)) - {ada_id(org)}
    assert others_before
    assignment = assign(ada, group, level(group, "member"))
    apply(assignment)
    remove(assignment)
    # Ada was a member before Portcullis granted anything: the seed put her there.
    assert set(members(org, group.remote_id)) == others_before


# Accounts and Identity Center roles ------------------------------------------------------------
def test_an_account_grant_assigns_the_permission_set_once_and_removes_it(org, app, ada):
    account = org.accounts[1]
    arn = org.permission_sets["AdministratorAccess"]
    row = resource(app, T.ACCOUNT, remote_id=account.account_id)
    assignment = assign(ada, row, level(row, arn))

    apply(assignment)
    assert assigned_users(org, account.account_id, arn) == [ada_id(org)]
    outcome = apply(assignment)
    assert "already held" in outcome.note
    assert assigned_users(org, account.account_id, arn) == [ada_id(org)]

    remove(assignment)
    assert assigned_users(org, account.account_id, arn) == []
    outcome = remove(assignment)
    assert "did not hold" in outcome.note
    assert accounts_holding(org, ada_id(org), arn) == set()


def test_an_identity_center_role_grant_assigns_its_permission_set_in_its_account(org, app, ada):
    account = org.accounts[0]
    arn = org.permission_sets["ReadOnlyAccess"]
    role = resource(app, T.IDC_ROLE, remote_id=f"{account.account_id}/{arn}")
    assignment = assign(ada, role, level(role, "assigned"))
    seeded_users = assigned_users(org, account.account_id, arn)  # one seeded direct user

    apply(assignment)
    apply(assignment)
    assert sorted(assigned_users(org, account.account_id, arn)) == sorted(
        [*seeded_users, ada_id(org)]
    )

    remove(assignment)
    remove(assignment)
    assert assigned_users(org, account.account_id, arn) == seeded_users
    assert accounts_holding(org, ada_id(org), arn) == set()


# Only permission sets tagged requestable ---------------------------------------------------------
@pytest.fixture
def untagged(org) -> Iterator[str]:
    """AdministratorAccess with its requestable tag taken off (put back afterwards)."""
    sso = management("sso-admin")
    arn = org.permission_sets["AdministratorAccess"]
    sso.untag_resource(
        InstanceArn=org.instance_arn, ResourceArn=arn, TagKeys=[seed.requestable_tag()]
    )
    yield arn
    sso.tag_resource(
        InstanceArn=org.instance_arn,
        ResourceArn=arn,
        Tags=[{"Key": seed.requestable_tag(), "Value": "true"}],
    )


def test_a_permission_set_not_tagged_requestable_is_not_assigned(org, app, ada, untagged):
    account = org.accounts[1]
    row = resource(app, T.ACCOUNT, remote_id=account.account_id)
    workloads = resource(app, T.ORGANIZATIONAL_UNIT, name="Workloads")
    for target in (row, workloads):
        assignment = assign(ada, target, level(target, untagged))
        with pytest.raises(DriverError) as error:
            apply(assignment)
        assert not error.value.retryable
        assert "not tagged portcullis:requestable=true" in error.value.message
        assert "Tag the permission set in AWS" in error.value.message
    assert accounts_holding(org, ada_id(org), untagged) == set()


def test_an_identity_center_role_of_an_untagged_permission_set_is_not_assigned(
    org, app, ada, untagged
):
    role = Resource.objects.filter(
        app=app, type=T.IDC_ROLE, metadata__permission_set_arn=untagged, deleted_at__isnull=True
    ).first()
    assert role is not None
    with pytest.raises(DriverError, match="not tagged portcullis:requestable=true"):
        apply(assign(ada, role, level(role, "assigned")))
    assert accounts_holding(org, ada_id(org), untagged) == set()


def test_an_assignment_made_before_the_tag_was_taken_off_can_still_be_removed(org, app, ada):
    account = org.accounts[1]
    arn = org.permission_sets["AdministratorAccess"]
    row = resource(app, T.ACCOUNT, remote_id=account.account_id)
    assignment = assign(ada, row, level(row, arn))
    apply(assignment)
    assert assigned_users(org, account.account_id, arn) == [ada_id(org)]
    sso = management("sso-admin")
    sso.untag_resource(
        InstanceArn=org.instance_arn, ResourceArn=arn, TagKeys=[seed.requestable_tag()]
    )
    try:
        remove(assignment)
        assert assigned_users(org, account.account_id, arn) == []
    finally:
        sso.tag_resource(
            InstanceArn=org.instance_arn,
            ResourceArn=arn,
            Tags=[{"Key": seed.requestable_tag(), "Value": "true"}],
        )


# Organizational units --------------------------------------------------------------------------
def test_an_ou_grant_assigns_every_account_below_it_including_nested_ous(org, app, ada):
    production, sandbox = org.accounts  # Workloads > Production, and Sandbox at the root
    arn = org.permission_sets["AdministratorAccess"]
    workloads = resource(app, T.ORGANIZATIONAL_UNIT, name="Workloads")
    assignment = assign(ada, workloads, level(workloads, arn))

    outcome = apply(assignment)
    assert outcome.state["accounts"] == [production.account_id]
    assert accounts_holding(org, ada_id(org), arn) == {production.account_id}
    outcome = apply(assignment)
    assert "0 assigned" in outcome.note
    assert assigned_users(org, production.account_id, arn) == [ada_id(org)]

    remove(assignment)
    assert accounts_holding(org, ada_id(org), arn) == set()
    remove(assignment)
    assert accounts_holding(org, ada_id(org), arn) == set()


def test_an_account_that_joins_the_ou_is_assigned_at_the_next_apply_and_one_that_leaves_is_not(
    org, app, ada, move_account
):
    production, sandbox = org.accounts
    arn = org.permission_sets["ReadOnlyAccess"]
    workloads = resource(app, T.ORGANIZATIONAL_UNIT, name="Workloads")
    assignment = assign(ada, workloads, level(workloads, arn))
    apply(assignment)
    assert accounts_holding(org, ada_id(org), arn) == {production.account_id}

    move_account(sandbox.account_id, org.ous["Production"])
    outcome = apply(assignment)
    assert outcome.state["accounts"] == sorted([production.account_id, sandbox.account_id])
    assert accounts_holding(org, ada_id(org), arn) == {production.account_id, sandbox.account_id}

    move_account(production.account_id, org.root_id)
    outcome = apply(assignment)
    assert outcome.state["accounts"] == [sandbox.account_id]
    assert accounts_holding(org, ada_id(org), arn) == {sandbox.account_id}

    remove(assignment)
    assert accounts_holding(org, ada_id(org), arn) == set()


def test_removing_an_ou_grant_clears_accounts_it_assigned_that_have_left_since(
    org, app, ada, move_account
):
    production, _ = org.accounts
    arn = org.permission_sets["AdministratorAccess"]
    workloads = resource(app, T.ORGANIZATIONAL_UNIT, name="Workloads")
    assignment = assign(ada, workloads, level(workloads, arn))
    apply(assignment)
    move_account(production.account_id, org.root_id)

    outcome = remove(assignment)
    assert "1 account" in outcome.note
    assert accounts_holding(org, ada_id(org), arn) == set()


def test_removing_an_ou_grant_keeps_an_assignment_another_grant_of_the_user_holds(org, app, ada):
    production, _ = org.accounts
    arn = org.permission_sets["AdministratorAccess"]
    account_row = resource(app, T.ACCOUNT, remote_id=production.account_id)
    account_grant = assign(ada, account_row, level(account_row, arn))
    workloads = resource(app, T.ORGANIZATIONAL_UNIT, name="Workloads")
    ou_grant = assign(ada, workloads, level(workloads, arn))
    apply(account_grant)
    apply(ou_grant)
    assert assigned_users(org, production.account_id, arn) == [ada_id(org)]

    outcome = remove(ou_grant)
    assert "kept in 1" in outcome.note
    assert assigned_users(org, production.account_id, arn) == [ada_id(org)]

    remove(account_grant)
    assert assigned_users(org, production.account_id, arn) == []


# The user in the identity store ----------------------------------------------------------------
def test_a_user_the_sync_has_not_linked_is_found_in_the_identity_store_by_email(org, app, ada):
    IdentityCenterUser.objects.filter(portal_user=ada).update(portal_user=None)
    group = resource(app, T.IDC_GROUP, name="Data")
    assignment = assign(ada, group, level(group, "member"))

    # The store spells the address with capitals, the portal in lower case.
    outcome = apply(assignment)
    assert outcome.state["user_id"] == ada_id(org)
    assert ada_id(org) in members(org, group.remote_id)

    remove(assignment)
    assert ada_id(org) not in members(org, group.remote_id)


def test_a_user_missing_from_the_identity_store_gets_an_error_saying_to_create_them(org, app):
    nobody = make_user("nobody@example.com")
    group = resource(app, T.IDC_GROUP, name="Data")
    before = members(org, group.remote_id)

    with pytest.raises(DriverError) as error:
        apply(assign(nobody, group, level(group, "member")))

    assert error.value.retryable is False
    assert error.value.message.startswith(
        f"nobody@example.com has no user in the Identity Center identity store {org.identity_store_id}"
    )
    assert "(create one)" in error.value.message
    assert members(org, group.remote_id) == before


def test_an_unverified_address_finds_no_identity_center_user(org, app, ada):
    # The address is in the identity store, but nobody verified it as this account's.
    IdentityCenterUser.objects.filter(portal_user=ada).update(portal_user=None)
    EmailAddress.objects.filter(user=ada).update(verified=False)
    group = resource(app, T.IDC_GROUP, name="Data")
    before = members(org, group.remote_id)

    with pytest.raises(DriverError) as error:
        apply(assign(ada, group, level(group, "member")))

    assert "not verified yet" in error.value.message
    assert members(org, group.remote_id) == before


def test_the_look_up_by_email_never_finds_an_identity_center_user_linked_to_someone_else(
    org, app, ada
):
    # Ada's Identity Center user is linked to her; another account now holds her address.
    EmailAddress.objects.filter(user=ada).delete()
    User.objects.filter(pk=ada.pk).update(email="ada@elsewhere.example")
    claimant = User.objects.create_user(username="claimant", email=ADA_EMAIL.lower())
    EmailAddress.objects.create(user=claimant, email=claimant.email, verified=True, primary=True)
    group = resource(app, T.IDC_GROUP, name="Data")
    before = members(org, group.remote_id)

    with pytest.raises(DriverError):
        apply(assign(claimant, group, level(group, "member")))

    assert members(org, group.remote_id) == before


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"identity_center_management": False}, "IAM Identity Center management"),
        ({"identity_center_instance_arn": ""}, "Identity Center instance ARN"),
        ({"identity_store_id": ""}, "identity store ID"),
        ({"identity_center_region": ""}, "Identity Center region"),
    ],
)
def test_missing_identity_center_settings_fail_naming_the_setting(org, app, ada, changes, named):
    AwsApp.objects.filter(pk=app.pk).update(**changes)
    arn = org.permission_sets["AdministratorAccess"]
    workloads = resource(app, T.ORGANIZATIONAL_UNIT, name="Workloads")

    with pytest.raises(DriverError) as error:
        apply(assign(ada, workloads, level(workloads, arn)))

    assert error.value.retryable is False
    assert named in error.value.message
    assert accounts_holding(org, ada_id(org), arn) == set()


# Waiting for AWS to finish -----------------------------------------------------------------------
# moto finishes every assignment request at once (SUCCEEDED): the statuses AWS reports while
# a request runs, and its failures, are stubbed (botocore Stubber) on a client of the stand-in.
REQUEST_ID = "11111111-2222-3333-4444-555555555555"
INSTANCE = "arn:aws:sso:::instance/ssoins-1234567890abcdef"


def creation_status(status: str, **extra: str) -> dict[str, Any]:
    return {"AccountAssignmentCreationStatus": {"Status": status, "RequestId": REQUEST_ID, **extra}}


def stubbed_waits(responses: list[dict[str, Any]]) -> tuple[list[float], Any]:
    sso = management("sso-admin")
    stubber = Stubber(sso)
    for response in responses:
        stubber.add_response(
            "describe_account_assignment_creation_status",
            response,
            {"InstanceArn": INSTANCE, "AccountAssignmentCreationRequestId": REQUEST_ID},
        )
    stubber.activate()
    waits: list[float] = []

    def describe(request_id: str) -> dict[str, Any]:
        return sso.describe_account_assignment_creation_status(
            InstanceArn=INSTANCE, AccountAssignmentCreationRequestId=request_id
        )["AccountAssignmentCreationStatus"]

    return waits, (describe, stubber)


def test_a_request_in_progress_is_polled_until_it_fails_with_the_reason_aws_gives(
    moto_server, settings
):
    settings.AWS_ENDPOINT_URL = moto_server
    reason = "Received a 404 status error: Not supported policy arn:aws:iam::aws:policy/Nope."
    waits, (describe, stubber) = stubbed_waits(
        [creation_status("IN_PROGRESS"), creation_status("FAILED", FailureReason=reason)]
    )

    with pytest.raises(DriverError) as error:
        idc.await_request(
            creation_status("IN_PROGRESS")["AccountAssignmentCreationStatus"],
            describe,
            "Assigning it",
            sleep=waits.append,
        )

    assert (
        error.value.message
        == f"Assigning it: AWS reported the request {REQUEST_ID} FAILED: {reason}"
    )
    assert error.value.retryable is True
    assert waits == [0.2, 0.4]
    stubber.assert_no_pending_responses()


def test_a_request_still_in_progress_after_two_minutes_is_left_to_the_next_attempt(
    moto_server, settings
):
    settings.AWS_ENDPOINT_URL = moto_server
    waits, (describe, stubber) = stubbed_waits([creation_status("IN_PROGRESS")] * 40)

    with pytest.raises(DriverError) as error:
        idc.await_request(
            creation_status("IN_PROGRESS")["AccountAssignmentCreationStatus"],
            describe,
            "Assigning it",
            sleep=waits.append,
        )

    assert "still reports request" in error.value.message
    assert error.value.retryable is True
    assert waits[:4] == [0.2, 0.4, 0.8, 1.6]
    assert max(waits) == idc.POLL_MAX_WAIT
    assert 120 <= sum(waits) < 130


def test_a_request_that_succeeds_after_a_while_is_success(moto_server, settings):
    settings.AWS_ENDPOINT_URL = moto_server
    waits, (describe, stubber) = stubbed_waits(
        [
            creation_status("IN_PROGRESS"),
            creation_status("IN_PROGRESS"),
            creation_status("SUCCEEDED"),
        ]
    )

    idc.await_request(
        creation_status("IN_PROGRESS")["AccountAssignmentCreationStatus"],
        describe,
        "Assigning it",
        sleep=waits.append,
    )

    assert waits == [0.2, 0.4, 0.8]
    stubber.assert_no_pending_responses()

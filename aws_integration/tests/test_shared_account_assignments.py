"""One AWS account assignment per (user, account, permission set), whichever grant asked for
it: an account grant, an Identity Center role grant and an OU grant of the same user,
account and permission set share it. Against the stand-in AWS (moto over HTTP): the full
sync and the event path attribute it to the grant that holds it (no phantom observed
grant, no removal "reasserted" that never happens), the revocation re-check leaves it to
that grant, and a removal ends the observed grant that stood for it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from access.choices import AssignmentStatus, GrantSource, GrantStatus, ResourceType
from access.models import AccessLevel, App, Assignment, Grant, Resource, User
from access.services.grants import create_grant, reassert_revocations, revoke_grant
from audit.models import AuditEvent
from aws_integration.events.handlers import HANDLED, handle_event
from aws_integration.events.parser import parse_message
from aws_integration.grants import identity_center as idc
from aws_integration.models import AwsApp
from aws_integration.tests import test_grants_identity_center as idc_tests
from aws_integration.tests.sync_fixtures import management, sync
from demo import seed
from demo.standin_cloudtrail import envelope
from tests.fixtures import make_user, shared_samples

pytestmark = pytest.mark.django_db

# The driver tests' fixtures: the seeded organization (Ada put back as seeded after each
# test), Ada in the portal, the app synced for Identity Center.
org = idc_tests.org
ada = idc_tests.ada
app = idc_tests.app

T = ResourceType
ACCOUNT, ROLE, OU = T.ACCOUNT.value, T.IDC_ROLE.value, T.ORGANIZATIONAL_UNIT.value
PERMISSION_SET = "ReadOnlyAccess"
CREATE_SAMPLE = shared_samples("cloudtrail") / "sso.amazonaws.com-CreateAccountAssignment.json"


@pytest.fixture(autouse=True)
def tasks_inline(settings: Any) -> None:
    settings.TASKS_INLINE = True


# The three ways to ReadOnlyAccess in the production account (Workloads > Production) -------
def arn_of(org: seed.SeedResult) -> str:
    return org.permission_sets[PERMISSION_SET]


def account_of(org: seed.SeedResult) -> str:
    return org.accounts[0].account_id


def way(app: AwsApp, org: seed.SeedResult, type_: str) -> tuple[Resource, AccessLevel]:
    """The resource and level of that type that stand for the one AWS assignment."""
    account_id, arn = account_of(org), arn_of(org)
    if type_ == ROLE:
        row = idc_tests.resource(app, ROLE, remote_id=f"{account_id}/{arn}")
        return row, idc_tests.level(row, "assigned")
    if type_ == OU:
        row = idc_tests.resource(app, OU, name="Workloads")
    else:
        row = idc_tests.resource(app, ACCOUNT, remote_id=account_id)
    return row, idc_tests.level(row, arn)


def holds(org: seed.SeedResult) -> bool:
    """Whether AWS holds the assignment for Ada."""
    return idc_tests.ada_id(org) in idc_tests.assigned_users(org, account_of(org), arn_of(org))


def grant(app: AwsApp, org: seed.SeedResult, user: User, type_: str, capture: Any) -> Grant:
    """An admin's grant of that type to the user, applied in AWS as the commit runs it."""
    row, level = way(app, org, type_)
    with capture(execute=True):
        made = create_grant(
            user=user,
            resource=row,
            access_level=level,
            expires_at=None,
            source=GrantSource.ADMIN,
            actor=None,
            reason="on call",
        )
    made.refresh_from_db()
    assert made.status == GrantStatus.ACTIVE, made.last_error
    return made


def give_up(held: Grant, capture: Any) -> None:
    with capture(execute=True):
        assert revoke_grant(held, actor=held.user, reason="")
    held.refresh_from_db()
    assert held.status == GrantStatus.REVOKED, held.last_error


def observed_on_account(user: User) -> list[Grant]:
    return list(
        Grant.objects.filter(
            user=user,
            resource__type=ACCOUNT,
            source=GrantSource.OBSERVED,
            status=GrantStatus.ACTIVE,
        )
    )


def full_sync(app: AwsApp, org: seed.SeedResult) -> None:
    run = sync(app)
    assert run.status == "succeeded", run.message


def create_event(app: AwsApp, org: seed.SeedResult) -> None:
    """The CloudTrail event of the CreateAccountAssignment the grant's apply called."""
    request = {
        "instanceArn": org.instance_arn,
        "targetId": account_of(org),
        "targetType": "AWS_ACCOUNT",
        "permissionSetArn": arn_of(org),
        "principalType": "USER",
        "principalId": idc_tests.ada_id(org),
    }
    message = envelope(
        json.loads(CREATE_SAMPLE.read_text()),
        account_id=org.management_account_id,
        region=org.region,
        request=request,
        response={
            "accountAssignmentCreationStatus": {"status": "SUCCEEDED", "requestId": "r"}
            | {k: v for k, v in request.items() if k != "instanceArn"}
        },
    )
    assert handle_event(parse_message(json.dumps(message)), app).outcome == HANDLED


PATHS: dict[str, Callable[[AwsApp, seed.SeedResult], None]] = {
    "full sync": full_sync,
    "event": create_event,
}


# Sync: the assignment is the grant's that holds it -------------------------------------------
@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize(
    ("ended", "holder"),
    [
        (None, ROLE),  # a role grant's assignment is no observed account grant
        (None, OU),
        (ACCOUNT, ROLE),  # nor the account grant's that ended, back in AWS
        (ACCOUNT, OU),
        (OU, ROLE),
        (ROLE, OU),
    ],
)
def test_sync_attributes_a_shared_assignment_to_the_current_grant_that_holds_it(
    org, app, ada, django_capture_on_commit_callbacks, path, ended, holder
):
    capture = django_capture_on_commit_callbacks
    earlier = None
    if ended is not None:
        earlier = grant(app, org, ada, ended, capture)
        give_up(earlier, capture)
        assert not holds(org)
    current = grant(app, org, ada, holder, capture)
    assert holds(org)

    with capture(execute=True):
        PATHS[path](app, org)

    assert not Grant.objects.filter(
        user=ada, resource__type=ACCOUNT, source=GrantSource.OBSERVED
    ).exists()
    assert not AuditEvent.objects.filter(action="grant.revoke_reapplied").exists()
    if earlier is not None:
        assert earlier.assignment is not None
        earlier.assignment.refresh_from_db()
        assert earlier.assignment.status == AssignmentStatus.ABSENT
    current.refresh_from_db()
    assert current.status == GrantStatus.ACTIVE
    assert holds(org)


# The revocation re-check ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ended", "holder"), [(ACCOUNT, ROLE), (ACCOUNT, OU), (ROLE, ACCOUNT), (ROLE, OU)]
)
def test_the_revocation_recheck_leaves_an_assignment_another_current_grant_holds(
    org, app, ada, django_capture_on_commit_callbacks, ended, holder
):
    capture = django_capture_on_commit_callbacks
    earlier = grant(app, org, ada, ended, capture)
    give_up(earlier, capture)
    grant(app, org, ada, holder, capture)
    assert earlier.assignment is not None

    with capture(execute=True):
        handled = reassert_revocations({(ada.pk, earlier.resource_id, earlier.access_level_id)})

    assert handled == set()
    assert not AuditEvent.objects.filter(action="grant.revoke_reapplied").exists()
    earlier.assignment.refresh_from_db()
    assert earlier.assignment.status == AssignmentStatus.ABSENT
    assert holds(org)


# Removing the assignment ends every grant that stood for it -------------------------------------
@pytest.mark.parametrize(
    ("first", "last"),
    [(ACCOUNT, ROLE), (ROLE, ACCOUNT), (ACCOUNT, OU), (OU, ACCOUNT), (ROLE, OU), (OU, ROLE)],
)
def test_the_observed_grant_ends_when_the_last_grant_holding_the_assignment_removes_it(
    org, app, ada, django_capture_on_commit_callbacks, first, last
):
    capture = django_capture_on_commit_callbacks
    # Someone assigns it by hand: sync records it as observed on the account.
    management("sso-admin").create_account_assignment(
        InstanceArn=org.instance_arn,
        TargetId=account_of(org),
        TargetType="AWS_ACCOUNT",
        PermissionSetArn=arn_of(org),
        PrincipalType="USER",
        PrincipalId=idc_tests.ada_id(org),
    )
    full_sync(app, org)
    (observed,) = observed_on_account(ada)
    # Then two grants of Portcullis take it over.
    earlier = grant(app, org, ada, first, capture)
    later = grant(app, org, ada, last, capture)

    # A current grant still needs it: AWS keeps it, and the observed grant with it.
    give_up(earlier, capture)
    assert holds(org)
    observed.refresh_from_db()
    assert observed.status == GrantStatus.ACTIVE

    give_up(later, capture)
    assert not holds(org)
    observed.refresh_from_db()
    assert observed.status == GrantStatus.REVOKED
    assert observed.revoke_reason == "removed from AWS with an assignment it shared"
    (event,) = AuditEvent.objects.filter(
        action="grant.revoked", target_type="access.grant", target_id=str(observed.pk)
    )
    assert event.details["assignment_id"] == later.assignment_id
    assert event.details["source"] == GrantSource.OBSERVED


# What a user's grants stand for, in bulk -------------------------------------------------------
def test_what_users_grants_stand_for_is_read_in_one_query_whatever_their_number(
    django_assert_num_queries,
):
    org_app = App.objects.create(name="Example organization")
    arn = "arn:aws:sso:::permissionSet/ssoins-1/ps-0123456789abcdef"

    def made(type_: str, remote_id: str, account_id: str = "", **extra: Any) -> Resource:
        return Resource.objects.create(
            app=org_app,
            type=type_,
            remote_id=remote_id,
            account_id=account_id,
            name=remote_id,
            **extra,
        )

    def level_of(row: Resource, remote_id: str) -> AccessLevel:
        return AccessLevel.objects.create(resource=row, remote_id=remote_id, name=remote_id)

    account = made(ACCOUNT, "111111111111", "111111111111")
    role = made(ROLE, f"111111111111/{arn}", "111111111111", metadata={"permission_set_arn": arn})
    ou = made(OU, "ou-ab12-cd34ef56")
    other = made(ACCOUNT, "222222222222", "222222222222")
    ways = [
        (account, level_of(account, arn), {}, GrantStatus.ACTIVE),
        (role, level_of(role, "assigned"), {}, GrantStatus.PENDING),
        (
            ou,
            level_of(ou, arn),
            {"accounts": [other.account_id]},
            GrantStatus.REVOKING,
        ),
        # Ended: stands for nothing any more.
        (other, level_of(other, "ended"), {}, GrantStatus.REVOKED),
    ]
    expected: dict[int, set[idc.Target]] = {}
    for n in range(5):
        user = make_user(f"person{n}@example.com")
        for row, level, state, status in ways:
            held = Assignment.objects.create(
                user=user, resource=row, access_level=level, driver_state=state
            )
            Grant.objects.create(
                user=user,
                resource=row,
                access_level=level,
                source=GrantSource.ADMIN,
                status=status,
                assignment=held,
            )
        expected[user.pk] = {idc.Target(account.account_id, arn), idc.Target(other.account_id, arn)}

    with django_assert_num_queries(1):
        found = idc.covered_targets(org_app.pk, expected, grant_statuses=idc.CURRENT_GRANT_STATUSES)

    assert found == expected

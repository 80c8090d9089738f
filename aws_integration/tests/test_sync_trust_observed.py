"""Access found in IAM roles' trust policies: a portal user's OIDC subject in the
Portcullis-managed statement of a role listed completely is an observed grant; gone from
the statement, the grant is revoked; put back after Portcullis's own grant ended, it is
removed again. Against the stand-in AWS (moto over HTTP), asserted on what it holds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from access.choices import GrantSource, GrantStatus, PropagationStatus, ResourceType
from access.models import Grant, Resource, User
from access.permissions import ADMIN_ROLE
from access.services.grants import create_grant, revoke_grant
from audit.models import AuditEvent
from aws_integration import setup_policies, trust_policy_editor
from aws_integration.choices import SyncStatus
from aws_integration.grants import base
from aws_integration.models import AwsApp
from aws_integration.services import get_aws_settings
from aws_integration.sync.object_refs import ObjectRef
from aws_integration.sync.refresh import refresh
from aws_integration.sync.upsert import managed_subjects
from aws_integration.tests.sync_fixtures import (
    capture,
    inventory_writes,
    make_app,
    member,
    seeded_org,
    sync,
)
from aws_integration.tests.test_grants_iam import CLIENT_ID, ISSUER, ISSUER_HOST
from demo import seed
from tests.fixtures import make_user

pytestmark = pytest.mark.django_db

ROLE = "TrustObservedRole"
ADA_SUBJECT = "ada-at-the-idp"
STRANGER_SUBJECT = "nobody-in-the-portal"
OWNER_STATEMENT = {
    "Effect": "Allow",
    "Principal": {"Service": "ec2.amazonaws.com"},
    "Action": "sts:AssumeRole",
}


# Fixtures --------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def oidc_provider(db: Any) -> None:
    """The identity provider AWS trusts for users' sessions (as test_grants_iam sets it)."""
    aws_settings = get_aws_settings()
    aws_settings.oidc_issuer_url = ISSUER
    aws_settings.oidc_client_id = CLIENT_ID
    aws_settings.save()
    base.forget_sessions()


@pytest.fixture
def app(org: seed.SeedResult) -> AwsApp:
    return make_app(org)


@pytest.fixture
def account_id(org: seed.SeedResult) -> str:
    return org.accounts[0].account_id


@pytest.fixture
def ada(db: Any) -> User:
    return make_user(
        "ada@example.com", first_name="Ada", oidc_subject=ADA_SUBJECT, oidc_issuer=ISSUER
    )


# Portcullis grants (and so removes subjects from) only roles tagged requestable.
REQUESTABLE = [{"Key": "portcullis:requestable", "Value": "true"}]


@pytest.fixture
def role(account_id: str) -> Iterator[str]:
    """A customer's role trusting EC2 only, tagged requestable; deleted again afterwards."""
    iam = member(account_id, "iam")
    arn = iam.create_role(
        RoleName=ROLE,
        AssumeRolePolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [OWNER_STATEMENT]}
        ),
        Tags=REQUESTABLE,
    )["Role"]["Arn"]
    yield arn
    iam = member(account_id, "iam")  # the test may have pointed the endpoint elsewhere
    for name in iam.list_role_policies(RoleName=ROLE)["PolicyNames"]:
        iam.delete_role_policy(RoleName=ROLE, PolicyName=name)
    iam.delete_role(RoleName=ROLE)


# Changing the stand-in ---------------------------------------------------------------------------
def trust_of(account_id: str) -> dict[str, Any]:
    document = member(account_id, "iam").get_role(RoleName=ROLE)["Role"]
    return trust_policy_editor.parse_policy(document["AssumeRolePolicyDocument"])


def held(account_id: str) -> set[str]:
    """The subjects the role's managed statement admits now, as AWS holds it."""
    return managed_subjects(trust_of(account_id), issuer_host=ISSUER_HOST, client_id=CLIENT_ID)


def add_subjects(account_id: str, *subjects: str) -> None:
    """Someone puts subjects in the managed statement by hand, in AWS."""
    policy = trust_of(account_id)
    for subject in subjects:
        policy = trust_policy_editor.add_subject(
            policy,
            provider_arn=setup_policies.oidc_provider_arn(account_id, ISSUER),
            issuer_host=ISSUER_HOST,
            client_id=CLIENT_ID,
            subject=subject,
        )
    write(account_id, policy)


def remove_subject(account_id: str, subject: str) -> None:
    policy = trust_policy_editor.remove_subject(
        trust_of(account_id), subject=subject, issuer_host=ISSUER_HOST
    )
    write(account_id, policy)


def write(account_id: str, policy: dict[str, Any]) -> None:
    member(account_id, "iam").update_assume_role_policy(
        RoleName=ROLE, PolicyDocument=trust_policy_editor.serialise(policy)
    )


def role_row(app: AwsApp, arn: str) -> Resource:
    return Resource.objects.get(app=app, type=ResourceType.IAM_ROLE, remote_id=arn)


def observed(user: User, row: Resource) -> list[Grant]:
    return list(
        Grant.objects.filter(
            user=user, resource=row, source=GrantSource.OBSERVED, status=GrantStatus.ACTIVE
        )
    )


# Which statements admit whom -------------------------------------------------------------------
def managed(audience: Any, subjects: Any, *, host: str = ISSUER_HOST, **extra: Any) -> dict:
    return {
        "Sid": setup_policies.MANAGED_STATEMENT_SID,
        "Effect": "Allow",
        "Principal": {"Federated": f"arn:aws:iam::111122223333:oidc-provider/{host}"},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {f"{host}:aud": audience, f"{host}:sub": subjects}},
        **extra,
    }


def admitted(*statements: Any) -> set[str]:
    statement: Any = statements[0] if len(statements) == 1 else list(statements)
    return managed_subjects(
        {"Version": "2012-10-17", "Statement": statement},
        issuer_host=ISSUER_HOST,
        client_id=CLIENT_ID,
    )


def test_only_the_managed_allow_statement_for_portcullis_client_admits_subjects():
    assert admitted(managed(CLIENT_ID, ["a", "b"])) == {"a", "b"}  # a single statement object
    assert admitted(OWNER_STATEMENT, managed(CLIENT_ID, "a")) == {"a"}
    assert admitted(managed([CLIENT_ID, "other"], ["a"])) == {"a"}
    assert admitted(managed("another-client", ["a"])) == set()
    assert admitted(managed(CLIENT_ID, ["a"], host="other.example.com")) == set()
    assert admitted(managed(CLIENT_ID, ["a"], Effect="Deny")) == set()
    assert admitted({**managed(CLIENT_ID, ["a"]), "Sid": "SomeoneElses"}) == set()
    # Two managed statements (which grants refuse to edit): whom each admits is shown.
    assert admitted(managed(CLIENT_ID, ["a"]), managed(CLIENT_ID, ["b"])) == {"a", "b"}
    assert managed_subjects(None, issuer_host=ISSUER_HOST, client_id=CLIENT_ID) == set()


def test_statements_binding_session_names_and_per_subject_ones_admit_their_subjects():
    # As grants write them now: a shared statement binding each session name to its
    # subject, and one of its own for a subject that cannot be a session name.
    written = trust_policy_editor.portcullis_statements(
        f"arn:aws:iam::123456789012:oidc-provider/{ISSUER_HOST}",
        ISSUER_HOST,
        CLIENT_ID,
        {"ab", "auth0|b"},
    )
    assert [s["Sid"] for s in written][0] == setup_policies.MANAGED_STATEMENT_SID
    assert written[1]["Sid"].startswith("PortcullisManagedSubject")
    assert admitted(OWNER_STATEMENT, *written) == {"ab", "auth0|b"}
    # Both shapes side by side (a role not yet touched since the upgrade reads as before).
    assert admitted(managed(CLIENT_ID, ["c"]), written[1]) == {"c", "auth0|b"}
    # A Sid that only looks like ours is the owner's.
    assert admitted({**written[1], "Sid": "PortcullisManagedSubjectOfMine"}) == set()


# Observed, then gone ----------------------------------------------------------------------------
def test_a_users_subject_in_the_managed_statement_is_observed_until_removed_in_aws(
    app, account_id, role, ada
):
    add_subjects(account_id, ADA_SUBJECT, STRANGER_SUBJECT)
    run = sync(app, account_id=account_id)

    assert run.status == SyncStatus.SUCCEEDED, run.message
    row = role_row(app, role)
    (grant,) = observed(ada, row)
    assert grant.access_level.remote_id == "assume"
    assert grant.expires_at is None
    assert grant.propagation_status == PropagationStatus.APPLIED
    # The stranger's subject is no portal user's: nothing is recorded for it.
    assert Grant.objects.filter(resource=row).count() == 1
    event = AuditEvent.objects.get(action="grant.observed", target_id=str(grant.pk))
    assert event.details["user"] == "ada@example.com"
    assert event.details["resource"] == ROLE
    assert event.details["access_level"] == "Assume role"

    # Nothing changed: nothing written.
    with capture() as queries:
        again = sync(app, account_id=account_id)
    assert again.counts == {}
    assert inventory_writes(queries) == []

    remove_subject(account_id, ADA_SUBJECT)
    run = sync(app, account_id=account_id)

    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKED
    assert grant.revoked_at == run.started_at
    assert grant.revoke_reason == "no longer present in AWS"
    assert run.counts["observed_grant"] == {"created": 0, "updated": 0, "deleted": 1}
    revoked = AuditEvent.objects.get(action="grant.revoked", target_id=str(grant.pk))
    assert revoked.details["reason"] == "no longer present in AWS"
    assert held(account_id) == {STRANGER_SUBJECT}  # an observation never edits AWS


def test_a_refresh_of_the_role_observes_and_revokes_like_a_sync(app, account_id, role, ada):
    sync(app, account_id=account_id)
    row = role_row(app, role)
    ref = ObjectRef("iam_role", account_id, "", ROLE)  # as an UpdateAssumeRolePolicy names it

    add_subjects(account_id, ADA_SUBJECT)
    assert refresh(app, [ref])["grants_observed"] == 1
    (grant,) = observed(ada, row)

    remove_subject(account_id, ADA_SUBJECT)
    assert refresh(app, [ref])["grants_revoked"] == 1
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKED


def test_a_deleted_role_ends_its_observed_grants(app, account_id, role, ada):
    add_subjects(account_id, ADA_SUBJECT)
    sync(app, account_id=account_id)
    row = role_row(app, role)
    (grant,) = observed(ada, row)

    iam = member(account_id, "iam")
    iam.delete_role(RoleName=ROLE)
    try:
        run = sync(app, account_id=account_id)
    finally:
        iam.create_role(
            RoleName=ROLE,
            AssumeRolePolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [OWNER_STATEMENT]}
            ),
        )

    row.refresh_from_db()
    assert row.deleted_at == run.started_at
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKED


def test_with_no_identity_provider_set_trust_policies_are_neither_observed_nor_swept(
    app, account_id, role, ada
):
    add_subjects(account_id, ADA_SUBJECT)
    sync(app, account_id=account_id)
    row = role_row(app, role)
    (grant,) = observed(ada, row)
    aws_settings = get_aws_settings()
    aws_settings.oidc_issuer_url = ""
    aws_settings.save()
    remove_subject(account_id, ADA_SUBJECT)
    stranger = make_user("stranger@example.com", oidc_subject=STRANGER_SUBJECT, oidc_issuer=ISSUER)
    add_subjects(account_id, STRANGER_SUBJECT)

    run = sync(app, account_id=account_id)

    assert run.status == SyncStatus.SUCCEEDED, run.message
    # Without the issuer no statement can be told to be Portcullis's: what was observed
    # stays as it was, and nothing new is observed.
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE
    assert not observed(stranger, row)


# A scope that cannot be read -------------------------------------------------------------------
@pytest.fixture
def faulty_org(aws_faults_kept: Any) -> seed.SeedResult:
    """The organization reached through the fault proxy (tests/aws_faults.py)."""
    return seeded_org()


def test_a_role_whose_iam_listing_is_refused_keeps_its_observed_grant(
    aws_faults_kept, faulty_org, ada
):
    faults = aws_faults_kept
    faulty_app = make_app(faulty_org)
    account_id = faulty_org.accounts[0].account_id
    iam = member(account_id, "iam")
    arn = iam.create_role(
        RoleName=ROLE,
        AssumeRolePolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [OWNER_STATEMENT]}
        ),
        Tags=REQUESTABLE,
    )["Role"]["Arn"]
    try:
        add_subjects(account_id, ADA_SUBJECT)
        sync(faulty_app, account_id=account_id)
        row = role_row(faulty_app, arn)
        (grant,) = observed(ada, row)
        remove_subject(account_id, ADA_SUBJECT)
        faults.deny("iam", account_id=account_id)
        try:
            run = sync(faulty_app, account_id=account_id)
        finally:
            faults.clear()

        assert run.status == SyncStatus.PARTIAL
        assert f"{account_id}/-/iam" in run.message
        grant.refresh_from_db()
        assert grant.status == GrantStatus.ACTIVE
        row.refresh_from_db()
        assert row.deleted_at is None

        # Read again: the subject is gone, and so is the grant.
        sync(faulty_app, account_id=account_id)
        grant.refresh_from_db()
        assert grant.status == GrantStatus.REVOKED
    finally:
        iam.delete_role(RoleName=ROLE)


# Put back after Portcullis's grant ended --------------------------------------------------------
def test_a_subject_put_back_after_its_grant_was_revoked_is_removed_again(
    app, account_id, role, ada, settings, django_capture_on_commit_callbacks
):
    settings.TASKS_INLINE = True
    admin = make_user("admin@example.com", roles=(ADMIN_ROLE,))
    sync(app, account_id=account_id)
    row = role_row(app, role)
    with django_capture_on_commit_callbacks(execute=True):
        grant = create_grant(
            user=ada,
            resource=row,
            access_level=row.access_levels.get(remote_id="assume"),
            expires_at=None,
            source=GrantSource.ADMIN,
            actor=admin,
            reason="on call",
        )
    assert held(account_id) == {ADA_SUBJECT}
    # Portcullis's own grant: not observed as well.
    sync(app, account_id=account_id)
    assert not observed(ada, row)

    with django_capture_on_commit_callbacks(execute=True):
        revoke_grant(grant, actor=admin, reason="no longer on call")
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKED
    assert held(account_id) == set()

    # Someone puts her back by hand in AWS.
    add_subjects(account_id, ADA_SUBJECT)
    with django_capture_on_commit_callbacks(execute=True):
        run = sync(app, account_id=account_id)

    assert run.status == SyncStatus.SUCCEEDED, run.message
    assert held(account_id) == set()
    (event,) = AuditEvent.objects.filter(
        action="grant.revoke_reapplied",
        target_type="access.assignment",
        target_id=str(grant.assignment_id),
    )
    assert event.details["user"] == ada.email
    assert not Grant.objects.filter(resource=row, source=GrantSource.OBSERVED).exists()
    assert not Grant.objects.filter(
        resource=row, status__in=(GrantStatus.PENDING, GrantStatus.ACTIVE)
    ).exists()
    assert run.counts["observed_grant"]["reasserted"] == 1

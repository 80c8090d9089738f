"""IAM role grants: the subject goes into the PortcullisManaged trust statement and out
again, every other statement kept as the role's owner wrote it, and a revoke denies the
user's live sessions. Asserted on what the stand-in AWS holds afterwards."""

from __future__ import annotations

import fnmatch
import json
import re
from datetime import UTC, datetime, timedelta
from importlib import import_module
from pathlib import Path
from typing import Any

import pytest
import time_machine
from botocore.exceptions import ClientError
from django.utils import timezone

from access.choices import AssignmentStatus, ResourceType
from access.drivers import DriverError, SubjectUnknown
from access.models import AccessLevel, Assignment, Resource, User
from aws_integration import clients, setup_policies
from aws_integration.grants import base
from aws_integration.grants import iam as driver
from aws_integration.models import AwsApp
from aws_integration.services import get_aws_settings
from aws_integration.sync.fetch_results import ResourceRecord
from aws_integration.sync.fetchers import members
from aws_integration.trust_policy_editor import parse_policy
from tests.fixtures import make_user, shared_samples

pytestmark = pytest.mark.django_db

ACCOUNT = "210987654321"
REGION = "us-east-1"
ISSUER = "https://login.example.com/oauth2/default"
ISSUER_HOST = "login.example.com/oauth2/default"
CLIENT_ID = "portcullis-client"
SAMPLES = shared_samples("trust-policies")
# A few owner-written shapes: two statements, a single statement object (no list), another
# OIDC provider's statement, a statement with an empty Sid.
SAMPLE_NAMES = [
    "03-multi-statement-service-plus-aws.json",
    "04-sso-reserved-saml-statement-object.json",
    "13-github-oidc-stringequals-aud-stringlike-sub.json",
    "22-service-ec2-empty-sid.json",
]
SERVICE_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


# Shared with test_grants_managed ----------------------------------------------------------
@pytest.fixture(name="grants_env")
def grants_env_fixture(aws: str) -> AwsApp:
    """The stand-in AWS emptied, OIDC settings filled in, an app whose ingester role the
    drivers assume into ACCOUNT (the stand-in does not check the role exists)."""
    base.forget_sessions()
    aws_settings = get_aws_settings()
    aws_settings.oidc_issuer_url = ISSUER
    aws_settings.oidc_client_id = CLIENT_ID
    aws_settings.save()
    return AwsApp.objects.create(name="Grants", management_account_id="123456789012")


def member_client(service: str, account: str = ACCOUNT) -> Any:
    session = clients.session_for_account(account, "PortcullisIngester", region=REGION)
    return clients.client(service, session=session, region=REGION)


def row_of(app: AwsApp, record: ResourceRecord) -> Resource:
    """The Resource and AccessLevel rows a sync writes for this record."""
    resource = Resource.objects.create(
        app=app,
        type=record.type,
        remote_id=record.remote_id,
        name=record.name,
        arn=record.arn,
        account_id=record.account_id,
        region=record.region,
        tags=record.tags,
        metadata=record.metadata,
    )
    for level in record.levels or []:
        AccessLevel.objects.create(
            resource=resource,
            remote_id=level.remote_id,
            name=level.name,
            description=level.description,
        )
    return resource


def person(name: str, subject: str = "") -> User:
    return make_user(
        f"{name}@example.com", oidc_subject=subject or f"{name}-subject", oidc_issuer=ISSUER
    )


def assign(user: User, resource: Resource, level: str) -> Assignment:
    return Assignment.objects.create(
        user=user, resource=resource, access_level=resource.access_levels.get(remote_id=level)
    )


def subjects_of(trust: dict[str, Any]) -> list[str]:
    statements = trust["Statement"]
    statements = [statements] if isinstance(statements, dict) else statements
    (managed,) = [s for s in statements if s.get("Sid") == setup_policies.MANAGED_STATEMENT_SID]
    return managed["Condition"]["StringEquals"][f"{ISSUER_HOST}:sub"]


def inline_policy(iam: Any, role_name: str, policy_name: str) -> dict[str, Any] | None:
    try:
        document = iam.get_role_policy(RoleName=role_name, PolicyName=policy_name)
    except ClientError as error:
        assert error.response["Error"]["Code"] == "NoSuchEntity"
        return None
    return parse_policy(document["PolicyDocument"])


def revoked_patterns(iam: Any, role_name: str) -> dict[str, str]:
    """aws:userid pattern -> the issue time before which its sessions are denied."""
    document = inline_policy(iam, role_name, driver.REVOKED_SESSIONS_POLICY) or {"Statement": []}
    found = {}
    for statement in document["Statement"]:
        assert statement["Effect"] == "Deny" and statement["Action"] == "*"
        assert statement["Resource"] == "*"
        condition = statement["Condition"]
        patterns = condition["StringLike"]["aws:userid"]
        for pattern in [patterns] if isinstance(patterns, str) else patterns:
            found[pattern] = condition["DateLessThan"]["aws:TokenIssueTime"]
    return found


def denied(user: User) -> set[str]:
    """The aws:userid patterns a revoke of the user denies: their session name (their
    subject) and the one versions before the session-name binding used."""
    return {f"*:{driver.session_name(user)}", f"*:portcullis-{user.pk}"}


# IAM role helpers -----------------------------------------------------------------------------
REQUESTABLE_TAGS = [{"Key": "portcullis:requestable", "Value": "true"}]


def make_role(
    app: AwsApp,
    name: str,
    trust: dict[str, Any] | str,
    tags: list[dict[str, str]] | None = None,
    path: str = "/",
) -> Resource:
    """A customer role in the stand-in, tagged requestable unless ``tags`` say otherwise."""
    iam = member_client("iam")
    text = trust if isinstance(trust, str) else json.dumps(trust)
    iam.create_role(
        RoleName=name,
        Path=path,
        AssumeRolePolicyDocument=text,
        Tags=REQUESTABLE_TAGS if tags is None else tags,
    )
    role = iam.get_role(RoleName=name)["Role"]
    return row_of(app, members.role_record(ACCOUNT, role, app.ingester_role_name))


def trust_of(name: str) -> dict[str, Any]:
    document = member_client("iam").get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]
    return parse_policy(document)


def as_list(statements: Any) -> list[Any]:
    return [statements] if isinstance(statements, dict) else list(statements)


def sample(name: str) -> str:
    path = SAMPLES / name
    if not path.is_file():
        pytest.skip(f"trust policy sample {path} not found")
    # The SSO sample's provider ARN names a placeholder account; IAM wants digits.
    return path.read_text().replace("<MANAGEMENT_ACCT_ID>", "123456789012")


IAM = driver.DRIVERS[ResourceType.IAM_ROLE.value]


# Apply and remove -------------------------------------------------------------------------------
@pytest.mark.parametrize("sample_name", SAMPLE_NAMES, ids=lambda n: Path(n).stem)
def test_a_grant_adds_the_subject_and_its_revoke_gives_back_the_owners_policy(
    grants_env, sample_name
):
    original = sample(sample_name)
    role = make_role(grants_env, "Deployer", original)
    ada = person("ada")
    assignment = assign(ada, role, "assume")

    outcome = IAM.apply(assignment)

    trust = trust_of("Deployer")
    assert subjects_of(trust) == ["ada-subject"]
    (managed,) = [s for s in as_list(trust["Statement"]) if s.get("Sid") == "PortcullisManaged"]
    assert managed["Principal"] == {
        "Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{ISSUER_HOST}"
    }
    assert managed["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert managed["Condition"]["StringEquals"][f"{ISSUER_HOST}:aud"] == CLIENT_ID
    owners = [s for s in as_list(trust["Statement"]) if s.get("Sid") != "PortcullisManaged"]
    assert owners == as_list(parse_policy(original)["Statement"])
    assert outcome.state["role_arn"] == f"arn:aws:iam::{ACCOUNT}:role/Deployer"

    assignment.driver_state = outcome.state
    IAM.remove(assignment)

    assert trust_of("Deployer") == parse_policy(original)


def test_granting_twice_and_revoking_twice_are_harmless_and_holders_share_the_statement(
    grants_env,
):
    role = make_role(grants_env, "Analyst", SERVICE_TRUST)
    ada, bob = person("ada"), person("bob")
    ada_assignment, bob_assignment = assign(ada, role, "assume"), assign(bob, role, "assume")

    IAM.apply(ada_assignment)
    second = IAM.apply(ada_assignment)
    IAM.apply(bob_assignment)
    assert "already" in second.note
    assert subjects_of(trust_of("Analyst")) == ["ada-subject", "bob-subject"]

    IAM.remove(ada_assignment)
    IAM.remove(ada_assignment)
    assert subjects_of(trust_of("Analyst")) == ["bob-subject"]

    IAM.remove(bob_assignment)
    assert trust_of("Analyst") == SERVICE_TRUST


def test_the_last_subject_of_a_role_trusting_only_portcullis_leaves_a_deny_all_statement(
    grants_env,
):
    # The admin pasted the statement from the app page as the role's whole trust policy.
    statement = setup_policies.oidc_trust_statement(get_aws_settings(), ACCOUNT, ["ada-subject"])
    role = make_role(
        grants_env, "PortcullisOnly", {"Version": "2012-10-17", "Statement": [statement]}
    )
    ada, bob = person("ada"), person("bob")

    IAM.remove(assign(ada, role, "assume"))

    (only,) = trust_of("PortcullisOnly")["Statement"]
    assert only["Sid"] == driver.NO_SUBJECTS_SID
    assert only["Effect"] == "Deny"
    assert only["Principal"] == {"AWS": "*"}
    assert "sts:AssumeRoleWithWebIdentity" in only["Action"]

    IAM.apply(assign(bob, role, "assume"))

    (managed,) = trust_of("PortcullisOnly")["Statement"]
    assert managed["Sid"] == "PortcullisManaged"
    assert subjects_of(trust_of("PortcullisOnly")) == ["bob-subject"]


def test_a_revoke_removes_the_subject_recorded_at_grant_time(grants_env):
    role = make_role(grants_env, "Renamed", SERVICE_TRUST)
    ada = person("ada", "old-subject")
    assignment = assign(ada, role, "assume")
    assignment.driver_state = IAM.apply(assignment).state
    ada.oidc_subject = "new-subject"  # the identity provider renamed her since
    ada.save()

    IAM.remove(assignment)

    assert trust_of("Renamed") == SERVICE_TRUST


# Live sessions --------------------------------------------------------------------------------
def test_a_revoke_denies_the_users_sessions_issued_before_it(grants_env):
    role = make_role(grants_env, "Sessions", SERVICE_TRUST)
    ada, bob = person("ada"), person("bob")
    assignment = assign(ada, role, "assume")
    IAM.apply(assignment)
    IAM.apply(assign(bob, role, "assume"))

    with time_machine.travel(datetime(2030, 5, 1, 9, 0, tzinfo=UTC), tick=False):
        IAM.remove(assignment)

    revoked = revoked_patterns(member_client("iam"), "Sessions")
    assert revoked == dict.fromkeys(denied(ada), "2030-05-01T09:01:00Z")
    assert subjects_of(trust_of("Sessions")) == ["bob-subject"]


def test_each_revoke_keeps_recent_denies_and_drops_those_older_than_the_longest_session(
    grants_env,
):
    role = make_role(grants_env, "Pruned", SERVICE_TRUST)
    ada, bob, cy = person("ada"), person("bob"), person("cy")
    start = datetime(2030, 5, 1, 9, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        IAM.remove(assign(ada, role, "assume"))
    with time_machine.travel(start + timedelta(hours=6), tick=False):
        IAM.remove(assign(bob, role, "assume"))
    with time_machine.travel(start + timedelta(hours=13), tick=False):
        IAM.remove(assign(cy, role, "assume"))

    revoked = revoked_patterns(member_client("iam"), "Pruned")
    assert revoked == {
        **dict.fromkeys(denied(bob), "2030-05-01T15:01:00Z"),
        **dict.fromkeys(denied(cy), "2030-05-01T22:01:00Z"),
    }


def test_revoking_a_user_again_moves_their_deny_to_the_later_time():
    names = ["ada-subject", "portcullis-7"]
    first = driver.revoked_sessions_policy(None, names, datetime(2030, 1, 1, tzinfo=UTC))
    again = driver.revoked_sessions_policy(first, names, datetime(2030, 1, 1, 2, tzinfo=UTC))
    (statement,) = again["Statement"]
    assert statement["Condition"]["DateLessThan"]["aws:TokenIssueTime"] == "2030-01-01T02:01:00Z"
    assert statement["Condition"]["StringLike"]["aws:userid"] == ["*:ada-subject", "*:portcullis-7"]
    # A name denied at the earlier revoke only (a subject she had then) stays denied.
    renamed = driver.revoked_sessions_policy(
        first, ["new-subject", "portcullis-7"], datetime(2030, 1, 1, 3, tzinfo=UTC)
    )
    (statement,) = renamed["Statement"]
    assert statement["Condition"]["StringLike"]["aws:userid"] == [
        "*:ada-subject",
        "*:new-subject",
        "*:portcullis-7",
    ]


def test_a_deny_of_all_but_some_sessions_stays_beside_the_others_until_it_is_moot():
    start = datetime(2030, 1, 1, tzinfo=UTC)
    all_but = driver.revoked_sessions_policy(None, ["bob-subject"], start, all_but=True)
    by_name = driver.revoked_sessions_policy(all_but, ["bob-subject"], start + timedelta(hours=1))
    assert [s["Condition"].get("StringNotLike") for s in by_name["Statement"]] == [
        {"aws:userid": "*:bob-subject"},
        None,
    ]
    assert denies(by_name, "anyone-else", start) and not denies(all_but, "bob-subject", start)

    later = driver.revoked_sessions_policy(by_name, ["cy-subject"], start + timedelta(hours=13))
    assert all("StringNotLike" not in s["Condition"] for s in later["Statement"])


def test_session_names_are_what_sts_accepts_and_differ_per_user(grants_env):
    ada, bob = person("ada"), person("bob", "auth0|5f7c8ec7c33c6c004bbafe82")
    assert driver.session_name(ada) == "ada-subject"
    assert re.fullmatch(r"portcullis-[0-9a-f]{16}", driver.session_name(bob))
    assert driver.session_name(ada) != driver.session_name(bob)
    with pytest.raises(SubjectUnknown):
        driver.session_name(make_user("new@example.com"))


# Errors -----------------------------------------------------------------------------------------
def test_a_user_not_yet_signed_in_through_the_identity_provider_waits(grants_env):
    role = make_role(grants_env, "Waiting", SERVICE_TRUST)
    newcomer = make_user("new@example.com")  # no OIDC subject yet

    with pytest.raises(SubjectUnknown):
        IAM.apply(assign(newcomer, role, "assume"))

    assert trust_of("Waiting") == SERVICE_TRUST


def test_a_subject_from_another_issuer_is_never_put_in_a_trust_policy(grants_env):
    role = make_role(grants_env, "OtherIssuer", SERVICE_TRUST)
    stranger = make_user(
        "stranger@example.com",
        oidc_subject="subject-at-another-idp",
        oidc_issuer="https://idp.other.example.net",
    )

    with pytest.raises(SubjectUnknown):
        IAM.apply(assign(stranger, role, "assume"))

    assert trust_of("OtherIssuer") == SERVICE_TRUST


def test_without_the_oidc_provider_set_the_grant_fails_telling_the_admin_what_to_set(grants_env):
    role = make_role(grants_env, "NoOidc", SERVICE_TRUST)
    aws_settings = get_aws_settings()
    aws_settings.oidc_client_id = ""
    aws_settings.save()

    with pytest.raises(DriverError) as error:
        IAM.apply(assign(person("ada"), role, "assume"))

    assert not error.value.retryable
    assert "AWS settings" in error.value.message
    assert trust_of("NoOidc") == SERVICE_TRUST


def test_a_trust_policy_that_would_exceed_the_quota_is_refused_clearly_and_left_alone(grants_env):
    # Many owner statements: about 3,980 characters, no room left for the managed one.
    statements = [
        {
            "Sid": f"Partner{n:02d}",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{100000000000 + n}:root"},
            "Action": "sts:AssumeRole",
        }
        for n in range(34)
    ]
    crowded = {"Version": "2012-10-17", "Statement": statements}
    assert 3900 < len(json.dumps(crowded, separators=(",", ":"))) < 4096
    role = make_role(grants_env, "Crowded", crowded)

    with pytest.raises(DriverError) as error:
        IAM.apply(assign(person("ada"), role, "assume"))

    assert not error.value.retryable
    assert "over the limit of 4,096 characters" in error.value.message
    assert "Crowded" in error.value.message
    assert trust_of("Crowded") == crowded


def test_aws_refusing_the_accounts_smaller_quota_gives_the_same_clear_message():
    refusal = ClientError(
        {
            "Error": {
                "Code": "LimitExceeded",
                "Message": "Cannot exceed quota for ACLSizePerRole: 2048",
            }
        },
        "UpdateAssumeRolePolicy",
    )
    error = driver.too_large_error("Deployer", 2300, refusal)
    assert error is not None and not error.retryable
    assert "2,300 characters, over the limit of 2,048" in error.message
    assert "Service Quotas" in error.message
    other = ClientError({"Error": {"Code": "LimitExceeded", "Message": "Too many roles"}}, "X")
    assert driver.too_large_error("Deployer", 2300, other) is None


def test_a_role_deleted_in_aws_cannot_be_granted_but_revoking_it_succeeds(grants_env):
    role = make_role(grants_env, "Gone", SERVICE_TRUST)
    member_client("iam").delete_role(RoleName="Gone")
    assignment = assign(person("ada"), role, "assume")

    with pytest.raises(DriverError) as error:
        IAM.apply(assignment)
    assert not error.value.retryable
    assert error.value.message == (
        f"The IAM role Gone no longer exists in account {ACCOUNT}, so access to it cannot be "
        "granted."
    )

    outcome = IAM.remove(assignment)
    assert "no longer exists" in outcome.note


# Every session a holder can mint is deniable ----------------------------------------------------
PROVIDER_ARN = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{ISSUER_HOST}"
ANY_NAME = "<any name>"
# As versions before the session-name binding wrote the statement: no sts:RoleSessionName.
OLD_SHAPE: dict[str, Any] = {
    "Sid": "PortcullisManaged",
    "Effect": "Allow",
    "Principal": {"Federated": PROVIDER_ARN},
    "Action": "sts:AssumeRoleWithWebIdentity",
    "Condition": {
        "StringEquals": {
            f"{ISSUER_HOST}:aud": CLIENT_ID,
            f"{ISSUER_HOST}:sub": ["ada-subject", "bob-subject"],
        }
    },
}


def mintable_names(trust: dict[str, Any], subject: str) -> set[str]:
    """The session names the trust policy lets the holder of a token for ``subject`` (minted
    for Portcullis's client) choose when calling AssumeRoleWithWebIdentity themselves;
    ANY_NAME when a statement admits them without constraining the name."""
    names: set[str] = set()
    for statement in as_list(trust["Statement"]):
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if (
            statement.get("Effect") != "Allow"
            or statement.get("Principal", {}).get("Federated") != PROVIDER_ARN
            or "sts:AssumeRoleWithWebIdentity" not in actions
        ):
            continue
        condition = statement.get("Condition", {})
        assert set(condition) <= {"StringEquals"}, "a shape this evaluator does not know"
        equals = condition.get("StringEquals", {})
        admitted = equals.get(f"{ISSUER_HOST}:sub")
        if subject not in ([admitted] if isinstance(admitted, str) else admitted or []):
            continue
        if equals.get(f"{ISSUER_HOST}:aud") not in (CLIENT_ID, None):
            continue
        bound = equals.get("sts:RoleSessionName")
        # ${<issuer>:sub} is replaced by the subject of the token presented.
        names.add(ANY_NAME if bound is None else bound.replace(f"${{{ISSUER_HOST}:sub}}", subject))
    return names


def denies(revoked: dict[str, Any] | None, name: str, issued: datetime) -> bool:
    """Whether the PortcullisRevokedSessions document denies a session of this name issued
    at ``issued`` (aws:userid is "<role id>:<session name>"; * and ? are IAM's wildcards)."""
    userid = f"AROAEXAMPLEROLEID:{name}"
    for statement in as_list((revoked or {}).get("Statement", [])):
        condition = statement["Condition"]
        assert set(condition) <= {"StringLike", "StringNotLike", "DateLessThan"}
        before = datetime.fromisoformat(
            condition["DateLessThan"]["aws:TokenIssueTime"].replace("Z", "+00:00")
        )
        matched = issued < before
        for operator, wanted in (("StringLike", True), ("StringNotLike", False)):
            if operator in condition:
                patterns = condition[operator]["aws:userid"]
                patterns = [patterns] if isinstance(patterns, str) else patterns
                found = any(fnmatch.fnmatchcase(userid, p) for p in patterns)
                matched = matched and found is wanted
        if statement["Effect"] == "Deny" and statement["Action"] == "*" and matched:
            if name == ANY_NAME and "StringLike" in condition:
                continue  # a deny by name cannot match every name
            return True
    return False


def assert_no_session_escapes(
    before: dict[str, Any],
    after: dict[str, Any],
    revoked: dict[str, Any] | None,
    *,
    gone: str,
    stays: str,
    at: datetime,
) -> None:
    """``gone`` was revoked at ``at``: every session its holder could have minted under the
    trust policy ``before`` is denied, and ``after`` admits them no more; ``stays`` can still
    mint sessions that nothing denies."""
    names = mintable_names(before, gone)
    assert names and ANY_NAME not in names, f"{gone} may choose any session name: {names}"
    for name in names:
        assert denies(revoked, name, at), f"a session of {gone} named {name} outlives the revoke"
    assert mintable_names(after, gone) == set()
    remaining = mintable_names(after, stays)
    assert remaining and ANY_NAME not in remaining
    for name in remaining:
        assert not denies(revoked, name, at - timedelta(minutes=5))


@pytest.mark.parametrize(
    "ada_subject", ["ada-subject", "auth0|ada"], ids=["session-name", "not-a-session-name"]
)
def test_after_a_revoke_no_session_the_holder_can_mint_escapes_the_deny(grants_env, ada_subject):
    role = make_role(grants_env, "Bound", SERVICE_TRUST)
    ada, bob = person("ada", ada_subject), person("bob")
    assignment = assign(ada, role, "assume")
    assignment.driver_state = IAM.apply(assignment).state
    IAM.apply(assign(bob, role, "assume"))
    before = trust_of("Bound")
    at = datetime(2030, 5, 1, 9, 0, tzinfo=UTC)

    with time_machine.travel(at, tick=False):
        IAM.remove(assignment)

    revoked = inline_policy(member_client("iam"), "Bound", driver.REVOKED_SESSIONS_POLICY)
    assert_no_session_escapes(
        before, trust_of("Bound"), revoked, gone=ada_subject, stays="bob-subject", at=at
    )
    # The name Connect gives her sessions is the one the trust policy binds her to.
    assert mintable_names(before, ada_subject) == {driver.session_name(ada)}
    assert {s.get("Sid") for s in as_list(trust_of("Bound")["Statement"])} == {
        None,
        "PortcullisManaged",
    }


def test_a_trust_statement_written_by_an_older_version_binds_session_names_once_touched(
    grants_env,
):
    role = make_role(
        grants_env,
        "Older",
        {"Version": "2012-10-17", "Statement": [SERVICE_TRUST["Statement"][0], OLD_SHAPE]},
    )
    ada, bob = person("ada"), person("bob")
    ada_assignment, bob_assignment = assign(ada, role, "assume"), assign(bob, role, "assume")
    assert mintable_names(trust_of("Older"), "ada-subject") == {ANY_NAME}
    for held in (ada_assignment, bob_assignment):
        held.status = AssignmentStatus.APPLIED
        held.driver_state = {"role_arn": role.arn, "subject": held.user.oidc_subject}
        held.save()

    # The upgrade asks the grant engine to apply both again; it starts with Bob's. Its
    # data migration wrote the columns access 0010 maps to the status: what it leaves.
    upgrade = import_module(
        "aws_integration.migrations.0003_reapply_trust_policies_binding_session_names"
    )
    marked = Assignment.objects.filter(resource__type__in=upgrade.TRUST_POLICY_TYPES)
    marked.request_reapply()
    marked.update(next_attempt_at=timezone.now())
    assert set(
        Assignment.objects.filter(status=AssignmentStatus.REAPPLY, next_attempt_at__isnull=False)
    ) == {ada_assignment, bob_assignment}
    IAM.apply(bob_assignment)

    upgraded = trust_of("Older")
    assert as_list(upgraded["Statement"])[0] == SERVICE_TRUST["Statement"][0]
    for user in (ada, bob):
        assert mintable_names(upgraded, user.oidc_subject) == {driver.session_name(user)}
    at = datetime(2030, 5, 1, 9, 0, tzinfo=UTC)
    with time_machine.travel(at, tick=False):
        IAM.remove(ada_assignment)
    revoked = inline_policy(member_client("iam"), "Older", driver.REVOKED_SESSIONS_POLICY)
    assert_no_session_escapes(
        upgraded, trust_of("Older"), revoked, gone="ada-subject", stays="bob-subject", at=at
    )
    # Sessions older versions minted through Portcullis carried portcullis-<pk>: denied too.
    assert denies(revoked, f"portcullis-{ada.pk}", at)


# Only what an admin marked requestable -------------------------------------------------------
@pytest.mark.parametrize(
    "tags",
    [[], [{"Key": "portcullis:requestable", "Value": "True"}], [{"Key": "team", "Value": "x"}]],
    ids=["untagged", "value-not-true", "other-tag"],
)
def test_a_role_not_tagged_requestable_is_neither_granted_nor_edited(grants_env, tags):
    role = make_role(grants_env, "Administrator", SERVICE_TRUST, tags=tags)
    assert "not tagged portcullis:requestable=true" in role.not_requestable_reason
    assignment = assign(person("ada"), role, "assume")

    with pytest.raises(DriverError) as error:
        IAM.apply(assignment)
    assert not error.value.retryable
    assert "not tagged portcullis:requestable=true" in error.value.message
    assert trust_of("Administrator") == SERVICE_TRUST
    with pytest.raises(DriverError):
        IAM.remove(assignment)
    iam = member_client("iam")
    assert iam.list_role_policies(RoleName="Administrator")["PolicyNames"] == []


def test_a_tag_taken_off_after_the_grant_stops_portcullis_editing_the_role(grants_env):
    role = make_role(grants_env, "Deployer", SERVICE_TRUST)
    assignment = assign(person("ada"), role, "assume")
    IAM.apply(assignment)
    iam = member_client("iam")
    iam.untag_role(RoleName="Deployer", TagKeys=["portcullis:requestable"])
    before = trust_of("Deployer")

    with pytest.raises(DriverError) as error:
        IAM.remove(assignment)
    assert "Tag the role in AWS" in error.value.message
    assert trust_of("Deployer") == before


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("PortcullisIngester", "/"),
        ("OrganizationAccountAccessRole", "/"),
        ("AWSReservedSSO_Admin_0123456789abcdef", "/aws-reserved/sso.amazonaws.com/"),
    ],
)
def test_its_own_and_the_organizations_roles_are_refused_even_when_tagged(grants_env, name, path):
    role = make_role(grants_env, name, SERVICE_TRUST, path=path)
    assert "never edits" in role.not_requestable_reason
    with pytest.raises(DriverError) as error:
        IAM.apply(assign(person("ada"), role, "assume"))
    assert "never edits" in error.value.message
    assert trust_of(name) == SERVICE_TRUST


def test_a_subject_written_like_a_policy_variable_admits_no_other_token(grants_env):
    role = make_role(grants_env, "Variable", SERVICE_TRUST)
    subject = f"${{{ISSUER_HOST}:sub}}"
    IAM.apply(assign(person("mallory", subject), role, "assume"))

    (statement,) = [
        s
        for s in as_list(trust_of("Variable")["Statement"])
        if s.get("Sid", "").startswith(setup_policies.MANAGED_STATEMENT_SID)
    ]
    value = statement["Condition"]["StringEquals"][f"{ISSUER_HOST}:sub"]
    # As IAM reads it for a token of another subject: ${$} is "$", ${<issuer>:sub} that
    # token's subject.
    read = re.sub(
        r"\$\{[^}]*\}",
        lambda m: {"${$}": "$", subject: "someone-else"}.get(m.group(0), "\0"),
        value,
    )
    assert read == subject


@pytest.mark.parametrize("taken", ["derived", "legacy"])
def test_a_subject_spelling_another_holders_session_name_does_not_share_it(grants_env, taken):
    role = make_role(grants_env, "Names", SERVICE_TRUST)
    ada = person("ada", "auth0|ada")
    name = driver.session_name(ada) if taken == "derived" else f"portcullis-{ada.pk}"
    mallory = person("mallory", name)
    ada_assignment, mallory_assignment = (
        assign(ada, role, "assume"),
        assign(mallory, role, "assume"),
    )
    for held in (ada_assignment, mallory_assignment):
        held.driver_state = IAM.apply(held).state
    before = trust_of("Names")
    assert mintable_names(before, "auth0|ada") != mintable_names(before, name)
    at = datetime(2030, 5, 1, 9, 0, tzinfo=UTC)

    with time_machine.travel(at, tick=False):
        IAM.remove(mallory_assignment)

    # Mallory's revoke denies her sessions, not those Ada holds under her own name.
    revoked = inline_policy(member_client("iam"), "Names", driver.REVOKED_SESSIONS_POLICY)
    assert_no_session_escapes(
        before, trust_of("Names"), revoked, gone=name, stays="auth0|ada", at=at
    )
    # Nor those older versions named after her (Connect's portcullis-<pk>).
    assert not denies(revoked, f"portcullis-{ada.pk}", at - timedelta(minutes=5))


def test_a_revoke_under_a_statement_not_binding_names_says_which_sessions_may_outlive_it(
    grants_env,
):
    role = make_role(
        grants_env,
        "Unbound",
        {"Version": "2012-10-17", "Statement": [SERVICE_TRUST["Statement"][0], OLD_SHAPE]},
    )
    ada = person("ada")
    assignment = assign(ada, role, "assume")
    assignment.driver_state = {"role_arn": role.arn, "subject": "ada-subject"}

    outcome = IAM.remove(assignment)

    # Any name was hers to choose: the grant's history must not claim every session ended.
    assert "a session they named otherwise lasts until it expires" in outcome.note
    assert "at most 12 hours" in outcome.note
    assert mintable_names(trust_of("Unbound"), "ada-subject") == set()
    assert mintable_names(trust_of("Unbound"), "bob-subject") == {"bob-subject"}


def test_a_revoke_soon_after_the_statement_binds_names_says_older_sessions_may_outlive_it(
    grants_env,
):
    role = make_role(
        grants_env,
        "Upgraded",
        {"Version": "2012-10-17", "Statement": [SERVICE_TRUST["Statement"][0], OLD_SHAPE]},
    )
    ada = person("ada")
    assignment = assign(ada, role, "assume")
    # Applied by an older version: until the statement binds names she may mint any.
    assignment.driver_state = {"role_arn": role.arn, "subject": "ada-subject"}
    upgraded = datetime(2030, 5, 1, 9, 0, tzinfo=UTC)
    with time_machine.travel(upgraded, tick=False):
        assignment.driver_state = IAM.apply(assignment).state
    assert mintable_names(trust_of("Upgraded"), "ada-subject") == {"ada-subject"}

    with time_machine.travel(upgraded + timedelta(hours=11), tick=False):
        soon = IAM.remove(assignment)
    with time_machine.travel(upgraded + timedelta(hours=12), tick=False):
        later = IAM.remove(assignment)

    assert "a session they named otherwise lasts until it expires" in soon.note
    assert later.note.endswith("; their live sessions are denied.")
    # A grant applied first by this version was bound from its first session on.
    fresh = assign(person("cy"), role, "assume")
    fresh.driver_state = IAM.apply(fresh).state
    assert IAM.remove(fresh).note.endswith("; their live sessions are denied.")


def test_two_denies_of_every_session_within_one_second_are_one_statement():
    at = datetime(2030, 1, 1, 9, 0, 0, 100, tzinfo=UTC)
    first = driver.revoked_sessions_policy(None, [], at, all_but=True)
    again = driver.revoked_sessions_policy(
        first, [], at + timedelta(milliseconds=500), all_but=True
    )
    assert again == first  # IAM refuses a policy whose statements share a Sid


def test_a_revoke_from_an_older_statement_succeeds_when_binding_names_would_not_fit(grants_env):
    subjects = [f"auth0|5f7c8ec7c33c6c004bbafe{i:02d}" for i in range(12)]
    older = {**OLD_SHAPE, "Condition": {"StringEquals": {**OLD_SHAPE["Condition"]["StringEquals"]}}}
    older["Condition"]["StringEquals"][f"{ISSUER_HOST}:sub"] = subjects
    role = make_role(grants_env, "Crowded", {"Version": "2012-10-17", "Statement": [older]})
    ada = person("ada", subjects[0])
    assignment = assign(ada, role, "assume")
    assignment.driver_state = {"role_arn": role.arn, "subject": subjects[0]}

    # Each of these subjects would take a statement of its own in the binding shape: far
    # over the quota. The revoke must not depend on it.
    outcome = IAM.remove(assignment)

    assert mintable_names(trust_of("Crowded"), subjects[0]) == set()
    assert mintable_names(trust_of("Crowded"), subjects[1]) == {ANY_NAME}
    assert "a session they named otherwise lasts until it expires" in outcome.note

"""Managed roles for EC2 (SSM sessions), EKS (access entries) and RDS / Aurora (IAM database
authentication): one role per (resource, access level), shared by its holders, created with
the first and deleted with the last. Asserted on what the stand-in AWS holds afterwards.

The stand-in has no EKS access-entry API: those calls alone go to a botocore Stubber on the
EKS client the driver asks for (managed.eks_client); the roles themselves are in the stand-in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib import import_module
from typing import Any

import pytest
import time_machine
from botocore.stub import Stubber
from django.utils import timezone

from access.choices import AssignmentStatus, GrantSource, GrantStatus, ResourceType
from access.drivers import DriverError, SubjectUnknown
from access.models import Assignment, Resource
from access.services import grants as grant_service
from audit.models import AuditEvent
from aws_integration import clients, setup_policies
from aws_integration.grants import iam as iam_grants
from aws_integration.grants import managed
from aws_integration.models import AwsApp
from aws_integration.sync.fetchers import members
from aws_integration.tests.test_grants_iam import (
    ACCOUNT,
    REGION,
    assert_no_session_escapes,
    assign,
    denied,
    denies,
    grants_env_fixture,  # noqa: F401 - provides the grants_env fixture
    inline_policy,
    member_client,
    person,
    revoked_patterns,
    row_of,
    subjects_of,
)
from config import queue
from tests.fixtures import make_user

pytestmark = pytest.mark.django_db

T = ResourceType
EKS_VIEW = members.EKS_POLICY_PREFIX + "AmazonEKSViewPolicy"
BOUNDARY = f"arn:aws:iam::{ACCOUNT}:policy/portcullis/PortcullisPermissionsBoundary"


def client_in(service: str, account: str = ACCOUNT, region: str = REGION) -> Any:
    session = clients.session_for_account(account, "PortcullisIngester", region=region)
    return clients.client(service, session=session, region=region)


def role(name: str, account: str = ACCOUNT) -> dict[str, Any] | None:
    roles = member_client("iam", account).list_roles(PathPrefix="/portcullis/")["Roles"]
    found = [r for r in roles if r["RoleName"] == name]
    if not found:
        return None
    return member_client("iam", account).get_role(RoleName=name)["Role"]


def permissions(name: str, account: str = ACCOUNT) -> dict[str, Any]:
    document = member_client("iam", account).get_role_policy(
        RoleName=name, PolicyName="PortcullisAccess"
    )
    return document["PolicyDocument"]


def trust(name: str, account: str = ACCOUNT) -> dict[str, Any]:
    found = role(name, account)
    assert found is not None, f"no managed role {name} in {account}"
    return found["AssumeRolePolicyDocument"]


def name_of(resource: Resource, level: str) -> str:
    """The managed role's name for this resource and level, checked for the parts it must
    show: readable, then the region, then a digest."""
    access_level = resource.access_levels.get(remote_id=level)
    name = managed.ROLE_OF_TYPE[resource.type](resource, access_level).name
    assert len(name) <= 64
    assert re.fullmatch(rf"portcullis-.+-{resource.region}-[0-9a-f]{{10}}", name), name
    return name


def tags(found: dict[str, Any]) -> dict[str, str]:
    listed = member_client("iam").list_role_tags(RoleName=found["RoleName"])["Tags"]
    return {t["Key"]: t["Value"] for t in listed}


# Resources in the stand-in, as sync records them ---------------------------------------------
def ec2_instance(app: AwsApp, account: str = ACCOUNT, region: str = REGION) -> Resource:
    ec2 = client_in("ec2", account, region)
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ec2.run_instances(
        ImageId=image,
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "bastion"}]}
        ],
    )
    (reservation,) = ec2.describe_instances()["Reservations"]
    return row_of(app, members.instance_record(account, region, reservation["Instances"][0]))


def db_instance(app: AwsApp, account: str = ACCOUNT, region: str = REGION) -> Resource:
    rds = client_in("rds", account, region)
    rds.create_db_instance(
        DBInstanceIdentifier="orders",
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        AllocatedStorage=20,
        MasterUsername="admin_user",
        MasterUserPassword="not-a-real-password",
        EnableIAMDatabaseAuthentication=True,
        Tags=[{"Key": members.DB_USERS_TAG, "Value": "app_ro,app_rw"}],
    )
    (db,) = rds.describe_db_instances()["DBInstances"]
    return row_of(app, members.db_instance_record(account, region, db))


def db_cluster(app: AwsApp, account: str = ACCOUNT, region: str = REGION) -> Resource:
    rds = client_in("rds", account, region)
    rds.create_db_cluster(
        DBClusterIdentifier="ledger",
        Engine="aurora-mysql",
        MasterUsername="admin_user",
        MasterUserPassword="not-a-real-password",
        EnableIAMDatabaseAuthentication=True,
        Tags=[{"Key": members.DB_USERS_TAG, "Value": "app_ro"}],
    )
    (db,) = rds.describe_db_clusters()["DBClusters"]
    return row_of(app, members.db_cluster_record(account, region, db))


def eks_cluster(app: AwsApp, account: str = ACCOUNT, region: str = REGION) -> Resource:
    eks = client_in("eks", account, region)
    eks.create_cluster(
        name="platform",
        roleArn=f"arn:aws:iam::{account}:role/EksClusterRole",
        resourcesVpcConfig={"subnetIds": ["subnet-00000001"]},
    )
    cluster = eks.describe_cluster(name="platform")["cluster"]
    return row_of(app, members.cluster_record(account, region, cluster))


@pytest.fixture
def eks_stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    """The access-entry calls, answered by a Stubber (the stand-in lacks them)."""
    client = clients.client("eks", region=REGION)
    stubber = Stubber(client)
    monkeypatch.setattr(managed, "eks_client", lambda app, account, region: client)
    with stubber:
        yield stubber
    stubber.assert_no_pending_responses()


def expect_mapping(stub: Stubber, role_arn: str, *, exists: bool = False) -> None:
    if exists:
        stub.add_client_error(
            "create_access_entry",
            service_error_code="ResourceInUseException",
            expected_params={
                "clusterName": "platform",
                "principalArn": role_arn,
                "type": "STANDARD",
            },
        )
    else:
        stub.add_response(
            "create_access_entry",
            {"accessEntry": {"principalArn": role_arn, "clusterName": "platform"}},
            {"clusterName": "platform", "principalArn": role_arn, "type": "STANDARD"},
        )
    stub.add_response(
        "associate_access_policy",
        {"clusterName": "platform", "principalArn": role_arn},
        {
            "clusterName": "platform",
            "principalArn": role_arn,
            "policyArn": EKS_VIEW,
            "accessScope": {"type": "cluster"},
        },
    )


def expect_unmapping(stub: Stubber, role_arn: str, *, found: bool = True) -> None:
    params = {"clusterName": "platform", "principalArn": role_arn}
    if found:
        stub.add_response("delete_access_entry", {}, params)
    else:
        stub.add_client_error(
            "delete_access_entry",
            service_error_code="ResourceNotFoundException",
            expected_params=params,
        )


DRIVER = managed.DRIVERS[T.EC2_INSTANCE.value]


# EC2 ------------------------------------------------------------------------------------------
def test_an_ssm_grant_creates_a_bounded_role_for_that_instance_only(grants_env):
    instance = ec2_instance(grants_env)
    instance_id = instance.remote_id
    ada = person("ada")

    outcome = DRIVER.apply(assign(ada, instance, "ssm-session"))

    name = name_of(instance, "ssm-session")
    assert name.startswith(f"portcullis-ec2-{instance_id}-{REGION}-")
    found = role(name)
    assert found is not None
    assert found["Path"] == "/portcullis/"
    assert found["PermissionsBoundary"]["PermissionsBoundaryArn"] == BOUNDARY
    assert outcome.state["role_arn"] == f"arn:aws:iam::{ACCOUNT}:role/portcullis/{name}"
    assert tags(found) == {
        "portcullis:managed": "true",
        "portcullis:resource": instance.arn,
        "portcullis:access-level": "ssm-session",
    }
    assert subjects_of(trust(name)) == ["ada-subject"]
    (only,) = trust(name)["Statement"]
    assert only["Sid"] == "PortcullisManaged"
    start, own = permissions(name)["Statement"]
    assert start["Action"] == "ssm:StartSession"
    assert start["Resource"] == [
        f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{instance_id}",
        f"arn:aws:ssm:{REGION}:{ACCOUNT}:document/SSM-SessionManagerRunShell",
    ]
    assert own["Action"] == ["ssm:ResumeSession", "ssm:TerminateSession"]
    assert own["Resource"] == "arn:aws:ssm:*:*:session/${aws:userid}-*"
    # Nothing the boundary would cut off: what the role allows is all the boundary allows.
    boundary_actions = {a for actions in setup_policies.BOUNDARY_ACTIONS.values() for a in actions}
    assert {start["Action"], *own["Action"]} <= boundary_actions


def test_holders_share_the_role_which_goes_with_the_last_of_them(grants_env):
    instance = ec2_instance(grants_env)
    name = name_of(instance, "ssm-session")
    ada, bob = person("ada"), person("bob")
    ada_assignment, bob_assignment = (
        assign(ada, instance, "ssm-session"),
        assign(bob, instance, "ssm-session"),
    )

    DRIVER.apply(ada_assignment)
    DRIVER.apply(ada_assignment)  # again: nothing changes
    DRIVER.apply(bob_assignment)
    assert subjects_of(trust(name)) == ["ada-subject", "bob-subject"]
    assert len(member_client("iam").list_roles(PathPrefix="/portcullis/")["Roles"]) == 1

    DRIVER.remove(ada_assignment)
    DRIVER.remove(ada_assignment)  # again: still only Bob
    assert subjects_of(trust(name)) == ["bob-subject"]
    assert set(revoked_patterns(member_client("iam"), name)) == denied(ada)

    DRIVER.remove(bob_assignment)
    assert role(name) is None
    outcome = DRIVER.remove(bob_assignment)  # again: already gone
    assert "already gone" in outcome.note


def test_after_a_revoke_no_session_the_holder_can_mint_on_the_managed_role_escapes(grants_env):
    instance = ec2_instance(grants_env)
    name = name_of(instance, "ssm-session")
    ada, bob = person("ada", "auth0|ada"), person("bob")
    ada_assignment = assign(ada, instance, "ssm-session")
    ada_assignment.driver_state = DRIVER.apply(ada_assignment).state
    DRIVER.apply(assign(bob, instance, "ssm-session"))
    before = trust(name)
    at = datetime(2030, 5, 1, 9, 0, tzinfo=UTC)

    with time_machine.travel(at, tick=False):
        DRIVER.remove(ada_assignment)

    revoked = inline_policy(member_client("iam"), name, iam_grants.REVOKED_SESSIONS_POLICY)
    assert_no_session_escapes(
        before, trust(name), revoked, gone="auth0|ada", stays="bob-subject", at=at
    )


def test_a_role_deleted_behind_portcullis_is_created_again_by_the_next_grant(grants_env):
    instance = ec2_instance(grants_env)
    name = name_of(instance, "ssm-session")
    assignment = assign(person("ada"), instance, "ssm-session")
    DRIVER.apply(assignment)
    iam = member_client("iam")
    iam.delete_role_policy(RoleName=name, PolicyName="PortcullisAccess")
    iam.delete_role(RoleName=name)

    DRIVER.apply(assignment)

    assert subjects_of(trust(name)) == ["ada-subject"]
    assert permissions(name)["Statement"][0]["Action"] == "ssm:StartSession"


def test_a_same_named_role_outside_the_portcullis_path_is_not_taken_over(grants_env):
    instance = ec2_instance(grants_env)
    name = name_of(instance, "ssm-session")
    member_client("iam").create_role(
        RoleName=name,
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "ec2.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )

    with pytest.raises(DriverError) as error:
        DRIVER.apply(assign(person("ada"), instance, "ssm-session"))

    assert not error.value.retryable
    assert "not one Portcullis manages" in error.value.message
    untouched = member_client("iam").get_role(RoleName=name)["Role"]
    assert untouched["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "ec2.amazonaws.com"
    }


def test_a_user_not_yet_signed_in_creates_no_role(grants_env):
    instance = ec2_instance(grants_env)

    with pytest.raises(SubjectUnknown):
        DRIVER.apply(assign(make_user("new@example.com"), instance, "ssm-session"))

    assert member_client("iam").list_roles(PathPrefix="/portcullis/")["Roles"] == []


# RDS and Aurora -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make_db", "metadata_key", "readable"),
    [
        (db_instance, "dbi_resource_id", "portcullis-rds-orders-app_ro"),
        (db_cluster, "db_cluster_resource_id", "portcullis-rds-ledger-app_ro"),
    ],
    ids=["rds-postgres", "aurora-mysql"],
)
def test_a_database_grant_allows_connecting_as_that_database_user_only(
    grants_env, make_db, metadata_key, readable
):
    db = make_db(grants_env)
    prefix = name_of(db, "app_ro")
    assert prefix.startswith(f"{readable}-{REGION}-")
    resource_id = db.metadata[metadata_key]
    assert resource_id
    ada, bob = person("ada"), person("bob")
    ada_assignment = assign(ada, db, "app_ro")
    driver = managed.DRIVERS[db.type]

    driver.apply(ada_assignment)
    driver.apply(assign(bob, db, "app_ro"))

    (statement,) = permissions(prefix)["Statement"]
    assert statement["Action"] == "rds-db:connect"
    assert statement["Resource"] == f"arn:aws:rds-db:{REGION}:{ACCOUNT}:dbuser:{resource_id}/app_ro"
    assert subjects_of(trust(prefix)) == ["ada-subject", "bob-subject"]
    found = role(prefix)
    assert found is not None and tags(found)["portcullis:access-level"] == "app_ro"

    driver.remove(ada_assignment)
    assert subjects_of(trust(prefix)) == ["bob-subject"]


def test_a_database_not_yet_synced_with_its_resource_id_fails_clearly(grants_env):
    db = db_instance(grants_env)
    db.metadata = {**db.metadata, "dbi_resource_id": ""}
    db.save()

    with pytest.raises(DriverError) as error:
        managed.DRIVERS[db.type].apply(assign(person("ada"), db, "app_ro"))

    assert not error.value.retryable
    assert "run a sync" in error.value.message
    assert member_client("iam").list_roles(PathPrefix="/portcullis/")["Roles"] == []


# EKS ------------------------------------------------------------------------------------------
def test_an_eks_grant_maps_the_role_with_an_access_entry_and_the_levels_policy(
    grants_env, eks_stub
):
    cluster = eks_cluster(grants_env)
    name = name_of(cluster, EKS_VIEW)
    assert name.startswith(f"portcullis-eks-platform-view-{REGION}-")
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/portcullis/{name}"
    ada, bob = person("ada"), person("bob")
    ada_assignment, bob_assignment = assign(ada, cluster, EKS_VIEW), assign(bob, cluster, EKS_VIEW)
    driver = managed.DRIVERS[T.EKS_CLUSTER.value]
    expect_mapping(eks_stub, role_arn)
    expect_mapping(eks_stub, role_arn, exists=True)

    driver.apply(ada_assignment)
    driver.apply(bob_assignment)

    (statement,) = permissions(name)["Statement"]
    assert statement == {
        "Sid": "DescribeThisCluster",
        "Effect": "Allow",
        "Action": "eks:DescribeCluster",
        "Resource": cluster.arn,
    }
    assert subjects_of(trust(name)) == ["ada-subject", "bob-subject"]

    driver.remove(ada_assignment)  # Bob still holds it: the access entry stays
    assert subjects_of(trust(name)) == ["bob-subject"]

    expect_unmapping(eks_stub, role_arn)
    driver.remove(bob_assignment)
    assert role(name) is None

    expect_unmapping(eks_stub, role_arn, found=False)
    driver.remove(bob_assignment)  # again: the entry and the role are gone, success


# Names ----------------------------------------------------------------------------------------
def test_role_names_fit_iams_limit_and_long_ones_stay_distinct():
    def name(*parts: str, region: str = "eu-west-1", identity: str = "one") -> str:
        return managed.role_name(*parts, region=region, identity=identity)

    short = name("ec2", "i-0123456789abcdef0")
    assert re.fullmatch(r"portcullis-ec2-i-0123456789abcdef0-eu-west-1-[0-9a-f]{10}", short)
    first = name("rds", "a" * 63, "reporting_user", identity="first")
    second = name("rds", "a" * 63, "reporting_user", identity="second")
    assert len(first) == len(second) == 64
    assert first != second
    assert first == name("rds", "a" * 63, "reporting_user", identity="first")
    # The region and the digest are never the part that is cut.
    assert name("rds", "a" * 63, region="ap-southeast-2").split("-")[-4:-1] == [
        "ap",
        "southeast",
        "2",
    ]
    assert name("eks", "my cluster", "view").startswith("portcullis-eks-my-cluster-view-")


def test_managed_roles_are_not_synced_as_iam_roles_nor_granted_as_such(grants_env):
    instance = ec2_instance(grants_env)
    DRIVER.apply(assign(person("ada"), instance, "ssm-session"))
    name = name_of(instance, "ssm-session")
    assert role(name) is not None

    listed = members.fetch_iam_roles(member_client("iam"), ACCOUNT)
    assert name not in {r.name for r in listed.resources}
    by_name = members.fetch_iam_roles(member_client("iam"), ACCOUNT, names=[name])
    assert by_name.resources == []

    # Even a row recorded for it before (an older sync) cannot be granted as an IAM role.
    found = role(name)
    row = Resource.objects.create(
        app=grants_env,
        type=T.IAM_ROLE,
        remote_id=found["Arn"],
        arn=found["Arn"],
        name=name,
        account_id=ACCOUNT,
    )
    row.access_levels.create(remote_id="assume", name="Assume role")
    with pytest.raises(DriverError, match="request access to that resource instead"):
        iam_grants.DRIVERS[T.IAM_ROLE].apply(assign(person("bob"), row, "assume"))


# Same-named resources in two regions and two accounts -----------------------------------------
OTHER_ACCOUNT = "345678901234"
OTHER_REGION = "eu-west-1"
# (account, region) of each same-named resource: one account's two regions, another account.
PLACES = [(ACCOUNT, REGION), (ACCOUNT, OTHER_REGION), (OTHER_ACCOUNT, REGION)]


def resource_arn_in(statement: dict[str, Any], resource: Resource) -> bool:
    named = statement["Resource"]
    named = [named] if isinstance(named, str) else named
    return any(resource.arn in r or resource.remote_id in r for r in named)


@pytest.fixture
def eks_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Stubber, list[tuple]]]:
    """The access-entry calls (the stand-in lacks them), with the account and region of the
    client each call was made for."""
    client = clients.client("eks", region=REGION)
    stubber = Stubber(client)
    asked: list[tuple] = []

    def eks_client(app: AwsApp, account: str, region: str) -> Any:
        asked.append((account, region))
        return client

    monkeypatch.setattr(managed, "eks_client", eks_client)
    with stubber:
        yield stubber, asked
    stubber.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("make", "level"),
    [
        (ec2_instance, "ssm-session"),
        (db_instance, "app_ro"),
        (db_cluster, "app_ro"),
        (eks_cluster, EKS_VIEW),
    ],
    ids=["ec2", "rds-postgres", "aurora-mysql", "eks"],
)
def test_same_named_resources_in_other_regions_and_accounts_get_roles_of_their_own(
    grants_env, eks_calls, make, level
):
    stub, asked = eks_calls
    ada_place, *bob_places = PLACES
    ada, bob = person("ada"), person("bob")
    ada_resource = make(grants_env, *ada_place)
    bob_resources = [make(grants_env, *place) for place in bob_places]
    assert len({r.name for r in [ada_resource, *bob_resources]}) == 1
    driver = managed.DRIVERS[ada_resource.type]
    held = [(ada, ada_resource), *((bob, r) for r in bob_resources)]
    names = [name_of(resource, level) for _, resource in held]
    assert len(set(names)) == 3
    arns = [
        f"arn:aws:iam::{r.account_id}:role/portcullis/{name}"
        for (_, r), name in zip(held, names, strict=True)
    ]
    if ada_resource.type == T.EKS_CLUSTER:
        for arn in arns:
            expect_mapping(stub, arn)
        expect_unmapping(stub, arns[0])
    assignments = [assign(user, resource, level) for user, resource in held]

    for assignment in assignments:
        driver.apply(assignment)

    for (user, resource), name in zip(held, names, strict=True):
        # Each role admits its holder only and allows its own resource only.
        assert subjects_of(trust(name, resource.account_id)) == [f"{user.email[:3]}-subject"]
        (first, *_) = permissions(name, resource.account_id)["Statement"]
        if resource.type in (T.RDS_POSTGRES, T.AURORA_MYSQL):
            key = "dbi_resource_id" if resource.type == T.RDS_POSTGRES else "db_cluster_resource_id"
            assert first["Resource"] == (
                f"arn:aws:rds-db:{resource.region}:{resource.account_id}:dbuser:"
                f"{resource.metadata[key]}/{level}"
            )
        else:
            assert resource_arn_in(first, resource)
            others = [r for _, r in held if r.pk != resource.pk]
            assert not any(resource_arn_in(first, other) for other in others)

    driver.remove(assignments[0])  # Ada gives hers up: Bob's two stay as they were

    assert role(names[0], ACCOUNT) is None
    for (_, resource), name in zip(held[1:], names[1:], strict=True):
        assert subjects_of(trust(name, resource.account_id)) == ["bob-subject"]
        assert revoked_patterns(member_client("iam", resource.account_id), name) == {}
    if ada_resource.type == T.EKS_CLUSTER:
        # Every access-entry call went to the account and region of its cluster.
        assert asked == [*PLACES, ada_place]


def assert_only_bob_keeps_sessions(role_name: str, ada: Any, bob: Any) -> None:
    """Every session Ada held on the shared role is denied, whatever she named it (Bob's
    names too, which she could have taken); Bob can mint sessions again."""
    revoked = inline_policy(member_client("iam"), role_name, iam_grants.REVOKED_SESSIONS_POLICY)
    just_now = timezone.now()
    for name in ("ada-chose-this", *(p[2:] for p in denied(ada)), *(p[2:] for p in denied(bob))):
        assert denies(revoked, name, just_now), name
    later = just_now + iam_grants.REVOKE_MARGIN + timedelta(seconds=1)
    for name in (p[2:] for p in denied(bob)):
        assert not denies(revoked, name, later), name


def legacy_role_name(kind: str, *parts: str, region: str, identity: str) -> str:
    """How versions before the per-resource names named a managed role."""
    return re.sub(r"[^\w+=,.@-]", "-", "-".join(["portcullis", kind, *parts]))


def unbind_session_names(role_name: str) -> None:
    """Give the role's trust statement the shape of versions before the session-name
    binding: its holders may name their sessions as they like."""
    document = trust(role_name)
    for statement in document["Statement"]:
        statement["Condition"]["StringEquals"].pop("sts:RoleSessionName", None)
    member_client("iam").update_assume_role_policy(
        RoleName=role_name, PolicyDocument=json.dumps(document)
    )


def share_one_legacy_role(monkeypatch, driver, assignments) -> str:
    """Apply the assignments as an older version did (one role for same-named databases,
    trust statement not binding session names); returns that role's name."""
    with monkeypatch.context() as old:
        old.setattr(managed, "role_name", legacy_role_name)
        for assignment in assignments:
            assignment.driver_state = driver.apply(assignment).state
            assignment.status = AssignmentStatus.APPLIED
            assignment.save()
    shared = "portcullis-rds-orders-app_ro"
    unbind_session_names(shared)
    return shared


def test_grants_on_a_role_shared_by_an_older_version_move_to_roles_of_their_own(
    grants_env, monkeypatch, settings
):
    settings.GRANT_ENGINE_TICK = 0.01
    monkeypatch.setattr(queue, "enqueue", lambda *args: None)
    east, west = db_instance(grants_env), db_instance(grants_env, ACCOUNT, OTHER_REGION)
    ada, bob = person("ada"), person("bob")
    admin = make_user("admin@example.com")

    def grant(user, db):
        return grant_service.create_grant(
            user=user,
            resource=db,
            access_level=db.access_levels.get(remote_id="app_rw"),
            expires_at=None,
            source=GrantSource.ADMIN,
            actor=admin,
        )

    # What an older version did: both databases' grants on one role, named without region.
    with monkeypatch.context() as old:
        old.setattr(managed, "role_name", legacy_role_name)
        ada_grant, bob_grant = grant(ada, east), grant(bob, west)
        for made in (ada_grant, bob_grant):
            assert grant_service.reconcile_assignment(made.assignment_id).action == "applied"
    shared = "portcullis-rds-orders-app_rw"
    unbind_session_names(shared)
    assert subjects_of(trust(shared)) == ["ada-subject", "bob-subject"]
    (statement,) = permissions(shared)["Statement"]
    assert f":{OTHER_REGION}:" in statement["Resource"]  # Ada's role now names Bob's database

    # The upgrade marks them; the grant engine applies them again (first Ada's). Its data
    # migration wrote the columns access 0010 maps to the status: what it leaves.
    migration = import_module(
        "aws_integration.migrations.0002_reapply_managed_roles_named_per_resource"
    )
    marked = Assignment.objects.filter(resource__type__in=migration.MANAGED_TYPES)
    marked.request_reapply()
    marked.update(next_attempt_at=timezone.now())
    assert grant_service.reconcile_assignment(ada_grant.assignment_id).action == "applied"

    ada_role, bob_role = name_of(east, "app_rw"), name_of(west, "app_rw")
    assert subjects_of(trust(ada_role)) == ["ada-subject"]
    (statement,) = permissions(ada_role)["Statement"]
    assert statement["Resource"].startswith(f"arn:aws:rds-db:{REGION}:{ACCOUNT}:dbuser:")
    # The shared role keeps Bob (not moved yet) and denies Ada's sessions there, whatever
    # she named them (its older trust statement let her choose), but not Bob's.
    assert subjects_of(trust(shared)) == ["bob-subject"]
    assert_only_bob_keeps_sessions(shared, ada, bob)
    # The move is in Ada's grant's history: which role she is on now, which she left.
    (moved,) = AuditEvent.objects.filter(action="grant.reapplied", target_id=str(ada_grant.pk))
    assert ada_role in moved.details["note"] and f"former role {shared}" in moved.details["note"]

    assert grant_service.reconcile_assignment(bob_grant.assignment_id).action == "applied"

    assert role(shared) is None  # deleted with the last assignment that was on it
    assert subjects_of(trust(bob_role)) == ["bob-subject"]
    (statement,) = permissions(bob_role)["Statement"]
    assert f":{OTHER_REGION}:" in statement["Resource"]
    for made in (ada_grant, bob_grant):
        made.assignment.refresh_from_db()
        assert made.assignment.status == AssignmentStatus.APPLIED
        assert made.assignment.driver_state["role_arn"].endswith(name_of(made.resource, "app_rw"))


def test_a_grant_revoked_before_it_moved_leaves_the_shared_role_to_the_other_holder(
    grants_env, monkeypatch
):
    east, west = db_instance(grants_env), db_instance(grants_env, ACCOUNT, OTHER_REGION)
    ada, bob = person("ada"), person("bob")
    driver = managed.DRIVERS[east.type]
    ada_assignment, bob_assignment = assign(ada, east, "app_ro"), assign(bob, west, "app_ro")
    shared = share_one_legacy_role(monkeypatch, driver, [ada_assignment, bob_assignment])

    driver.remove(ada_assignment)

    assert subjects_of(trust(shared)) == ["bob-subject"]
    assert_only_bob_keeps_sessions(shared, ada, bob)
    ada_assignment.status = AssignmentStatus.ABSENT
    ada_assignment.save()
    driver.remove(bob_assignment)
    assert role(shared) is None


def test_a_holder_leaving_a_shared_role_keeps_no_session_named_after_one_who_stays(
    grants_env, monkeypatch
):
    east, west = db_instance(grants_env), db_instance(grants_env, ACCOUNT, OTHER_REGION)
    ada, bob, cy = person("ada"), person("bob"), person("cy")
    driver = managed.DRIVERS[east.type]
    held = [assign(ada, east, "app_ro"), assign(bob, west, "app_ro"), assign(cy, east, "app_ro")]
    shared = share_one_legacy_role(monkeypatch, driver, held)
    ada_assignment, _, cy_assignment = held
    # The older trust statement let Ada name her sessions as she liked: after Bob's subject,
    # or after the name older versions gave his sessions.
    minted = datetime(2030, 5, 1, 8, 0, tzinfo=UTC)
    chosen = ["bob-subject", f"portcullis-{bob.pk}", "ada-chose-this"]
    at = datetime(2030, 5, 1, 9, 0, tzinfo=UTC)

    with time_machine.travel(at, tick=False):
        driver.remove(ada_assignment)

    revoked = inline_policy(member_client("iam"), shared, iam_grants.REVOKED_SESSIONS_POLICY)
    for name in chosen:
        assert denies(revoked, name, minted), f"Ada's session named {name} outlives her revoke"
    # Bob and Cy, still entitled, mint sessions again under the now binding statement.
    later = at + iam_grants.REVOKE_MARGIN + timedelta(minutes=1)
    for user in (bob, cy):
        assert not denies(revoked, iam_grants.session_name(user), later)

    # The statement binds names since Ada left: Cy leaving ends Cy's sessions only.
    with time_machine.travel(later + timedelta(minutes=5), tick=False):
        driver.remove(cy_assignment)
    revoked = inline_policy(member_client("iam"), shared, iam_grants.REVOKED_SESSIONS_POLICY)
    assert denies(revoked, "cy-subject", later)
    assert not denies(revoked, "bob-subject", later)
    assert subjects_of(trust(shared)) == ["bob-subject"]


def test_a_shared_role_left_by_one_databases_holders_allows_only_the_other_database(
    grants_env, monkeypatch
):
    east, west = db_instance(grants_env), db_instance(grants_env, ACCOUNT, OTHER_REGION)
    ada, bob = person("ada"), person("bob")
    driver = managed.DRIVERS[east.type]
    ada_assignment, bob_assignment = assign(ada, east, "app_ro"), assign(bob, west, "app_ro")
    shared = share_one_legacy_role(monkeypatch, driver, [ada_assignment, bob_assignment])
    (statement,) = permissions(shared)["Statement"]
    assert f":{OTHER_REGION}:" in statement["Resource"]  # written last, for Bob's database

    # Bob moves to his own role; Ada's move has not happened yet (or keeps failing).
    driver.apply(bob_assignment)

    assert subjects_of(trust(shared)) == ["ada-subject"]
    (statement,) = permissions(shared)["Statement"]
    assert statement["Resource"] == (
        f"arn:aws:rds-db:{REGION}:{ACCOUNT}:dbuser:{east.metadata['dbi_resource_id']}/app_ro"
    )


def test_a_managed_roles_trust_edited_to_free_session_names_makes_a_revoke_deny_all(grants_env):
    instance = ec2_instance(grants_env)
    name = name_of(instance, "ssm-session")
    ada, bob = person("ada"), person("bob")
    ada_assignment = assign(ada, instance, "ssm-session")
    ada_assignment.driver_state = DRIVER.apply(ada_assignment).state
    DRIVER.apply(assign(bob, instance, "ssm-session"))
    unbind_session_names(name)  # someone with IAM rights in the account
    at = datetime(2030, 5, 1, 9, 0, tzinfo=UTC)

    with time_machine.travel(at, tick=False):
        DRIVER.remove(ada_assignment)

    revoked = inline_policy(member_client("iam"), name, iam_grants.REVOKED_SESSIONS_POLICY)
    for chosen in ("ada-chose-this", "bob-subject"):
        assert denies(revoked, chosen, at - timedelta(minutes=5)), chosen
    assert not denies(revoked, "bob-subject", at + timedelta(minutes=2))
    assert subjects_of(trust(name)) == ["bob-subject"]


# A failed apply leaves nothing behind ---------------------------------------------------------
# What the stand-in answers for a call it has no route for (its EKS access entries), and so
# what the demo's EKS grants recorded as their error.
STANDIN_NOT_FOUND_PAGE = (
    "<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n"
    "<p>The requested URL was not found on the server. If you entered the URL manually "
    "please check your spelling and try again.</p>\n"
)


def grant_on(resource: Resource, level: str, user: Any = None) -> Any:
    return grant_service.create_grant(
        user=user or person("ada"),
        resource=resource,
        access_level=resource.access_levels.get(remote_id=level),
        expires_at=None,
        source=GrantSource.ADMIN,
        actor=make_user("admin@example.com"),
    )


def revoke_and_reconcile(grant: Any) -> str:
    grant_service.revoke_grant(grant, actor=None, reason="no longer needed")
    return grant_service.reconcile_assignment(grant.assignment_id).action


def test_an_eks_grant_failing_at_its_access_entry_deletes_its_role_and_is_revoked(
    grants_env, eks_stub
):
    cluster = eks_cluster(grants_env)
    name = name_of(cluster, EKS_VIEW)
    # The one call mocked (the stand-in has no access-entry API): it fails as the stand-in
    # answers an unknown call, with a web page.
    eks_stub.add_client_error(
        "create_access_entry",
        service_error_code="404",
        service_message=STANDIN_NOT_FOUND_PAGE,
        http_status_code=404,
    )
    grant = grant_on(cluster, EKS_VIEW)

    assert grant_service.reconcile_assignment(grant.assignment_id).action == "failed"

    assert role(name) is None
    assert member_client("iam").list_roles(PathPrefix="/portcullis/")["Roles"] == []
    grant.refresh_from_db()
    assert (grant.status, grant.propagation_status) == (GrantStatus.PENDING, "failed")
    assert grant.last_error == (
        f"Creating the EKS access entry of {name} on platform: 404: Not Found The requested "
        "URL was not found on the server. If you entered the URL manually please check your "
        "spelling and try again."
    )
    (failed,) = AuditEvent.objects.filter(action="grant.apply_failed")
    assert failed.details["error"] == grant.last_error
    assert grant.extension_refusal()

    # The revoke removes all the same (an earlier attempt may have left something): the
    # role is gone, and the access entry answers that it is not there.
    eks_stub.add_client_error("delete_access_entry", service_error_code="ResourceNotFoundException")
    assert revoke_and_reconcile(grant) == "removed"
    grant.refresh_from_db()
    assert (grant.status, grant.propagation_status) == (GrantStatus.REVOKED, "removed")


@pytest.mark.parametrize(
    ("make", "level"),
    [(ec2_instance, "ssm-session"), (db_instance, "app_ro"), (db_cluster, "app_ro")],
    ids=["ec2", "rds-postgres", "aurora-mysql"],
)
def test_an_apply_refused_after_creating_its_role_deletes_it_and_is_revoked(
    grants_env, aws_faults, make, level
):
    resource = make(grants_env)
    name = name_of(resource, level)
    aws_faults.deny("iam", "PutRolePolicy")
    grant = grant_on(resource, level)

    assert grant_service.reconcile_assignment(grant.assignment_id).action == "failed"

    assert role(name) is None
    grant.refresh_from_db()
    assert grant.propagation_status == "failed"
    assert f"Writing the permissions of the managed role {name}: AWS refused (AccessDenied" in (
        grant.last_error
    )
    aws_faults.clear()
    assert revoke_and_reconcile(grant) == "removed"
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKED
    assert role(name) is None


def test_a_failed_apply_on_a_role_others_hold_takes_only_its_subject_back(grants_env, aws_faults):
    instance = ec2_instance(grants_env)
    name = name_of(instance, "ssm-session")
    DRIVER.apply(assign(person("bob"), instance, "ssm-session"))
    aws_faults.deny("iam", "PutRolePolicy")

    with pytest.raises(DriverError) as error:
        DRIVER.apply(assign(person("ada"), instance, "ssm-session"))

    assert error.value.left_nothing
    assert subjects_of(trust(name)) == ["bob-subject"]


def test_an_apply_whose_undoing_fails_says_what_is_left_and_its_revoke_removes_it(
    grants_env, aws_faults
):
    instance = ec2_instance(grants_env)
    name = name_of(instance, "ssm-session")
    aws_faults.deny("iam", "PutRolePolicy")
    aws_faults.deny("iam", "DeleteRole")
    grant = grant_on(instance, "ssm-session")

    assert grant_service.reconcile_assignment(grant.assignment_id).action == "failed"

    assert role(name) is not None
    grant.refresh_from_db()
    assert f"Undoing what this attempt changed failed too (Deleting the managed role {name}" in (
        grant.last_error
    )
    assert grant.assignment.status == AssignmentStatus.FAILING
    aws_faults.clear()
    assert revoke_and_reconcile(grant) == "removed"
    assert role(name) is None


def test_a_revoke_after_failed_applies_removes_a_subject_an_earlier_attempt_left(
    grants_env, aws_faults
):
    """An attempt admitted the user's subject and died before recording it; the next one
    found the subject already there (nothing of its own to undo), failed further on and
    said it left nothing. The revoke must still take the subject out."""
    instance = ec2_instance(grants_env)
    name = name_of(instance, "ssm-session")
    DRIVER.apply(assign(person("bob"), instance, "ssm-session"))
    grant = grant_on(instance, "ssm-session")
    DRIVER.apply(grant.assignment)  # the attempt whose outcome was never recorded
    assert sorted(subjects_of(trust(name))) == ["ada-subject", "bob-subject"]
    aws_faults.deny("iam", "PutRolePolicy")

    assert grant_service.reconcile_assignment(grant.assignment_id).action == "failed"
    assert Assignment.objects.get(pk=grant.assignment_id).status == AssignmentStatus.ABSENT

    aws_faults.clear()
    assert revoke_and_reconcile(grant) == "removed"
    assert subjects_of(trust(name)) == ["bob-subject"]

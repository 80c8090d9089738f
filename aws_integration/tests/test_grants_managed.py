"""Managed roles for EC2 (SSM sessions), EKS (access entries) and RDS / Aurora (IAM database
authentication): one role per (resource, access level), shared by its holders, created with
the first and deleted with the last. Asserted on what the stand-in AWS holds afterwards.

The stand-in has no EKS access-entry API: those calls alone go to a botocore Stubber on the
EKS client the driver asks for (managed.eks_client); the roles themselves are in the stand-in.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import Stubber

from access.choices import ResourceType
from access.drivers import DriverError, SubjectUnknown
from access.models import Resource
from aws_integration import clients, policies
from aws_integration.grants import iam as iam_grants
from aws_integration.grants import managed
from aws_integration.models import AwsApp
from aws_integration.sync.fetchers import members
from aws_integration.tests.test_grants_iam import (
    ACCOUNT,
    REGION,
    assign,
    grants_env_fixture,  # noqa: F401 - provides the grants_env fixture
    member_client,
    person,
    revoked_patterns,
    row_of,
    subjects_of,
)
from tests.fixtures import make_user

pytestmark = pytest.mark.django_db

T = ResourceType
EKS_VIEW = members.EKS_POLICY_PREFIX + "AmazonEKSViewPolicy"
BOUNDARY = f"arn:aws:iam::{ACCOUNT}:policy/portcullis/PortcullisPermissionsBoundary"


def role(name: str) -> dict[str, Any] | None:
    roles = member_client("iam").list_roles(PathPrefix="/portcullis/")["Roles"]
    found = [r for r in roles if r["RoleName"] == name]
    if not found:
        return None
    return member_client("iam").get_role(RoleName=name)["Role"]


def permissions(name: str) -> dict[str, Any]:
    document = member_client("iam").get_role_policy(RoleName=name, PolicyName="PortcullisAccess")
    return document["PolicyDocument"]


def trust(name: str) -> dict[str, Any]:
    found = role(name)
    assert found is not None, f"no managed role {name}"
    return found["AssumeRolePolicyDocument"]


def tags(found: dict[str, Any]) -> dict[str, str]:
    listed = member_client("iam").list_role_tags(RoleName=found["RoleName"])["Tags"]
    return {t["Key"]: t["Value"] for t in listed}


# Resources in the stand-in, as sync records them ---------------------------------------------
def ec2_instance(app: AwsApp) -> Resource:
    ec2 = member_client("ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ec2.run_instances(ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1)
    (reservation,) = ec2.describe_instances()["Reservations"]
    return row_of(app, members.instance_record(ACCOUNT, REGION, reservation["Instances"][0]))


def db_instance(app: AwsApp) -> Resource:
    rds = member_client("rds")
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
    return row_of(app, members.db_instance_record(ACCOUNT, REGION, db))


def db_cluster(app: AwsApp) -> Resource:
    rds = member_client("rds")
    rds.create_db_cluster(
        DBClusterIdentifier="ledger",
        Engine="aurora-mysql",
        MasterUsername="admin_user",
        MasterUserPassword="not-a-real-password",
        EnableIAMDatabaseAuthentication=True,
        Tags=[{"Key": members.DB_USERS_TAG, "Value": "app_ro"}],
    )
    (db,) = rds.describe_db_clusters()["DBClusters"]
    return row_of(app, members.db_cluster_record(ACCOUNT, REGION, db))


def eks_cluster(app: AwsApp) -> Resource:
    eks = member_client("eks")
    eks.create_cluster(
        name="platform",
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/EksClusterRole",
        resourcesVpcConfig={"subnetIds": ["subnet-00000001"]},
    )
    cluster = eks.describe_cluster(name="platform")["cluster"]
    return row_of(app, members.cluster_record(ACCOUNT, REGION, cluster))


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

    name = f"portcullis-ec2-{instance_id}"
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
    boundary_actions = {a for actions in policies.BOUNDARY_ACTIONS.values() for a in actions}
    assert {start["Action"], *own["Action"]} <= boundary_actions


def test_holders_share_the_role_which_goes_with_the_last_of_them(grants_env):
    instance = ec2_instance(grants_env)
    name = f"portcullis-ec2-{instance.remote_id}"
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
    assert set(revoked_patterns(member_client("iam"), name)) == {
        f"*:{iam_grants.session_name(ada)}"
    }

    DRIVER.remove(bob_assignment)
    assert role(name) is None
    outcome = DRIVER.remove(bob_assignment)  # again: already gone
    assert "already gone" in outcome.note


def test_a_role_deleted_behind_portcullis_is_created_again_by_the_next_grant(grants_env):
    instance = ec2_instance(grants_env)
    name = f"portcullis-ec2-{instance.remote_id}"
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
    name = f"portcullis-ec2-{instance.remote_id}"
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
    ("make_db", "metadata_key", "prefix"),
    [
        (db_instance, "dbi_resource_id", "portcullis-rds-orders-app_ro"),
        (db_cluster, "db_cluster_resource_id", "portcullis-rds-ledger-app_ro"),
    ],
    ids=["rds-postgres", "aurora-mysql"],
)
def test_a_database_grant_allows_connecting_as_that_database_user_only(
    grants_env, make_db, metadata_key, prefix
):
    db = make_db(grants_env)
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
    name = "portcullis-eks-platform-view"
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
    short = managed.role_name("ec2", "i-0123456789abcdef0")
    assert short == "portcullis-ec2-i-0123456789abcdef0"
    first = managed.role_name("rds", "a" * 63, "reporting_user")
    second = managed.role_name("rds", "a" * 63, "reporting_users")
    assert len(first) == len(second) == 64
    assert first != second
    assert first == managed.role_name("rds", "a" * 63, "reporting_user")
    assert managed.role_name("eks", "my cluster", "view") == "portcullis-eks-my-cluster-view"


def test_managed_roles_are_not_synced_as_iam_roles_nor_granted_as_such(grants_env):
    instance = ec2_instance(grants_env)
    DRIVER.apply(assign(person("ada"), instance, "ssm-session"))
    name = f"portcullis-ec2-{instance.remote_id}"
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

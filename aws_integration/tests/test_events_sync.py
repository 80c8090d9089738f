"""Real-time sync end to end: a change made in the stand-in AWS (moto over HTTP) through
boto3, its CloudTrail event (in the shape of the public samples, with the real ids) put on
an SQS queue, ``poll_queue``, and the inventory row that changed."""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError
from django.conf import settings

from access.choices import GrantSource, GrantStatus, ResourceType
from access.models import Grant, Resource
from audit.models import AuditEvent
from aws_integration import clients
from aws_integration.choices import SyncKind, SyncStatus
from aws_integration.events.poller import poll_queue
from aws_integration.models import AwsApp, IdentityCenterUser, SyncIssue, SyncRun
from aws_integration.sync import engine
from aws_integration.sync import services as sync_services
from demo import seed
from demo.standin_cloudtrail import envelope
from tests.fixtures import make_user, shared_samples

SAMPLES = shared_samples("cloudtrail")
REGION = "us-east-1"
# Small on purpose: one member account, two OUs (Workloads > Production), one permission
# set, group and assignment. Each test makes its own objects on top.
EVENTS_SEED = seed.SeedSize.minimal("events", ous=2, idc_users=2, assignments_per_account=1)


# Fixtures -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def _seed_cache() -> dict[str, seed.SeedResult]:
    return {}


@pytest.fixture
def org(moto_server: str, settings, _seed_cache) -> seed.SeedResult:
    """The organization, seeded once for the module (tests add their own objects rather
    than change the seeded ones), and again if another module emptied the stand-in."""
    settings.AWS_ENDPOINT_URL = moto_server
    settings.AWS_MAX_ATTEMPTS = 2
    result = _seed_cache.get("org")
    if result is None or not _still_seeded(result):
        requests.post(f"{moto_server}/moto-api/reset", timeout=10).raise_for_status()
        result = _seed_cache["org"] = seed.seed_organization(EVENTS_SEED, region=REGION)
    return result


def _still_seeded(result: seed.SeedResult) -> bool:
    try:
        found = management("organizations").describe_organization()["Organization"]
    except ClientError:
        return False
    return found["Id"] == result.organization_id


@pytest.fixture
def queue(org) -> Iterator[str]:
    sqs = management("sqs")
    url = sqs.create_queue(QueueName=f"portcullis-events-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    yield url
    sqs.delete_queue(QueueUrl=url)


@pytest.fixture
def app(org, queue, db) -> AwsApp:
    return AwsApp.objects.create(
        name="Events organization",
        management_account_id=org.management_account_id,
        organization_management=True,
        identity_center_management=True,
        identity_center_region=org.region,
        identity_center_instance_arn=org.instance_arn,
        identity_store_id=org.identity_store_id,
        access_portal_url=f"https://{org.identity_store_id}.awsapps.com/start",
        regions=[REGION],
        sqs_queue_url=queue,
    )


# Helpers ----------------------------------------------------------------------------------
def management(service: str) -> Any:
    return _client(service, "", settings.AWS_ENDPOINT_URL)


def member(org: seed.SeedResult, service: str, account_id: str | None = None) -> Any:
    return _client(service, account_id or org.accounts[0].account_id, settings.AWS_ENDPOINT_URL)


@functools.cache
def _client(service: str, account_id: str, endpoint: str) -> Any:
    # Made once per module run: a client costs more to make than most calls to moto.
    if account_id:
        session = clients.session_for_account(account_id, seed.MEMBER_ACCOUNT_ROLE, region=REGION)
    else:
        session = clients.make_session(seed.STANDIN_CREDENTIALS, region=REGION)
    return clients.client(service, session=session, region=REGION)


def cloudtrail(
    sample_name: str,
    *,
    account_id: str,
    request: dict[str, Any] | None = None,
    response: Any = ...,
    region: str = REGION,
    **fields: Any,
) -> dict[str, Any]:
    """An EventBridge envelope around the sample's record, made to describe this change:
    its account, region, time, ids and (when given) request and response."""
    return envelope(
        json.loads((SAMPLES / sample_name).read_text()),
        account_id=account_id,
        region=region,
        request=request,
        response=response,
        **fields,
    )


def send(queue_url: str, *messages: dict | str) -> None:
    sqs = management("sqs")
    for message in messages:
        body = message if isinstance(message, str) else json.dumps(message)
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)


def poll(app: AwsApp) -> dict[str, int]:
    return poll_queue(app, max_seconds=30, wait_seconds=0)


def queue_depth(queue_url: str) -> tuple[int, int]:
    """(visible, in flight) messages."""
    attributes = management("sqs").get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


def full_sync(app: AwsApp) -> SyncRun:
    run = sync_services.request_sync(app, enqueue=False)
    return engine.run_sync(run.pk)


def row(app: AwsApp, type_: str, remote_id: str) -> Resource | None:
    return Resource.objects.filter(app=app, type=type_, remote_id=remote_id).first()


def instance_items(*instance_ids: str, state: str = "pending") -> dict[str, Any]:
    return {
        "items": [
            {"instanceId": i, "currentState": {"code": 0, "name": state}} for i in instance_ids
        ]
    }


def run_instance(org: seed.SeedResult, **tags: str) -> str:
    ec2 = member(org, "ec2")
    kwargs: dict[str, Any] = {"ImageId": "ami-12345678", "MinCount": 1, "MaxCount": 1}
    if tags:
        kwargs["TagSpecifications"] = [
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ]
    return ec2.run_instances(**kwargs)["Instances"][0]["InstanceId"]


def run_instances_event(org: seed.SeedResult, instance_id: str) -> dict[str, Any]:
    account_id = org.accounts[0].account_id
    record = json.loads(
        (SAMPLES / "variants/ec2.amazonaws.com-RunInstances.panther-success.json").read_text()
    )
    response = record["responseElements"]
    response["instancesSet"]["items"][0]["instanceId"] = instance_id
    response["ownerId"] = account_id
    return cloudtrail(
        "variants/ec2.amazonaws.com-RunInstances.panther-success.json",
        account_id=account_id,
        response=response,
    )


def instance_event(org: seed.SeedResult, name: str, instance_id: str, state: str) -> dict:
    return cloudtrail(
        f"ec2.amazonaws.com-{name}.json",
        account_id=org.accounts[0].account_id,
        request={"instancesSet": {"items": [{"instanceId": instance_id}]}},
        response={"instancesSet": instance_items(instance_id, state=state), "requestId": "r"},
    )


# EC2 --------------------------------------------------------------------------------------
def test_a_launched_instance_arrives_through_the_queue(org, app):
    instance_id = run_instance(org, Name="events-web")
    send(app.sqs_queue_url, run_instances_event(org, instance_id))

    counts = poll(app)

    assert counts["received"] == counts["handled"] == 1
    instance = row(app, ResourceType.EC2_INSTANCE, instance_id)
    assert instance is not None
    assert (instance.name, instance.account_id, instance.region) == (
        "events-web",
        org.accounts[0].account_id,
        REGION,
    )
    assert instance.deleted_at is None
    assert queue_depth(app.sqs_queue_url) == (0, 0)


def test_stopping_starting_and_terminating_an_instance_follow_its_state(org, app):
    ec2 = member(org, "ec2")
    instance_id = run_instance(org)
    send(app.sqs_queue_url, run_instances_event(org, instance_id))
    poll(app)
    assert row(app, ResourceType.EC2_INSTANCE, instance_id).metadata["state"] in (
        "pending",
        "running",
    )

    ec2.stop_instances(InstanceIds=[instance_id])
    send(app.sqs_queue_url, instance_event(org, "StopInstances", instance_id, "stopping"))
    assert poll(app)["handled"] == 1
    assert row(app, ResourceType.EC2_INSTANCE, instance_id).metadata["state"] == "stopped"

    ec2.start_instances(InstanceIds=[instance_id])
    send(app.sqs_queue_url, instance_event(org, "StartInstances", instance_id, "pending"))
    assert poll(app)["handled"] == 1
    assert row(app, ResourceType.EC2_INSTANCE, instance_id).metadata["state"] == "running"

    ec2.terminate_instances(InstanceIds=[instance_id])
    send(app.sqs_queue_url, instance_event(org, "TerminateInstances", instance_id, "shutting-down"))
    assert poll(app)["handled"] == 1
    assert row(app, ResourceType.EC2_INSTANCE, instance_id).deleted_at is not None


def test_tags_set_and_removed_on_an_instance_reach_its_row(org, app):
    ec2 = member(org, "ec2")
    account_id = org.accounts[0].account_id
    instance_id = run_instance(org, Name="events-tags")
    volume_id = ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=1)["VolumeId"]
    resources = [{"Key": "team", "Value": "payments"}]
    ec2.create_tags(Resources=[volume_id, instance_id], Tags=resources)
    send(
        app.sqs_queue_url,
        cloudtrail(
            "variants/ec2.amazonaws.com-CreateTags.custodian-trimmed.json",
            account_id=account_id,
            request={
                "resourcesSet": {"items": [{"resourceId": volume_id}, {"resourceId": instance_id}]},
                "tagSet": {"items": [{"key": "team", "value": "payments"}]},
            },
        ),
    )
    assert poll(app)["handled"] == 1
    assert row(app, ResourceType.EC2_INSTANCE, instance_id).tags == {
        "Name": "events-tags",
        "team": "payments",
    }
    assert not Resource.objects.filter(remote_id=volume_id).exists()

    ec2.delete_tags(Resources=[instance_id], Tags=[{"Key": "team"}])
    send(
        app.sqs_queue_url,
        cloudtrail(
            "ec2.amazonaws.com-CreateTags.json",
            account_id=account_id,
            eventName="DeleteTags",
            request={
                "resourcesSet": {"items": [{"resourceId": instance_id}]},
                "tagSet": {"items": [{"key": "team"}]},
            },
        ),
    )
    assert poll(app)["handled"] == 1
    assert row(app, ResourceType.EC2_INSTANCE, instance_id).tags == {"Name": "events-tags"}


# IAM --------------------------------------------------------------------------------------
def test_an_iam_role_created_retrusted_tagged_and_deleted_follows_each_event(org, app):
    iam = member(org, "iam")
    account_id = org.accounts[0].account_id
    name = f"events-role-{uuid.uuid4().hex[:6]}"
    trust = {
        "Version": "2012-10-17",
        "Statement": {
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{org.management_account_id}:root"},
            "Action": "sts:AssumeRole",
        },
    }
    role = iam.create_role(RoleName=name, Path="/team/", AssumeRolePolicyDocument=json.dumps(trust))
    arn = role["Role"]["Arn"]
    send(
        app.sqs_queue_url,
        cloudtrail(
            "iam.amazonaws.com-CreateRole.json",
            account_id=account_id,
            request={
                "roleName": name,
                "path": "/team/",
                "assumeRolePolicyDocument": json.dumps(trust),
            },
            response={
                "role": {
                    "arn": arn,
                    "roleName": name,
                    "path": "/team/",
                    "roleId": role["Role"]["RoleId"],
                    "createDate": "Aug 1, 2024 1:37:41 PM",
                    "assumeRolePolicyDocument": requests.utils.quote(json.dumps(trust)),  # type: ignore[attr-defined]
                }
            },
        ),
    )
    assert poll(app)["handled"] == 1
    created = row(app, ResourceType.IAM_ROLE, arn)
    assert created is not None and created.name == name and created.account_id == account_id

    new_trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(new_trust))
    iam.tag_role(RoleName=name, Tags=[{"Key": "team", "Value": "data"}])
    # Only the role's name is in these events (not its path): the refresh finds it.
    send(
        app.sqs_queue_url,
        cloudtrail(
            "iam.amazonaws.com-UpdateAssumeRolePolicy.json",
            account_id=account_id,
            request={"roleName": name, "policyDocument": json.dumps(new_trust)},
        ),
        cloudtrail(
            "iam.amazonaws.com-TagRole.json",
            account_id=account_id,
            request={"roleName": name, "tags": [{"key": "team", "value": "data"}]},
        ),
    )
    assert poll(app)["handled"] == 2
    updated = row(app, ResourceType.IAM_ROLE, arn)
    assert updated.metadata["trust_policy"]["Statement"][0]["Principal"] == {
        "Service": "ec2.amazonaws.com"
    }
    assert updated.tags == {"team": "data"}

    iam.untag_role(RoleName=name, TagKeys=["team"])
    send(
        app.sqs_queue_url,
        cloudtrail(
            "iam.amazonaws.com-TagRole.json",
            account_id=account_id,
            eventName="UntagRole",
            request={"roleName": name, "tagKeys": ["team"]},
        ),
    )
    assert poll(app)["handled"] == 1
    assert row(app, ResourceType.IAM_ROLE, arn).tags == {}

    iam.delete_role(RoleName=name)
    send(
        app.sqs_queue_url,
        cloudtrail(
            "iam.amazonaws.com-DeleteRole.json", account_id=account_id, request={"roleName": name}
        ),
    )
    assert poll(app)["handled"] == 1
    assert row(app, ResourceType.IAM_ROLE, arn).deleted_at is not None


# RDS --------------------------------------------------------------------------------------
def test_a_database_instance_created_modified_and_deleted_follows_each_event(org, app):
    rds = member(org, "rds")
    account_id = org.accounts[0].account_id
    identifier = f"events-db-{uuid.uuid4().hex[:6]}"
    created = rds.create_db_instance(
        DBInstanceIdentifier=identifier,
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        AllocatedStorage=20,
        MasterUsername="portcullis",
        MasterUserPassword="stand-in-only-password",
        Tags=[{"Key": seed.DB_USERS_TAG, "Value": "app_ro"}],
    )["DBInstance"]
    arn = created["DBInstanceArn"]
    sample = json.loads((SAMPLES / "rds.amazonaws.com-CreateDBInstance.json").read_text())
    response = sample["responseElements"] | {
        "dBInstanceArn": arn,
        "dBInstanceIdentifier": identifier,
        "engine": "postgres",
    }
    send(
        app.sqs_queue_url,
        cloudtrail(
            "rds.amazonaws.com-CreateDBInstance.json",
            account_id=account_id,
            request=sample["requestParameters"]
            | {"dBInstanceIdentifier": identifier, "engine": "postgres"},
            response=response,
        ),
    )
    assert poll(app)["handled"] == 1
    database = row(app, ResourceType.RDS_POSTGRES, arn)
    assert database is not None and database.metadata["iam_auth_enabled"] is False
    assert list(database.access_levels.values_list("remote_id", flat=True)) == ["app_ro"]

    rds.modify_db_instance(
        DBInstanceIdentifier=identifier, EnableIAMDatabaseAuthentication=True, ApplyImmediately=True
    )
    # No sample: the shape AWS documents, with responseElements null as many writes have.
    send(
        app.sqs_queue_url,
        cloudtrail(
            "rds.amazonaws.com-CreateDBInstance.json",
            account_id=account_id,
            eventName="ModifyDBInstance",
            request={
                "dBInstanceIdentifier": identifier,
                "enableIAMDatabaseAuthentication": True,
                "applyImmediately": True,
            },
            response=None,
        ),
    )
    assert poll(app)["handled"] == 1
    assert row(app, ResourceType.RDS_POSTGRES, arn).metadata["iam_auth_enabled"] is True

    rds.delete_db_instance(DBInstanceIdentifier=identifier, SkipFinalSnapshot=True)
    send(
        app.sqs_queue_url,
        cloudtrail(
            "rds.amazonaws.com-CreateDBInstance.json",
            account_id=account_id,
            eventName="DeleteDBInstance",
            request={"dBInstanceIdentifier": identifier, "skipFinalSnapshot": True},
            response=None,
        ),
    )
    assert poll(app)["handled"] == 1
    assert row(app, ResourceType.RDS_POSTGRES, arn).deleted_at is not None


def test_an_aurora_cluster_created_and_deleted_follows_each_event(org, app):
    rds = member(org, "rds")
    account_id = org.accounts[0].account_id
    identifier = f"events-aurora-{uuid.uuid4().hex[:6]}"
    cluster = rds.create_db_cluster(
        DBClusterIdentifier=identifier,
        Engine="aurora-mysql",
        MasterUsername="portcullis",
        MasterUserPassword="stand-in-only-password",
        EnableIAMDatabaseAuthentication=True,
    )["DBCluster"]
    arn = cluster["DBClusterArn"]
    sample = json.loads((SAMPLES / "rds.amazonaws.com-CreateDBCluster.json").read_text())
    send(
        app.sqs_queue_url,
        cloudtrail(
            "rds.amazonaws.com-CreateDBCluster.json",
            account_id=account_id,
            request=sample["requestParameters"] | {"dBClusterIdentifier": identifier},
            response=sample["responseElements"]
            | {"dBClusterIdentifier": identifier, "dBClusterArn": arn},
        ),
    )
    assert poll(app)["handled"] == 1
    created = row(app, ResourceType.AURORA_MYSQL, arn)
    assert created is not None and created.name == identifier

    rds.delete_db_cluster(DBClusterIdentifier=identifier, SkipFinalSnapshot=True)
    send(
        app.sqs_queue_url,
        cloudtrail(
            "rds.amazonaws.com-CreateDBCluster.json",
            account_id=account_id,
            eventName="DeleteDBCluster",
            request={"dBClusterIdentifier": identifier, "skipFinalSnapshot": True},
            response=None,
        ),
    )
    assert poll(app)["handled"] == 1
    assert row(app, ResourceType.AURORA_MYSQL, arn).deleted_at is not None


# EKS --------------------------------------------------------------------------------------
def test_an_eks_cluster_created_and_deleted_follows_each_event(org, app):
    eks = member(org, "eks")
    account_id = org.accounts[0].account_id
    name = f"events-eks-{uuid.uuid4().hex[:6]}"
    role_arn = f"arn:aws:iam::{account_id}:role/{seed.EKS_CLUSTER_ROLE}"
    cluster = eks.create_cluster(
        name=name,
        roleArn=role_arn,
        resourcesVpcConfig={"subnetIds": ["subnet-a670c2df", "subnet-4f8c5004"]},
    )["cluster"]
    sample = json.loads((SAMPLES / "eks.amazonaws.com-CreateCluster.json").read_text())
    send(
        app.sqs_queue_url,
        cloudtrail(
            "eks.amazonaws.com-CreateCluster.json",
            account_id=account_id,
            request=sample["requestParameters"] | {"clusterName": name, "roleArn": role_arn},
            response={
                "cluster": sample["responseElements"]["cluster"]
                | {"clusterName": name, "arn": cluster["arn"], "roleArn": role_arn}
            },
        ),
    )
    assert poll(app)["handled"] == 1
    created = row(app, ResourceType.EKS_CLUSTER, cluster["arn"])
    assert created is not None and created.name == name

    eks.delete_cluster(name=name)
    send(
        app.sqs_queue_url,
        cloudtrail(
            "eks.amazonaws.com-CreateCluster.json",
            account_id=account_id,
            eventName="DeleteCluster",
            request={"name": name},
            response={"cluster": {"name": name, "arn": cluster["arn"], "status": "DELETING"}},
        ),
    )
    assert poll(app)["handled"] == 1
    assert row(app, ResourceType.EKS_CLUSTER, cluster["arn"]).deleted_at is not None


# Organizations ---------------------------------------------------------------------------------
def test_a_new_account_arrives_with_its_create_account_result(org, app):
    organizations = management("organizations")
    status = organizations.create_account(
        Email=f"events-{uuid.uuid4().hex[:6]}@demo.portcullis.test", AccountName="events-new"
    )["CreateAccountStatus"]
    account_id = status["AccountId"]
    # AWS answers IN_PROGRESS without the account ID; the result event brings it later.
    send(
        app.sqs_queue_url,
        cloudtrail(
            "organizations.amazonaws.com-CreateAccount.json",
            account_id=org.management_account_id,
            request={"email": "****", "accountName": "events-new", "tags": []},
            response={
                "createAccountStatus": {
                    "accountName": "events-new",
                    "state": "IN_PROGRESS",
                    "id": status["Id"],
                    "requestedTimestamp": "Sep 16, 2020 9:20:50 PM",
                }
            },
        ),
    )
    assert poll(app)["ignored"] == 1
    assert row(app, ResourceType.ACCOUNT, account_id) is None

    send(
        app.sqs_queue_url,
        cloudtrail(
            "organizations.amazonaws.com-CreateAccount.json",
            account_id=org.management_account_id,
            eventName="CreateAccountResult",
            eventType="AwsServiceEvent",
            request=None,
            response=None,
            serviceEventDetails={
                "createAccountStatus": {
                    "id": status["Id"],
                    "state": "SUCCEEDED",
                    "accountName": "****",
                    "accountId": account_id,
                    "requestedTimestamp": "Jun 22, 2020 4:47:00 PM",
                    "completedTimestamp": "Jun 22, 2020 4:47:01 PM",
                }
            },
        ),
    )
    assert poll(app)["handled"] == 1
    account = row(app, ResourceType.ACCOUNT, account_id)
    assert account is not None and account.name == "events-new" and account.deleted_at is None


def test_ous_and_accounts_moved_created_deleted_and_removed_follow_each_event(org, app):
    organizations = management("organizations")
    account_id = organizations.create_account(
        Email=f"events-{uuid.uuid4().hex[:6]}@demo.portcullis.test", AccountName="events-move"
    )["CreateAccountStatus"]["AccountId"]
    ou = organizations.create_organizational_unit(
        ParentId=org.root_id, Name=f"Events {uuid.uuid4().hex[:4]}"
    )["OrganizationalUnit"]
    send(
        app.sqs_queue_url,
        cloudtrail(
            "organizations.amazonaws.com-CreateOrganizationalUnit.json",
            account_id=org.management_account_id,
            request={"name": ou["Name"], "parentId": org.root_id},
            response={"organizationalUnit": {"arn": ou["Arn"], "id": ou["Id"], "name": ou["Name"]}},
        ),
    )
    assert poll(app)["handled"] == 1
    assert row(app, ResourceType.ORGANIZATIONAL_UNIT, ou["Id"]).name == ou["Name"]

    organizations.move_account(
        AccountId=account_id, SourceParentId=org.root_id, DestinationParentId=ou["Id"]
    )
    send(
        app.sqs_queue_url,
        cloudtrail(
            "organizations.amazonaws.com-MoveAccount.json",
            account_id=org.management_account_id,
            request={
                "accountId": account_id,
                "destinationParentId": ou["Id"],
                "sourceParentId": org.root_id,
            },
        ),
    )
    assert poll(app)["handled"] == 1
    moved = row(app, ResourceType.ACCOUNT, account_id)
    assert moved.parent == row(app, ResourceType.ORGANIZATIONAL_UNIT, ou["Id"])

    organizations.remove_account_from_organization(AccountId=account_id)
    organizations.delete_organizational_unit(OrganizationalUnitId=ou["Id"])
    send(
        app.sqs_queue_url,
        cloudtrail(
            "organizations.amazonaws.com-RemoveAccountFromOrganization.json",
            account_id=org.management_account_id,
            request={"accountId": account_id},
        ),
        cloudtrail(
            "organizations.amazonaws.com-MoveAccount.json",
            account_id=org.management_account_id,
            eventName="DeleteOrganizationalUnit",
            request={"organizationalUnitId": ou["Id"]},
        ),
    )
    assert poll(app)["handled"] == 2
    assert row(app, ResourceType.ACCOUNT, account_id).deleted_at is not None
    assert row(app, ResourceType.ORGANIZATIONAL_UNIT, ou["Id"]).deleted_at is not None


# Identity Center --------------------------------------------------------------------------------
def test_groups_and_memberships_follow_identitystore_and_console_events(org, app):
    store = management("identitystore")
    store_id = org.identity_store_id
    group_id = store.create_group(IdentityStoreId=store_id, DisplayName="Events Group")["GroupId"]
    send(
        app.sqs_queue_url,
        cloudtrail(
            "sso-directory.amazonaws.com-CreateGroup.json",
            account_id=org.management_account_id,
            request={"identityStoreId": store_id, "displayName": "Events Group"},
            response={"group": {"groupId": group_id, "displayName": "Events Group"}},
        ),
    )
    assert poll(app)["handled"] == 1
    assert row(app, ResourceType.IDC_GROUP, group_id).name == "Events Group"

    # A portal user linked to an identity store user: memberships become observed grants.
    email = f"events-{uuid.uuid4().hex[:6]}@demo.portcullis.test"
    user_id = store.create_user(
        IdentityStoreId=store_id,
        UserName=email,
        DisplayName="Eve Events",
        Name={"GivenName": "Eve", "FamilyName": "Events"},
        Emails=[{"Value": email, "Primary": True}],
    )["UserId"]
    portal_user = make_user(email)
    IdentityCenterUser.objects.create(
        app=app, remote_id=user_id, user_name=email, email=email, portal_user=portal_user
    )
    membership_id = store.create_group_membership(
        IdentityStoreId=store_id, GroupId=group_id, MemberId={"UserId": user_id}
    )["MembershipId"]
    partial = json.loads(
        (
            SAMPLES / "partial/identitystore.amazonaws.com-CreateGroupMembership.ABRIDGED.json"
        ).read_text()
    )
    send(
        app.sqs_queue_url,
        cloudtrail(
            "sso-directory.amazonaws.com-AddMemberToGroup.json",
            account_id=org.management_account_id,
            eventSource="identitystore.amazonaws.com",
            eventName="CreateGroupMembership",
            userAgent=partial["userAgent"],
            request=partial["requestParameters"]
            | {"identityStoreId": store_id, "groupId": group_id, "memberId": {"userId": user_id}},
            response={"membershipId": membership_id, "identityStoreId": store_id},
        ),
    )
    assert poll(app)["handled"] == 1
    group = row(app, ResourceType.IDC_GROUP, group_id)
    grant = Grant.objects.get(user=portal_user, resource=group)
    assert (grant.source, grant.status, grant.access_level.remote_id) == (
        GrantSource.OBSERVED,
        GrantStatus.ACTIVE,
        "member",
    )
    assert AuditEvent.objects.filter(
        action="grant.observed", target_type="access.grant", target_id=str(grant.pk)
    ).exists()

    store.delete_group_membership(IdentityStoreId=store_id, MembershipId=membership_id)
    send(
        app.sqs_queue_url,
        cloudtrail(
            "sso-directory.amazonaws.com-AddMemberToGroup.json",
            account_id=org.management_account_id,
            eventSource="identitystore.amazonaws.com",
            eventName="DeleteGroupMembership",
            request={"identityStoreId": store_id, "membershipId": membership_id},
        ),
    )
    assert poll(app)["handled"] == 1
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKED
    assert AuditEvent.objects.filter(
        action="grant.revoked", target_type="access.grant", target_id=str(grant.pk)
    ).exists()

    # The console's way: sso-directory AddMemberToGroup and RemoveMemberFromGroup.
    membership_id = store.create_group_membership(
        IdentityStoreId=store_id, GroupId=group_id, MemberId={"UserId": user_id}
    )["MembershipId"]
    send(
        app.sqs_queue_url,
        cloudtrail(
            "sso-directory.amazonaws.com-AddMemberToGroup.json",
            account_id=org.management_account_id,
            request={
                "identityStoreId": store_id,
                "groupId": group_id,
                "member": {"memberId": user_id},
            },
        ),
    )
    assert poll(app)["handled"] == 1
    console_grant = Grant.objects.get(user=portal_user, resource=group, status=GrantStatus.ACTIVE)

    store.delete_group_membership(IdentityStoreId=store_id, MembershipId=membership_id)
    send(
        app.sqs_queue_url,
        cloudtrail(
            "sso-directory.amazonaws.com-AddMemberToGroup.json",
            account_id=org.management_account_id,
            eventName="RemoveMemberFromGroup",
            request={
                "identityStoreId": store_id,
                "groupId": group_id,
                "member": {"memberId": user_id},
            },
        ),
    )
    assert poll(app)["handled"] == 1
    console_grant.refresh_from_db()
    assert console_grant.status == GrantStatus.REVOKED

    # The API's CreateGroup answers {"groupId"} flat; DeleteGroup has responseElements null.
    second_id = store.create_group(IdentityStoreId=store_id, DisplayName="Events Second")["GroupId"]
    store.delete_group(IdentityStoreId=store_id, GroupId=group_id)
    send(
        app.sqs_queue_url,
        cloudtrail(
            "sso-directory.amazonaws.com-CreateGroup.json",
            account_id=org.management_account_id,
            eventSource="identitystore.amazonaws.com",
            request={"identityStoreId": store_id, "displayName": "Events Second"},
            response={"groupId": second_id, "identityStoreId": store_id},
        ),
        cloudtrail(
            "sso-directory.amazonaws.com-CreateGroup.json",
            account_id=org.management_account_id,
            eventSource="identitystore.amazonaws.com",
            eventName="DeleteGroup",
            request={"identityStoreId": store_id, "groupId": group_id},
            response=None,
        ),
    )
    assert poll(app)["handled"] == 2
    assert row(app, ResourceType.IDC_GROUP, second_id).name == "Events Second"
    assert row(app, ResourceType.IDC_GROUP, group_id).deleted_at is not None
    store.delete_group(IdentityStoreId=store_id, GroupId=second_id)


def test_permission_sets_and_account_assignments_follow_sso_events(org, app):
    sso = management("sso-admin")
    account_id = org.accounts[0].account_id
    # Events update an inventory a full sync filled: the account's row holds its levels.
    assert full_sync(app).status == SyncStatus.SUCCEEDED
    permission_set = sso.create_permission_set(
        InstanceArn=org.instance_arn, Name="EventsReadOnly", SessionDuration="PT4H"
    )["PermissionSet"]
    ps_arn = permission_set["PermissionSetArn"]
    send(
        app.sqs_queue_url,
        cloudtrail(
            "sso.amazonaws.com-CreatePermissionSet.json",
            account_id=org.management_account_id,
            request={
                "name": "EventsReadOnly",
                "instanceArn": org.instance_arn,
                "sessionDuration": "PT4H",
            },
            response={
                "permissionSet": {
                    "name": "EventsReadOnly",
                    "permissionSetArn": ps_arn,
                    "createdDate": "Apr 25, 2023 12:48:16 AM",
                    "sessionDuration": "PT4H",
                }
            },
        ),
    )
    assert poll(app)["handled"] == 1

    group_id = next(iter(org.groups.values()))
    sso.create_account_assignment(
        InstanceArn=org.instance_arn,
        TargetId=account_id,
        TargetType="AWS_ACCOUNT",
        PermissionSetArn=ps_arn,
        PrincipalType="GROUP",
        PrincipalId=group_id,
    )
    sso.provision_permission_set(
        InstanceArn=org.instance_arn, PermissionSetArn=ps_arn, TargetType="ALL_PROVISIONED_ACCOUNTS"
    )
    request = {
        "instanceArn": org.instance_arn,
        "targetId": account_id,
        "targetType": "AWS_ACCOUNT",
        "permissionSetArn": ps_arn,
        "principalType": "GROUP",
        "principalId": group_id,
    }
    send(
        app.sqs_queue_url,
        cloudtrail(
            "sso.amazonaws.com-CreateAccountAssignment.json",
            account_id=org.management_account_id,
            request=request,
            response={
                "accountAssignmentCreationStatus": {"status": "IN_PROGRESS", "requestId": "r"}
                | {k: v for k, v in request.items() if k != "instanceArn"}
            },
        ),
    )
    assert poll(app)["handled"] == 1
    idc_role = row(app, ResourceType.IDC_ROLE, f"{account_id}/{ps_arn}")
    assert idc_role is not None and idc_role.deleted_at is None
    assert idc_role.metadata["assigned_groups"] == [group_id]
    account = row(app, ResourceType.ACCOUNT, account_id)
    level = account.access_levels.get(remote_id=ps_arn)
    assert (level.name, level.deleted_at) == ("EventsReadOnly", None)

    sso.delete_account_assignment(
        InstanceArn=org.instance_arn,
        TargetId=account_id,
        TargetType="AWS_ACCOUNT",
        PermissionSetArn=ps_arn,
        PrincipalType="GROUP",
        PrincipalId=group_id,
    )
    send(
        app.sqs_queue_url,
        cloudtrail(
            "sso.amazonaws.com-DeleteAccountAssignment.json",
            account_id=org.management_account_id,
            request=request,
        ),
    )
    assert poll(app)["handled"] == 1
    idc_role.refresh_from_db()
    # Still provisioned to the account, with nobody assigned.
    assert idc_role.metadata["assigned_groups"] == []

    sso.delete_permission_set(InstanceArn=org.instance_arn, PermissionSetArn=ps_arn)
    send(
        app.sqs_queue_url,
        cloudtrail(
            "sso.amazonaws.com-CreatePermissionSet.json",
            account_id=org.management_account_id,
            eventName="DeletePermissionSet",
            request={"instanceArn": org.instance_arn, "permissionSetArn": ps_arn},
            response=None,
        ),
    )
    assert poll(app)["handled"] == 1
    idc_role.refresh_from_db()
    level.refresh_from_db()
    assert idc_role.deleted_at is not None
    assert level.deleted_at is not None


def test_tagging_a_permission_set_follows_its_tag_and_untag_events(org, app):
    sso = management("sso-admin")
    account_id = org.accounts[0].account_id
    ps_arn = org.provisioned_permission_sets[0]
    assert full_sync(app).status == SyncStatus.SUCCEEDED
    account = row(app, ResourceType.ACCOUNT, account_id)
    idc_role = row(app, ResourceType.IDC_ROLE, f"{account_id}/{ps_arn}")
    assert idc_role is not None and idc_role.not_requestable_reason == ""

    def tag_event(name: str, **request: Any) -> dict[str, Any]:
        return cloudtrail(
            "sso.amazonaws.com-CreatePermissionSet.json",
            account_id=org.management_account_id,
            eventName=name,
            request={"instanceArn": org.instance_arn, "resourceArn": ps_arn, **request},
            response=None,
        )

    sso.untag_resource(
        InstanceArn=org.instance_arn, ResourceArn=ps_arn, TagKeys=[seed.requestable_tag()]
    )
    try:
        send(app.sqs_queue_url, tag_event("UntagResource", tagKeys=[seed.requestable_tag()]))
        assert poll(app)["handled"] == 1
        idc_role.refresh_from_db()
        assert "not tagged portcullis:requestable=true" in idc_role.not_requestable_reason
        level = account.access_levels.get(remote_id=ps_arn)
        assert "not tagged portcullis:requestable=true" in level.not_requestable_reason
    finally:
        sso.tag_resource(
            InstanceArn=org.instance_arn,
            ResourceArn=ps_arn,
            Tags=[{"Key": seed.requestable_tag(), "Value": "true"}],
        )
    send(
        app.sqs_queue_url,
        tag_event("TagResource", tags=[{"key": seed.requestable_tag(), "value": "true"}]),
    )
    assert poll(app)["handled"] == 1
    idc_role.refresh_from_db()
    assert idc_role.not_requestable_reason == ""
    assert account.access_levels.get(remote_id=ps_arn).not_requestable_reason == ""


# Duplicates and order -------------------------------------------------------------------------
def test_duplicate_and_out_of_order_events_leave_the_right_final_state(org, app):
    ec2 = member(org, "ec2")
    kept = run_instance(org, Name="events-kept")
    gone = run_instance(org, Name="events-gone")
    ec2.terminate_instances(InstanceIds=[gone])
    # The termination arrives before the launch, and every event twice.
    terminate = instance_event(org, "TerminateInstances", gone, "shutting-down")
    send(
        app.sqs_queue_url,
        terminate,
        run_instances_event(org, kept),
        run_instances_event(org, gone),
        terminate,
        run_instances_event(org, kept),
    )

    counts = poll(app)

    assert counts["received"] == counts["handled"] == 5
    assert row(app, ResourceType.EC2_INSTANCE, kept).deleted_at is None
    assert Resource.objects.filter(app=app, remote_id=kept).count() == 1
    gone_row = row(app, ResourceType.EC2_INSTANCE, gone)
    assert gone_row is None or gone_row.deleted_at is not None


# AWS refusing ---------------------------------------------------------------------------
def test_an_event_aws_refuses_to_describe_stays_on_the_queue_until_aws_answers(
    org, app, aws_faults_kept
):
    account_id = org.accounts[0].account_id
    sqs = management("sqs")
    # Visible again at once, so the retry needs no waiting.
    sqs.set_queue_attributes(QueueUrl=app.sqs_queue_url, Attributes={"VisibilityTimeout": "0"})
    instance_id = run_instance(org, Name="events-refused")
    aws_faults_kept.deny("ec2", "DescribeInstances", account_id=account_id)
    send(app.sqs_queue_url, run_instances_event(org, instance_id))

    counts = poll_queue(app, max_seconds=10, wait_seconds=0, keep_going=lambda: False)

    assert (counts["received"], counts["failed"], counts["handled"]) == (1, 1, 0)
    assert row(app, ResourceType.EC2_INSTANCE, instance_id) is None
    assert queue_depth(app.sqs_queue_url) == (1, 0)
    issue = SyncIssue.objects.get(app=app, scope="events", code="handling_failed")
    assert "could not be read from AWS for RunInstances" in issue.message
    scope_issue = SyncIssue.objects.get(app=app, scope=f"{account_id}/{REGION}/ec2")
    assert scope_issue.code == "UnauthorizedOperation"

    aws_faults_kept.clear()
    counts = poll(app)

    assert (counts["received"], counts["handled"]) == (1, 1)
    assert row(app, ResourceType.EC2_INSTANCE, instance_id).name == "events-refused"
    assert queue_depth(app.sqs_queue_url) == (0, 0)


# Bad messages and the run record ------------------------------------------------------------
def test_each_kind_of_bad_message_is_recorded_and_deleted_while_good_ones_after_it_are_handled(
    org, app
):
    instance_id = run_instance(org, Name="events-after-bad")
    oversized = json.dumps(run_instances_event(org, instance_id) | {"padding": "x" * 300_000})
    no_event_name = cloudtrail(
        "ec2.amazonaws.com-CreateTags.json", account_id=org.accounts[0].account_id
    )
    del no_event_name["detail"]["eventName"]
    send(
        app.sqs_queue_url,
        "this is not JSON {",
        "[1, 2, 3]",
        "42",
        no_event_name,
        oversized,
        run_instances_event(org, instance_id),
    )

    counts = poll(app)

    assert counts == {
        "received": 6,
        "handled": 1,
        "ignored": 0,
        "unknown": 0,
        "refused_calls": 0,
        "bad": 5,
        "failed": 0,
        "gave_up": 0,
    }
    assert row(app, ResourceType.EC2_INSTANCE, instance_id) is not None
    assert queue_depth(app.sqs_queue_url) == (0, 0)
    issues = {i.code: i for i in SyncIssue.objects.filter(app=app, scope="events")}
    assert set(issues) == {"not_json", "not_an_event", "missing_field", "oversized"}
    assert issues["not_an_event"].occurrences == 2
    assert "not a list" not in issues["not_an_event"].message
    assert "a number, not an object" in issues["not_an_event"].message  # the latest one
    assert "It began: 42" in issues["not_an_event"].message
    assert "It began: this is not JSON {" in issues["not_json"].message
    assert "no eventName" in issues["missing_field"].message
    assert "over the 262,144 bytes" in issues["oversized"].message
    run = SyncRun.objects.get(app=app, kind=SyncKind.EVENTS)
    assert run.status == SyncStatus.PARTIAL
    assert run.counts["events"] == counts
    assert {i.last_run_id for i in issues.values()} == {run.pk}
    audit = AuditEvent.objects.get(
        action="sync.completed", target_type="aws_integration.syncrun", target_id=str(run.pk)
    )
    assert audit.actor_type == "system"
    assert audit.details["kind"] == "events"
    assert audit.details["counts"]["events"] == counts


def test_unknown_events_and_refused_calls_are_counted_and_deleted(org, app):
    account_id = org.accounts[0].account_id
    refused = json.loads((SAMPLES / "ec2.amazonaws.com-RunInstances.json").read_text())
    refused["recipientAccountId"] = account_id
    send(
        app.sqs_queue_url,
        cloudtrail(
            "ec2.amazonaws.com-CreateTags.json", account_id=account_id, eventName="CreateVolume"
        ),
        json.dumps(refused),  # raw record, no envelope: errorCode Client.UnauthorizedOperation
    )

    counts = poll(app)

    assert (counts["received"], counts["unknown"], counts["refused_calls"]) == (2, 1, 1)
    assert queue_depth(app.sqs_queue_url) == (0, 0)
    run = SyncRun.objects.get(app=app, kind=SyncKind.EVENTS)
    assert run.status == SyncStatus.SUCCEEDED
    assert run.message == "2 event(s) received: 1 unknown, 1 refused calls."
    assert not SyncIssue.objects.filter(app=app).exists()


def test_an_empty_queue_records_no_run(app):
    assert poll(app)["received"] == 0
    assert not SyncRun.objects.filter(app=app).exists()


def test_a_missing_queue_is_recorded_and_the_poll_ends(app):
    management("sqs").delete_queue(QueueUrl=app.sqs_queue_url)
    counts = poll(app)
    assert counts["received"] == 0
    issue = SyncIssue.objects.get(app=app, scope="events", code="receive_failed")
    assert app.sqs_queue_url in issue.message
    assert "sqs:ReceiveMessage" in issue.message
    assert issue.resolved_at is None

    # Back again: the next poll that reaches it closes the issue.
    management("sqs").create_queue(QueueName=app.sqs_queue_url.rsplit("/", 1)[1])
    poll(app)
    issue.refresh_from_db()
    assert issue.resolved_at is not None

"""Targeted refresh (what real-time sync calls for each CloudTrail event): for each kind
of ObjectRef, a change made through boto3 in the stand-in AWS reaches the inventory."""

from __future__ import annotations

import json

import pytest

from access.choices import GrantSource, GrantStatus, ResourceType
from access.models import Grant, Resource
from audit.models import AuditEvent
from aws_integration.models import IdentityCenterUser
from aws_integration.sync.object_refs import ObjectRef
from aws_integration.sync.refresh import refresh
from aws_integration.tests.sync_fixtures import (
    ADA_EMAIL,
    REGION,
    capture,
    create_role,
    forget_org,
    inventory_writes,
    level_ids,
    live,
    make_app,
    management,
    member,
    run_instance,
    sync,
)
from demo import seed
from tests.fixtures import make_user

pytestmark = pytest.mark.django_db

T = ResourceType


@pytest.fixture
def ada(db):
    return make_user(ADA_EMAIL.lower(), email_verified=True, first_name="Ada")


@pytest.fixture
def app(org, ada):
    app = make_app(org)
    sync(app)
    return app


def row(app, remote_id: str) -> Resource:
    return Resource.objects.get(app=app, remote_id=remote_id)


# Member accounts ------------------------------------------------------------------------------
def test_an_ec2_instance_is_created_updated_and_deleted_by_refresh(org, app):
    account_id = org.accounts[0].account_id
    ec2 = member(account_id, "ec2")
    instance_id = run_instance(account_id, "from-an-event")
    ref = ObjectRef("ec2_instance", account_id, REGION, instance_id)

    counts = refresh(app, [ref])
    instance = row(app, instance_id)
    assert counts == {
        "created": 1,
        "updated": 0,
        "deleted": 0,
        "access_levels_changed": 1,
        "grants_observed": 0,
        "grants_revoked": 0,
        "failed": 0,
    }
    assert instance.name == "from-an-event"
    assert level_ids(instance) == {"ssm-session"}
    assert instance.parent.remote_id == account_id

    ec2.create_tags(Resources=[instance_id], Tags=[{"Key": "Name", "Value": "renamed"}])
    ec2.stop_instances(InstanceIds=[instance_id])
    assert refresh(app, [ref])["updated"] == 1
    instance.refresh_from_db()
    assert instance.name == "renamed"
    assert instance.metadata["state"] == "stopped"

    ec2.terminate_instances(InstanceIds=[instance_id])
    assert refresh(app, [ref])["deleted"] == 1
    instance.refresh_from_db()
    assert instance.deleted_at is not None
    # Only the referenced instance was looked at: the seeded one is as it was.
    assert live(app, T.EC2_INSTANCE, account_id=account_id)


def test_a_whole_kind_refresh_reads_every_object_of_that_kind_in_the_scope(org, app):
    first, second = (a.account_id for a in org.accounts)
    one = run_instance(first, "whole-scope-one")
    two = run_instance(second, "whole-scope-two")

    counts = refresh(app, [ObjectRef("ec2_instance", first, REGION)])
    assert counts["created"] == 1
    assert live(app, T.EC2_INSTANCE, remote_id=one)
    assert not Resource.objects.filter(remote_id=two).exists()

    refresh(app, [ObjectRef("ec2_instance")])  # every account, every region of the app
    assert live(app, T.EC2_INSTANCE, remote_id=two)
    for account_id, instance_id in ((first, one), (second, two)):
        member(account_id, "ec2").terminate_instances(InstanceIds=[instance_id])


def test_an_iam_role_is_refreshed_by_name_or_by_arn(org, app):
    account_id = org.accounts[0].account_id
    iam = member(account_id, "iam")
    arn = create_role(account_id, "EventRole", tags={"team": "payments"})
    try:
        assert refresh(app, [ObjectRef("iam_role", account_id, "", "EventRole")])["created"] == 1
        role = row(app, arn)
        assert role.tags == {"team": "payments"}
        assert level_ids(role) == {"assume"}

        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{org.management_account_id}:root"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
        iam.update_assume_role_policy(RoleName="EventRole", PolicyDocument=json.dumps(trust))
        iam.tag_role(RoleName="EventRole", Tags=[{"Key": seed.requestable_tag(), "Value": "true"}])
        # An ARN alone names the account.
        assert refresh(app, [ObjectRef("iam_role", remote_id=arn)])["updated"] == 1
        role.refresh_from_db()
        assert role.metadata["trust_policy"] == trust
        assert role.tags[seed.requestable_tag()] == "true"
    finally:
        iam.delete_role(RoleName="EventRole")
    assert refresh(app, [ObjectRef("iam_role", account_id, "", "EventRole")])["deleted"] == 1
    assert row(app, arn).deleted_at is not None


def test_an_eks_cluster_is_refreshed(org, app):
    account_id = org.accounts[0].account_id
    eks = member(account_id, "eks")
    subnets = [s["SubnetId"] for s in member(account_id, "ec2").describe_subnets()["Subnets"]][:2]
    role_arn = f"arn:aws:iam::{account_id}:role/{seed.EKS_CLUSTER_ROLE}"
    arn = eks.create_cluster(
        name="from-an-event",
        version="1.30",
        roleArn=role_arn,
        resourcesVpcConfig={
            "subnetIds": subnets,
            "endpointPublicAccess": False,
            "endpointPrivateAccess": True,
        },
    )["cluster"]["arn"]
    ref = ObjectRef("eks_cluster", account_id, REGION, "from-an-event")

    assert refresh(app, [ref])["created"] == 1
    cluster = row(app, arn)
    assert cluster.metadata["version"] == "1.30"
    assert cluster.metadata["endpoint_public_access"] is False
    assert cluster.metadata["endpoint_private_access"] is True
    assert len(level_ids(cluster)) == 4

    eks.delete_cluster(name="from-an-event")
    assert refresh(app, [ObjectRef("eks_cluster", remote_id=arn)])["deleted"] == 1


def test_an_rds_instance_and_its_database_users_are_refreshed(org, app):
    account_id = org.accounts[1].account_id
    rds = member(account_id, "rds")
    arn = rds.create_db_instance(
        DBInstanceIdentifier="from-an-event",
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        MasterUsername="postgres",
        MasterUserPassword="stand-in-only-password",
        AllocatedStorage=20,
        EnableIAMDatabaseAuthentication=True,
        Tags=[{"Key": seed.DB_USERS_TAG, "Value": "reader"}],
    )["DBInstance"]["DBInstanceArn"]
    ref = ObjectRef("rds_instance", account_id, REGION, "from-an-event")

    assert refresh(app, [ref])["created"] == 1
    database = row(app, arn)
    assert database.type == T.RDS_POSTGRES
    assert level_ids(database) == {"reader"}

    rds.add_tags_to_resource(
        ResourceName=arn, Tags=[{"Key": seed.DB_USERS_TAG, "Value": "reader, writer"}]
    )
    refresh(app, [ref])
    assert level_ids(database) == {"reader", "writer"}
    rds.add_tags_to_resource(ResourceName=arn, Tags=[{"Key": seed.DB_USERS_TAG, "Value": "writer"}])
    refresh(app, [ref])
    assert level_ids(database) == {"writer"}
    assert database.access_levels.get(remote_id="reader").deleted_at is not None

    rds.delete_db_instance(DBInstanceIdentifier="from-an-event", SkipFinalSnapshot=True)
    assert refresh(app, [ObjectRef("rds_instance", remote_id=arn)])["deleted"] == 1


def test_an_aurora_cluster_is_refreshed(org, app):
    account_id = org.accounts[0].account_id
    rds = member(account_id, "rds")
    arn = rds.create_db_cluster(
        DBClusterIdentifier="from-an-event",
        Engine="aurora-mysql",
        MasterUsername="admin",
        MasterUserPassword="stand-in-only-password",
        EnableIAMDatabaseAuthentication=True,
        Tags=[{"Key": seed.DB_USERS_TAG, "Value": "app_ro"}],
    )["DBCluster"]["DBClusterArn"]
    ref = ObjectRef("rds_cluster", account_id, REGION, "from-an-event")

    assert refresh(app, [ref])["created"] == 1
    assert row(app, arn).type == T.AURORA_MYSQL
    rds.delete_db_cluster(DBClusterIdentifier="from-an-event", SkipFinalSnapshot=True)
    assert refresh(app, [ref])["deleted"] == 1


# The organization -----------------------------------------------------------------------------
def test_an_ou_is_refreshed(org, app):
    organizations = management("organizations")
    workloads = org.ous["Workloads"]
    ou_id = organizations.create_organizational_unit(ParentId=workloads, Name="From an event")[
        "OrganizationalUnit"
    ]["Id"]
    try:
        assert refresh(app, [ObjectRef("ou", remote_id=ou_id)])["created"] == 1
        ou = row(app, ou_id)
        assert ou.name == "From an event"
        assert ou.parent.remote_id == workloads
        # A new OU offers every permission set at once, as the others do.
        assert level_ids(ou) == set(org.permission_sets.values())
    finally:
        organizations.delete_organizational_unit(OrganizationalUnitId=ou_id)
    assert refresh(app, [ObjectRef("ou", remote_id=ou_id)])["deleted"] == 1


def test_an_account_is_created_moved_and_removed_by_refresh(org, app):
    organizations = management("organizations")
    status = organizations.create_account(Email="new@corp.example", AccountName="from-an-event")
    account_id = status["CreateAccountStatus"]["AccountId"]
    ref = ObjectRef("account", remote_id=account_id)
    try:
        assert refresh(app, [ref])["created"] == 1
        account = row(app, account_id)
        assert account.name == "from-an-event"
        assert account.parent is None  # new accounts start at the root
        # Nothing is provisioned to it yet: it offers every permission set all the same.
        assert level_ids(account) == set(org.permission_sets.values())

        organizations.move_account(
            AccountId=account_id,
            SourceParentId=org.root_id,
            DestinationParentId=org.ous["Sandbox"],
        )
        refresh(app, [ref])
        account.refresh_from_db()
        assert account.parent.remote_id == org.ous["Sandbox"]  # type: ignore[attr-defined]  # reloaded

        instance_id = run_instance(account_id, "in-the-new-account")
        refresh(app, [ObjectRef("ec2_instance", account_id, REGION, instance_id)])
    except BaseException:
        forget_org()  # the organization has one account too many: reseed for the next test
        raise
    organizations.remove_account_from_organization(AccountId=account_id)
    counts = refresh(app, [ref])
    assert counts["deleted"] == 2  # the account, and what was synced in it
    assert row(app, instance_id).deleted_at is not None


# Identity Center -----------------------------------------------------------------------------
def test_a_permission_set_is_refreshed_on_every_account_and_ou(org, app):
    sso = management("sso-admin")
    arn = sso.create_permission_set(
        InstanceArn=org.instance_arn, Name="FromAnEvent", SessionDuration="PT2H"
    )["PermissionSet"]["PermissionSetArn"]
    ref = ObjectRef("permission_set", remote_id=arn)
    holders = [*live(app, T.ORGANIZATIONAL_UNIT), *live(app, T.ACCOUNT)]
    assert len(holders) == len(org.ous) + len(org.accounts) + 1  # and the management account

    refresh(app, [ref])
    for holder in holders:
        # Never provisioned anywhere: every account offers it all the same.
        assert arn in level_ids(holder)
        level = holder.access_levels.get(remote_id=arn)
        assert level.metadata["session_duration"] == "PT2H"
        # Created without the requestable tag: listed, but not offered.
        assert "not tagged portcullis:requestable=true" in level.not_requestable_reason

    sso.delete_permission_set(InstanceArn=org.instance_arn, PermissionSetArn=arn)
    refresh(app, [ref])
    for holder in holders:
        assert arn not in level_ids(holder)


def test_a_users_account_assignment_is_refreshed_into_an_observed_grant(org, app, ada):
    account_id = org.accounts[0].account_id
    permission_set = org.provisioned_permission_sets[0]
    sso = management("sso-admin")
    assignment = {
        "InstanceArn": org.instance_arn,
        "TargetId": account_id,
        "TargetType": "AWS_ACCOUNT",
        "PermissionSetArn": permission_set,
        "PrincipalType": "USER",
        "PrincipalId": org.users[ADA_EMAIL],
    }
    ref = ObjectRef("account_assignment", account_id, "", permission_set)
    sso.create_account_assignment(**assignment)
    try:
        refresh(app, [ref])
        grant = Grant.objects.get(user=ada, resource__remote_id=account_id)
        assert grant.access_level.remote_id == permission_set
        assert grant.source == GrantSource.OBSERVED
        assert AuditEvent.objects.filter(action="grant.observed", target_id=str(grant.pk)).exists()
    finally:
        sso.delete_account_assignment(**assignment)
    refresh(app, [ref])
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKED
    assert AuditEvent.objects.filter(action="grant.revoked", target_id=str(grant.pk)).exists()


def test_a_group_is_refreshed_with_its_memberships(org, app, ada):
    store = management("identitystore")
    group_id = store.create_group(IdentityStoreId=org.identity_store_id, DisplayName="On call")[
        "GroupId"
    ]
    store.create_group_membership(
        IdentityStoreId=org.identity_store_id,
        GroupId=group_id,
        MemberId={"UserId": org.users[ADA_EMAIL]},
    )
    ref = ObjectRef("idc_group", remote_id=group_id)

    refresh(app, [ref])
    group = row(app, group_id)
    assert group.name == "On call"
    grant = Grant.objects.get(user=ada, resource=group)
    assert grant.status == GrantStatus.ACTIVE

    store.delete_group(IdentityStoreId=org.identity_store_id, GroupId=group_id)
    refresh(app, [ref])
    group.refresh_from_db()
    grant.refresh_from_db()
    assert group.deleted_at is not None
    assert grant.status == GrantStatus.REVOKED


def test_a_membership_refresh_links_a_new_identity_center_user(org, app):
    grace = make_user("grace.hopper@corp.example", email_verified=True)
    store = management("identitystore")
    user_id = store.create_user(
        IdentityStoreId=org.identity_store_id,
        UserName="grace",
        DisplayName="Grace Hopper",
        Name={"GivenName": "Grace", "FamilyName": "Hopper"},
        Emails=[{"Value": "Grace.Hopper@corp.example", "Primary": True}],
    )["UserId"]
    data = org.groups["Data"]
    membership = store.create_group_membership(
        IdentityStoreId=org.identity_store_id, GroupId=data, MemberId={"UserId": user_id}
    )["MembershipId"]
    ref = ObjectRef("idc_group_membership", remote_id=data)
    try:
        refresh(app, [ref])
        assert IdentityCenterUser.objects.get(app=app, remote_id=user_id).portal_user == grace
        grant = Grant.objects.get(user=grace)
        assert grant.resource.remote_id == data
    finally:
        store.delete_group_membership(
            IdentityStoreId=org.identity_store_id, MembershipId=membership
        )
        store.delete_user(IdentityStoreId=org.identity_store_id, UserId=user_id)
    refresh(app, [ref])
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKED


# Shared behaviour ---------------------------------------------------------------------------
def test_a_refresh_of_unchanged_objects_writes_nothing(org, app):
    account_id = org.accounts[0].account_id
    instance = live(app, T.EC2_INSTANCE, account_id=account_id)[0]
    refs = [
        ObjectRef("ec2_instance", account_id, REGION, instance.remote_id),
        ObjectRef("iam_role", account_id, "", "DeveloperAccess"),
        ObjectRef("idc_group", remote_id=org.groups["Engineering"]),
        ObjectRef("account", remote_id=account_id),
    ]
    with capture() as queries:
        counts = refresh(app, refs + refs)  # duplicates are harmless

    assert set(counts.values()) == {0}
    assert inventory_writes(queries) == []


def test_kinds_the_app_does_not_manage_are_ignored(org, app):
    app.identity_center_management = False
    app.save()
    store = management("identitystore")
    group_id = store.create_group(IdentityStoreId=org.identity_store_id, DisplayName="Ignored")[
        "GroupId"
    ]
    try:
        counts = refresh(app, [ObjectRef("idc_group", remote_id=group_id)])
    finally:
        store.delete_group(IdentityStoreId=org.identity_store_id, GroupId=group_id)
    assert set(counts.values()) == {0}
    assert not Resource.objects.filter(remote_id=group_id).exists()


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="Unknown object kind 'lambda_function'"):
        ObjectRef("lambda_function")

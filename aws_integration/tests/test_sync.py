"""The full sync against the stand-in AWS (moto over HTTP): what it reads into the
inventory, what it marks deleted, what it leaves alone, and the observed grants."""

from __future__ import annotations

import pytest

from access.choices import GrantSource, GrantStatus, PropagationStatus, ResourceType
from access.models import Grant, Resource
from audit.models import AuditEvent
from aws_integration.choices import SyncKind, SyncStatus
from aws_integration.models import IdentityCenterUser, SyncScope
from aws_integration.sync import engine, services
from aws_integration.sync.fetchers.members import EKS_LEVELS
from aws_integration.tests.sync_fixtures import (
    ADA_EMAIL,
    REGION,
    capture,
    create_role,
    inventory_writes,
    level_ids,
    live,
    make_app,
    management,
    member,
    names,
    run_instance,
    seeded_org,
    sync,
)
from demo import seed
from tests.fixtures import make_user

pytestmark = pytest.mark.django_db

T = ResourceType


@pytest.fixture
def app(org):
    return make_app(org)


def only(rows: list[Resource]) -> Resource:
    assert len(rows) == 1, [r.name for r in rows]
    return rows[0]


# What a sync reads ---------------------------------------------------------------------------
def test_a_full_sync_reads_every_resource_type_with_its_fields_and_access_levels(org, app):
    run = sync(app)

    assert run.status == SyncStatus.SUCCEEDED, run.message
    first, second = org.accounts
    for account in org.accounts:
        for seeded in account.resources:
            row = Resource.objects.get(
                app=app, type=seeded.type, name=seeded.name, account_id=account.account_id
            )
            assert row.deleted_at is None
            assert row.tags == seeded.tags

    instance = only(live(app, T.EC2_INSTANCE, account_id=first.account_id))
    seeded_instance = first.of_type(T.EC2_INSTANCE)[0]
    assert instance.remote_id == seeded_instance.id
    assert instance.name == seeded_instance.name  # from the Name tag
    assert instance.region == REGION
    assert instance.metadata["state"] == "running"
    assert instance.metadata["private_ip"].startswith("10.")
    assert instance.metadata["public_ip"]
    assert instance.metadata["platform"] == "Linux/UNIX"
    assert level_ids(instance) == {"ssm-session"}

    roles = Resource.objects.filter(app=app, type=T.IAM_ROLE, account_id=first.account_id)
    role = roles.get(name="DeveloperAccess")
    assert role.remote_id == f"arn:aws:iam::{first.account_id}:role/DeveloperAccess"
    assert role.region == ""
    assert role.tags[seed.requestable_tag()] == "true"
    assert role.metadata["max_session_duration"] == 4 * 3600
    statement = role.metadata["trust_policy"]["Statement"][0]
    assert statement["Principal"] == {"AWS": f"arn:aws:iam::{org.management_account_id}:root"}
    assert "last_used_on" in role.metadata
    assert level_ids(role) == {"assume"}
    # The ingester role the seed creates, trusting Portcullis on the External ID.
    ingester = roles.get(name=seed.INGESTER_ROLE)
    condition = ingester.metadata["trust_policy"]["Statement"][0]["Condition"]
    assert condition == {"StringEquals": {"sts:ExternalId": org.external_id}}

    cluster = only(live(app, T.EKS_CLUSTER, account_id=first.account_id))
    assert cluster.remote_id == first.of_type(T.EKS_CLUSTER)[0].arn
    assert cluster.metadata["version"] == "1.31"
    assert cluster.metadata["endpoint_public_access"] is True
    assert cluster.metadata["endpoint_private_access"] is False
    assert level_ids(cluster) == {level.remote_id for level in EKS_LEVELS}
    assert {lv.name for lv in cluster.access_levels.all()} == {
        "view",
        "edit",
        "admin",
        "cluster-admin",
    }

    for type_, engine_name in ((T.RDS_MYSQL, "mysql"), (T.RDS_POSTGRES, "postgres")):
        db = only(live(app, type_, account_id=first.account_id))
        assert db.remote_id == first.of_type(type_)[0].arn
        assert db.metadata["engine"] == engine_name
        assert db.metadata["iam_auth_enabled"] is True
        assert db.metadata["publicly_accessible"] is False
        assert db.metadata["dbi_resource_id"].startswith("db-")
        assert level_ids(db) == {"app_ro", "app_rw"}
    for type_, engine_name in (
        (T.AURORA_MYSQL, "aurora-mysql"),
        (T.AURORA_POSTGRES, "aurora-postgresql"),
    ):
        db = only(live(app, type_, account_id=second.account_id))
        assert db.remote_id == second.of_type(type_)[0].arn
        assert db.metadata["engine"] == engine_name
        assert db.metadata["iam_auth_enabled"] is True
        assert db.metadata["db_cluster_resource_id"].startswith("cluster-")
        assert level_ids(db) == {"app_ro", "app_rw"}

    groups = live(app, T.IDC_GROUP)
    assert names(groups) == set(org.groups)
    assert all(level_ids(g) == {"member"} for g in groups)
    account = Resource.objects.get(app=app, type=T.ACCOUNT, remote_id=first.account_id)
    assert account.name == first.name
    assert account.metadata["status"] == "ACTIVE"
    assert level_ids(account) == set(org.provisioned_permission_sets)
    permission_set = org.provisioned_permission_sets[0]
    idc_role = Resource.objects.get(
        app=app, type=T.IDC_ROLE, remote_id=f"{first.account_id}/{permission_set}"
    )
    assert idc_role.parent == account
    assert level_ids(idc_role) == {"assigned"}
    assigned = {
        a.principal_id
        for a in org.assignments
        if a.account_id == first.account_id
        and a.permission_set_arn == permission_set
        and a.principal_type == "GROUP"
    }
    assert set(idc_role.metadata["assigned_groups"]) == assigned


def test_it_builds_the_ou_tree_and_hangs_accounts_and_their_resources_under_it(org, app):
    sync(app)

    ous = {ou.name: ou for ou in live(app, T.ORGANIZATIONAL_UNIT)}
    assert set(ous) == set(org.ous)
    assert ous["Workloads"].parent is None  # at the root
    assert ous["Production"].parent == ous["Workloads"]
    assert ous["Sandbox"].parent is None
    for ou in ous.values():
        # A grant on an OU is a permission set assigned in every account below it.
        assert level_ids(ou) == set(org.permission_sets.values())
    for account in org.accounts:
        row = Resource.objects.get(app=app, type=T.ACCOUNT, remote_id=account.account_id)
        assert row.parent == ous[account.ou_name]
        assert row.metadata["parent_id"] == account.ou_id
        in_account = Resource.objects.filter(app=app, account_id=account.account_id).exclude(
            type=T.ACCOUNT
        )
        assert in_account.count() >= len(account.resources)
        assert set(in_account.values_list("parent", flat=True)) == {row.pk}
    management_account = Resource.objects.get(
        app=app, type=T.ACCOUNT, remote_id=org.management_account_id
    )
    assert management_account.parent is None


def test_identity_center_users_are_linked_to_portal_users_by_email_whatever_its_case(org, app):
    ada = make_user(ADA_EMAIL.lower(), email_verified=True, first_name="Ada")
    sync(app)

    users = IdentityCenterUser.objects.filter(app=app)
    assert users.count() == len(org.users)
    linked = users.get(remote_id=org.users[ADA_EMAIL])
    assert linked.email == ADA_EMAIL
    assert linked.display_name == "Ada Lovelace"
    assert linked.portal_user == ada
    assert users.exclude(pk=linked.pk).filter(portal_user__isnull=False).count() == 0


# Observed grants -------------------------------------------------------------------------------
def test_a_linked_users_group_membership_is_an_observed_grant_until_it_is_removed_in_aws(org, app):
    ada = make_user(ADA_EMAIL.lower(), email_verified=True)
    sync(app)

    engineering = Resource.objects.get(app=app, type=T.IDC_GROUP, name="Engineering")
    grant = Grant.objects.get(user=ada)
    assert grant.resource == engineering
    assert grant.access_level.remote_id == "member"
    assert grant.source == GrantSource.OBSERVED
    assert grant.status == GrantStatus.ACTIVE
    assert grant.expires_at is None
    assert grant.propagation_status == PropagationStatus.APPLIED
    event = AuditEvent.objects.get(action="grant.observed")
    assert event.target_id == str(grant.pk)
    assert event.actor_name == "system"
    assert event.details["user"] == ADA_EMAIL.lower()
    assert event.details["resource"] == "Engineering"

    store = management("identitystore")
    membership = store.get_group_membership_id(
        IdentityStoreId=org.identity_store_id,
        GroupId=org.groups["Engineering"],
        MemberId={"UserId": org.users[ADA_EMAIL]},
    )["MembershipId"]
    store.delete_group_membership(IdentityStoreId=org.identity_store_id, MembershipId=membership)
    try:
        run = sync(app)
        grant.refresh_from_db()
        assert grant.status == GrantStatus.REVOKED
        assert grant.revoked_at == run.started_at
        assert grant.revoke_reason == "no longer present in AWS"
        assert grant.revoked_by is None
        revoked = AuditEvent.objects.get(action="grant.revoked")
        assert revoked.target_id == str(grant.pk)
        assert revoked.details["reason"] == "no longer present in AWS"
        assert run.counts["observed_grant"] == {"created": 0, "updated": 0, "deleted": 1}
    finally:
        store.create_group_membership(
            IdentityStoreId=org.identity_store_id,
            GroupId=org.groups["Engineering"],
            MemberId={"UserId": org.users[ADA_EMAIL]},
        )
    # Back in AWS: a new observed grant, the revoked one stays as history.
    sync(app)
    assert Grant.objects.filter(user=ada, status=GrantStatus.ACTIVE).exclude(pk=grant.pk).exists()


def test_a_linked_users_account_assignment_is_an_observed_grant_on_the_account(org, app):
    ada = make_user(ADA_EMAIL.lower(), email_verified=True)
    account_id = org.accounts[1].account_id
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
    sso.create_account_assignment(**assignment)
    try:
        sync(app)
        grant = Grant.objects.get(user=ada, resource__type=T.ACCOUNT)
        assert grant.resource.remote_id == account_id
        assert grant.access_level.remote_id == permission_set
        assert grant.source == GrantSource.OBSERVED
        assert grant.expires_at is None
    finally:
        sso.delete_account_assignment(**assignment)
    sync(app)
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKED
    # The group membership's grant was not in that scope and stays.
    assert Grant.objects.get(user=ada, resource__type=T.IDC_GROUP).status == GrantStatus.ACTIVE


def test_grants_from_other_sources_are_neither_touched_nor_doubled(org, app):
    ada = make_user(ADA_EMAIL.lower(), email_verified=True)
    sync(app)
    data = Resource.objects.get(app=app, type=T.IDC_GROUP, name="Data")
    engineering = Resource.objects.get(app=app, type=T.IDC_GROUP, name="Engineering")
    # Access Portcullis granted that AWS does not show (yet): left alone.
    requested = Grant.objects.create(
        user=ada,
        resource=data,
        access_level=data.access_levels.get(remote_id="member"),
        source=GrantSource.REQUEST,
        status=GrantStatus.ACTIVE,
    )
    # A grant by an admin that AWS shows: not recorded again as observed.
    Grant.objects.filter(user=ada, resource=engineering).delete()
    Grant.objects.create(
        user=ada,
        resource=engineering,
        access_level=engineering.access_levels.get(remote_id="member"),
        source=GrantSource.ADMIN,
        status=GrantStatus.ACTIVE,
    )

    sync(app)

    requested.refresh_from_db()
    assert requested.status == GrantStatus.ACTIVE
    assert not Grant.objects.filter(source=GrantSource.OBSERVED, status=GrantStatus.ACTIVE)
    assert Grant.objects.get(resource=engineering).source == GrantSource.ADMIN


# Deletions and restorations ------------------------------------------------------------------
def test_sync_shows_roles_not_tagged_requestable_as_not_requestable_and_why(org, app):
    account_id = org.accounts[0].account_id
    role_arn = create_role(account_id, "UntaggedAdmin")
    try:
        sync(app)
        roles = Resource.objects.filter(app=app, type=T.IAM_ROLE, account_id=account_id)
        assert roles.get(name="DeveloperAccess").not_requestable_reason == ""
        untagged = roles.get(remote_id=role_arn)
        assert "not tagged portcullis:requestable=true" in untagged.not_requestable_reason
        assert "never edits" in roles.get(name=seed.INGESTER_ROLE).not_requestable_reason

        member(account_id, "iam").tag_role(
            RoleName="UntaggedAdmin", Tags=[{"Key": seed.requestable_tag(), "Value": "true"}]
        )
        sync(app)
        untagged.refresh_from_db()
        assert untagged.not_requestable_reason == ""
    finally:
        member(account_id, "iam").delete_role(RoleName="UntaggedAdmin")


def test_sync_shows_what_depends_on_an_untagged_permission_set_as_not_requestable(org, app):
    sso = management("sso-admin")
    untagged = org.provisioned_permission_sets[0]
    tagged = next(arn for arn in org.permission_sets.values() if arn != untagged)
    account_id = org.accounts[0].account_id
    sso.untag_resource(
        InstanceArn=org.instance_arn, ResourceArn=untagged, TagKeys=[seed.requestable_tag()]
    )
    try:
        sync(app)
        account = Resource.objects.get(app=app, type=T.ACCOUNT, remote_id=account_id)
        # The account stays requestable with its tagged permission sets as levels.
        assert account.not_requestable_reason == ""
        levels = {lv.remote_id: lv for lv in account.access_levels.all()}
        assert "not tagged portcullis:requestable=true" in levels[untagged].not_requestable_reason
        for ou in live(app, T.ORGANIZATIONAL_UNIT):
            ou_levels = {lv.remote_id: lv for lv in ou.access_levels.all()}
            assert "not tagged" in ou_levels[untagged].not_requestable_reason
            assert ou_levels[tagged].not_requestable_reason == ""
        role = Resource.objects.get(app=app, type=T.IDC_ROLE, remote_id=f"{account_id}/{untagged}")
        assert "not tagged portcullis:requestable=true" in role.not_requestable_reason

        sso.tag_resource(
            InstanceArn=org.instance_arn,
            ResourceArn=untagged,
            Tags=[{"Key": seed.requestable_tag(), "Value": "true"}],
        )
        sync(app)
        role.refresh_from_db()
        assert role.not_requestable_reason == ""
        assert account.access_levels.get(remote_id=untagged).not_requestable_reason == ""
    finally:
        sso.tag_resource(
            InstanceArn=org.instance_arn,
            ResourceArn=untagged,
            Tags=[{"Key": seed.requestable_tag(), "Value": "true"}],
        )


def test_what_is_deleted_in_aws_is_marked_deleted_after_the_next_sync(org, app):
    account_id = org.accounts[0].account_id
    instance_id = run_instance(account_id, "short-lived")
    role_arn = create_role(account_id, "ShortLivedRole")
    sync(app)
    instance = Resource.objects.get(app=app, remote_id=instance_id)
    role = Resource.objects.get(app=app, remote_id=role_arn)
    assert instance.deleted_at is None and role.deleted_at is None
    live_before = Resource.objects.filter(app=app, deleted_at__isnull=True).count()

    member(account_id, "ec2").terminate_instances(InstanceIds=[instance_id])
    member(account_id, "iam").delete_role(RoleName="ShortLivedRole")
    run = sync(app)

    instance.refresh_from_db()
    role.refresh_from_db()
    assert instance.deleted_at == run.started_at
    assert role.deleted_at == run.started_at
    assert Resource.objects.filter(app=app, deleted_at__isnull=True).count() == live_before - 2
    assert run.counts[T.EC2_INSTANCE] == {"created": 0, "updated": 0, "deleted": 1}
    assert run.counts[T.IAM_ROLE] == {"created": 0, "updated": 0, "deleted": 1}

    # The same role created again is the same resource, restored.
    create_role(account_id, "ShortLivedRole")
    try:
        run = sync(app)
        role.refresh_from_db()
        assert role.deleted_at is None
        assert role.last_seen_at == run.started_at
        assert run.counts[T.IAM_ROLE]["updated"] == 1
    finally:
        member(account_id, "iam").delete_role(RoleName="ShortLivedRole")


def test_an_account_that_leaves_the_organization_is_swept_with_what_it_holds(aws, settings):
    from aws_integration.tests.sync_fixtures import forget_org

    settings.AWS_MAX_ATTEMPTS = 2
    forget_org()
    org = seeded_org()
    app = make_app(org)
    sync(app)
    leaving = org.accounts[1].account_id
    assert Resource.objects.filter(app=app, account_id=leaving, deleted_at__isnull=True).count() > 5

    management("organizations").remove_account_from_organization(AccountId=leaving)
    forget_org()
    run = sync(app)

    assert run.status == SyncStatus.SUCCEEDED, run.message
    assert not Resource.objects.filter(app=app, account_id=leaving, deleted_at__isnull=True)
    staying = org.accounts[0].account_id
    assert Resource.objects.filter(app=app, account_id=staying, deleted_at__isnull=True).count() > 5


# Writing only what changed -------------------------------------------------------------------
def test_a_resync_with_no_change_writes_no_inventory_row(org, app):
    make_user(ADA_EMAIL.lower(), email_verified=True)  # so that observed grants are part of it too
    sync(app)
    assert Grant.objects.filter(source=GrantSource.OBSERVED).exists()

    with capture() as queries:
        run = sync(app)

    assert run.status == SyncStatus.SUCCEEDED, run.message
    assert run.counts == {}
    assert len(queries.captured_queries) > 10  # the capture sees the sync's queries
    assert inventory_writes(queries) == []


def test_a_changed_tag_updates_just_that_row_and_just_the_changed_fields(org, app):
    sync(app)
    instance = Resource.objects.get(
        app=app, type=T.EC2_INSTANCE, account_id=org.accounts[0].account_id
    )
    other = Resource.objects.get(
        app=app, type=T.EC2_INSTANCE, account_id=org.accounts[1].account_id
    )
    first_seen = instance.last_seen_at
    ec2 = member(org.accounts[0].account_id, "ec2")
    ec2.create_tags(Resources=[instance.remote_id], Tags=[{"Key": "owner", "Value": "ada"}])
    try:
        with capture() as queries:
            run = sync(app)
    finally:
        ec2.delete_tags(Resources=[instance.remote_id], Tags=[{"Key": "owner"}])

    writes = inventory_writes(queries)
    assert len(writes) == 1
    assert writes[0].startswith('UPDATE "access_resource" SET "tags"')
    assert '"name"' not in writes[0] and '"metadata"' not in writes[0]
    assert run.counts == {T.EC2_INSTANCE: {"created": 0, "updated": 1, "deleted": 0}}
    instance.refresh_from_db()
    assert instance.tags["owner"] == "ada"
    assert instance.last_seen_at == run.started_at > first_seen
    assert other.last_seen_at == Resource.objects.get(pk=other.pk).last_seen_at


def test_each_scope_records_when_it_was_last_listed_completely(org, app):
    run = sync(app)

    scopes = {str(s): s.last_success_at for s in SyncScope.objects.filter(app=app)}
    account_id = org.accounts[0].account_id
    for expected in (
        f"{org.management_account_id}/-/organizations",
        f"{org.management_account_id}/{REGION}/identitystore",
        f"{account_id}/-/sts",
        f"{account_id}/-/iam",
        f"{account_id}/{REGION}/ec2",
        f"{account_id}/{REGION}/eks",
        f"{account_id}/{REGION}/rds",
        f"{account_id}/{REGION}/sso-admin",
    ):
        assert scopes[expected] == run.started_at


# Runs -------------------------------------------------------------------------------------------
def test_a_run_records_its_progress_counts_and_an_audit_event(org, app):
    run = sync(app)

    assert run.started_at and run.finished_at and run.finished_at >= run.started_at
    assert run.progress_total > len(org.accounts)
    assert run.progress_done == run.progress_total
    assert run.counts[T.ACCOUNT]["created"] == len(org.accounts) + 1
    assert run.counts["access_level"]["created"] > 0
    event = AuditEvent.objects.get(action="sync.completed")
    assert event.target_id == str(run.pk)
    assert event.actor_name == "system"
    assert event.details["status"] == SyncStatus.SUCCEEDED
    assert event.details["counts"] == run.counts


def test_a_run_is_claimed_once(org, app):
    run = services.request_sync(app, enqueue=False)
    engine.run_sync(run.pk)
    again = engine.run_sync(run.pk)

    assert again.status == SyncStatus.SUCCEEDED
    assert AuditEvent.objects.filter(action="sync.completed").count() == 1


def test_an_account_sync_reads_only_that_account(org, app):
    first, second = org.accounts
    run = sync(app, account_id=first.account_id)

    assert run.kind == SyncKind.ACCOUNT
    assert run.status == SyncStatus.SUCCEEDED, run.message
    assert live(app, T.EC2_INSTANCE, account_id=first.account_id)
    assert not live(app, T.EC2_INSTANCE, account_id=second.account_id)
    assert live(app, T.IDC_ROLE, account_id=first.account_id)
    assert not live(app, T.IDC_ROLE, account_id=second.account_id)
    assert len(live(app, T.ACCOUNT)) == len(org.accounts) + 1  # the organization is read


def test_an_account_sync_of_an_unknown_account_fails_clearly(org, app):
    run = sync(app, account_id="999999999999")

    assert run.status == SyncStatus.FAILED
    assert run.message == "Account 999999999999 is not an active account of the organization."


def test_only_the_enabled_parts_are_read(org, app):
    app.identity_center_management = False
    app.save()
    sync(app)

    assert not live(app, T.IDC_GROUP)
    assert not IdentityCenterUser.objects.filter(app=app).exists()
    assert live(app, T.EC2_INSTANCE)
    account = Resource.objects.get(app=app, type=T.ACCOUNT, remote_id=org.accounts[0].account_id)
    assert level_ids(account) == set()


def test_with_no_regions_set_it_reads_every_enabled_region(org, app):
    app.regions = []
    app.save()
    run = sync(app, account_id=org.accounts[0].account_id)

    assert run.status == SyncStatus.SUCCEEDED, run.message
    scopes = set(SyncScope.objects.filter(app=app, service="ec2").values_list("region", flat=True))
    assert {"us-east-1", "eu-west-1", "ap-southeast-2"} <= scopes
    assert "ap-east-1" not in scopes  # an opt-in region the account has not opted in to
    assert live(app, T.EC2_INSTANCE)


def test_last_seen_stays_on_unchanged_rows(org, app):
    sync(app)
    before = dict(Resource.objects.filter(app=app).values_list("pk", "last_seen_at"))
    later = sync(app)
    after = dict(Resource.objects.filter(app=app).values_list("pk", "last_seen_at"))
    assert before == after
    assert all(seen < later.started_at for seen in after.values())

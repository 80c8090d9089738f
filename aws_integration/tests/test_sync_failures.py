"""A sync when AWS refuses or fails: through the fault proxy in front of the stand-in
(tests/aws_faults.py), which answers chosen calls the way AWS does (AccessDenied,
throttling, 5xx) so that botocore sees real refusals. A scope that cannot be read keeps
its rows and becomes a sync issue; the rest of the organization still syncs."""

from __future__ import annotations

import pytest

from access.choices import GrantSource, GrantStatus, ResourceType
from access.models import Grant, Resource
from aws_integration.choices import SyncStatus
from aws_integration.models import SyncIssue
from aws_integration.tests.sync_fixtures import (
    ADA_EMAIL,
    REGION,
    create_role,
    live,
    make_app,
    member,
    run_instance,
    seeded_org,
    sync,
)
from demo import seed
from tests.fixtures import make_user

pytestmark = pytest.mark.django_db

T = ResourceType


@pytest.fixture
def org(aws_faults_kept) -> seed.SeedResult:
    return seeded_org()


@pytest.fixture
def faults(aws_faults_kept):
    return aws_faults_kept


@pytest.fixture
def app(org):
    return make_app(org)


def test_an_account_whose_role_cannot_be_assumed_keeps_its_rows_and_records_an_issue(
    org, app, faults
):
    refused, fine = org.accounts[0].account_id, org.accounts[1].account_id
    instance_id = run_instance(refused, "doomed")
    sync(app)
    kept = Resource.objects.get(app=app, remote_id=instance_id)
    rows_before = set(
        Resource.objects.filter(app=app, account_id=refused).values_list("pk", "deleted_at")
    )
    new_role = create_role(fine, "ArrivedMeanwhile")
    member(refused, "ec2").terminate_instances(InstanceIds=[instance_id])
    faults.deny_assume_role(app.role_arn(refused))

    run = sync(app)

    assert run.status == SyncStatus.PARTIAL
    assert f"{refused}/-/sts: AccessDenied" in run.message
    assert (
        set(Resource.objects.filter(app=app, account_id=refused).values_list("pk", "deleted_at"))
        == rows_before
    )
    kept.refresh_from_db()
    assert kept.deleted_at is None  # not seen, but its account could not be listed
    assert Resource.objects.get(app=app, remote_id=new_role).deleted_at is None  # others sync
    issue = SyncIssue.objects.get(app=app, scope=f"{refused}/-/sts")
    assert issue.code == "AccessDenied"
    assert "sts:AssumeRole" in issue.message
    assert issue.last_run == run
    assert issue.occurrences == 1
    assert issue.resolved_at is None
    assert list(run.issues.all()) == [issue]

    again = sync(app)
    issue.refresh_from_db()
    assert issue.occurrences == 2
    assert issue.last_run == again
    assert issue.last_seen_at == again.started_at

    faults.clear()
    fixed = sync(app)
    assert fixed.status == SyncStatus.SUCCEEDED, fixed.message
    issue.refresh_from_db()
    assert issue.resolved_at == fixed.started_at
    kept.refresh_from_db()
    assert kept.deleted_at == fixed.started_at
    member(fine, "iam").delete_role(RoleName="ArrivedMeanwhile")


def test_one_refused_service_keeps_its_rows_while_the_rest_of_the_account_syncs(org, app, faults):
    account_id = org.accounts[0].account_id
    instance_id = run_instance(account_id, "kept-while-refused")
    sync(app)
    member(account_id, "ec2").terminate_instances(InstanceIds=[instance_id])
    role_arn = create_role(account_id, "SeenDespiteEc2")
    faults.deny("ec2", "DescribeInstances", account_id=account_id)
    try:
        run = sync(app)
    finally:
        member(account_id, "iam").delete_role(RoleName="SeenDespiteEc2")

    assert run.status == SyncStatus.PARTIAL
    assert Resource.objects.get(app=app, remote_id=instance_id).deleted_at is None
    assert Resource.objects.get(app=app, remote_id=role_arn).deleted_at is None
    issue = SyncIssue.objects.get(app=app)
    assert issue.scope == f"{account_id}/{REGION}/ec2"
    assert issue.code == "UnauthorizedOperation"
    assert "ec2:DescribeInstances" in issue.message
    # The other account's instances were swept as usual.
    other = org.accounts[1].account_id
    assert live(app, T.EC2_INSTANCE, account_id=other)


def test_a_service_failing_with_5xx_after_retries_keeps_its_rows(org, app, faults):
    account_id = org.accounts[1].account_id
    sync(app)
    aurora = Resource.objects.filter(
        app=app, account_id=account_id, type__in=[T.AURORA_MYSQL, T.AURORA_POSTGRES]
    )
    databases = set(aurora.values_list("pk", "deleted_at"))
    rule = faults.fail("rds", "DescribeDBClusters", account_id=account_id, status=503)

    run = sync(app)

    assert rule.hits >= 2  # botocore retried before giving up
    assert run.status == SyncStatus.PARTIAL
    issue = SyncIssue.objects.get(app=app)
    assert issue.scope == f"{account_id}/{REGION}/rds"
    assert issue.code == "InternalFailure"
    after = set(aurora.values_list("pk", "deleted_at"))
    assert after == databases and len(after) == 2


def test_throttling_is_retried_and_the_sync_succeeds(org, app, faults):
    rule = faults.fail("ec2", "DescribeInstances", status="throttle", times=1)

    run = sync(app)

    assert rule.hits == 1
    assert run.status == SyncStatus.SUCCEEDED, run.message
    assert not SyncIssue.objects.filter(app=app).exists()
    assert len(live(app, T.EC2_INSTANCE)) == len(org.accounts)


def test_a_refused_management_account_fails_the_run_and_changes_nothing(org, app, faults):
    sync(app)
    before = set(Resource.objects.filter(app=app).values_list("pk", "deleted_at", "last_seen_at"))
    faults.deny_assume_role(app.role_arn(org.management_account_id))

    run = sync(app)

    assert run.status == SyncStatus.FAILED
    assert run.message.startswith(
        f"Cannot assume the ingester role {app.role_arn(org.management_account_id)} "
        "in the management account:"
    )
    assert (
        set(Resource.objects.filter(app=app).values_list("pk", "deleted_at", "last_seen_at"))
        == before
    )
    issue = SyncIssue.objects.get(app=app)
    assert issue.scope == f"{org.management_account_id}/-/sts"


def test_a_failed_organization_listing_keeps_accounts_and_still_syncs_inside_them(org, app, faults):
    sync(app)
    accounts = set(live(app, T.ACCOUNT))
    account_id = org.accounts[0].account_id
    role_arn = create_role(account_id, "SeenWithoutOrganizations")
    faults.deny("organizations", "ListAccountsForParent")
    try:
        run = sync(app)
    finally:
        member(account_id, "iam").delete_role(RoleName="SeenWithoutOrganizations")

    assert run.status == SyncStatus.PARTIAL
    assert set(live(app, T.ACCOUNT)) == accounts
    assert Resource.objects.get(app=app, remote_id=role_arn).deleted_at is None
    issue = SyncIssue.objects.get(app=app)
    assert issue.scope == f"{org.management_account_id}/-/organizations"
    assert issue.code == "AccessDeniedException"


def test_a_failed_identity_store_listing_leaves_observed_grants_alone(org, app, faults):
    ada = make_user(ADA_EMAIL.lower(), email_verified=True)
    sync(app)
    grant = Grant.objects.get(user=ada, source=GrantSource.OBSERVED)
    faults.deny("identitystore", "ListGroupMemberships")

    run = sync(app)

    assert run.status == SyncStatus.PARTIAL
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE
    assert live(app, T.IDC_GROUP)
    issue = SyncIssue.objects.get(app=app)
    assert issue.scope == f"{org.management_account_id}/{REGION}/identitystore"

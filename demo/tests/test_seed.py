"""The seed builds the organization it promises, as read back through boto3 from the
stand-in AWS (a moto server over HTTP), the way sync will read it."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError
from django.core.management import CommandError, call_command

from access.choices import ResourceType
from aws_integration import clients
from demo import seed, standin

PEOPLE = [
    seed.Person("ada@demo.portcullis.test", "Ada", "Admin", groups=("Engineering", "Data")),
    seed.Person("olga@demo.portcullis.test", "Olga", "Owner"),
]
REGIONS = ["us-east-1", "eu-west-1"]


@pytest.fixture(scope="module")
def _seed_cache() -> dict[str, seed.SeedResult]:
    return {}


@pytest.fixture
def seeded(moto_server: str, settings, _seed_cache) -> seed.SeedResult:
    """SMALL, seeded once for the module's read-only tests (seeding takes seconds), and
    again if another test emptied the stand-in (moto's state is per process)."""
    settings.AWS_ENDPOINT_URL = moto_server
    settings.AWS_MAX_ATTEMPTS = 2
    result = _seed_cache.get("small")
    if result is None or not _still_seeded(result):
        requests.post(f"{moto_server}/moto-api/reset", timeout=10).raise_for_status()
        result = _seed_cache["small"] = seed.seed_organization(
            seed.SMALL, region="us-east-1", people=PEOPLE
        )
    return result


def _still_seeded(result: seed.SeedResult) -> bool:
    try:
        org = clients.client("organizations").describe_organization()["Organization"]
    except ClientError:
        return False
    return org["Id"] == result.organization_id


def member_session(account_id: str, region: str = "us-east-1") -> Any:
    return clients.session_for_account(account_id, seed.MEMBER_ACCOUNT_ROLE, region=region)


def tag_dict(tags: list[Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags}


def test_it_creates_an_organization_with_all_features(seeded):
    org = clients.client("organizations").describe_organization()["Organization"]
    assert org["Id"] == seeded.organization_id
    assert org["FeatureSet"] == "ALL"
    assert org["MasterAccountId"] == seeded.management_account_id
    assert seeded.regions == REGIONS


def test_it_builds_the_ou_tree_and_puts_each_account_in_its_ou(seeded):
    org = clients.client("organizations")
    top = {
        ou["Name"]: ou["Id"]
        for ou in org.list_organizational_units_for_parent(ParentId=seeded.root_id)[
            "OrganizationalUnits"
        ]
    }
    assert set(top) == {"Workloads", "Sandbox"}
    nested = org.list_organizational_units_for_parent(ParentId=top["Workloads"])
    assert [ou["Name"] for ou in nested["OrganizationalUnits"]] == ["Production"]
    production = nested["OrganizationalUnits"][0]["Id"]

    def names_in(parent_id: str) -> set[str]:
        accounts = org.list_accounts_for_parent(ParentId=parent_id)["Accounts"]
        return {a["Name"] for a in accounts}

    assert names_in(production) == {"payments-prod", "platform-prod"}
    assert names_in(top["Sandbox"]) == {"analytics-sandbox", "identity-sandbox"}
    assert names_in(top["Workloads"]) == set()
    # The management account stays at the root, with no member account beside it.
    root_accounts = org.list_accounts_for_parent(ParentId=seeded.root_id)["Accounts"]
    assert [a["Id"] for a in root_accounts] == [seeded.management_account_id]
    assert {a.name: a.ou_id for a in seeded.accounts} == {
        "payments-prod": production,
        "analytics-sandbox": top["Sandbox"],
        "platform-prod": production,
        "identity-sandbox": top["Sandbox"],
    }


def test_each_member_account_holds_tagged_iam_roles_with_trust_policies(seeded):
    for account in seeded.accounts:
        iam = clients.client("iam", session=member_session(account.account_id))
        roles = {r["RoleName"]: r for r in iam.list_roles()["Roles"]}
        assert {"DeveloperAccess", seed.EKS_CLUSTER_ROLE, "ReadOnlyAudit"} <= set(roles)
        assert all(r["Arn"].split(":")[4] == account.account_id for r in roles.values())

        requestable = iam.get_role(RoleName="DeveloperAccess")["Role"]
        assert tag_dict(requestable["Tags"]) == {
            "team": account.team,
            "env": account.env,
            seed.requestable_tag(): "true",
        }
        trust: Any = requestable["AssumeRolePolicyDocument"]
        if isinstance(trust, str):
            trust = json.loads(trust)
        assert trust["Statement"][0]["Principal"] == {
            "AWS": f"arn:aws:iam::{seeded.management_account_id}:root"
        }
        eks_role = iam.get_role(RoleName=seed.EKS_CLUSTER_ROLE)["Role"]
        assert seed.requestable_tag() not in tag_dict(eks_role["Tags"])
        assert "eks.amazonaws.com" in json.dumps(eks_role["AssumeRolePolicyDocument"])


def test_each_member_account_holds_instances_clusters_and_databases_in_every_region(seeded):
    for account in seeded.accounts:
        for region in REGIONS:
            session = member_session(account.account_id, region)
            ec2 = clients.client("ec2", session=session, region=region)
            instances = [
                i
                for r in ec2.describe_instances()["Reservations"]
                for i in r["Instances"]
                if i["State"]["Name"] != "terminated"
            ]
            names = sorted(tag_dict(i["Tags"])["Name"] for i in instances)
            assert names == [f"{account.name}-web-01", f"{account.name}-worker-02"]

            eks = clients.client("eks", session=session, region=region)
            clusters = eks.list_clusters()["clusters"]
            assert clusters == [f"{account.name}-{region}-1"]
            cluster = eks.describe_cluster(name=clusters[0])["cluster"]
            assert cluster["roleArn"].endswith(f":{account.account_id}:role/EksClusterRole")
            assert cluster["tags"]["team"] == account.team

            rds = clients.client("rds", session=session, region=region)
            databases = {
                d["DBInstanceIdentifier"]: d for d in rds.describe_db_instances()["DBInstances"]
            }
            assert {d["Engine"] for d in databases.values()} == {"mysql", "postgres"}
            for database in databases.values():
                assert database["IAMDatabaseAuthenticationEnabled"] is True
                tags = rds.list_tags_for_resource(ResourceName=database["DBInstanceArn"])["TagList"]
                assert tag_dict(tags)[seed.DB_USERS_TAG] == "app_ro,app_rw"
            aurora: list[Any] = rds.describe_db_clusters()["DBClusters"]
            assert sorted(c["Engine"] for c in aurora) == ["aurora-mysql", "aurora-postgresql"]
            for cluster in aurora:
                assert cluster["IAMDatabaseAuthenticationEnabled"] is True
                tags = rds.list_tags_for_resource(ResourceName=cluster["DBClusterArn"])["TagList"]
                assert tag_dict(tags)[seed.DB_USERS_TAG] == "app_ro,app_rw"


def test_the_result_lists_what_each_account_holds(seeded):
    account = seeded.account("payments-prod")
    counts = {t: len(account.of_type(t.value)) for t in ResourceType}
    assert counts[ResourceType.IAM_ROLE] == 3
    assert counts[ResourceType.EC2_INSTANCE] == 4  # 2 per region
    for per_region in (
        ResourceType.EKS_CLUSTER,
        ResourceType.RDS_MYSQL,
        ResourceType.RDS_POSTGRES,
        ResourceType.AURORA_MYSQL,
        ResourceType.AURORA_POSTGRES,
    ):
        assert counts[per_region] == 2
    assert len(account.resources) == seed.SMALL.resources_per_account
    assert all(r.account_id == account.account_id for r in account.resources)
    # The ids recorded are the ones AWS answers with.
    instance = account.of_type(ResourceType.EC2_INSTANCE.value)[0]
    ec2 = clients.client(
        "ec2", session=member_session(account.account_id, instance.region), region=instance.region
    )
    found = ec2.describe_instances(InstanceIds=[instance.id])["Reservations"][0]["Instances"][0]
    assert tag_dict(found["Tags"])["Name"] == instance.name


def test_identity_center_holds_the_users_groups_and_memberships(seeded):
    sso = clients.client("sso-admin")
    instance = sso.list_instances()["Instances"][0]
    assert instance["InstanceArn"] == seeded.instance_arn
    assert instance["IdentityStoreId"] == seeded.identity_store_id

    store = clients.client("identitystore")
    users = {
        u["UserName"]: u
        for page in store.get_paginator("list_users").paginate(
            IdentityStoreId=seeded.identity_store_id
        )
        for u in page["Users"]
    }
    assert len(users) == seed.SMALL.idc_users + len(PEOPLE)
    assert users["ada@demo.portcullis.test"]["Emails"][0]["Value"] == "ada@demo.portcullis.test"
    groups = {
        g["DisplayName"]: g["GroupId"]
        for g in store.list_groups(IdentityStoreId=seeded.identity_store_id)["Groups"]
    }
    assert set(groups) == {"Engineering", "Data", "Security", "Support"}

    def members(group: str) -> set[str]:
        listed = store.list_group_memberships(
            IdentityStoreId=seeded.identity_store_id, GroupId=groups[group]
        )["GroupMemberships"]
        return {m["MemberId"]["UserId"] for m in listed}

    ada = users["ada@demo.portcullis.test"]["UserId"]
    olga = users["olga@demo.portcullis.test"]["UserId"]
    assert ada in members("Engineering") and ada in members("Data")
    assert all(olga not in members(g) for g in groups)
    total = sum(len(members(g)) for g in groups)
    assert total == len(seeded.memberships) == 2 + seed.SMALL.idc_users * 2


def test_permission_sets_are_assigned_and_provisioned(seeded):
    sso = clients.client("sso-admin")
    arns = sso.list_permission_sets(InstanceArn=seeded.instance_arn)["PermissionSets"]
    assert sorted(arns) == sorted(seeded.permission_sets.values())
    names = {
        sso.describe_permission_set(InstanceArn=seeded.instance_arn, PermissionSetArn=arn)[
            "PermissionSet"
        ]["Name"]
        for arn in arns
    }
    assert names == {"AdministratorAccess", "ReadOnlyAccess", "PowerUserAccess", "SecurityAudit"}
    admin = seeded.permission_sets["AdministratorAccess"]
    policies = sso.list_managed_policies_in_permission_set(
        InstanceArn=seeded.instance_arn, PermissionSetArn=admin
    )["AttachedManagedPolicies"]
    assert [p["Arn"] for p in policies] == ["arn:aws:iam::aws:policy/AdministratorAccess"]

    first = seeded.accounts[0]
    provisioned = sso.list_permission_sets_provisioned_to_account(
        InstanceArn=seeded.instance_arn, AccountId=first.account_id
    )["PermissionSets"]
    assigned_here = {
        a.permission_set_arn for a in seeded.assignments if a.account_id == first.account_id
    }
    assert assigned_here <= set(provisioned)
    assert len(provisioned) == len(set(provisioned))  # each provisioned once

    principals = set()
    for arn in assigned_here:
        listed = sso.list_account_assignments(
            InstanceArn=seeded.instance_arn, AccountId=first.account_id, PermissionSetArn=arn
        )["AccountAssignments"]
        principals |= {(a["PrincipalType"], a["PrincipalId"]) for a in listed}
    group_ids = set(seeded.groups.values())
    assert sum(1 for kind, pid in principals if kind == "GROUP" and pid in group_ids) == 2
    # One user holds direct, long-lived access: something for access reviews to find.
    assert any(kind == "USER" for kind, _ in principals)


def test_it_refuses_to_seed_a_stand_in_that_already_holds_an_organization(seeded):
    with pytest.raises(
        seed.SeedError,
        match=rf"already holds organization {seeded.organization_id}.*moto-api/reset",
    ):
        seed.seed_organization(seed.SMALL)
    assert len(clients.client("organizations").list_accounts()["Accounts"]) == 5


def test_it_refuses_to_seed_real_aws(settings):
    settings.AWS_ENDPOINT_URL = ""
    with pytest.raises(seed.SeedError, match="only runs against the stand-in AWS"):
        seed.seed_organization(seed.SMALL)


def test_the_sizes_promise_what_the_demo_and_the_benchmark_need():
    assert seed.LARGE.accounts == 50 and seed.LARGE.regions == 1
    assert seed.LARGE.resources_per_account == 20 + 40 + 2 + 4 + 2
    assert (seed.LARGE.permission_sets, seed.LARGE.idc_groups, seed.LARGE.idc_users) == (
        30,
        100,
        500,
    )
    assert 2 <= seed.SMALL.ous <= 3 and seed.SMALL.accounts == 4
    with pytest.raises(seed.SeedError, match="iam_roles_per_account must be at least 2"):
        seed.SeedSize(**{**seed.SMALL.__dict__, "iam_roles_per_account": 1})


def test_seed_aws_resets_seeds_and_summarises_the_stand_in(aws, settings):
    # Something to reset: --reset must empty the stand-in before seeding.
    clients.client("organizations").create_organization(FeatureSet="ALL")
    settings.AWS_ENDPOINT_URL = ""  # --endpoint is what points the command at the stand-in
    out = StringIO()
    call_command("seed_aws", "--endpoint", aws, "--reset", stdout=out, stderr=StringIO())
    text = out.getvalue()
    assert "Seeded the small organization o-" in text and f"at {aws} in" in text
    assert "AWS EC2 instance" in text and "payments-prod" in text
    accounts = clients.client("organizations").list_accounts()["Accounts"]
    assert len(accounts) == 1 + seed.SMALL.accounts

    with pytest.raises(CommandError, match="already holds organization"):
        call_command("seed_aws", "--endpoint", aws, stdout=StringIO(), stderr=StringIO())


def test_seed_aws_refuses_to_run_without_a_stand_in(settings):
    settings.AWS_ENDPOINT_URL = ""
    with pytest.raises(CommandError, match="never writes to real AWS"):
        call_command("seed_aws", stdout=StringIO())


def test_start_moto_names_the_option_when_the_port_is_taken():
    # moto's state is per process: this second server shares the stand-in's state and
    # is only used for its port; base_amis_only=False leaves moto's settings as they are.
    server = standin.start_moto(port=0, base_amis_only=False)
    try:
        port = int(server.url.rsplit(":", 1)[1])
        with pytest.raises(standin.StandInError, match=f"127.0.0.1:{port}.*--aws-port"):
            standin.start_moto(port=port, base_amis_only=False)
    finally:
        server.stop()


def test_the_seed_tags_what_it_offers_with_the_installations_requestable_tag(aws, settings):
    settings.PORTCULLIS_REQUESTABLE_TAG = "acme:grantable"
    size = seed.SeedSize(
        **{
            **seed.SMALL.__dict__,
            "accounts": 1,
            "regions": 1,
            "ec2_per_account": 0,
            "eks_per_account": 0,
            "rds_mysql_per_account": 0,
            "rds_postgres_per_account": 0,
            "aurora_mysql_per_account": 0,
            "aurora_postgres_per_account": 0,
        }
    )
    result = seed.seed_organization(size, region="us-east-1", people=PEOPLE)
    account_id = result.accounts[0].account_id
    iam = clients.client("iam", session=member_session(account_id))
    role_tags = tag_dict(iam.get_role(RoleName="DeveloperAccess")["Role"]["Tags"])
    assert role_tags.get("acme:grantable") == "true"
    assert "portcullis:requestable" not in role_tags
    sso = clients.client("sso-admin")
    for arn in result.permission_sets.values():
        tags = tag_dict(
            sso.list_tags_for_resource(InstanceArn=result.instance_arn, ResourceArn=arn)["Tags"]
        )
        assert tags.get("acme:grantable") == "true" and "portcullis:requestable" not in tags

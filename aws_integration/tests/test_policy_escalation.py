"""Whoever holds the ingester role's credentials can do what its policy allows and nothing
more. The rendered documents are linted with parliament and evaluated, statement by
statement, for every way we found to turn the ingester into an administrator."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from aws_integration import setup_policies
from aws_integration.models import AwsSettings
from aws_integration.tests import iam_evaluator
from aws_integration.tests.iam_evaluator import ALLOW, DENY, Request, decision
from aws_integration.tests.test_setup_policies import MANAGEMENT, make_app

ACCOUNT = "210987654321"
INGESTER = "PortcullisIngester"
ROLE = f"arn:aws:iam::{ACCOUNT}:role"
BOUNDARY = f"arn:aws:iam::{ACCOUNT}:policy/portcullis/PortcullisPermissionsBoundary"
TAG = "aws:ResourceTag/portcullis:requestable"
REQUESTABLE = {TAG: "true"}
INSTANCE = "arn:aws:sso:::instance/ssoins-1234567890abcdef"
PERMISSION_SET = "arn:aws:sso:::permissionSet/ssoins-1234567890abcdef/ps-0123456789abcdef"


@pytest.fixture
def policy() -> dict[str, Any]:
    return setup_policies.ingester_permissions_policy(
        make_app(ingester_role_name=INGESTER), account_id=ACCOUNT
    )


def can(policy: dict[str, Any], action: str, resource: str, **context: Any) -> str:
    return decision([policy], Request(action, resource, context))


# The role's own trust and permissions -------------------------------------------------------
@pytest.mark.parametrize(
    "action", ["iam:UpdateAssumeRolePolicy", "iam:PutRolePolicy", "iam:DeleteRolePolicy"]
)
@pytest.mark.parametrize(
    "role",
    [
        f"{ROLE}/{INGESTER}",
        f"{ROLE}/ops/{INGESTER}",
        f"{ROLE}/portcullis/{INGESTER}",
        f"{ROLE}/OrganizationAccountAccessRole",
        f"{ROLE}/AWSControlTowerExecution",
        f"{ROLE}/aws-reserved/sso.amazonaws.com/eu-west-1/AWSReservedSSO_Admin_0123456789abcdef",
        f"{ROLE}/aws-service-role/eks.amazonaws.com/AWSServiceRoleForAmazonEKS",
    ],
)
def test_it_never_edits_its_own_role_nor_the_organizations_nor_awss(policy, action, role):
    # Even tagged requestable, and even with the boundary: the Deny wins.
    context = {**REQUESTABLE, "iam:PermissionsBoundary": BOUNDARY}
    assert can(policy, action, role, **context) == DENY


def test_its_denies_hold_whatever_else_the_role_is_given(policy):
    administrator = {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    both = [policy, administrator]
    ingester = Request("iam:PutRolePolicy", f"{ROLE}/{INGESTER}", REQUESTABLE)
    assert decision(both, ingester) == DENY
    attach = Request("iam:AttachRolePolicy", f"{ROLE}/Developer", REQUESTABLE)
    assert decision(both, attach) == DENY
    tag = Request("iam:TagRole", f"{ROLE}/Administrator", {})
    assert decision(both, tag) == DENY


# Customer roles: only the tagged ones ------------------------------------------------------
@pytest.mark.parametrize("action", ["iam:UpdateAssumeRolePolicy", "iam:PutRolePolicy"])
def test_it_edits_a_customer_role_only_when_tagged_requestable(policy, action):
    assert can(policy, action, f"{ROLE}/Developer", **REQUESTABLE) == ALLOW
    assert can(policy, action, f"{ROLE}/Administrator") != ALLOW
    assert can(policy, action, f"{ROLE}/Administrator", **{TAG: "True"}) != ALLOW
    assert can(policy, action, f"{ROLE}/Administrator", **{TAG: "yes"}) != ALLOW
    other_account = f"arn:aws:iam::{MANAGEMENT}:role/Developer"
    assert can(policy, action, other_account, **REQUESTABLE) != ALLOW


def test_it_cannot_tag_a_customer_role_to_make_it_requestable(policy):
    for action in ("iam:TagRole", "iam:UntagRole"):
        assert can(policy, action, f"{ROLE}/Administrator", **{"aws:TagKeys": TAG[16:]}) == DENY
        assert can(policy, action, f"{ROLE}/portcullis/portcullis-ec2-x") == ALLOW


@pytest.mark.parametrize("value", ["true", "false"])
def test_it_cannot_tag_even_its_own_roles_requestable(policy, value):
    # A /portcullis/ role tagged requestable would fall under RequestableRoles, whose
    # PutRolePolicy asks for no boundary: on a role someone else made under /portcullis/
    # without it, the ingester could then write any permissions.
    managed = f"{ROLE}/portcullis/portcullis-ec2-x"
    assert can(policy, "iam:TagRole", managed, **{f"aws:RequestTag/{TAG[16:]}": value}) == DENY
    # Its own tags stay allowed.
    assert can(policy, "iam:TagRole", managed, **{"aws:RequestTag/portcullis:managed": "true"}) == (
        ALLOW
    )


def test_it_cannot_delete_policies_of_or_delete_a_customer_role(policy):
    for action in ("iam:DeleteRolePolicy", "iam:DeleteRole"):
        assert can(policy, action, f"{ROLE}/Developer", **REQUESTABLE) != ALLOW


@pytest.mark.parametrize("role", [f"{ROLE}/Developer", f"{ROLE}/portcullis/portcullis-ec2-x"])
@pytest.mark.parametrize("action", setup_policies.ESCALATION_ACTIONS)
def test_every_way_around_the_tag_and_the_boundary_is_denied(policy, action, role):
    context = {**REQUESTABLE, "iam:PermissionsBoundary": BOUNDARY}
    assert can(policy, action, role, **context) == DENY


@pytest.mark.parametrize(
    "action",
    setup_policies.IDENTITY_ESCALATION_ACTIONS + setup_policies.PERMISSION_SET_ESCALATION_ACTIONS,
)
def test_identity_providers_users_and_permission_sets_stay_out_of_reach_whatever_it_is_given(
    policy, action
):
    # Pointing the OIDC provider every grant trusts at another issuer, IAM users with keys,
    # rewriting or re-tagging a permission set: denied even beside an administrator policy.
    administrator = {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    provider = f"arn:aws:iam::{ACCOUNT}:oidc-provider/login.example.com"
    for resource in (provider, f"arn:aws:iam::{ACCOUNT}:user/escalated", PERMISSION_SET):
        assert decision([policy, administrator], Request(action, resource, REQUESTABLE)) == DENY


def test_it_cannot_attach_a_managed_policy_anywhere(policy):
    for role in (f"{ROLE}/Developer", f"{ROLE}/portcullis/portcullis-ec2-x"):
        assert (
            can(
                policy,
                "iam:AttachRolePolicy",
                role,
                **REQUESTABLE,
                **{"iam:PolicyARN": "arn:aws:iam::aws:policy/AdministratorAccess"},
            )
            == DENY
        )


def test_it_cannot_rewrite_the_boundary_policy(policy):
    for action in ("iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion", "iam:DeletePolicy"):
        assert can(policy, action, BOUNDARY) == DENY


# Its own roles: under /portcullis/, with the boundary ------------------------------------
def test_it_creates_roles_only_under_its_path_and_with_the_boundary(policy):
    managed = f"{ROLE}/portcullis/portcullis-ec2-x"
    assert can(policy, "iam:CreateRole", managed, **{"iam:PermissionsBoundary": BOUNDARY}) == ALLOW
    assert can(policy, "iam:CreateRole", managed) == DENY  # no boundary
    other = f"arn:aws:iam::{ACCOUNT}:policy/portcullis/Other"
    assert can(policy, "iam:CreateRole", managed, **{"iam:PermissionsBoundary": other}) == DENY
    admin = "arn:aws:iam::aws:policy/AdministratorAccess"
    assert can(policy, "iam:CreateRole", managed, **{"iam:PermissionsBoundary": admin}) == DENY
    for outside in (f"{ROLE}/Escalated", f"{ROLE}/portcullisx/Escalated", f"{ROLE}/a/portcullis/b"):
        assert can(policy, "iam:CreateRole", outside, **{"iam:PermissionsBoundary": BOUNDARY}) == (
            DENY
        )


def test_it_writes_permissions_only_of_roles_carrying_the_boundary(policy):
    managed = f"{ROLE}/portcullis/portcullis-ec2-x"
    for action in ("iam:PutRolePolicy", "iam:DeleteRolePolicy"):
        assert can(policy, action, managed, **{"iam:PermissionsBoundary": BOUNDARY}) == ALLOW
        # A role someone else made under /portcullis/ without the boundary.
        assert can(policy, action, managed) != ALLOW


@pytest.mark.parametrize(
    "role",
    [
        f"{ROLE}/portcullis/portcullis-eks-prod-admin-eu-west-1-0123456789",
        f"{ROLE}/Developer",
        f"arn:aws:iam::{MANAGEMENT}:role/portcullis/portcullis-ec2-x",
    ],
)
def test_it_cannot_assume_a_role_whose_trust_policy_it_wrote(policy, role):
    # It writes the trust policy of its own roles and of requestable ones. In its account, a
    # trust policy naming the ingester's session lets it assume the role with no Allow of
    # its own (the trust policy grants it): only an explicit Deny stops it from then using
    # the role itself, e.g. an EKS access entry with the cluster-admin access policy.
    assert can(policy, "sts:AssumeRole", role, **REQUESTABLE) == DENY


# The boundary: only Portcullis's users, through its OIDC provider ------------------------
PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/login.example.com/oauth2/default"
BOUNDED = [
    ("ssm:StartSession", f"arn:aws:ec2:eu-west-1:{ACCOUNT}:instance/i-0123456789abcdef0"),
    ("rds-db:connect", f"arn:aws:rds-db:eu-west-1:{ACCOUNT}:dbuser:db-ABCDEFGHIJKL/admin"),
    ("eks:DescribeCluster", f"arn:aws:eks:eu-west-1:{ACCOUNT}:cluster/prod"),
]


@pytest.fixture
def boundary() -> dict[str, Any]:
    return setup_policies.boundary_policy(ACCOUNT, "https://login.example.com/oauth2/default")


@pytest.mark.parametrize(("action", "resource"), BOUNDED)
def test_the_boundary_admits_only_sessions_federated_through_portcullis_provider(
    boundary, action, resource
):
    # The ingester may create a /portcullis/ role with the boundary and any trust policy,
    # and give it any inline policy: what the boundary allows must then need a token of
    # Portcullis's identity provider, not only the ingester's credentials.
    portcullis_user = {"aws:FederatedProvider": PROVIDER}
    assert can(boundary, action, resource, **portcullis_user) == ALLOW
    # sts:AssumeRole by the ingester, Portcullis's principal or another account: no key.
    assert can(boundary, action, resource) == DENY
    for provider in (
        f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com",
        f"arn:aws:iam::{MANAGEMENT}:oidc-provider/login.example.com/oauth2/default",
        "accounts.google.com",
    ):
        assert can(boundary, action, resource, **{"aws:FederatedProvider": provider}) == DENY


# Identity Center ------------------------------------------------------------------------
def assignment(action: str, permission_set_context: dict[str, str]) -> list[Request]:
    return [
        Request(action, INSTANCE),
        Request(action, f"arn:aws:sso:::account/{ACCOUNT}"),
        Request(action, PERMISSION_SET, permission_set_context),
    ]


def test_it_assigns_only_permission_sets_tagged_requestable(policy):
    create = "sso:CreateAccountAssignment"
    assert iam_evaluator.allowed([policy], *assignment(create, REQUESTABLE))
    assert not iam_evaluator.allowed([policy], *assignment(create, {}))
    other_instance = [Request(create, "arn:aws:sso:::instance/ssoins-other")]
    assert not iam_evaluator.allowed([policy], *other_instance)


def test_it_reads_permission_set_tags_but_cannot_tag_one_to_make_it_requestable(policy):
    # Sync and the grant driver read the requestable tag; only an AWS administrator sets it.
    assert can(policy, "sso:ListTagsForResource", PERMISSION_SET) == ALLOW
    for action in ("sso:TagResource", "sso:UntagResource"):
        assert can(policy, action, PERMISSION_SET) != ALLOW
        assert can(policy, action, INSTANCE) != ALLOW


def test_it_removes_assignments_of_any_permission_set(policy):
    # Removing access never widens it, and a tag taken off after a grant must not strand it.
    assert iam_evaluator.allowed([policy], *assignment("sso:DeleteAccountAssignment", {}))


# EKS ----------------------------------------------------------------------------------
CLUSTER = f"arn:aws:eks:eu-west-1:{ACCOUNT}:cluster/prod"
ENTRY = f"arn:aws:eks:eu-west-1:{ACCOUNT}:access-entry/prod/role/{ACCOUNT}/x/0"
CLUSTER_ADMIN = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"


@pytest.mark.parametrize(
    "principal", [f"{ROLE}/{INGESTER}", f"{ROLE}/Administrator", f"{ROLE}/a/portcullis/b"]
)
def test_eks_access_entries_only_for_its_own_roles(policy, principal):
    managed = f"{ROLE}/portcullis/portcullis-eks-x"
    create = "eks:CreateAccessEntry"
    assert can(policy, create, CLUSTER, **{"eks:principalArn": managed}) == ALLOW
    assert can(policy, create, CLUSTER, **{"eks:principalArn": principal}) != ALLOW
    associate = {"eks:principalArn": principal, "eks:policyArn": CLUSTER_ADMIN}
    assert can(policy, "eks:AssociateAccessPolicy", ENTRY, **associate) != ALLOW
    associate["eks:principalArn"] = managed
    assert can(policy, "eks:AssociateAccessPolicy", ENTRY, **associate) == ALLOW
    assert can(policy, create, f"arn:aws:eks:eu-west-1:{MANAGEMENT}:cluster/prod") != ALLOW


# What reaches beyond what is requestable is on the app page ------------------------------
BEYOND_REQUESTABLE = [
    # Any group: one holding an untagged administrators' permission set too.
    ("identitystore:CreateGroupMembership", "arn:aws:identitystore:::group/admins", {}),
    # A requestable permission set, for any user or group, on any account (management too).
    ("sso:CreateAccountAssignment", f"arn:aws:sso:::account/{MANAGEMENT}", {}),
    ("sso:DeleteAccountAssignment", PERMISSION_SET, {}),
    ("iam:UpdateAssumeRolePolicy", f"{ROLE}/Developer", REQUESTABLE),
    ("iam:PutRolePolicy", f"{ROLE}/Developer", REQUESTABLE),
    ("iam:UpdateAssumeRolePolicy", f"{ROLE}/portcullis/portcullis-ec2-x", {}),
    (
        "eks:AssociateAccessPolicy",
        ENTRY,
        {"eks:principalArn": f"{ROLE}/portcullis/x", "eks:policyArn": CLUSTER_ADMIN},
    ),
]


@pytest.mark.parametrize(("action", "resource", "context"), BEYOND_REQUESTABLE)
def test_what_the_policy_allows_beyond_requestable_resources_is_on_the_app_page(
    policy, action, resource, context
):
    assert can(policy, action, resource, **context) == ALLOW
    limits = setup_policies.unscoped_permissions(make_app(ingester_role_name=INGESTER))
    assert any(action in limit["what"] for limit in limits), action


def test_the_app_page_says_what_a_role_without_the_boundary_under_its_path_is_open_to(policy):
    # UpdateAssumeRolePolicy has no boundary key: a role under /portcullis/ is open to a new
    # trust policy whether Portcullis made it or not.
    unbounded = f"{ROLE}/portcullis/made-by-someone-else"
    assert can(policy, "iam:UpdateAssumeRolePolicy", unbounded) == ALLOW
    limits = setup_policies.unscoped_permissions(make_app())
    (managed,) = [x for x in limits if x["what"].startswith("Roles under /portcullis/")]
    assert "without the boundary" in managed["why"]


def test_the_app_page_says_a_group_membership_is_not_limited_by_the_permission_set_tag():
    limits = setup_policies.unscoped_permissions(make_app())
    (groups,) = [x for x in limits if "identitystore:CreateGroupMembership" in x["what"]]
    assert "not tagged" in groups["why"]


# The evaluator itself --------------------------------------------------------------------
def test_the_evaluator_refuses_what_it_does_not_model():
    for condition in (
        {"StringEqualsIfExists": {"aws:ResourceTag/x": "y"}},
        {"ForAnyValue:StringEquals": {"aws:TagKeys": "y"}},
        {"NumericLessThan": {"aws:MultiFactorAuthAge": "3600"}},
        # AWS substitutes a policy variable in a condition value; compared as written, a
        # StringEquals would never hold and a StringNotEquals always.
        {"StringEquals": {"aws:PrincipalTag/team": "${aws:username}"}},
        {"StringNotEquals": {"aws:FederatedProvider": "${aws:PrincipalAccount}"}},
    ):
        document = {
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "iam:GetRole",
                    "Resource": "*",
                    "Condition": condition,
                }
            ]
        }
        with pytest.raises(iam_evaluator.Unsupported):
            decision([document], Request("iam:GetRole", f"{ROLE}/x"))


def test_the_evaluator_lets_an_explicit_deny_win_and_reads_missing_keys_like_aws():
    document = {
        "Statement": [
            {"Effect": "Allow", "Action": "iam:*", "Resource": "*"},
            {
                "Effect": "Deny",
                "Action": "iam:CreateRole",
                "Resource": "*",
                "Condition": {"ArnNotEquals": {"iam:PermissionsBoundary": BOUNDARY}},
            },
        ]
    }
    assert decision([document], Request("iam:getrole", f"{ROLE}/x")) == ALLOW
    assert decision([document], Request("iam:CreateRole", f"{ROLE}/x")) == DENY
    with_boundary = Request("iam:CreateRole", f"{ROLE}/x", {"iam:PermissionsBoundary": BOUNDARY})
    assert decision([document], with_boundary) == ALLOW
    assert decision([document], Request("s3:GetObject", "arn:aws:s3:::b/k")) == "ImplicitDeny"


# The CloudFormation template says the same ------------------------------------------------
def _resolve(value: Any, variables: dict[str, str]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"Fn::Sub"}:
            text = value["Fn::Sub"]
            for name, replacement in variables.items():
                text = text.replace("${" + name + "}", replacement)
            assert "${" not in text, text
            return text
        if set(value) == {"Fn::If"}:
            return _resolve(value["Fn::If"][1], variables)
        return {k: _resolve(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, variables) for v in value]
    return value


def test_the_template_deploys_the_same_policy_in_a_member_account():
    app = make_app(ingester_role_name=INGESTER)
    template = yaml.safe_load(setup_policies.cloudformation_yaml(app, AwsSettings()))
    document = template["Resources"]["IngesterRole"]["Properties"]["Policies"][0]
    resolved = _resolve(
        document["PolicyDocument"],
        {
            "AWS::AccountId": ACCOUNT,
            "IngesterRoleName": INGESTER,
            "QueueArn": setup_policies.queue_arn(app.sqs_queue_url),
        },
    )
    assert resolved == setup_policies.ingester_permissions_policy(app, account_id=ACCOUNT)
    boundary = template["Resources"]["PermissionsBoundary"]["Properties"]["PolicyDocument"]
    assert _resolve(boundary, {"AWS::AccountId": ACCOUNT}) == setup_policies.boundary_policy(
        ACCOUNT, ""
    )


# parliament -------------------------------------------------------------------------------
# What parliament reports that is not a fault, each with the reason; anything else fails.
READS = {"OrganizationsRead", "IdentityCenterRead", "MemberAccountRead"}
EXPECTED_FINDINGS = {
    # Sync reads every account, role, instance, cluster and database: a read scoped to
    # ARNs would list the same. Parliament flags Resource "*" on read actions that
    # support ARNs; the writes are all scoped.
    ("permissions", "RESOURCE_STAR"): READS,
    # parliament requires each statement to name every resource type of an action; AWS
    # authorises each resource on its own, and only the permission set carries tags, so
    # the tag condition needs a statement of its own (AWS's "delegate permission set
    # administration" examples do the same).
    ("permissions", "RESOURCE_MISMATCH"): {
        "IdentityCenterAssignments",
        "RequestablePermissionSets",
        "RemoveAssignments",
    },
    # eks:principalArn is a condition key of the access-entry resource, which parliament's
    # table lists only for CreateAccessEntry.
    ("permissions", "UNKNOWN_CONDITION_FOR_ACTION"): {"EksAccessEntries", "EksAccessPolicies"},
    # Editing trust and inline policies is what the ingester is for; the statements that
    # allow it are the scoped ones this module tests.
    ("permissions", "PERMISSIONS_MANAGEMENT_ACTIONS"): {
        "RequestableRoles",
        "ManagedRolesTrust",
        "ManagedRolesWithBoundary",
        "ManagedRolesLifecycle",
    },
    # A trust policy has a Principal and no Resource; parliament reads every document as
    # an identity policy.
    ("trust", "MALFORMED"): {"PortcullisAssumeWithExternalId"},
    # The boundary is the ceiling of every managed role; each role's own policy names its
    # instance, cluster or database user.
    ("boundary", "RESOURCE_STAR"): set(setup_policies.BOUNDARY_ACTIONS),
    # rds-db:connect mints a database login token: the access an RDS grant gives.
    ("boundary", "CREDENTIALS_EXPOSURE"): {"RdsIamAuthentication"},
    ("boundary", "PERMISSIONS_MANAGEMENT_ACTIONS"): {"RdsIamAuthentication"},
}


def _findings(name: str, document: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(document, issue, Sid) of each finding; statements are linted one at a time so each
    finding names its statement."""
    from parliament import analyze_policy_string

    found = set()
    for statement in document["Statement"]:
        text = json.dumps({"Version": document["Version"], "Statement": [statement]})
        for finding in analyze_policy_string(text, include_community_auditors=True).findings:
            found.add((name, finding.issue, statement.get("Sid", "")))
    return found


def test_parliament_finds_nothing_but_the_explained_false_positives():
    app = make_app(ingester_role_name=INGESTER)
    settings = AwsSettings(
        oidc_issuer_url="https://login.example.com", oidc_client_id="portcullis-client"
    )
    documents = {
        "permissions": setup_policies.ingester_permissions_policy(app, account_id=ACCOUNT),
        "trust": setup_policies.ingester_trust_policy(
            app, settings, principal="arn:aws:iam::999999999999:role/portcullis-web"
        ),
        "boundary": setup_policies.boundary_policy(ACCOUNT, "https://login.example.com"),
    }
    found: set[tuple[str, str, str]] = set()
    for name, document in documents.items():
        found |= _findings(name, document)
    unexplained = {f for f in found if f[2] not in EXPECTED_FINDINGS.get((f[0], f[1]), set())}
    assert unexplained == set(), "Scope these statements, or explain each finding above."
    # Each expected false positive still occurs: a stale entry would hide a new finding.
    seen = {(f[0], f[1]) for f in found}
    assert seen == set(EXPECTED_FINDINGS)

"""The documents an admin pastes into AWS: valid, filled in for this installation and
app, and no wider than sync, grants and validations need."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import yaml
from botocore import xform_name

from aws_integration import setup_policies, trust_policy_editor
from aws_integration.models import AwsApp, AwsSettings

MANAGEMENT = "123456789012"
ISSUER = "https://login.example.com/oauth2/default"
QUEUE_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/portcullis-events"
PACKAGE = Path(setup_policies.__file__).parent
# Modules that call AWS for sync, real-time events and validations (grants come later).
AWS_CALLERS = ("sync", "events", "setup_checks.py", "grants")
# The IAM prefix of each boto3 service these modules use.
IAM_PREFIXES = {
    "organizations": "organizations",
    "sso-admin": "sso",
    "identitystore": "identitystore",
    "iam": "iam",
    "ec2": "ec2",
    "eks": "eks",
    "rds": "rds",
    "sqs": "sqs",
}
# API operations authorised by another action (SQS batches by the single-message one).
ACTION_OF_OPERATION = {
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}


def make_app(**overrides: Any) -> AwsApp:
    values: dict[str, Any] = {
        "name": "Acme",
        "management_account_id": MANAGEMENT,
        "organization_management": True,
        "identity_center_management": True,
        "identity_center_region": "eu-west-1",
        "identity_center_instance_arn": "arn:aws:sso:::instance/ssoins-1234567890abcdef",
        "identity_store_id": "d-1234567890",
        "access_portal_url": "https://d-1234567890.awsapps.com/start",
        "sqs_queue_url": QUEUE_URL,
    }
    values.update(overrides)
    return AwsApp(**values)


@pytest.fixture
def aws_settings() -> AwsSettings:
    return AwsSettings(oidc_issuer_url=ISSUER, oidc_client_id="portcullis-client")


@pytest.fixture
def principal(settings) -> str:
    settings.PORTCULLIS_AWS_PRINCIPAL_ARN = "arn:aws:iam::999999999999:role/portcullis-web"
    return settings.PORTCULLIS_AWS_PRINCIPAL_ARN


def actions_of(document: dict[str, Any]) -> set[str]:
    """The actions the document allows (its explicit denies left out)."""
    found: set[str] = set()
    for statement in document["Statement"]:
        if statement["Effect"] != "Allow":
            continue
        action = statement["Action"]
        found.update([action] if isinstance(action, str) else action)
    return found


def statements_with(document: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in document["Statement"] if s["Effect"] == "Allow" and action in s["Action"]]


def minified(document: dict[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"))


# Every document ------------------------------------------------------------------------
def test_every_document_on_the_app_page_is_valid_json_or_yaml(aws_settings, principal):
    documents = setup_policies.documents(make_app(), aws_settings)
    assert [d["key"] for d in documents] == [
        "trust-policy",
        "permissions-policy",
        "boundary-policy",
        "oidc-provider",
        "oidc-trust-statement",
        "cloudformation",
    ]
    for document in documents[:-1]:
        assert isinstance(json.loads(document["text"]), dict), document["key"]
    template = yaml.safe_load(documents[-1]["text"])
    assert template["AWSTemplateFormatVersion"] == "2010-09-09"
    assert template == json.loads(json.dumps(template))  # plain data, no YAML-only tags


def test_the_external_id_and_account_ids_are_substituted(aws_settings, principal):
    app = make_app()
    text = "\n".join(d["text"] for d in setup_policies.documents(app, aws_settings))
    assert aws_settings.external_id in text
    assert principal in text
    assert f"arn:aws:iam::{MANAGEMENT}:role/portcullis/*" in text
    assert f"arn:aws:iam::{MANAGEMENT}:policy/portcullis/PortcullisPermissionsBoundary" in text
    assert f"arn:aws:iam::{MANAGEMENT}:oidc-provider/login.example.com/oauth2/default" in text
    assert "arn:aws:sqs:eu-west-1:123456789012:portcullis-events" in text
    assert setup_policies.PRINCIPAL_PLACEHOLDER not in text


def test_the_documents_fit_the_iam_size_limits(aws_settings, principal):
    app = make_app()
    # Trust policies: 2,048 characters by default; inline role policies: 10,240;
    # managed policies: 6,144 (whitespace not counted).
    assert len(minified(setup_policies.ingester_trust_policy(app, aws_settings))) < 2048
    assert len(minified(setup_policies.ingester_permissions_policy(app))) < 10240
    assert len(minified(setup_policies.boundary_policy(MANAGEMENT, ISSUER))) < 6144


# Trust policy ------------------------------------------------------------------------------
def test_the_trust_policy_trusts_portcullis_with_the_external_id(aws_settings, principal):
    policy = setup_policies.ingester_trust_policy(make_app(), aws_settings)
    (statement,) = policy["Statement"]
    assert statement["Principal"] == {"AWS": principal}
    assert statement["Action"] == "sts:AssumeRole"
    assert statement["Condition"] == {"StringEquals": {"sts:ExternalId": aws_settings.external_id}}


def test_without_the_principal_setting_the_trust_policy_names_a_placeholder(aws_settings, settings):
    settings.PORTCULLIS_AWS_PRINCIPAL_ARN = ""
    policy = setup_policies.ingester_trust_policy(make_app(), aws_settings)
    assert policy["Statement"][0]["Principal"] == {"AWS": setup_policies.PRINCIPAL_PLACEHOLDER}


# Permissions policy ------------------------------------------------------------------------
def test_the_permissions_policy_holds_every_listed_action(principal):
    policy = setup_policies.ingester_permissions_policy(make_app())
    expected = set(
        setup_policies.MANAGEMENT_READ_ACTIONS
        + setup_policies.MEMBER_READ_ACTIONS
        + setup_policies.GRANT_ACTIONS
        + setup_policies.SQS_ACTIONS
    )
    assert actions_of(policy) == expected
    assert not any("*" in action for action in actions_of(policy))


def test_role_creation_is_limited_to_the_portcullis_path_with_the_boundary():
    policy = setup_policies.ingester_permissions_policy(make_app())
    boundary = f"arn:aws:iam::{MANAGEMENT}:policy/portcullis/PortcullisPermissionsBoundary"
    for action in ("iam:CreateRole", "iam:DeleteRolePolicy"):
        (statement,) = statements_with(policy, action)
        assert statement["Resource"] == f"arn:aws:iam::{MANAGEMENT}:role/portcullis/*"
        assert statement["Condition"] == {"ArnEquals": {"iam:PermissionsBoundary": boundary}}
    for action in ("iam:DeleteRole", "iam:TagRole", "iam:UntagRole"):
        (statement,) = statements_with(policy, action)
        assert statement["Resource"] == f"arn:aws:iam::{MANAGEMENT}:role/portcullis/*"
    # Nobody gets to take the boundary off or hand roles to services.
    granted = actions_of(policy)
    assert "iam:DeleteRolePermissionsBoundary" not in granted
    assert "iam:PutRolePermissionsBoundary" not in granted
    assert "iam:PassRole" not in granted
    assert "iam:AttachRolePolicy" not in granted


def test_trust_policy_edits_reach_requestable_and_portcullis_roles_of_the_account_only():
    policy = setup_policies.ingester_permissions_policy(make_app(), account_id="210987654321")
    requestable, managed = statements_with(policy, "iam:UpdateAssumeRolePolicy")
    assert requestable["Resource"] == "arn:aws:iam::210987654321:role/*"
    assert requestable["Condition"] == {
        "StringEquals": {"aws:ResourceTag/portcullis:requestable": "true"}
    }
    assert managed["Resource"] == "arn:aws:iam::210987654321:role/portcullis/*"


def test_the_requestable_tag_is_a_setting(settings):
    settings.PORTCULLIS_REQUESTABLE_TAG = "acme:grantable"
    policy = setup_policies.ingester_permissions_policy(make_app())
    (statement, _) = statements_with(policy, "iam:UpdateAssumeRolePolicy")
    assert statement["Condition"] == {"StringEquals": {"aws:ResourceTag/acme:grantable": "true"}}


def test_the_queue_statement_names_the_queue_and_only_when_there_is_one():
    with_queue = setup_policies.ingester_permissions_policy(make_app())
    (statement,) = statements_with(with_queue, "sqs:ReceiveMessage")
    assert statement["Resource"] == "arn:aws:sqs:eu-west-1:123456789012:portcullis-events"
    assert set(statement["Action"]) == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
    }
    without = setup_policies.ingester_permissions_policy(make_app(sqs_queue_url=""))
    assert not any(a.startswith("sqs:") for a in actions_of(without))


def test_each_toggle_adds_only_its_own_actions():
    idc_only = actions_of(
        setup_policies.ingester_permissions_policy(
            make_app(organization_management=False, sqs_queue_url="")
        )
    )
    assert not any(a.split(":")[0] in ("iam", "ec2", "eks", "rds") for a in idc_only)
    assert set(setup_policies.IDENTITY_CENTER_GRANT_ACTIONS) <= idc_only
    org_only = actions_of(
        setup_policies.ingester_permissions_policy(
            make_app(identity_center_management=False, sqs_queue_url="")
        )
    )
    assert not any(a.split(":")[0] in ("sso", "identitystore") for a in org_only)
    assert set(setup_policies.MEMBER_READ_ACTIONS) <= org_only
    assert set(setup_policies.ORGANIZATIONS_READ_ACTIONS) <= org_only


def _operations() -> dict[str, list[tuple[str, str]]]:
    """boto3 method name -> [(IAM prefix, operation)] for the services Portcullis calls."""
    session = botocore.session.get_session()
    found: dict[str, list[tuple[str, str]]] = {}
    for service, prefix in IAM_PREFIXES.items():
        for operation in session.get_service_model(service).operation_names:
            found.setdefault(xform_name(operation), []).append((prefix, operation))
    return found


def _called_methods() -> set[str]:
    names: set[str] = set()
    for entry in AWS_CALLERS:
        root = PACKAGE / entry
        assert root.exists(), f"{root} is gone: update AWS_CALLERS"
        files = [root] if root.is_file() else sorted(root.rglob("*.py"))
        for file in files:
            text = file.read_text()
            names.update(re.findall(r"\.([a-z][a-z0-9_]+)\(", text))
            names.update(re.findall(r"get_paginator\(\s*[\"']([a-z0-9_]+)[\"']", text))
    return names


def test_every_aws_call_of_sync_events_and_validations_is_allowed_by_the_policy():
    granted = actions_of(setup_policies.ingester_permissions_policy(make_app()))
    operations = _operations()
    missing = []
    for method in sorted(_called_methods() & set(operations)):
        candidates = [
            f"{prefix}:{ACTION_OF_OPERATION.get(op, op)}" for prefix, op in operations[method]
        ]
        if not any(c in granted for c in candidates):
            missing.append(" or ".join(candidates))
    assert missing == [], f"Add to aws_integration/setup_policies.py: {missing}"


def test_the_cross_check_sees_the_calls_it_checks():
    # The scan above would pass on an empty tree: make sure it reads real code.
    operations = _operations()
    assert "list_roles" in operations and ("iam", "ListRoles") in operations["list_roles"]
    assert {"describe_db_instances", "list_group_memberships"} <= set(operations)


# Boundary, OIDC -------------------------------------------------------------------------
def test_the_boundary_allows_only_sessions_eks_and_database_logins():
    granted = actions_of(setup_policies.boundary_policy(MANAGEMENT, ISSUER))
    assert {"ssm:StartSession", "eks:DescribeCluster", "rds-db:connect"} <= granted
    assert {a.split(":")[0] for a in granted} <= {"ssm", "ec2", "eks", "rds", "rds-db"}
    assert not any(a.endswith("*") for a in granted)


def test_the_oidc_provider_names_the_issuer_and_client_id(aws_settings):
    provider = setup_policies.oidc_provider(aws_settings)
    assert provider["Url"] == ISSUER
    assert provider["ClientIDList"] == ["portcullis-client"]
    assert "thumbprint" in setup_policies.OIDC_THUMBPRINT_NOTE.lower()


def test_the_oidc_trust_statement_has_the_managed_shape(aws_settings):
    statement = setup_policies.oidc_trust_statement(
        aws_settings, "210987654321", ["sub-1", "sub-2"]
    )
    assert statement == {
        "Sid": "PortcullisManaged",
        "Effect": "Allow",
        "Principal": {
            "Federated": "arn:aws:iam::210987654321:oidc-provider/login.example.com/oauth2/default"
        },
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {
            "StringEquals": {
                "login.example.com/oauth2/default:aud": "portcullis-client",
                "login.example.com/oauth2/default:sub": ["sub-1", "sub-2"],
                "sts:RoleSessionName": "${login.example.com/oauth2/default:sub}",
            }
        },
    }
    # What the page shows is what the grant drivers write.
    assert [statement] == trust_policy_editor.portcullis_statements(
        statement["Principal"]["Federated"],
        "login.example.com/oauth2/default",
        "portcullis-client",
        {"sub-1", "sub-2"},
    )


def test_without_oidc_settings_the_documents_show_placeholders():
    empty = AwsSettings()
    statement = setup_policies.oidc_trust_statement(empty, MANAGEMENT)
    assert statement["Principal"]["Federated"].endswith(":oidc-provider/oidc.example.com")
    assert statement["Condition"]["StringEquals"]["oidc.example.com:sub"] == [
        setup_policies.SUBJECT_PLACEHOLDER
    ]
    assert setup_policies.oidc_provider(empty)["ClientIDList"] == [
        setup_policies.CLIENT_ID_PLACEHOLDER
    ]


# CloudFormation -----------------------------------------------------------------------------
def test_the_template_creates_role_policies_boundary_and_provider(aws_settings, principal):
    app = make_app(ingester_role_name="PortcullisReader")
    template = yaml.safe_load(setup_policies.cloudformation_yaml(app, aws_settings))
    resources = template["Resources"]
    assert {name: r["Type"] for name, r in resources.items()} == {
        "PermissionsBoundary": "AWS::IAM::ManagedPolicy",
        "IngesterRole": "AWS::IAM::Role",
        "OidcProvider": "AWS::IAM::OIDCProvider",
    }
    parameters = template["Parameters"]
    assert parameters["ExternalId"]["Default"] == aws_settings.external_id
    assert parameters["PortcullisPrincipalArn"]["Default"] == principal
    assert parameters["IngesterRoleName"]["Default"] == "PortcullisReader"
    assert parameters["OidcIssuerUrl"]["Default"] == ISSUER
    assert (
        parameters["QueueArn"]["Default"] == "arn:aws:sqs:eu-west-1:123456789012:portcullis-events"
    )

    boundary = resources["PermissionsBoundary"]["Properties"]
    assert boundary["Path"] == "/portcullis/"
    assert boundary["ManagedPolicyName"] == "PortcullisPermissionsBoundary"
    role = resources["IngesterRole"]["Properties"]
    assert role["RoleName"] == {"Ref": "IngesterRoleName"}
    trust = role["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Principal"] == {"AWS": {"Ref": "PortcullisPrincipalArn"}}
    assert trust["Condition"] == {"StringEquals": {"sts:ExternalId": {"Ref": "ExternalId"}}}
    assert resources["OidcProvider"]["Properties"]["ClientIdList"] == [{"Ref": "OidcClientId"}]
    assert resources["OidcProvider"]["Condition"] == "HasOidcProvider"


def test_the_template_takes_the_account_from_the_stack_so_it_works_as_a_stackset(
    aws_settings, principal
):
    text = setup_policies.cloudformation_yaml(make_app(), aws_settings)
    template = yaml.safe_load(text)
    assert MANAGEMENT not in json.dumps(template["Resources"])  # no account baked in
    statements = template["Resources"]["IngesterRole"]["Properties"]["Policies"][0][
        "PolicyDocument"
    ]["Statement"]
    (create,) = [
        s
        for s in statements
        if s.get("Effect") == "Allow" and "iam:CreateRole" in s.get("Action", [])
    ]
    assert create["Resource"] == {"Fn::Sub": "arn:aws:iam::${AWS::AccountId}:role/portcullis/*"}
    assert create["Condition"]["ArnEquals"]["iam:PermissionsBoundary"] == {
        "Fn::Sub": "arn:aws:iam::${AWS::AccountId}:policy/portcullis/PortcullisPermissionsBoundary"
    }
    queue = statements[-1]["Fn::If"]
    assert queue[0] == "HasQueue" and queue[2] == {"Ref": "AWS::NoValue"}
    assert queue[1]["Resource"] == {"Fn::Sub": "${QueueArn}"}
    assert set(template["Conditions"]) == {"HasQueue", "HasOidcProvider"}

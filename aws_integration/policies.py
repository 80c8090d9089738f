"""The IAM documents an admin pastes into AWS, rendered for one app and installation.

Every document is a plain dict (``as_json`` gives the text shown in the admin); the
CloudFormation template is YAML. The action lists are the contract with sync, grants and
validations: whatever those call in AWS must be listed here, and validations probe them.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import yaml
from django.conf import settings

from aws_integration import validators

if TYPE_CHECKING:
    from aws_integration.models import AwsApp, AwsSettings

POLICY_VERSION = "2012-10-17"
# Roles and policies Portcullis creates live under this path, so its permissions to
# create and delete IAM roles reach nothing else.
MANAGED_PATH = "/portcullis/"
BOUNDARY_POLICY_NAME = "PortcullisPermissionsBoundary"
INGESTER_POLICY_NAME = "PortcullisIngester"
MANAGED_STATEMENT_SID = "PortcullisManaged"
PRINCIPAL_PLACEHOLDER = "arn:aws:iam::PORTCULLIS_ACCOUNT_ID:role/SET_PORTCULLIS_AWS_PRINCIPAL_ARN"
ISSUER_PLACEHOLDER = "oidc.example.com"
CLIENT_ID_PLACEHOLDER = "SET_THE_OIDC_CLIENT_ID"
SUBJECT_PLACEHOLDER = "OIDC_SUBJECT_OF_EACH_USER_HOLDING_ACCESS"
OIDC_THUMBPRINT_NOTE = (
    "No thumbprint is needed: AWS validates the identity provider's TLS certificate against "
    "its trusted root CAs for public issuers. Only an issuer serving a certificate from a "
    "private CA needs ThumbprintList (the SHA-1 fingerprint of the top intermediate CA)."
)

# Read by sync in the management (or delegated-administrator) account -------------------
ORGANIZATIONS_READ_ACTIONS = [
    "organizations:DescribeOrganization",
    "organizations:DescribeOrganizationalUnit",
    "organizations:DescribeAccount",
    "organizations:DescribeCreateAccountStatus",
    "organizations:ListRoots",
    "organizations:ListOrganizationalUnitsForParent",
    "organizations:ListAccounts",
    "organizations:ListAccountsForParent",
    "organizations:ListChildren",
    "organizations:ListParents",
    "organizations:ListTagsForResource",
]
IDENTITY_CENTER_READ_ACTIONS = [
    "sso:ListInstances",
    "sso:DescribeInstance",
    "sso:ListPermissionSets",
    "sso:DescribePermissionSet",
    "sso:ListPermissionSetsProvisionedToAccount",
    "sso:ListAccountsForProvisionedPermissionSet",
    "sso:ListAccountAssignments",
    "sso:ListAccountAssignmentsForPrincipal",
    "sso:ListTagsForResource",
    "identitystore:ListUsers",
    "identitystore:DescribeUser",
    "identitystore:ListGroups",
    "identitystore:DescribeGroup",
    "identitystore:ListGroupMemberships",
    "identitystore:ListGroupMembershipsForMember",
    "identitystore:GetGroupMembershipId",
    "identitystore:GetUserId",
]
MANAGEMENT_READ_ACTIONS = ORGANIZATIONS_READ_ACTIONS + IDENTITY_CENTER_READ_ACTIONS

# Read by sync in every member account (and the management account) ------------------------
MEMBER_READ_ACTIONS = [
    "iam:ListRoles",
    # One paginated call gives every role with its tags, trust policy and last use,
    # instead of a GetRole per role.
    "iam:GetAccountAuthorizationDetails",
    "iam:GetRole",
    "iam:ListRoleTags",
    "iam:ListRolePolicies",
    "iam:GetRolePolicy",
    "iam:ListOpenIDConnectProviders",
    "iam:GetOpenIDConnectProvider",
    "ec2:DescribeRegions",
    "ec2:DescribeInstances",
    "eks:ListClusters",
    "eks:DescribeCluster",
    "eks:ListAccessEntries",
    "eks:DescribeAccessEntry",
    "eks:ListAssociatedAccessPolicies",
    "eks:ListAccessPolicies",
    "rds:DescribeDBInstances",
    "rds:DescribeDBClusters",
    "rds:ListTagsForResource",
]

# Used to grant and revoke access ------------------------------------------------------------
IDENTITY_CENTER_GRANT_ACTIONS = [
    "identitystore:CreateGroupMembership",
    "identitystore:DeleteGroupMembership",
    "sso:CreateAccountAssignment",
    "sso:DeleteAccountAssignment",
    "sso:DescribeAccountAssignmentCreationStatus",
    "sso:DescribeAccountAssignmentDeletionStatus",
]
# Subjects are added to the trust policy of any role an admin makes requestable.
TRUST_POLICY_GRANT_ACTIONS = ["iam:UpdateAssumeRolePolicy"]
# A revoke ends the user's live sessions of a role Portcullis holds a trust statement in with
# a Deny inline policy (PortcullisRevokedSessions). It reaches no further than editing the
# role's trust policy, which the ingester can already do on the same roles.
REVOKE_SESSIONS_ACTIONS = ["iam:PutRolePolicy"]
# These carry the iam:PermissionsBoundary condition key (AWS sets it on these calls only).
MANAGED_ROLE_BOUNDED_ACTIONS = [
    "iam:CreateRole",
    "iam:PutRolePolicy",
    "iam:DeleteRolePolicy",
]
# These calls have no iam:PermissionsBoundary key: a condition on it would always fail.
MANAGED_ROLE_LIFECYCLE_ACTIONS = [
    "iam:DeleteRole",
    "iam:TagRole",
    "iam:UntagRole",
]
EKS_GRANT_ACTIONS = [
    "eks:CreateAccessEntry",
    "eks:DeleteAccessEntry",
    "eks:AssociateAccessPolicy",
    "eks:DisassociateAccessPolicy",
]
GRANT_ACTIONS = (
    IDENTITY_CENTER_GRANT_ACTIONS
    + TRUST_POLICY_GRANT_ACTIONS
    + REVOKE_SESSIONS_ACTIONS
    + MANAGED_ROLE_BOUNDED_ACTIONS
    + MANAGED_ROLE_LIFECYCLE_ACTIONS
    + EKS_GRANT_ACTIONS
)
SQS_ACTIONS = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]

# The most a Portcullis-managed role may ever do, whatever policy a grant puts on it.
BOUNDARY_ACTIONS = {
    "SsmSessions": [
        "ssm:StartSession",
        "ssm:ResumeSession",
        "ssm:TerminateSession",
        "ssm:DescribeSessions",
        "ssm:GetConnectionStatus",
        "ssm:DescribeInstanceInformation",
        "ec2:DescribeInstances",
    ],
    "EksClusters": ["eks:DescribeCluster", "eks:ListClusters"],
    "RdsIamAuthentication": [
        "rds-db:connect",
        "rds:DescribeDBInstances",
        "rds:DescribeDBClusters",
    ],
}


# Helpers ------------------------------------------------------------------------------------
def as_json(document: dict[str, Any]) -> str:
    """The text an admin pastes into the console or the CLI."""
    return json.dumps(document, indent=2)


def principal_arn() -> str:
    """Portcullis's own AWS principal, or a placeholder that AWS would refuse."""
    return settings.PORTCULLIS_AWS_PRINCIPAL_ARN or PRINCIPAL_PLACEHOLDER


def boundary_policy_arn(account_id: str) -> str:
    return f"arn:aws:iam::{account_id}:policy{MANAGED_PATH}{BOUNDARY_POLICY_NAME}"


def managed_roles_arn(account_id: str) -> str:
    return f"arn:aws:iam::{account_id}:role{MANAGED_PATH}*"


def queue_arn(queue_url: str) -> str:
    """arn:aws:sqs:<region>:<account>:<name> of a queue URL (validated by the model)."""
    parsed = urlparse(queue_url)
    account_id, name = parsed.path.strip("/").split("/", 1)
    region = validators.queue_region(queue_url) or settings.AWS_DEFAULT_REGION
    return f"arn:aws:sqs:{region}:{account_id}:{name}"


def issuer_host_path(issuer_url: str) -> str:
    """The issuer without its scheme: how IAM names the provider and its condition keys."""
    parsed = urlparse(issuer_url)
    return (parsed.netloc + parsed.path).rstrip("/")


def oidc_provider_arn(account_id: str, issuer_url: str) -> str:
    host_path = issuer_host_path(issuer_url) or ISSUER_PLACEHOLDER
    return f"arn:aws:iam::{account_id}:oidc-provider/{host_path}"


def _statement(sid: str, actions: list[str], resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": list(actions), "Resource": resource, **extra}


# Documents ----------------------------------------------------------------------------------
def ingester_trust_policy(
    app: AwsApp | None, aws_settings: AwsSettings, *, principal: str | None = None
) -> dict[str, Any]:
    """Who may assume the ingester role: Portcullis's principal, presenting the External ID.

    ``app`` is accepted so every document takes the same arguments; the trust policy is
    the same for every app of an installation."""
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": "PortcullisAssumeWithExternalId",
                "Effect": "Allow",
                "Principal": {"AWS": principal or principal_arn()},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": aws_settings.external_id}},
            }
        ],
    }


def ingester_permissions_policy(
    app: AwsApp,
    *,
    account_id: str | None = None,
    queue: str | None = None,
) -> dict[str, Any]:
    """The least the ingester role needs in ``account_id`` (default: the management account)
    for what the app's toggles turn on: sync reads, grants, managed roles, the SQS queue.

    ``queue`` overrides the queue ARN (the CloudFormation template passes a parameter)."""
    account = account_id or app.management_account_id
    statements: list[dict[str, Any]] = [
        _statement("OrganizationsRead", ORGANIZATIONS_READ_ACTIONS),
    ]
    if app.identity_center_management:
        statements += [
            _statement("IdentityCenterRead", IDENTITY_CENTER_READ_ACTIONS),
            _statement("IdentityCenterGrants", IDENTITY_CENTER_GRANT_ACTIONS),
        ]
    if app.organization_management:
        statements += [
            _statement("MemberAccountRead", MEMBER_READ_ACTIONS),
            _statement(
                "TrustPolicyGrants",
                TRUST_POLICY_GRANT_ACTIONS,
                f"arn:aws:iam::{account}:role/*",
            ),
            _statement(
                "RevokeLiveSessions",
                REVOKE_SESSIONS_ACTIONS,
                f"arn:aws:iam::{account}:role/*",
            ),
            _statement(
                "ManagedRolesWithBoundary",
                MANAGED_ROLE_BOUNDED_ACTIONS,
                managed_roles_arn(account),
                Condition={
                    "StringEquals": {"iam:PermissionsBoundary": boundary_policy_arn(account)}
                },
            ),
            _statement(
                "ManagedRolesLifecycle", MANAGED_ROLE_LIFECYCLE_ACTIONS, managed_roles_arn(account)
            ),
            _statement("EksAccessEntries", EKS_GRANT_ACTIONS),
        ]
    queue_resource = queue or (queue_arn(app.sqs_queue_url) if app.sqs_queue_url else "")
    if queue_resource:
        statements.append(_statement("CloudTrailEventsQueue", SQS_ACTIONS, queue_resource))
    return {"Version": POLICY_VERSION, "Statement": statements}


def boundary_policy() -> dict[str, Any]:
    """The permissions boundary of every role Portcullis creates under /portcullis/."""
    return {
        "Version": POLICY_VERSION,
        "Statement": [_statement(sid, actions) for sid, actions in BOUNDARY_ACTIONS.items()],
    }


def oidc_provider(aws_settings: AwsSettings) -> dict[str, Any]:
    """Input for ``aws iam create-open-id-connect-provider --cli-input-json``."""
    return {
        "Url": aws_settings.oidc_issuer_url or f"https://{ISSUER_PLACEHOLDER}",
        "ClientIDList": [aws_settings.oidc_client_id or CLIENT_ID_PLACEHOLDER],
        "Tags": [{"Key": "portcullis:managed", "Value": "true"}],
    }


def oidc_trust_statement(
    aws_settings: AwsSettings, account_id: str, subjects: list[str] | None = None
) -> dict[str, Any]:
    """The statement Portcullis owns in a role's trust policy: tokens minted for its OIDC
    client (``aud``) to the users holding access (``sub``) may assume the role, in a session
    named after the token's subject only (so that a revoke can deny every such session)."""
    host_path = issuer_host_path(aws_settings.oidc_issuer_url) or ISSUER_PLACEHOLDER
    return {
        "Sid": MANAGED_STATEMENT_SID,
        "Effect": "Allow",
        "Principal": {"Federated": oidc_provider_arn(account_id, aws_settings.oidc_issuer_url)},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {
            "StringEquals": {
                f"{host_path}:aud": aws_settings.oidc_client_id or CLIENT_ID_PLACEHOLDER,
                f"{host_path}:sub": list(subjects) if subjects else [SUBJECT_PLACEHOLDER],
                "sts:RoleSessionName": "${" + host_path + ":sub}",
            }
        },
    }


# CloudFormation -----------------------------------------------------------------------------
_ACCOUNT_VARIABLE = "${AWS::AccountId}"
_QUEUE_PARAMETER = "${QueueArn}"


def _substituted(value: Any) -> Any:
    # Strings naming the stack's account or parameters become Fn::Sub, so one template
    # serves every account of a StackSet.
    if isinstance(value, dict):
        return {k: _substituted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_substituted(v) for v in value]
    if isinstance(value, str) and "${" in value:
        return {"Fn::Sub": value}
    return value


def cloudformation_template(app: AwsApp, aws_settings: AwsSettings) -> dict[str, Any]:
    """A template creating, in one account, the ingester role with its policy, the
    permissions boundary and the OIDC identity provider. Every value that differs by
    installation is a parameter (defaulted to this installation's values) and the account
    ID comes from the stack, so it deploys unchanged as a StackSet."""
    permissions = ingester_permissions_policy(
        app, account_id=_ACCOUNT_VARIABLE, queue=_QUEUE_PARAMETER
    )
    statements = permissions["Statement"]
    queue_statement = statements.pop()  # the last one: added because a queue was passed
    permissions["Statement"] = [_substituted(s) for s in statements] + [
        {"Fn::If": ["HasQueue", _substituted(queue_statement), {"Ref": "AWS::NoValue"}]}
    ]
    trust = ingester_trust_policy(app, aws_settings)
    trust_statement = trust["Statement"][0]
    trust_statement["Principal"] = {"AWS": {"Ref": "PortcullisPrincipalArn"}}
    trust_statement["Condition"] = {"StringEquals": {"sts:ExternalId": {"Ref": "ExternalId"}}}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": (
            f"Portcullis access for the app {app.name!r}: the ingester role Portcullis "
            "assumes, its permissions boundary for the roles it manages under /portcullis/, "
            "and the OIDC identity provider users sign in with. Deploy in the management "
            "account and, as a StackSet, in every member account (capability "
            "CAPABILITY_NAMED_IAM)."
        ),
        "Parameters": {
            "PortcullisPrincipalArn": {
                "Type": "String",
                "Default": principal_arn(),
                "Description": "The IAM role or user Portcullis runs as.",
                "AllowedPattern": r"^arn:aws[a-z-]*:(iam|sts)::\d{12}:.+$",
            },
            "ExternalId": {
                "Type": "String",
                "Default": aws_settings.external_id,
                "Description": "Portcullis's External ID (AWS settings in the Portcullis admin).",
                "MinLength": 2,
                "MaxLength": 1224,
            },
            "IngesterRoleName": {
                "Type": "String",
                "Default": app.ingester_role_name,
                "Description": "Same name in every account of the organization.",
            },
            "OidcIssuerUrl": {
                "Type": "String",
                "Default": aws_settings.oidc_issuer_url,
                "Description": "The OIDC issuer users sign in with; empty: no provider is created.",
            },
            "OidcClientId": {
                "Type": "String",
                "Default": aws_settings.oidc_client_id,
                "Description": "Portcullis's client ID at that issuer (the tokens' audience).",
            },
            "QueueArn": {
                "Type": "String",
                "Default": queue_arn(app.sqs_queue_url) if app.sqs_queue_url else "",
                "Description": "The CloudTrail events queue, in the account that holds it; "
                "empty elsewhere.",
            },
        },
        "Conditions": {
            "HasQueue": {"Fn::Not": [{"Fn::Equals": [{"Ref": "QueueArn"}, ""]}]},
            "HasOidcProvider": {"Fn::Not": [{"Fn::Equals": [{"Ref": "OidcIssuerUrl"}, ""]}]},
        },
        "Resources": {
            "PermissionsBoundary": {
                "Type": "AWS::IAM::ManagedPolicy",
                "Properties": {
                    "ManagedPolicyName": BOUNDARY_POLICY_NAME,
                    "Path": MANAGED_PATH,
                    "Description": "The most a role created by Portcullis may do.",
                    "PolicyDocument": boundary_policy(),
                },
            },
            "IngesterRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "RoleName": {"Ref": "IngesterRoleName"},
                    "Description": "Assumed by Portcullis to sync the inventory and grant access.",
                    "MaxSessionDuration": 3600,
                    "AssumeRolePolicyDocument": trust,
                    "Policies": [
                        {"PolicyName": INGESTER_POLICY_NAME, "PolicyDocument": permissions}
                    ],
                    "Tags": [{"Key": "portcullis:managed", "Value": "true"}],
                },
            },
            "OidcProvider": {
                "Type": "AWS::IAM::OIDCProvider",
                "Condition": "HasOidcProvider",
                "Properties": {
                    "Url": {"Ref": "OidcIssuerUrl"},
                    "ClientIdList": [{"Ref": "OidcClientId"}],
                    "Tags": [{"Key": "portcullis:managed", "Value": "true"}],
                },
            },
        },
        "Outputs": {
            "IngesterRoleArn": {"Value": {"Fn::GetAtt": ["IngesterRole", "Arn"]}},
            "PermissionsBoundaryArn": {"Value": {"Ref": "PermissionsBoundary"}},
            "OidcProviderArn": {"Condition": "HasOidcProvider", "Value": {"Ref": "OidcProvider"}},
        },
    }


def cloudformation_yaml(app: AwsApp, aws_settings: AwsSettings) -> str:
    return yaml.safe_dump(cloudformation_template(app, aws_settings), sort_keys=False, width=100)


def documents(app: AwsApp, aws_settings: AwsSettings) -> list[dict[str, str]]:
    """Every document of the app page, in the order an admin sets things up."""
    account = app.management_account_id
    return [
        {
            "key": "trust-policy",
            "title": "Ingester role: trust policy",
            "help": f"Trust policy of the role {app.ingester_role_name} in account {account} "
            "(and the same-named role in every member account).",
            "text": as_json(ingester_trust_policy(app, aws_settings)),
        },
        {
            "key": "permissions-policy",
            "title": "Ingester role: permissions policy",
            "help": f"Inline policy of {app.ingester_role_name} in account {account}. Member "
            "accounts get the same policy with their own account ID from the CloudFormation "
            "template below.",
            "text": as_json(ingester_permissions_policy(app)),
        },
        {
            "key": "boundary-policy",
            "title": "Permissions boundary",
            "help": f"Managed policy {BOUNDARY_POLICY_NAME} at path {MANAGED_PATH} in each "
            f"account: {boundary_policy_arn(account)}. Every role Portcullis creates carries it.",
            "text": as_json(boundary_policy()),
        },
        {
            "key": "oidc-provider",
            "title": "OIDC identity provider",
            "help": "aws iam create-open-id-connect-provider --cli-input-json file://provider.json "
            f"(in each account). {OIDC_THUMBPRINT_NOTE}",
            "text": as_json(oidc_provider(aws_settings)),
        },
        {
            "key": "oidc-trust-statement",
            "title": "OIDC trust statement for IAM roles",
            "help": f"Portcullis writes this statement (Sid {MANAGED_STATEMENT_SID}) into the "
            "trust policy of each role it grants, with the subjects of the users holding "
            "access; other statements are left untouched. A holder may name a session only "
            "after their subject (sts:RoleSessionName), so a revoke ends every session they "
            "hold. A subject AWS does not accept as a session name, or one starting with "
            "portcullis-, gets a statement of its own (Sid PortcullisManagedSubject…) "
            "binding a name derived from it.",
            "text": as_json(oidc_trust_statement(aws_settings, account)),
        },
        {
            "key": "cloudformation",
            "title": "CloudFormation template",
            "help": "Creates all of the above in one account. Deploy it as a stack in the "
            "management account and as a StackSet (service-managed permissions) over the "
            "organization's member accounts, with CAPABILITY_NAMED_IAM.",
            "text": cloudformation_yaml(app, aws_settings),
        },
    ]

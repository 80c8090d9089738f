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
# A customer's IAM role or permission set is requestable when its tag
# settings.PORTCULLIS_REQUESTABLE_TAG has this value (exactly: IAM compares case-sensitively).
REQUESTABLE_TAG_VALUE = "true"
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
# Subjects are added to the trust policy of the roles an admin tagged requestable, and of
# Portcullis's own roles under /portcullis/.
TRUST_POLICY_GRANT_ACTIONS = ["iam:UpdateAssumeRolePolicy"]
# A revoke ends the user's live sessions of a role Portcullis holds a trust statement in with
# a Deny inline policy (PortcullisRevokedSessions), on the same roles as the trust edits.
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

# Roles nobody but their owner (AWS, the organization's administrators) may change, even if
# someone tagged them requestable: editing one would hand out the keys to an account.
PROTECTED_ROLE_NAMES = ["OrganizationAccountAccessRole", "AWSControlTowerExecution"]
PROTECTED_ROLE_PATHS = ["/aws-reserved/", "/aws-service-role/"]
# Every call that changes a role. Denied on the protected roles whatever else is allowed.
ROLE_WRITE_ACTIONS = [
    "iam:CreateRole",
    "iam:DeleteRole",
    "iam:UpdateRole",
    "iam:UpdateRoleDescription",
    "iam:UpdateAssumeRolePolicy",
    "iam:PutRolePolicy",
    "iam:DeleteRolePolicy",
    "iam:AttachRolePolicy",
    "iam:DetachRolePolicy",
    "iam:PutRolePermissionsBoundary",
    "iam:DeleteRolePermissionsBoundary",
    "iam:TagRole",
    "iam:UntagRole",
]
# Never needed, and each one a way around the tag, the path or the boundary: attaching a
# managed policy (AdministratorAccess) to a role, changing or dropping a role's boundary,
# rewriting the boundary policy itself, handing a role to a service.
ESCALATION_ACTIONS = [
    "iam:AttachRolePolicy",
    "iam:DetachRolePolicy",
    "iam:PutRolePermissionsBoundary",
    "iam:DeleteRolePermissionsBoundary",
    "iam:CreatePolicy",
    "iam:CreatePolicyVersion",
    "iam:SetDefaultPolicyVersion",
    "iam:DeletePolicy",
    "iam:DeletePolicyVersion",
    "iam:TagPolicy",
    "iam:UntagPolicy",
    "iam:PassRole",
    "iam:CreateServiceLinkedRole",
    # It writes the trust policies of its own roles and of requestable ones: in its account,
    # one naming its session would let it assume the role with no Allow of its own (the
    # trust policy grants it), then use what the role holds, an EKS cluster-admin access
    # entry included. Portcullis assumes the ingester role from its own principal; the
    # ingester never assumes a role.
    "sts:AssumeRole",
]
# Never needed either, and each one a way to become someone AWS trusts, whatever other
# policy the role is given: pointing Portcullis's OIDC provider (which every grant's trust
# policy names) at another issuer or client, adding an identity provider, making IAM users
# and credentials.
IDENTITY_ESCALATION_ACTIONS = [
    "iam:CreateOpenIDConnectProvider",
    "iam:UpdateOpenIDConnectProviderThumbprint",
    "iam:AddClientIDToOpenIDConnectProvider",
    "iam:RemoveClientIDFromOpenIDConnectProvider",
    "iam:DeleteOpenIDConnectProvider",
    "iam:TagOpenIDConnectProvider",
    "iam:CreateSAMLProvider",
    "iam:UpdateSAMLProvider",
    "iam:CreateUser",
    "iam:CreateAccessKey",
    "iam:CreateLoginProfile",
    "iam:UpdateLoginProfile",
    "iam:PutUserPolicy",
    "iam:AttachUserPolicy",
    "iam:AddUserToGroup",
    "iam:PutGroupPolicy",
    "iam:AttachGroupPolicy",
]
# The permission-set tag is what makes one assignable: Portcullis never writes a permission
# set, its tags or its policies, nor Identity Center users and groups.
PERMISSION_SET_ESCALATION_ACTIONS = [
    "sso:CreatePermissionSet",
    "sso:UpdatePermissionSet",
    "sso:DeletePermissionSet",
    "sso:TagResource",
    "sso:UntagResource",
    "sso:PutInlinePolicyToPermissionSet",
    "sso:AttachManagedPolicyToPermissionSet",
    "sso:AttachCustomerManagedPolicyReferenceToPermissionSet",
    "sso:PutPermissionsBoundaryToPermissionSet",
    "sso:ProvisionPermissionSet",
    "identitystore:CreateUser",
    "identitystore:UpdateUser",
    "identitystore:CreateGroup",
    "identitystore:UpdateGroup",
]
# The EKS access policies Portcullis associates (one per access level).
EKS_ACCESS_POLICIES = "arn:aws:eks::aws:cluster-access-policy/AmazonEKS*Policy"
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


def _provider_names(account_id: str, issuer_url: str) -> list[str]:
    """The values aws:FederatedProvider may take for Portcullis's OIDC provider."""
    host_path = issuer_host_path(issuer_url) or ISSUER_PLACEHOLDER
    return [oidc_provider_arn(account_id, issuer_url), host_path, f"https://{host_path}"]


def _statement(sid: str, actions: list[str], resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": list(actions), "Resource": resource, **extra}


def _deny(sid: str, actions: list[str], **extra: Any) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Deny", "Action": list(actions), **extra}


def requestable_tag() -> str:
    """The tag key that makes a customer's IAM role or permission set requestable."""
    return settings.PORTCULLIS_REQUESTABLE_TAG


def role_not_requestable_reason(
    name: str, path: str, tags: dict[str, str], ingester_role: str
) -> str:
    """Why Portcullis may not grant access to this customer IAM role, "" when it may: the
    same rule as the policy's tag condition and denies, so sync, the grant driver and AWS
    agree."""
    tag = requestable_tag()
    if name == ingester_role:
        return f"{name} is Portcullis's own ingester role, which it never edits."
    if name in PROTECTED_ROLE_NAMES or any(path.startswith(p) for p in PROTECTED_ROLE_PATHS):
        return (
            f"{name} is an organization, Identity Center or service-linked role, which "
            "Portcullis never edits."
        )
    if tags.get(tag) != REQUESTABLE_TAG_VALUE:
        return (
            f"The role is not tagged {tag}={REQUESTABLE_TAG_VALUE}: Portcullis grants only "
            "roles an AWS administrator tagged requestable, and its AWS policy lets it edit no "
            "other. Tag the role in AWS to offer it."
        )
    return ""


def permission_set_not_requestable_reason(tags: dict[str, str]) -> str:
    """Why Portcullis may not assign this Identity Center permission set, "" when it may:
    the rule of the policy's RequestablePermissionSets condition."""
    tag = requestable_tag()
    if tags.get(tag) != REQUESTABLE_TAG_VALUE:
        return (
            f"The permission set is not tagged {tag}={REQUESTABLE_TAG_VALUE}: Portcullis assigns "
            "only permission sets an AWS administrator tagged requestable, and its AWS policy "
            "lets it assign no other. Tag the permission set in AWS to offer it."
        )
    return ""


def unscoped_permissions(app: AwsApp) -> list[dict[str, str]]:
    """What the ingester's policy cannot narrow to requestable resources, and why: shown on
    the app page so that an admin knows what Portcullis's credentials can still reach."""
    tag = requestable_tag()
    limits = []
    if app.organization_management:
        limits += [
            {
                "what": "Trust policies of requestable roles (iam:UpdateAssumeRolePolicy)",
                "why": "IAM has no condition key on a trust policy's content: on a role tagged "
                f"{tag}=true, Portcullis could name any principal, not only its users' subjects.",
            },
            {
                "what": "Inline policies of requestable roles (iam:PutRolePolicy)",
                "why": "Needed to end live sessions at a revoke (PortcullisRevokedSessions). IAM "
                "has no condition on the policy's name or content, so on a role tagged "
                f"{tag}=true Portcullis could also add permissions. Tag only roles whose "
                "owners accept that.",
            },
            {
                "what": "Roles under /portcullis/: trust policy, deletion, tags "
                "(iam:UpdateAssumeRolePolicy, iam:DeleteRole, iam:TagRole, iam:UntagRole)",
                "why": "These calls carry no iam:PermissionsBoundary key; they are limited to the "
                "/portcullis/ path, where Portcullis creates roles only with its boundary. A "
                "role someone else creates there (without the boundary) gets no such limit: "
                "Portcullis could make it trust any principal. Keep other roles, Portcullis's "
                "own principal included, off the /portcullis/ path.",
            },
            {
                "what": "The permissions boundary: SSM sessions, EKS and RDS IAM logins on "
                "every instance, cluster and database of the account",
                "why": "EC2 instances, EKS clusters and databases are requestable without a tag, "
                "so the boundary cannot narrow them; each managed role's own policy names one. "
                "The boundary denies everything to a session not federated through Portcullis's "
                "OIDC provider, so a /portcullis/ role the ingester made trust another principal "
                "gives that principal none of it; a role trusting the provider still admits "
                "any subject the ingester writes in, which is how grants work.",
            },
            {
                "what": "EKS access policies of /portcullis/ roles (eks:AssociateAccessPolicy)",
                "why": "Limited to roles under /portcullis/ and to the AmazonEKS*Policy access "
                "policies, on every cluster of the account, cluster-admin included: EKS "
                "clusters are requestable without a tag. EKS applies no IAM policy to a "
                "session's calls to the cluster (the boundary does not reach them): a "
                "/portcullis/ role whose trust policy names another principal (an AWS "
                "account, another OIDC provider of the account such as GitHub Actions') gives "
                "that principal the role's access entry. The ingester itself may not assume "
                "roles; allow Portcullis's own principal sts:AssumeRole on the ingester roles "
                "only. An organization resource control policy denying sts:AssumeRole and "
                "sts:AssumeRoleWithSAML on role/portcullis/*, and sts:AssumeRoleWithWebIdentity "
                "there unless aws:FederatedProvider is Portcullis's provider, closes it.",
            },
        ]
    if app.identity_center_management:
        limits += [
            {
                "what": "Group memberships (identitystore:CreateGroupMembership, "
                "DeleteGroupMembership)",
                "why": "Identity Center groups carry no tags and these calls no condition keys: "
                "any group of the app's identity store, and so whatever its account "
                "assignments give, permission sets not tagged "
                f"{tag}=true (an administrators' group's) included. The tag limits only the "
                "assignments Portcullis creates.",
            },
            {
                "what": "Whom and where a requestable permission set is assigned "
                "(sso:CreateAccountAssignment)",
                "why": "AWS authorises an assignment on the instance, the account and the "
                "permission set, with no condition on the user or group it names: a permission "
                f"set tagged {tag}=true can be assigned to anyone, on any account of the "
                "organization, the management account included.",
            },
            {
                "what": "Removing account assignments (sso:DeleteAccountAssignment)",
                "why": "Allowed for every permission set, so that a permission set untagged after "
                "a grant cannot keep its assignment; removing access never widens it. Creating "
                f"one needs the permission set tagged {tag}=true.",
            },
        ]
    return limits


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
    ingester_role: str | None = None,
) -> dict[str, Any]:
    """The least the ingester role needs in ``account_id`` (default: the management account)
    for what the app's toggles turn on: sync reads, grants, managed roles, the SQS queue.

    Its writes reach only what an admin marked requestable: IAM roles tagged
    ``<requestable tag>=true``, Portcullis's own roles under /portcullis/ (created with the
    permissions boundary), permission sets with the same tag, EKS access entries of roles
    under /portcullis/. Explicit denies keep it off its own role and the organization's and
    AWS's roles, and away from every way around the tag, the path and the boundary, whatever
    other policy the role is given.

    ``queue`` and ``ingester_role`` override the queue ARN and the ingester role's name
    (the CloudFormation template passes parameters)."""
    account = account_id or app.management_account_id
    statements: list[dict[str, Any]] = [
        _statement("OrganizationsRead", ORGANIZATIONS_READ_ACTIONS),
    ]
    if app.identity_center_management:
        statements += [
            _statement("IdentityCenterRead", IDENTITY_CENTER_READ_ACTIONS),
            *_identity_center_grant_statements(app),
        ]
    if app.organization_management:
        statements += [
            _statement("MemberAccountRead", MEMBER_READ_ACTIONS),
            *_role_statements(account, ingester_role or app.ingester_role_name),
            *_eks_statements(account),
        ]
    queue_resource = queue or (queue_arn(app.sqs_queue_url) if app.sqs_queue_url else "")
    if queue_resource:
        statements.append(_statement("CloudTrailEventsQueue", SQS_ACTIONS, queue_resource))
    return {"Version": POLICY_VERSION, "Statement": statements}


def requestable_condition() -> dict[str, Any]:
    """True of a resource an admin tagged requestable (IAM role, permission set)."""
    return {"StringEquals": {f"aws:ResourceTag/{requestable_tag()}": REQUESTABLE_TAG_VALUE}}


def protected_role_arns(account: str, ingester_role: str) -> list[str]:
    """The roles Portcullis never changes: its own, the organization's administrator roles
    (at the root path or any other), Identity Center's and the service-linked ones."""
    arns = []
    for name in [ingester_role, *PROTECTED_ROLE_NAMES]:
        arns += [f"arn:aws:iam::{account}:role/{name}", f"arn:aws:iam::{account}:role/*/{name}"]
    arns += [f"arn:aws:iam::{account}:role{path}*" for path in PROTECTED_ROLE_PATHS]
    return arns


def _role_statements(account: str, ingester_role: str) -> list[dict[str, Any]]:
    roles = f"arn:aws:iam::{account}:role/*"
    managed = managed_roles_arn(account)
    boundary = boundary_policy_arn(account)
    return [
        _statement(
            "RequestableRoles",
            TRUST_POLICY_GRANT_ACTIONS + REVOKE_SESSIONS_ACTIONS,
            roles,
            Condition=requestable_condition(),
        ),
        # UpdateAssumeRolePolicy has no boundary key; every role it reaches here was
        # created with the boundary (CreateRole below), which nothing may take off.
        _statement("ManagedRolesTrust", TRUST_POLICY_GRANT_ACTIONS, managed),
        _statement(
            "ManagedRolesWithBoundary",
            MANAGED_ROLE_BOUNDED_ACTIONS,
            managed,
            Condition={"ArnEquals": {"iam:PermissionsBoundary": boundary}},
        ),
        _statement("ManagedRolesLifecycle", MANAGED_ROLE_LIFECYCLE_ACTIONS, managed),
        _deny(
            "DenyProtectedRoles",
            ROLE_WRITE_ACTIONS,
            Resource=protected_role_arns(account, ingester_role),
        ),
        _deny("DenyEscalation", ESCALATION_ACTIONS, Resource="*"),
        _deny("DenyIdentityEscalation", IDENTITY_ESCALATION_ACTIONS, Resource="*"),
        # Tags decide what is requestable: only Portcullis's own roles may be (un)tagged.
        # A role is created only under /portcullis/ and only with the boundary.
        _deny(
            "DenyRolesOutsideThePortcullisPath",
            ["iam:CreateRole", "iam:TagRole", "iam:UntagRole", "iam:DeleteRole"],
            NotResource=managed,
        ),
        # Not even its own: a /portcullis/ role tagged requestable would fall under
        # RequestableRoles, whose PutRolePolicy asks for no boundary.
        _deny(
            "DenyTaggingRolesRequestable",
            ["iam:CreateRole", "iam:TagRole"],
            Resource="*",
            Condition={"Null": {f"aws:RequestTag/{requestable_tag()}": "false"}},
        ),
        _deny(
            "DenyRolesWithoutTheBoundary",
            ["iam:CreateRole"],
            Resource="*",
            # A request without a boundary has no key: ArnNotEquals is then true.
            Condition={"ArnNotEquals": {"iam:PermissionsBoundary": boundary}},
        ),
    ]


def _identity_center_grant_statements(app: AwsApp) -> list[dict[str, Any]]:
    # An assignment is authorised on the instance, the account and the permission set
    # alike; only the permission set carries tags, so it gets its own statement.
    instance = app.identity_center_instance_arn or "arn:aws:sso:::instance/*"
    instance_id = instance.rsplit("/", 1)[-1]
    permission_sets = f"arn:aws:sso:::permissionSet/{instance_id}/*"
    store = f"arn:aws:identitystore::*:identitystore/{app.identity_store_id or '*'}"
    assign = ["sso:CreateAccountAssignment"]
    return [
        # Groups carry no tags and memberships no condition keys: any group of the
        # app's identity store (listed on the app page).
        _statement(
            "IdentityCenterGroupMemberships",
            ["identitystore:CreateGroupMembership", "identitystore:DeleteGroupMembership"],
            [
                store,
                "arn:aws:identitystore:::group/*",
                "arn:aws:identitystore:::user/*",
                "arn:aws:identitystore:::membership/*",
            ],
        ),
        _statement(
            "IdentityCenterAssignments",
            [*assign, "sso:DeleteAccountAssignment"],
            [instance, "arn:aws:sso:::account/*"],
        ),
        _statement(
            "RequestablePermissionSets",
            assign,
            permission_sets,
            Condition=requestable_condition(),
        ),
        # Removing access never widens it: a permission set untagged after a grant must
        # not leave its assignments in place.
        _statement("RemoveAssignments", ["sso:DeleteAccountAssignment"], permission_sets),
        _deny("DenyPermissionSetChanges", PERMISSION_SET_ESCALATION_ACTIONS, Resource="*"),
        _statement(
            "IdentityCenterAssignmentStatus",
            [
                "sso:DescribeAccountAssignmentCreationStatus",
                "sso:DescribeAccountAssignmentDeletionStatus",
            ],
            instance,
        ),
    ]


def _eks_statements(account: str) -> list[dict[str, Any]]:
    only_managed_roles = {"ArnLike": {"eks:principalArn": managed_roles_arn(account)}}
    return [
        _statement(
            "EksAccessEntries",
            ["eks:CreateAccessEntry", "eks:DeleteAccessEntry"],
            [
                f"arn:aws:eks:*:{account}:cluster/*",
                f"arn:aws:eks:*:{account}:access-entry/*",
            ],
            Condition=only_managed_roles,
        ),
        _statement(
            "EksAccessPolicies",
            ["eks:AssociateAccessPolicy", "eks:DisassociateAccessPolicy"],
            f"arn:aws:eks:*:{account}:access-entry/*",
            Condition={
                "ArnLike": {
                    "eks:principalArn": managed_roles_arn(account),
                    "eks:policyArn": EKS_ACCESS_POLICIES,
                }
            },
        ),
    ]


def boundary_policy(account_id: str, issuer_url: str) -> dict[str, Any]:
    """The permissions boundary of every role Portcullis creates under /portcullis/ in
    ``account_id``.

    The ingester creates these roles and writes their trust policies, so it could make one
    that trusts itself, Portcullis's principal or any other account, and then start sessions
    on every instance and log in to every database. The boundary therefore denies everything
    to a session not federated through Portcullis's OIDC provider in this account (the one
    its trust statement names): using a managed role takes a token of Portcullis's identity
    provider, not only the ingester's credentials."""
    statements = [_statement(sid, actions) for sid, actions in BOUNDARY_ACTIONS.items()]
    statements.append(
        _deny(
            "OnlyPortcullisUsers",
            ["*"],
            Resource="*",
            # A session from sts:AssumeRole has no aws:FederatedProvider: StringNotEquals
            # is then true and the Deny applies. AWS's documentation gives the provider's
            # ARN as the value for IAM OIDC providers, and reports have seen the issuer:
            # both name the one provider this account has for that issuer, so both pass
            # (a value that matched neither would deny every grant of a managed role).
            Condition={
                "StringNotEquals": {
                    "aws:FederatedProvider": _provider_names(account_id, issuer_url)
                }
            },
        )
    )
    return {"Version": POLICY_VERSION, "Statement": statements}


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
_ROLE_PARAMETER = "${IngesterRoleName}"


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
        app, account_id=_ACCOUNT_VARIABLE, queue=_QUEUE_PARAMETER, ingester_role=_ROLE_PARAMETER
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
                    "PolicyDocument": _substituted(
                        boundary_policy(_ACCOUNT_VARIABLE, aws_settings.oidc_issuer_url)
                    ),
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
            f"account: {boundary_policy_arn(account)}. Every role Portcullis creates carries it. "
            "It allows nothing to a session not federated through Portcullis's OIDC provider "
            "of the same account; member accounts get it with their own account ID from the "
            "CloudFormation template below.",
            "text": as_json(boundary_policy(account, aws_settings.oidc_issuer_url)),
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

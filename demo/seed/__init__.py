"""Seeds the stand-in AWS (a moto server) with an organization to govern.

One generator, sized by :class:`SeedSize`, serves the demo (``SMALL``), the tests and the
sync benchmark (``LARGE``). Everything goes through boto3 against
``settings.AWS_ENDPOINT_URL`` via :mod:`aws_integration.clients`, exactly as Portcullis
later reads it back. Refuses to run against real AWS (no endpoint override set).

What it builds, deterministically (same names for the same size):

- An organization (feature set ALL) whose management account is the caller's account.
- An OU tree: ``Workloads`` with ``Production`` and ``Staging`` under it, ``Sandbox``,
  ``Security``, ``Shared Services`` at the root, then ``Team NN`` OUs under ``Workloads``.
  Member accounts are spread round-robin over every OU but ``Workloads`` (which only holds
  OUs once there is more than one).
- In each member account, through ``OrganizationAccountAccessRole`` (moto keys resources by
  the assumed role's account, as AWS does): IAM roles with tags and trust policies (the
  first one tagged ``portcullis:requestable``; one is the EKS cluster role), and per
  region EC2 instances (``Name`` tag), EKS clusters, RDS MySQL / PostgreSQL instances and
  Aurora MySQL / PostgreSQL clusters (IAM database authentication on, tagged
  ``portcullis:db-users``).
- The ingester role (``PortcullisIngester``) in the management account and in every
  member account, trusting Portcullis's principal on condition of the installation's
  External ID, as an admin would create it from the app page. moto enforces neither
  trust policies nor the External ID: the role is there so that what sync assumes and
  lists looks like a real organization, not because the stand-in needs it.
- In Identity Center (the management account's instance): users, groups, memberships,
  permission sets, group (and one user) account assignments, and the assigned permission
  sets provisioned.

moto gaps worked around here (moto 5.2):

- ``sso-admin``: there is one instance per account and region, created by moto itself
  (``list_instances`` returns it; there is no ``create_instance``).
- ``sso-admin provision_permission_set`` ignores the target and appends the permission set
  to the instance's provisioned list on every call, so calling it once per account would
  list it several times. Each assigned permission set is therefore provisioned once, with
  ``TargetType=ALL_PROVISIONED_ACCOUNTS`` (also valid on AWS, where
  ``create_account_assignment`` provisions to the account by itself).
  ``list_permission_sets_provisioned_to_account`` then answers with every provisioned
  permission set whatever the ``AccountId``.
- ``sso-admin attach_managed_policy_to_permission_set`` only finds AWS managed policies
  under the path ``/``: moto reads ``path`` where its data says ``Path``, so the
  ``/job-function/`` policies (ViewOnlyAccess, DatabaseAdministrator, ...) cannot be
  attached by their real ARN. Permission sets use root-path policies or an inline policy.
- ``sso-admin create_account_assignment`` and ``identitystore create_group_membership`` do
  not refuse duplicates; this module creates each one once.
- ``organizations create_account`` succeeds at once (no IN_PROGRESS status to poll), and
  any role ARN can be assumed: moto does not create ``OrganizationAccountAccessRole``.
"""

from demo.seed.base import (
    DB_USERS,
    DB_USERS_TAG,
    EKS_CLUSTER_ROLE,
    INGESTER_ROLE,
    LARGE,
    MEMBER_ACCOUNT_ROLE,
    REGIONS,
    SIZES,
    SMALL,
    STANDIN_CREDENTIALS,
    STANDIN_EXTERNAL_ID,
    Person,
    SeededAccount,
    SeededAssignment,
    SeededResource,
    SeedError,
    SeedResult,
    SeedSize,
    requestable_tag,
)
from demo.seed.organization import seed_organization

__all__ = [
    "DB_USERS",
    "DB_USERS_TAG",
    "EKS_CLUSTER_ROLE",
    "INGESTER_ROLE",
    "LARGE",
    "MEMBER_ACCOUNT_ROLE",
    "REGIONS",
    "SIZES",
    "SMALL",
    "STANDIN_CREDENTIALS",
    "STANDIN_EXTERNAL_ID",
    "Person",
    "SeedError",
    "SeedResult",
    "SeedSize",
    "requestable_tag",
    "SeededAccount",
    "SeededAssignment",
    "SeededResource",
    "seed_organization",
]

"""References to AWS objects that a targeted refresh should re-read.

What ``remote_id`` holds for each kind (an empty ``remote_id`` always means "every object
of that kind in the scope"):

============================ ===================================================================
kind                         remote_id
============================ ===================================================================
``ou``                       OU id (``ou-...``); empty: the whole organization (OUs and accounts)
``account``                  account id; empty: the whole organization
``permission_set``           permission set ARN; empty: every permission set
``account_assignment``       permission set ARN or empty; ``account_id`` is the target account
                             (empty: every account). The account's assignments are re-read.
``idc_group``                group id; empty: every group and its memberships
``idc_group_membership``     the group id whose memberships changed; empty: every group's
``iam_role``                 role ARN or role name (``account_id`` required unless an ARN)
``ec2_instance``             instance id
``eks_cluster``              cluster name or ARN
``rds_instance``             DB instance identifier or ARN
``rds_cluster``              DB cluster identifier or ARN
============================ ===================================================================

For member-account kinds, an empty ``account_id`` means every active account of the
organization, and an empty ``region`` means the app's regions (or every enabled region of
the account). ``region`` is ignored by organization, Identity Center and IAM kinds.
"""

from __future__ import annotations

from dataclasses import dataclass

ORGANIZATION_KINDS = frozenset({"ou", "account"})
IDENTITY_CENTER_KINDS = frozenset(
    {"permission_set", "account_assignment", "idc_group", "idc_group_membership"}
)
MEMBER_KINDS = frozenset({"iam_role", "ec2_instance", "eks_cluster", "rds_instance", "rds_cluster"})
KINDS: frozenset[str] = ORGANIZATION_KINDS | IDENTITY_CENTER_KINDS | MEMBER_KINDS


@dataclass(frozen=True)
class ObjectRef:
    """One AWS object (or, with an empty remote_id, every object of a kind in a scope) to
    refresh. See the module docstring for what ``remote_id`` holds per kind."""

    kind: str
    account_id: str = ""
    region: str = ""
    remote_id: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(
                f"Unknown object kind {self.kind!r}; expected one of {', '.join(sorted(KINDS))}."
            )

"""Grants through roles Portcullis creates and owns: one role per (resource, access level)
in the resource's account, under /portcullis/ with the permissions boundary, trusted by the
OIDC subjects of the users holding it and allowed only what the access level means:

- EC2 instance, "ssm-session": a Session Manager shell on that instance;
- EKS cluster, an access policy ARN: an EKS access entry for the role with that policy;
- RDS / Aurora, a database user: rds-db:connect as that user.

The role is created with its first subject and deleted with its last (access entry and
inline policies first, as AWS requires).

A role's name is unique per (resource, access level): it ends with the resource's region and
a digest of its account, region, ARN and the level, so two same-named databases or clusters
(two regions, two accounts) never share a role and so never share their holders. Roles named
by older versions (without region and digest, so possibly shared) are left by each
assignment at its next apply or remove: its subjects leave the old role's trust policy, its
sessions there are denied, and the old role is deleted once no one else is on it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from access import drivers, leases
from access.choices import AssignmentStatus, ResourceType
from access.drivers import DriverError, Outcome, SubjectUnknown
from access.leases import LeaseKind
from access.models import Assignment
from aws_integration import setup_policies, trust_policy_editor
from aws_integration.grants import base
from aws_integration.grants.iam import (
    OidcTrust,
    end_live_sessions,
    get_role,
    oidc_trust,
    revoked_session_names,
    role_lock,
    role_lock_key,
    subjects_state,
    subjects_to_remove,
    with_subject,
    without_subjects,
    write_trust_policy,
)

if TYPE_CHECKING:
    from access.models import AccessLevel, Resource
    from aws_integration.models import AwsApp

logger = logging.getLogger(__name__)

ACCESS_POLICY = "PortcullisAccess"
MAX_ROLE_NAME = 64
# 40 bits of SHA-256: the same digest for two resources of one account is out of reach.
NAME_DIGEST_LENGTH = 10
# The lock on a role an assignment is leaving, renewed while it is left (as grants.LEASE).
LEGACY_LOCK = timedelta(seconds=4)
_ROLE_NAME_UNSAFE = re.compile(r"[^\w+=,.@-]")
MANAGED_TAG = "portcullis:managed"
RESOURCE_TAG = "portcullis:resource"
LEVEL_TAG = "portcullis:access-level"


def eks_client(app: AwsApp, account_id: str, region: str) -> Any:
    """The EKS client for access entries (tests replace it: the stand-in has no access
    entry API)."""
    return base.client_for(app, account_id, "eks", region)


def role_name(kind: str, *parts: str, region: str, identity: str) -> str:
    """portcullis-<kind>-<parts>-<region>-<digest>, within IAM's 64 characters.

    The digest is over ``identity`` (account, region, resource ARN and access level), so the
    name is unique per resource and level even where names repeat across regions and
    accounts; the readable part is cut to fit, never the region or the digest."""
    digest = hashlib.sha256(identity.encode()).hexdigest()[:NAME_DIGEST_LENGTH]
    suffix = _ROLE_NAME_UNSAFE.sub("-", f"-{region}-{digest}")
    readable = _ROLE_NAME_UNSAFE.sub("-", "-".join(["portcullis", kind, *parts]))
    return readable[: MAX_ROLE_NAME - len(suffix)].rstrip("-") + suffix


def _identity(resource: Resource, level: str, resource_arn: str) -> str:
    return "|".join([resource.account_id, resource.region, resource.type, resource_arn, level])


@dataclass(frozen=True)
class ManagedRole:
    """The role of one (resource, access level) and what it may do."""

    account_id: str
    region: str
    name: str
    resource_arn: str
    level: str
    permissions: dict[str, Any]
    eks_cluster: str = ""  # set for EKS: the cluster whose access entry maps the role
    eks_policy_arn: str = ""

    @property
    def arn(self) -> str:
        return f"arn:aws:iam::{self.account_id}:role{setup_policies.MANAGED_PATH}{self.name}"

    @property
    def tags(self) -> list[dict[str, str]]:
        return [
            {"Key": MANAGED_TAG, "Value": "true"},
            {"Key": RESOURCE_TAG, "Value": self.resource_arn[:256]},
            {"Key": LEVEL_TAG, "Value": self.level[:256]},
        ]


# One step undoing a change a failed apply made (see ManagedRoleDriver.apply); what it
# returns is not used.
Undo = Callable[[], object]


def _policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": setup_policies.POLICY_VERSION, "Statement": list(statements)}


def ec2_role(resource: Resource, level: AccessLevel) -> ManagedRole:
    account, region, instance_id = resource.account_id, resource.region, resource.remote_id
    instance_arn = resource.arn or f"arn:aws:ec2:{region}:{account}:instance/{instance_id}"
    # SSM-SessionManagerRunShell (the default session document, holding the account's
    # session preferences) is created in the customer's account, so its ARN names it.
    document = f"arn:aws:ssm:{region}:{account}:document/SSM-SessionManagerRunShell"
    return ManagedRole(
        account_id=account,
        region=region,
        name=role_name(
            "ec2",
            instance_id,
            region=region,
            identity=_identity(resource, level.remote_id, instance_arn),
        ),
        resource_arn=instance_arn,
        level=level.remote_id,
        permissions=_policy(
            {
                "Sid": "StartSessionOnThisInstance",
                "Effect": "Allow",
                "Action": "ssm:StartSession",
                "Resource": [instance_arn, document],
                "Condition": {"BoolIfExists": {"ssm:SessionDocumentAccessCheck": "true"}},
            },
            {
                "Sid": "OwnSessionsOnly",
                "Effect": "Allow",
                "Action": ["ssm:ResumeSession", "ssm:TerminateSession"],
                "Resource": "arn:aws:ssm:*:*:session/${aws:userid}-*",
            },
        ),
    )


def eks_role(resource: Resource, level: AccessLevel) -> ManagedRole:
    cluster = resource.name
    short = level.name or level.remote_id.rsplit("/", 1)[-1]
    cluster_arn = resource.arn or resource.remote_id
    return ManagedRole(
        account_id=resource.account_id,
        region=resource.region,
        name=role_name(
            "eks",
            cluster,
            short,
            region=resource.region,
            identity=_identity(resource, level.remote_id, cluster_arn),
        ),
        resource_arn=cluster_arn,
        level=level.remote_id,
        permissions=_policy(
            {
                "Sid": "DescribeThisCluster",
                "Effect": "Allow",
                "Action": "eks:DescribeCluster",
                "Resource": resource.arn or resource.remote_id,
            }
        ),
        eks_cluster=cluster,
        eks_policy_arn=level.remote_id,
    )


def rds_role(resource: Resource, level: AccessLevel) -> ManagedRole:
    account, region = resource.account_id, resource.region
    metadata = resource.metadata or {}
    resource_id = metadata.get("dbi_resource_id") or metadata.get("db_cluster_resource_id")
    if not resource_id:
        raise DriverError(
            f"The database {resource.name} has no resource ID in Portcullis yet: run a sync "
            "of its account, then retry.",
            retryable=False,
        )
    db_user = level.remote_id
    db_arn = resource.arn or resource.remote_id
    return ManagedRole(
        account_id=account,
        region=region,
        name=role_name(
            "rds",
            resource.name,
            db_user,
            region=region,
            identity=_identity(resource, db_user, db_arn),
        ),
        resource_arn=db_arn,
        level=db_user,
        permissions=_policy(
            {
                "Sid": "ConnectAsThisDatabaseUser",
                "Effect": "Allow",
                "Action": "rds-db:connect",
                "Resource": f"arn:aws:rds-db:{region}:{account}:dbuser:{resource_id}/{db_user}",
            }
        ),
    )


ROLE_OF_TYPE = {
    ResourceType.EC2_INSTANCE.value: ec2_role,
    ResourceType.EKS_CLUSTER.value: eks_role,
    ResourceType.RDS_MYSQL.value: rds_role,
    ResourceType.RDS_POSTGRES.value: rds_role,
    ResourceType.AURORA_MYSQL.value: rds_role,
    ResourceType.AURORA_POSTGRES.value: rds_role,
}


def managed_role_of(assignment: Assignment) -> ManagedRole:
    return ROLE_OF_TYPE[assignment.resource.type](assignment.resource, assignment.access_level)


# AWS ------------------------------------------------------------------------------------------
def _create_role(
    iam: Any, role: ManagedRole, trust: OidcTrust, subject: str
) -> tuple[dict[str, Any], bool]:
    """Create the role trusting ``subject``; True with it when this call created it. An
    existing one (a concurrent or half-done grant) is read back and updated by the caller."""
    document = with_subject(
        {"Version": setup_policies.POLICY_VERSION, "Statement": []}, trust, subject
    )
    with base.aws_errors(f"Creating the managed role {role.name}"):
        try:
            made = iam.create_role(
                RoleName=role.name,
                Path=setup_policies.MANAGED_PATH,
                AssumeRolePolicyDocument=trust_policy_editor.serialise(document),
                PermissionsBoundary=setup_policies.boundary_policy_arn(role.account_id),
                Description=f"Portcullis: {role.level} on {role.resource_arn}"[:1000],
                Tags=role.tags,
            )
            return made["Role"], True
        except ClientError as error:
            if base.error_code(error) != "EntityAlreadyExists":
                raise
    existing = get_role(iam, role.name)
    if existing is None:
        raise DriverError(f"The managed role {role.name} was deleted while being granted.")
    return existing, False


def _check_ours(role: ManagedRole, found: dict[str, Any]) -> None:
    boundary = (found.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn")
    if found.get(
        "Path"
    ) != setup_policies.MANAGED_PATH or boundary != setup_policies.boundary_policy_arn(
        role.account_id
    ):
        raise DriverError(
            f"A role named {role.name} exists in account {role.account_id} but is not one "
            f"Portcullis manages (path {setup_policies.MANAGED_PATH} with the permissions boundary "
            f"{setup_policies.BOUNDARY_POLICY_NAME}). Rename or delete it, then retry.",
            retryable=False,
        )


def _put_permissions(iam: Any, role: ManagedRole) -> None:
    with base.aws_errors(f"Writing the permissions of the managed role {role.name}"):
        iam.put_role_policy(
            RoleName=role.name,
            PolicyName=ACCESS_POLICY,
            PolicyDocument=json.dumps(role.permissions, separators=(",", ":")),
        )


def _map_in_eks(app: AwsApp, role: ManagedRole, role_arn: str, undo: list[Undo]) -> None:
    eks = eks_client(app, role.account_id, role.region)
    with base.aws_errors(f"Creating the EKS access entry of {role.name} on {role.eks_cluster}"):
        try:
            eks.create_access_entry(
                clusterName=role.eks_cluster, principalArn=role_arn, type="STANDARD"
            )
        except ClientError as error:
            if base.error_code(error) != "ResourceInUseException":
                raise
        else:
            undo.append(lambda: _unmap_in_eks(app, role))
    with base.aws_errors(
        f"Associating {role.eks_policy_arn} with {role.name} on {role.eks_cluster}"
    ):
        # Associating again what is associated is accepted (it updates the scope).
        eks.associate_access_policy(
            clusterName=role.eks_cluster,
            principalArn=role_arn,
            policyArn=role.eks_policy_arn,
            accessScope={"type": "cluster"},
        )


def _unmap_in_eks(app: AwsApp, role: ManagedRole) -> None:
    eks = eks_client(app, role.account_id, role.region)
    with base.aws_errors(f"Deleting the EKS access entry of {role.name} on {role.eks_cluster}"):
        try:
            eks.delete_access_entry(clusterName=role.eks_cluster, principalArn=role.arn)
        except ClientError as error:
            if base.error_code(error) != "ResourceNotFoundException":
                raise


def _delete_role(iam: Any, app: AwsApp, role: ManagedRole, *, unmap: bool = True) -> None:
    # The access entry first: EKS keeps the role's unique ID, so an entry left behind would
    # not work for a role created later under the same name. (``unmap`` False: a failed
    # apply that created no entry deletes the role it created.)
    if role.eks_cluster and unmap:
        _unmap_in_eks(app, role)
    with base.aws_errors(f"Deleting the managed role {role.name}"):
        try:
            for name in iam.list_role_policies(RoleName=role.name)["PolicyNames"]:
                iam.delete_role_policy(RoleName=role.name, PolicyName=name)
            iam.delete_role(RoleName=role.name)
        except ClientError as error:
            if base.error_code(error) != "NoSuchEntity":
                raise


def _legacy_name(assignment: Assignment, role: ManagedRole) -> str | None:
    """The role this assignment was last applied under, when it is not the one it belongs to
    now: a role named by an older version, perhaps shared with a same-named resource."""
    arn = (assignment.driver_state or {}).get("role_arn") or ""
    name = arn.rsplit("/", 1)[-1]
    return name if name and name != role.name else None


def _leave_legacy_role(
    iam: Any, app: AwsApp, assignment: Assignment, role: ManagedRole, trust: OidcTrust
) -> str:
    """Take the assignment's subjects out of the role it was applied under by an older
    version, deny their sessions there, and delete that role once nobody else is on it.
    Returns a sentence for the outcome's note ("" when there was nothing to leave)."""
    name = _legacy_name(assignment, role)
    if name is None:
        return ""
    legacy = replace(role, name=name)
    # The legacy role is not the one the grant machinery locked for this assignment: lock it
    # too, through the same leases, as other resources' assignments may be leaving it now.
    lock = leases.name(LeaseKind.LOCK, role_lock_key(role.account_id, name))
    with leases.hold(lock, LEGACY_LOCK) as lease:
        if lease is None:
            raise DriverError(f"The managed role {name} is being changed by another worker.")
        with role_lock(role.account_id, name):
            return _leave(iam, app, assignment, legacy, trust)


def _leave(
    iam: Any, app: AwsApp, assignment: Assignment, legacy: ManagedRole, trust: OidcTrust
) -> str:
    others = list(
        Assignment.objects.filter(driver_state__role_arn=legacy.arn)
        .exclude(pk=assignment.pk)
        .exclude(status=AssignmentStatus.ABSENT)
        .select_related("user")
    )
    found = get_role(iam, legacy.name)
    if found is None:
        if legacy.eks_cluster:
            _unmap_in_eks(app, legacy)
        return f" The former role {legacy.name} is gone."
    _check_ours(legacy, found)
    # Another assignment still on the legacy role (the same user on a same-named resource)
    # keeps its subjects there until it moves too.
    kept: set[str] = set()
    for other in others:
        kept |= subjects_to_remove(other)
    leaving = subjects_to_remove(assignment) - kept
    current = trust_policy_editor.parse_policy(found["AssumeRolePolicyDocument"])
    try:
        new = without_subjects(current, trust, leaving)
    except trust_policy_editor.TrustPolicyError as error:
        raise DriverError(f"Role {legacy.name}: {error}", retryable=False) from error
    if not trust_policy_editor.subjects_in(new, trust.issuer_host):
        _delete_role(iam, app, legacy)
        return f" Deleted the former role {legacy.name}, which nobody else holds."
    write_trust_policy(iam, legacy.name, current, new)
    if legacy.eks_cluster and not any(o.resource_id == assignment.resource_id for o in others):
        _unmap_in_eks(app, legacy)
    _allow_only_what_stays(iam, legacy, others)
    if leaving:
        if trust_policy_editor.binds_session_names(current, trust.issuer_host):
            end_live_sessions(iam, legacy.name, revoked_session_names(assignment))
        else:
            # Its trust policy let holders name their sessions as they liked (older
            # versions did not bind the name): the one leaving may have taken the name of
            # one who stays, so no name can be spared. Every session on it is Portcullis's:
            # deny them all; those still on it mint new ones, bound to their names now.
            end_live_sessions(iam, legacy.name, [], all_but=True)
    return f" Left the former role {legacy.name}, which others still hold."


def _allow_only_what_stays(iam: Any, legacy: ManagedRole, others: list[Assignment]) -> None:
    """The old role's permissions name the resource whose grant last wrote them, perhaps the
    one of the assignment leaving: while those still on it hold one resource, it allows
    that one only, so they do not keep another's database or instance until they move."""
    try:
        staying = [managed_role_of(other) for other in others]
    except DriverError:
        return  # a resource not synced yet: its own apply will tell
    if not staying or staying[0].eks_cluster:
        return  # EKS: the access entries are the clusters' own, unmapped above
    if len({(r.resource_arn, r.level) for r in staying}) == 1:
        _put_permissions(iam, replace(staying[0], name=legacy.name))


def _drop_other_issuers(
    iam: Any, app: AwsApp, role: ManagedRole, found: dict[str, Any], trust: OidcTrust
) -> None:
    """Take a former issuer's statements out of the role's trust policy; the role goes
    when nobody of the current issuer is left on it, as with its last holder."""
    _check_ours(role, found)
    current = trust_policy_editor.parse_policy(found["AssumeRolePolicyDocument"])
    try:
        new = without_subjects(current, trust, set())
    except trust_policy_editor.TrustPolicyError as error:
        raise DriverError(f"Role {role.name}: {error}", retryable=False) from error
    if new == current:
        return
    if not trust_policy_editor.subjects_in(new, trust.issuer_host):
        _delete_role(iam, app, role)
        return
    write_trust_policy(iam, role.name, current, new)


class ManagedRoleDriver:
    """A role Portcullis creates per (resource, access level), shared by its holders."""

    # Grants of one role edit one trust policy (read, change, write): the grant machinery
    # runs them one at a time per role (lock_key), across worker processes.

    def lock_key(self, assignment: Assignment) -> str:
        role = managed_role_of(assignment)
        return role_lock_key(role.account_id, role.name)

    def apply(self, assignment: Assignment) -> Outcome:
        role = managed_role_of(assignment)
        app = base.app_of(assignment)
        trust = oidc_trust(role.account_id)
        subject = drivers.trusted_subject(assignment.user)
        iam = base.client_for(app, role.account_id, "iam")
        with role_lock(role.account_id, role.name):
            found = get_role(iam, role.name)
            if not subject:
                # The grant waits for a subject of the issuer AWS trusts now; meanwhile the
                # statements of a former issuer go (the re-apply after an issuer change).
                if found is not None:
                    _drop_other_issuers(iam, app, role, found, trust)
                raise SubjectUnknown()
            undo: list[Undo] = []
            try:
                found, created = self._admit(iam, app, role, trust, subject, found, undo)
            except Exception as error:
                instead = _undo(role, undo, error)
                if instead is None:
                    raise
                raise instead from error
        # Only once the new role admits the user: moving is never a gap in their access.
        moved = _leave_legacy_role(iam, app, assignment, role, trust)
        return Outcome(
            state={
                "role_arn": found["Arn"],
                "subject": subject,
                "subjects": subjects_state(assignment, subject),
            },
            note=f"{'Created' if created else 'Updated'} the managed role {found['Arn']} "
            f"for {assignment.user}.{moved}",
        )

    def _admit(
        self,
        iam: Any,
        app: AwsApp,
        role: ManagedRole,
        trust: OidcTrust,
        subject: str,
        found: dict[str, Any] | None,
        undo: list[Undo],
    ) -> tuple[dict[str, Any], bool]:
        """The role (created if need be) trusting the subject, allowed the level, mapped in
        EKS. Each change made is pushed on ``undo``, for a failure further on."""
        created = False
        if found is None:
            found, created = _create_role(iam, role, trust, subject)
            if created:
                undo.append(lambda: _delete_role(iam, app, role, unmap=False))
        _check_ours(role, found)
        current = trust_policy_editor.parse_policy(found["AssumeRolePolicyDocument"])
        try:
            new = with_subject(current, trust, subject)
        except trust_policy_editor.TrustPolicyError as error:
            raise DriverError(f"Role {role.name}: {error}", retryable=False) from error
        if write_trust_policy(iam, role.name, current, new) and not created:
            undo.append(lambda: write_trust_policy(iam, role.name, new, current))
        _put_permissions(iam, role)
        if role.eks_cluster:
            _map_in_eks(app, role, found["Arn"], undo)
        return found, created

    def remove(self, assignment: Assignment) -> Outcome:
        role = managed_role_of(assignment)
        app = base.app_of(assignment)
        trust = oidc_trust(role.account_id)
        iam = base.client_for(app, role.account_id, "iam")
        outcome = self._remove_from(iam, app, assignment, role, trust)
        moved = _leave_legacy_role(iam, app, assignment, role, trust)
        return Outcome(state=outcome.state, note=outcome.note + moved)

    def _remove_from(
        self, iam: Any, app: AwsApp, assignment: Assignment, role: ManagedRole, trust: OidcTrust
    ) -> Outcome:
        with role_lock(role.account_id, role.name):
            found = get_role(iam, role.name)
            if found is None:
                if role.eks_cluster:
                    _unmap_in_eks(app, role)
                return Outcome(note=f"The managed role {role.name} is already gone.")
            current = trust_policy_editor.parse_policy(found["AssumeRolePolicyDocument"])
            try:
                new = without_subjects(current, trust, subjects_to_remove(assignment))
            except trust_policy_editor.TrustPolicyError as error:
                raise DriverError(f"Role {role.name}: {error}", retryable=False) from error
            if not trust_policy_editor.subjects_in(new, trust.issuer_host):
                # Deleting the role ends its live sessions too: they lose every permission.
                _delete_role(iam, app, role)
                return Outcome(
                    note=f"Deleted the managed role {found['Arn']} with its last holder."
                )
            write_trust_policy(iam, role.name, current, new)
            if trust_policy_editor.binds_session_names(current, trust.issuer_host):
                end_live_sessions(iam, role.name, revoked_session_names(assignment))
            else:
                # Someone edited the trust statement so that holders could pick other
                # session names: every session on the role is Portcullis's, deny them all.
                end_live_sessions(iam, role.name, [], all_but=True)
        return Outcome(
            state={"role_arn": found["Arn"]},
            note=f"Removed {assignment.user} from the managed role {found['Arn']}; their live "
            "sessions are denied.",
        )


def _undo(role: ManagedRole, undo: list[Undo], error: Exception) -> DriverError | None:
    """After a failed apply, take back what it changed, latest first: the access entry it
    created, its subject in a role others hold, the role it created. Returns the error to
    raise instead of ``error`` (None: raise it as it is): marked ``left_nothing`` when all
    was taken back; saying what is left when a step failed (the next attempt or a revoke
    removes it)."""
    for step in reversed(undo):
        try:
            step()
        except Exception as failed:  # the apply's own error must still reach the grant
            what = failed.message if isinstance(failed, DriverError) else repr(failed)
            logger.warning("Could not undo a failed apply on %s: %s", role.name, what)
            cause = error.message if isinstance(error, DriverError) else repr(error)
            return DriverError(
                f"{cause} Undoing what this attempt changed failed too ({what}); the next "
                "attempt or a revoke removes what is left.",
                retryable=getattr(error, "retryable", True),
            )
    if isinstance(error, DriverError):
        return DriverError(error.message, retryable=error.retryable, left_nothing=True)
    return None


_driver = ManagedRoleDriver()
DRIVERS: dict[str, ManagedRoleDriver] = dict.fromkeys(ROLE_OF_TYPE, _driver)

"""IAM role grants: the user's OIDC subject in the Portcullis-owned statement of the role's
trust policy (Sid ``PortcullisManaged``); every other statement stays as its owner wrote it.

Revoking also ends the user's live sessions of the role: an inline policy
(``PortcullisRevokedSessions``) denies everything to that user's sessions issued before
the revoke, AWS's "revoke older sessions" pattern narrowed to the user's session names.
The trust statement lets a holder name a session only after their subject
(trust_policy_editor.session_name_for), so those names are every session they can mint, whether
through Portcullis or by calling AssumeRoleWithWebIdentity themselves.

The trust-policy and revocation helpers here are shared with the managed roles
(``grants.managed``), whose trust policies carry the same statement.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from django.utils import timezone

from access import drivers
from access.choices import ResourceType
from access.drivers import DriverError, Outcome, SubjectUnknown
from aws_integration import setup_policies, trust_policy_editor
from aws_integration.aws_settings import get_aws_settings
from aws_integration.grants import base

if TYPE_CHECKING:
    from access.models import Assignment, User
    from aws_integration.models import AwsApp

REVOKED_SESSIONS_POLICY = "PortcullisRevokedSessions"
# AssumeRoleWithWebIdentity sessions last at most 12 hours: a deny for sessions issued
# before a revoke has nothing left to deny 12 hours later.
MAX_SESSION_DURATION = timedelta(hours=12)
# IAM is eventually consistent: for a few seconds after the trust policy drops a subject,
# AWS may still let that user assume the role. Denying sessions issued up to a minute after
# the revoke covers that window; a user granted again within the minute waits for it.
REVOKE_MARGIN = timedelta(minutes=1)
# Stands in the trust policy when the managed statement was its only statement: IAM
# refuses a policy without statements. See _without_managed_statement.
NO_SUBJECTS_SID = "PortcullisNoSubjects"
_SESSION_NAME_UNSAFE = re.compile(r"[^\w+=,.@-]")
_QUOTA = re.compile(r"ACLSizePerRole:\s*(\d+)")
_role_locks: dict[tuple[str, str], threading.Lock] = {}
_role_locks_guard = threading.Lock()


def session_name(user: User) -> str:
    """The RoleSessionName of every session Portcullis mints for this user (Connect uses it),
    and the only one the trust statement lets them use: named after their subject, so that
    a revoke can deny every session they hold."""
    return trust_policy_editor.session_name_for(subject_of(user))


def legacy_session_name(user: User) -> str:
    """The name versions before the session-name binding gave the user's sessions."""
    return _SESSION_NAME_UNSAFE.sub("-", f"portcullis-{user.pk}")[:64]


def revoked_session_names(assignment: Assignment) -> list[str]:
    """The names of every session the user may hold through this assignment: one per
    subject it was applied with, and the name older versions used."""
    names = {trust_policy_editor.session_name_for(s) for s in subjects_to_remove(assignment)}
    return sorted({*names, legacy_session_name(assignment.user)})


# Trust -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class OidcTrust:
    """The identity provider, as the trust statements of one account name it."""

    provider_arn: str
    issuer_host: str
    client_id: str


def oidc_trust(account_id: str) -> OidcTrust:
    aws_settings = get_aws_settings()
    if not aws_settings.oidc_issuer_url or not aws_settings.oidc_client_id:
        raise DriverError(
            "The OIDC provider is not set: enter its issuer URL and client ID in the AWS "
            "settings of the Portcullis admin, then retry.",
            retryable=False,
        )
    return OidcTrust(
        provider_arn=setup_policies.oidc_provider_arn(account_id, aws_settings.oidc_issuer_url),
        issuer_host=setup_policies.issuer_host_path(aws_settings.oidc_issuer_url),
        client_id=aws_settings.oidc_client_id,
    )


def subject_of(user: User) -> str:
    """The subject a trust statement names: only one from the issuer AWS trusts now."""
    subject = drivers.trusted_subject(user)
    if not subject:
        raise SubjectUnknown()
    return subject


def role_lock_key(account_id: str, role_name: str) -> str:
    """One trust policy is edited by one worker at a time, whichever driver edits it."""
    return f"iam-role:{account_id}:{role_name.lower()}"


def subjects_to_remove(assignment: Assignment) -> set[str]:
    """The subject the grant was applied with and the user's current one (they differ only
    if the identity provider renamed the user since)."""
    state = assignment.driver_state or {}
    recorded = {state.get("subject", ""), *state.get("subjects", [])}
    return {s for s in (*recorded, assignment.user.oidc_subject) if s}


def subjects_state(assignment: Assignment, subject: str) -> list[str]:
    """Every subject this assignment has put in the trust policy: all are removed with it,
    even when the identity provider renamed the user between two applies."""
    state = assignment.driver_state or {}
    return sorted({s for s in (state.get("subject", ""), *state.get("subjects", []), subject) if s})


def with_subject(policy: dict[str, Any], trust: OidcTrust, subject: str) -> dict[str, Any]:
    """The trust policy admitting the subject (and no longer holding the no-subjects stand-in)."""
    statements = policy.get("Statement", [])
    if isinstance(statements, list):
        kept = [
            s for s in statements if not (isinstance(s, dict) and s.get("Sid") == NO_SUBJECTS_SID)
        ]
        if len(kept) != len(statements):
            policy = {**policy, "Statement": kept}
    return trust_policy_editor.add_subject(
        policy,
        provider_arn=trust.provider_arn,
        issuer_host=trust.issuer_host,
        client_id=trust.client_id,
        subject=subject,
    )


def without_subjects(
    policy: dict[str, Any], trust: OidcTrust, subjects: set[str]
) -> dict[str, Any]:
    """The trust policy no longer admitting the subjects, nor any subject of a former issuer."""
    new = trust_policy_editor.without_other_issuers(policy, trust.issuer_host)
    for subject in sorted(subjects):
        new = trust_policy_editor.remove_subject(
            new, subject=subject, issuer_host=trust.issuer_host
        )
    return _without_managed_statement(new)


def _without_managed_statement(policy: dict[str, Any]) -> dict[str, Any]:
    # The last subject gone from a policy whose only statement was ours leaves no statement,
    # and IAM refuses a trust policy without one. We write one statement denying every
    # principal every way of assuming the role, under its own Sid: the role trusts nobody,
    # which is what an empty list would have meant. An Allow that "matches nothing" (a
    # made-up subject, the account root) would still be an Allow that someone could one day
    # match or that widens who may assume the role; a Deny grants nothing. The next grant
    # drops it (with_subject) before adding its subject; other statements are never edited.
    if policy.get("Statement") == []:
        policy["Statement"] = [
            {
                "Sid": NO_SUBJECTS_SID,
                "Effect": "Deny",
                "Principal": {"AWS": "*"},
                "Action": [
                    "sts:AssumeRole",
                    "sts:AssumeRoleWithWebIdentity",
                    "sts:AssumeRoleWithSAML",
                ],
            }
        ]
    return policy


@contextmanager
def role_lock(account_id: str, role_name: str) -> Iterator[None]:
    """Serialises read-edit-write of one role's policies within this process, so two
    assignments of the same role applied at once do not overwrite each other's subject."""
    with _role_locks_guard:
        lock = _role_locks.setdefault((account_id, role_name.lower()), threading.Lock())
    with lock:
        yield


def get_role(iam: Any, role_name: str) -> dict[str, Any] | None:
    """The role as GetRole describes it, or None when it does not exist."""
    with base.aws_errors(f"Reading the IAM role {role_name}"):
        try:
            return iam.get_role(RoleName=role_name)["Role"]
        except ClientError as error:
            if base.error_code(error) == "NoSuchEntity":
                return None
            raise


def write_trust_policy(
    iam: Any, role_name: str, current: dict[str, Any], new: dict[str, Any]
) -> bool:
    """Write the new trust policy when it differs; True when it was written.

    The size is checked against IAM's highest quota (4,096) before writing; between the
    default (2,048) and that, only AWS knows the account's quota, so its refusal is turned
    into the same message."""
    if trust_policy_editor.parse_policy(current) == new:
        return False
    text = trust_policy_editor.serialise(new)
    try:
        trust_policy_editor.check_size(text, trust_policy_editor.MAXIMUM_SIZE_LIMIT)
    except trust_policy_editor.TrustPolicyTooLarge as error:
        raise DriverError(f"Role {role_name}: {error}", retryable=False) from error
    with base.aws_errors(f"Updating the trust policy of the IAM role {role_name}"):
        try:
            iam.update_assume_role_policy(RoleName=role_name, PolicyDocument=text)
        except ClientError as error:
            too_large = too_large_error(role_name, len(text), error)
            if too_large is None:
                raise
            raise too_large from error
    return True


def too_large_error(role_name: str, size: int, error: ClientError) -> DriverError | None:
    """AWS's "Cannot exceed quota for ACLSizePerRole: 2048" as the trust-policy message."""
    message = error.response.get("Error", {}).get("Message", "")
    found = _QUOTA.search(message)
    if base.error_code(error) != "LimitExceeded" or not found:
        return None
    too_large = trust_policy_editor.TrustPolicyTooLarge(size, int(found.group(1)))
    return DriverError(f"Role {role_name}: {too_large}", retryable=False)


# Live sessions -----------------------------------------------------------------------------
def revoked_sessions_policy(
    existing: dict[str, Any] | None, names: list[str], now: datetime, *, all_but: bool = False
) -> dict[str, Any]:
    """The PortcullisRevokedSessions document with a deny for sessions named one of
    ``names`` issued before ``now`` (plus the margin), entries older than the longest
    session dropped. With ``all_but``, the deny is for every session issued before then
    except those named one of ``names`` (a role whose sessions are all Portcullis's)."""
    wanted = {f"*:{name}" for name in names}
    cutoff = now - MAX_SESSION_DURATION
    kept = []
    for statement in _as_list((existing or {}).get("Statement", [])):
        earlier = _revoked_patterns(statement)
        if not all_but and earlier & wanted:
            # Replaced below with the later time, keeping every name it denied (a subject
            # the user had at an earlier revoke).
            wanted |= earlier
            continue
        issued_before = _revoked_before(statement)
        if issued_before is not None and issued_before < cutoff:
            continue
        kept.append(statement)
    patterns = sorted(wanted)
    before = (now + REVOKE_MARGIN).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    operator = "StringNotLike" if all_but else "StringLike"
    identity = ("AllBut" if all_but else "") + "|".join(patterns) + (before if all_but else "")
    condition: dict[str, Any] = {"DateLessThan": {"aws:TokenIssueTime": before}}
    if patterns:  # none with all_but: every session issued before then
        condition[operator] = {"aws:userid": patterns if len(patterns) > 1 else patterns[0]}
    sid = "Revoked" + hashlib.sha256(identity.encode()).hexdigest()[:16]
    # Sids must differ within a policy (the names of one user make one): a deny of every
    # session written twice within one second is the same deny.
    kept = [statement for statement in kept if statement.get("Sid") != sid]
    kept.append(
        {
            "Sid": sid,
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": condition,
        }
    )
    return {"Version": setup_policies.POLICY_VERSION, "Statement": kept}


def end_live_sessions(
    iam: Any,
    role_name: str,
    names: list[str],
    now: datetime | None = None,
    *,
    all_but: bool = False,
) -> None:
    """Deny the role's sessions named one of ``names`` (with ``all_but``, every session but
    those) issued until now, merged into the role's PortcullisRevokedSessions policy."""
    whose = ("all but " if all_but else "") + ", ".join(names)
    what = f"Ending the live sessions of {whose} on the IAM role {role_name}"
    if all_but and not names:
        what = f"Ending every live session on the IAM role {role_name}"
    existing: dict[str, Any] | None = None
    with base.aws_errors(what):
        try:
            document = iam.get_role_policy(RoleName=role_name, PolicyName=REVOKED_SESSIONS_POLICY)
            existing = trust_policy_editor.parse_policy(document["PolicyDocument"])
        except ClientError as error:
            if base.error_code(error) != "NoSuchEntity":
                raise
        document = revoked_sessions_policy(existing, names, now or timezone.now(), all_but=all_but)
        iam.put_role_policy(
            RoleName=role_name,
            PolicyName=REVOKED_SESSIONS_POLICY,
            PolicyDocument=json.dumps(document, separators=(",", ":")),
        )


def _as_list(value: Any) -> list[Any]:
    return [value] if isinstance(value, dict) else list(value or [])


def _revoked_patterns(statement: Any) -> set[str]:
    try:
        value = statement["Condition"]["StringLike"]["aws:userid"]
    except (KeyError, TypeError):
        return set()
    if isinstance(value, str):
        return {value}
    return {v for v in value if isinstance(v, str)} if isinstance(value, list) else set()


def _revoked_before(statement: Any) -> datetime | None:
    try:
        value = statement["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


# The driver --------------------------------------------------------------------------------
def role_name_of(resource_arn: str) -> str:
    return resource_arn.rsplit("/", 1)[-1]


class IamRoleDriver:
    """Access level "assume" on a customer's IAM role."""

    # Grants of one role edit one trust policy (read, change, write): the grant machinery
    # runs them one at a time per role (lock_key), across worker processes.

    def lock_key(self, assignment: Assignment) -> str:
        resource = assignment.resource
        return role_lock_key(resource.account_id, role_name_of(resource.arn or resource.remote_id))

    def apply(self, assignment: Assignment) -> Outcome:
        resource = assignment.resource
        app = base.app_of(assignment)
        trust = oidc_trust(resource.account_id)
        # No subject from the issuer AWS trusts now: the grant waits for it, but the
        # statements of a former issuer still go (the re-apply after an issuer change).
        subject = drivers.trusted_subject(assignment.user)
        role_name = role_name_of(resource.arn or resource.remote_id)
        iam = base.client_for(app, resource.account_id, "iam")
        with role_lock(resource.account_id, role_name):
            role = get_role(iam, role_name)
            if role is None and not subject:
                raise SubjectUnknown()
            if role is None:
                raise DriverError(
                    f"The IAM role {role_name} no longer exists in account "
                    f"{resource.account_id}, so access to it cannot be granted.",
                    retryable=False,
                    left_nothing=True,
                )
            if role.get("Path") == setup_policies.MANAGED_PATH:
                raise DriverError(
                    f"{role_name} is a role Portcullis manages for an EC2 instance, EKS cluster "
                    "or database: request access to that resource instead.",
                    retryable=False,
                )
            check_requestable(app, role)
            current = trust_policy_editor.parse_policy(role["AssumeRolePolicyDocument"])
            if not subject:
                new = _edited(role_name, lambda: without_subjects(current, trust, set()))
                write_trust_policy(iam, role_name, current, new)
                raise SubjectUnknown()
            new = _edited(role_name, lambda: with_subject(current, trust, subject))
            changed = write_trust_policy(iam, role_name, current, new)
        return Outcome(
            state={
                "role_arn": role["Arn"],
                "subject": subject,
                "subjects": subjects_state(assignment, subject),
                "names_bound_at": _names_bound_at(assignment),
            },
            note=(
                f"Added {assignment.user} to the trust policy of {role['Arn']}."
                if changed
                else f"{assignment.user} was already in the trust policy of {role['Arn']}."
            ),
        )

    def remove(self, assignment: Assignment) -> Outcome:
        resource = assignment.resource
        app = base.app_of(assignment)
        trust = oidc_trust(resource.account_id)
        role_name = role_name_of(resource.arn or resource.remote_id)
        iam = base.client_for(app, resource.account_id, "iam")
        with role_lock(resource.account_id, role_name):
            role = get_role(iam, role_name)
            if role is None:
                return Outcome(
                    note=f"The IAM role {role_name} no longer exists: nothing to remove."
                )
            check_requestable(app, role)
            current = trust_policy_editor.parse_policy(role["AssumeRolePolicyDocument"])
            new = _edited(
                role_name, lambda: without_subjects(current, trust, subjects_to_remove(assignment))
            )
            changed = write_trust_policy(iam, role_name, current, new)
            # After the trust policy: a session minted meanwhile is issued before "now".
            end_live_sessions(iam, role_name, revoked_session_names(assignment))
        if trust_policy_editor.binds_session_names(
            current, trust.issuer_host
        ) and _bound_long_enough(assignment):
            sessions = "; their live sessions are denied."
        else:
            # The role belongs to the customer, whose own principals may hold sessions of
            # it: Portcullis cannot deny every session as it does on its own roles.
            sessions = (
                "; their live sessions named as Portcullis names them are denied, but the "
                "trust statement did not bind session names (written by an older version, "
                "or edited since) or did so only lately, so a session they named otherwise "
                "lasts until it expires "
                f"(at most {MAX_SESSION_DURATION.total_seconds() / 3600:g} hours)."
            )
        return Outcome(
            note=(
                f"Removed {assignment.user} from the trust policy of {role['Arn']}"
                if changed
                else f"{assignment.user} was no longer in the trust policy of {role['Arn']}"
            )
            + sessions
        )


def check_requestable(app: AwsApp, role: dict[str, Any]) -> None:
    """Refuse to edit a role an admin has not tagged requestable (or one Portcullis never
    edits), as AWS would with the ingester's policy: the refusal names the tag to set."""
    tags = {t["Key"]: t["Value"] for t in role.get("Tags") or []}
    reason = setup_policies.role_not_requestable_reason(
        role["RoleName"], role.get("Path", "/"), tags, app.ingester_role_name
    )
    if reason:
        raise DriverError(
            f"Portcullis will not edit the IAM role {role['Arn']}. {reason}", retryable=False
        )


def _names_bound_at(assignment: Assignment) -> str:
    """Since when this holder's sessions have been bound to their name: kept from the
    assignment's state, or now. Empty ("") for an assignment applied by a version before
    the binding, which could have minted sessions named as it liked until then."""
    state = assignment.driver_state or {}
    if state.get("role_arn") and "names_bound_at" not in state:
        return timezone.now().isoformat()  # applied before: bound from this apply on
    return state.get("names_bound_at", "")


def _bound_long_enough(assignment: Assignment) -> bool:
    """Whether every session the holder minted before their name was bound has expired."""
    state = assignment.driver_state or {}
    if "names_bound_at" not in state:
        return not state.get("role_arn")  # applied by an older version only: not bound
    if not state["names_bound_at"]:
        return True  # applied first by a version that binds the name
    since = datetime.fromisoformat(state["names_bound_at"])
    return timezone.now() - since >= MAX_SESSION_DURATION


def _edited(role_name: str, edit: Any) -> dict[str, Any]:
    try:
        return edit()
    except trust_policy_editor.TrustPolicyError as error:
        raise DriverError(f"Role {role_name}: {error}", retryable=False) from error


DRIVERS: dict[str, IamRoleDriver] = {ResourceType.IAM_ROLE.value: IamRoleDriver()}

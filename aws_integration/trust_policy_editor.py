"""Edit the Portcullis-owned statement of an IAM role's trust policy.

Access to an IAM role is granted by listing the user's OIDC subject in one statement
(Sid ``PortcullisManaged``) of the role's trust policy. The role belongs to the customer:
every other statement is kept exactly as it was, whatever its shape, so these functions
only ever replace, insert or drop Portcullis's own statements. They are pure (no AWS calls)
and return new documents; the caller reads the policy, edits it here, checks the size and
writes it back.

A holder may only name their session after their subject: the statement requires
``sts:RoleSessionName`` to equal the policy variable ``${<issuer>:sub}``, the subject of the
very token presented, so every session a holder can mint carries a name Portcullis knows
(session_name_for) and a revoke can deny. A subject that cannot be a session name (a
character outside ``[A-Za-z0-9_+=,.@-]``, longer than 64, or starting with the
``portcullis-`` of derived names) gets a statement of its own
instead (Sid ``PortcullisManagedSubject<digest>``), binding it to a name derived from it.
Statements written by older versions (no session-name condition) are read as before and
brought to this shape by the next edit.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from typing import Any
from urllib.parse import unquote

from aws_integration.setup_policies import MANAGED_STATEMENT_SID

ASSUME_ACTION = "sts:AssumeRoleWithWebIdentity"
SESSION_NAME_KEY = "sts:RoleSessionName"
# The per-subject statements of subjects that cannot be session names.
SUBJECT_SID_PREFIX = MANAGED_STATEMENT_SID + "Subject"
_SUBJECT_SID = re.compile(rf"{SUBJECT_SID_PREFIX}[0-9a-f]{{16}}")
# AssumeRoleWithWebIdentity's RoleSessionName: 2 to 64 of these (\w is ASCII there).
_SESSION_NAME = re.compile(r"[A-Za-z0-9_+=,.@-]{2,64}")
DERIVED_PREFIX = "portcullis-"
# IAM's escapes for characters a condition value would otherwise read as special.
_POLICY_ESCAPE = re.compile(r"\$\{([$*?])\}")
DEFAULT_SIZE_LIMIT = 2048
MAXIMUM_SIZE_LIMIT = 4096


class TrustPolicyError(ValueError):
    """A trust policy that cannot be read or edited safely."""


class TrustPolicyTooLarge(TrustPolicyError):
    """The edited trust policy is longer than the account's trust policy quota."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"The trust policy would be {size:,} characters, over the limit of {limit:,} "
            f"characters. Remove statements or subjects that are no longer needed, or raise "
            f"the account's 'Role trust policy length' quota in Service Quotas (up to "
            f"{MAXIMUM_SIZE_LIMIT:,} characters)."
        )


def parse_policy(document: str | dict[str, Any]) -> dict[str, Any]:
    """Return a trust policy as a new dict, from a dict, JSON text or URL-encoded JSON text."""
    if isinstance(document, dict):
        policy: Any = copy.deepcopy(document)
    elif isinstance(document, str):
        text = document.strip()
        # IAM's GetRole returns the document URL-encoded; JSON text always starts with "{".
        if not text.startswith("{"):
            text = unquote(text).strip()
        try:
            policy = json.loads(text)
        except json.JSONDecodeError as error:
            raise TrustPolicyError(f"The trust policy is not valid JSON: {error}.") from error
    else:
        raise TrustPolicyError(
            f"A trust policy must be a dict or JSON text, not {type(document).__name__}."
        )
    if not isinstance(policy, dict):
        raise TrustPolicyError(
            f"A trust policy must be a JSON object, not {type(policy).__name__}."
        )
    statements = policy.get("Statement", [])
    if not isinstance(statements, dict | list):
        raise TrustPolicyError("The trust policy's Statement must be an object or a list.")
    return policy


def add_subject(
    policy: dict[str, Any], *, provider_arn: str, issuer_host: str, client_id: str, subject: str
) -> dict[str, Any]:
    """Return a copy of the policy whose Portcullis statements also admit this subject.

    They are rebuilt in their canonical form, so a changed provider or client ID, or a
    statement of an older shape, is brought up to date by the next grant.
    """
    new = parse_policy(policy)
    subjects = subjects_in(new, issuer_host) | {subject}
    return _rewritten(new, provider_arn, issuer_host, client_id, subjects)


def remove_subject(policy: dict[str, Any], *, subject: str, issuer_host: str) -> dict[str, Any]:
    """Return a copy of the policy whose Portcullis statements no longer admit this subject.

    The statements are dropped with their last subject; a policy that never held the subject
    comes back equal. Those that stay are rebuilt in their canonical form, with the provider
    and client ID they name, unless that would make the policy longer than both what it
    was and the default quota: then they stay as they were, without the subject.
    """
    new = parse_policy(policy)
    subjects = subjects_in(new, issuer_host)
    if subject not in subjects:
        return new
    statements, _, index = _statements(new)
    ours = [s for s in statements if is_portcullis_statement(s)]
    model = statements[index] if index is not None else ours[0]
    provider_arn = (model.get("Principal") or {}).get("Federated", "")
    equals = (model.get("Condition") or {}).get("StringEquals") or {}
    client_id = equals.get(f"{issuer_host}:aud", "")
    rewritten = _rewritten(
        parse_policy(new), provider_arn, issuer_host, client_id, subjects - {subject}
    )
    if len(serialise(rewritten)) <= max(len(serialise(new)), DEFAULT_SIZE_LIMIT):
        return rewritten
    # The canonical shape is longer (an older statement's subjects that cannot be session
    # names each take a statement of their own) and might not fit the account's quota: a
    # revoke must never fail for that, so only the subject goes, the rest stays as it was.
    return _without(new, subject, issuer_host)


def _without(policy: dict[str, Any], subject: str, issuer_host: str) -> dict[str, Any]:
    """The policy with the subject taken out of Portcullis's statements as they are, and
    those left without a subject dropped."""
    statements, was_object, _ = _statements(policy)
    kept = []
    for statement in statements:
        if is_portcullis_statement(statement):
            left = subjects_of(statement, issuer_host) - {subject}
            if not left:
                continue
            if left != subjects_of(statement, issuer_host):
                equals = statement["Condition"]["StringEquals"]
                equals[f"{issuer_host}:sub"] = [_escaped(s) for s in sorted(left)]
        kept.append(statement)
    return _with_statements(policy, kept, was_object)


def without_other_issuers(policy: dict[str, Any], issuer_host: str) -> dict[str, Any]:
    """Return a copy of the policy without Portcullis's statements of another issuer.

    After an issuer change the statements naming the former provider or issuer host still
    admit the subjects it gave, which no user holds any more: they are dropped by every
    edit, whether or not a subject of the new issuer is known. The owner's statements, and
    ours of this issuer, are kept as they are."""
    new = parse_policy(policy)
    statements, was_object, _ = _statements(new)
    kept = [
        s for s in statements if not (is_portcullis_statement(s) and _hosts_of(s) - {issuer_host})
    ]
    if len(kept) == len(statements):
        return new
    return _with_statements(new, kept, was_object)


def _hosts_of(statement: dict[str, Any]) -> set[str]:
    """The issuer hosts a statement names: its provider's, and its condition keys'."""
    hosts: set[str] = set()
    principal = statement.get("Principal")
    federated = principal.get("Federated") if isinstance(principal, dict) else None
    for arn in federated if isinstance(federated, list) else [federated]:
        if isinstance(arn, str) and ":oidc-provider/" in arn:
            hosts.add(arn.split(":oidc-provider/", 1)[1].rstrip("/"))
    condition = statement.get("Condition")
    for operator in condition.values() if isinstance(condition, dict) else []:
        for key in operator if isinstance(operator, dict) else []:
            host, _, name = key.rpartition(":")
            if host and name in {"sub", "aud", "amr"} and not host.startswith(("aws", "sts")):
                hosts.add(host)
    return hosts


def statements_in(document: str | dict[str, Any]) -> list[Any]:
    """Return a trust policy's statements as a list (a single statement object becomes a
    list of one), from whatever parse_policy reads; TrustPolicyError when it cannot."""
    return _listed(parse_policy(document).get("Statement", []))


def _listed(raw: Any) -> list[Any]:
    return [raw] if isinstance(raw, dict) else list(raw)


def subjects_in(policy: dict[str, Any], issuer_host: str) -> set[str]:
    """Return the subjects Portcullis's statements admit for this issuer."""
    statements, _, _ = _statements(parse_policy(policy))
    found: set[str] = set()
    for statement in statements:
        if is_portcullis_statement(statement):
            found |= subjects_of(statement, issuer_host)
    return found


def portcullis_statements(
    provider_arn: str, issuer_host: str, client_id: str, subjects: set[str]
) -> list[dict[str, Any]]:
    """The statements admitting these subjects, each holder bound to its session name: one
    shared statement for the subjects that are session names, one each for the others."""
    named = {s for s in subjects if usable_as_session_name(s)}
    built = []
    if named:
        built.append(
            _statement(
                MANAGED_STATEMENT_SID,
                provider_arn,
                issuer_host,
                client_id,
                sorted(named),
                "${" + issuer_host + ":sub}",
            )
        )
    for subject in sorted(subjects - named):
        built.append(
            _statement(
                SUBJECT_SID_PREFIX + _digest(subject),
                provider_arn,
                issuer_host,
                client_id,
                subject,
                session_name_for(subject),
            )
        )
    return built


def _rewritten(
    policy: dict[str, Any], provider_arn: str, issuer_host: str, client_id: str, subjects: set[str]
) -> dict[str, Any]:
    """The policy with Portcullis's statements replaced by the canonical ones for these
    subjects, where the first of them was; the owner's statements untouched and in order."""
    statements, was_object, _ = _statements(policy)
    positions = [i for i, s in enumerate(statements) if is_portcullis_statement(s)]
    kept = [s for s in statements if not is_portcullis_statement(s)]
    ours = portcullis_statements(provider_arn, issuer_host, client_id, subjects)
    if positions:
        at = positions[0]
    elif was_object:
        # Ours go first when a single statement becomes a list, so that removing them can
        # tell this list apart from one the owner wrote with one element and give the
        # original object back.
        at = 0
    else:
        at = len(kept)
    statements = kept[:at] + ours + kept[at:]
    if positions and not ours and positions[0] == 0 and len(kept) == 1 and not was_object:
        # Undo the promotion of a single statement object to a list.
        policy["Statement"] = kept[0]
        return policy
    return _with_statements(policy, statements, was_object)


def serialise(policy: dict[str, Any]) -> str:
    """Return the policy as compact JSON, the form whose length IAM's quota counts."""
    # Non-ASCII characters stay as they are: escaping them would count six characters each.
    return json.dumps(policy, separators=(",", ":"), ensure_ascii=False)


def check_size(text: str, limit: int = DEFAULT_SIZE_LIMIT) -> None:
    """Raise TrustPolicyTooLarge when the serialised policy is longer than the limit."""
    if len(text) > limit:
        raise TrustPolicyTooLarge(len(text), limit)


def usable_as_session_name(subject: str) -> bool:
    """Whether the subject itself is the holder's RoleSessionName: AssumeRoleWithWebIdentity
    accepts it, and it is not in the namespace of the names Portcullis derives
    ("portcullis-..."), which a subject spelling another holder's derived name (or the
    portcullis-<pk> of older versions) would otherwise share with them."""
    return bool(_SESSION_NAME.fullmatch(subject)) and not subject.startswith(DERIVED_PREFIX)


def session_name_for(subject: str) -> str:
    """The only RoleSessionName the trust policy lets this subject's holder use: the subject
    itself, or for a subject that cannot be one, a name derived from it."""
    if usable_as_session_name(subject):
        return subject
    return DERIVED_PREFIX + _digest(subject)


def binds_session_names(policy: dict[str, Any], issuer_host: str) -> bool:
    """Whether each subject Portcullis's statements admit may name a session only
    session_name_for(subject): False for a statement of an older shape (any name) or one
    bound otherwise, so that the names a revoke denies would not be all a holder could use."""
    statements, _, _ = _statements(parse_policy(policy))
    variable = "${" + issuer_host + ":sub}"
    for statement in statements:
        if not is_portcullis_statement(statement):
            continue
        condition = statement.get("Condition")
        equals = condition.get("StringEquals") if isinstance(condition, dict) else None
        bound = equals.get(SESSION_NAME_KEY) if isinstance(equals, dict) else None
        if not isinstance(bound, str):
            return False
        for subject in subjects_of(statement, issuer_host):
            if bound.replace(variable, subject) != session_name_for(subject):
                return False
    return True


def is_portcullis_statement(statement: Any) -> bool:
    """The managed statement, or one of the per-subject statements."""
    if not isinstance(statement, dict):
        return False
    sid = statement.get("Sid")
    return sid == MANAGED_STATEMENT_SID or bool(
        isinstance(sid, str) and _SUBJECT_SID.fullmatch(sid)
    )


def _digest(subject: str) -> str:
    return hashlib.sha256(subject.encode()).hexdigest()[:16]


def _statements(policy: dict[str, Any]) -> tuple[list[Any], bool, int | None]:
    """Return the statements as a list, whether they were one object, and the managed index."""
    raw = policy.get("Statement", [])
    was_object = isinstance(raw, dict)
    statements = _listed(raw)
    indexes = [
        position
        for position, statement in enumerate(statements)
        if isinstance(statement, dict) and statement.get("Sid") == MANAGED_STATEMENT_SID
    ]
    if len(indexes) > 1:
        # Editing one of them would leave the other granting access nobody tracks.
        raise TrustPolicyError(
            f"The trust policy has {len(indexes)} statements with Sid "
            f"{MANAGED_STATEMENT_SID!r}; keep one and merge their subjects before granting."
        )
    return statements, was_object, indexes[0] if indexes else None


def _with_statements(
    policy: dict[str, Any], statements: list[Any], was_object: bool
) -> dict[str, Any]:
    """Put the statements back, keeping a single object as an object."""
    if was_object and len(statements) == 1:
        policy["Statement"] = statements[0]
    else:
        policy["Statement"] = statements
    return policy


def subjects_of(statement: dict[str, Any], issuer_host: str) -> set[str]:
    """Return the subjects one statement admits for this issuer, whatever its Sid."""
    condition = statement.get("Condition")
    equals = condition.get("StringEquals") if isinstance(condition, dict) else None
    value = equals.get(f"{issuer_host}:sub") if isinstance(equals, dict) else None
    if isinstance(value, str):
        return {_unescaped(value)}
    if isinstance(value, list):
        return {_unescaped(item) for item in value if isinstance(item, str)}
    return set()


def _escaped(subject: str) -> str:
    """The subject as a condition value that IAM reads as these very characters: "${...}"
    in a value is a policy variable (a subject "${<issuer>:sub}" would admit every token),
    so each "$" is written as IAM's "${$}"."""
    return subject.replace("$", "${$}")


def _unescaped(value: str) -> str:
    return _POLICY_ESCAPE.sub(lambda found: found.group(1), value)


def _statement(
    sid: str,
    provider_arn: str,
    issuer_host: str,
    client_id: str,
    subjects: str | list[str],
    session_name: str,
) -> dict[str, Any]:
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Principal": {"Federated": provider_arn},
        "Action": ASSUME_ACTION,
        "Condition": {
            "StringEquals": {
                f"{issuer_host}:aud": client_id,
                f"{issuer_host}:sub": (
                    _escaped(subjects)
                    if isinstance(subjects, str)
                    else [_escaped(s) for s in subjects]
                ),
                SESSION_NAME_KEY: session_name,
            }
        },
    }

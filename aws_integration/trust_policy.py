"""Edit the Portcullis-owned statement of an IAM role's trust policy.

Access to an IAM role is granted by listing the user's OIDC subject in one statement
(Sid ``PortcullisManaged``) of the role's trust policy. The role belongs to the customer:
every other statement is kept exactly as it was, whatever its shape, so these functions
only ever replace, insert or drop that one statement. They are pure (no AWS calls) and
return new documents; the caller reads the policy, edits it here, checks the size and
writes it back.
"""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import unquote

from aws_integration.policies import MANAGED_STATEMENT_SID

ASSUME_ACTION = "sts:AssumeRoleWithWebIdentity"
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
    """Return a copy of the policy whose managed statement also admits this subject.

    The managed statement is rebuilt in its canonical form, so a changed provider or client
    ID is brought up to date by the next grant.
    """
    new = parse_policy(policy)
    statements, was_object, index = _statements(new)
    subjects = {subject}
    if index is not None:
        subjects |= _subjects_of(statements[index], issuer_host)
    managed = _managed_statement(provider_arn, issuer_host, client_id, subjects)
    if index is not None:
        statements[index] = managed
    elif was_object:
        # The managed statement goes first when a single statement becomes a list, so that
        # remove_subject can tell this list apart from one the owner wrote with one element
        # and give the original object back.
        statements.insert(0, managed)
    else:
        statements.append(managed)
    return _with_statements(new, statements, was_object)


def remove_subject(policy: dict[str, Any], *, subject: str, issuer_host: str) -> dict[str, Any]:
    """Return a copy of the policy whose managed statement no longer admits this subject.

    The statement is dropped with its last subject; a policy that never held the subject
    comes back equal.
    """
    new = parse_policy(policy)
    statements, was_object, index = _statements(new)
    if index is None:
        return new
    managed = statements[index]
    subjects = _subjects_of(managed, issuer_host)
    if subject not in subjects:
        return new
    subjects.discard(subject)
    if subjects:
        managed["Condition"]["StringEquals"][f"{issuer_host}:sub"] = sorted(subjects)
        return _with_statements(new, statements, was_object)
    del statements[index]
    if index == 0 and len(statements) == 1 and not was_object:
        # Undo add_subject's promotion of a single statement object to a list.
        new["Statement"] = statements[0]
        return new
    return _with_statements(new, statements, was_object)


def subjects_in(policy: dict[str, Any], issuer_host: str) -> set[str]:
    """Return the subjects the managed statement admits for this issuer."""
    statements, _, index = _statements(parse_policy(policy))
    if index is None:
        return set()
    return _subjects_of(statements[index], issuer_host)


def serialise(policy: dict[str, Any]) -> str:
    """Return the policy as compact JSON, the form whose length IAM's quota counts."""
    # Non-ASCII characters stay as they are: escaping them would count six characters each.
    return json.dumps(policy, separators=(",", ":"), ensure_ascii=False)


def check_size(text: str, limit: int = DEFAULT_SIZE_LIMIT) -> None:
    """Raise TrustPolicyTooLarge when the serialised policy is longer than the limit."""
    if len(text) > limit:
        raise TrustPolicyTooLarge(len(text), limit)


def _statements(policy: dict[str, Any]) -> tuple[list[Any], bool, int | None]:
    """Return the statements as a list, whether they were one object, and the managed index."""
    raw = policy.get("Statement", [])
    was_object = isinstance(raw, dict)
    statements = [raw] if was_object else list(raw)
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


def _subjects_of(statement: dict[str, Any], issuer_host: str) -> set[str]:
    condition = statement.get("Condition")
    equals = condition.get("StringEquals") if isinstance(condition, dict) else None
    value = equals.get(f"{issuer_host}:sub") if isinstance(equals, dict) else None
    if isinstance(value, str):
        return {value}
    if isinstance(value, list):
        return {item for item in value if isinstance(item, str)}
    return set()


def _managed_statement(
    provider_arn: str, issuer_host: str, client_id: str, subjects: set[str]
) -> dict[str, Any]:
    return {
        "Sid": MANAGED_STATEMENT_SID,
        "Effect": "Allow",
        "Principal": {"Federated": provider_arn},
        "Action": ASSUME_ACTION,
        "Condition": {
            "StringEquals": {
                f"{issuer_host}:aud": client_id,
                f"{issuer_host}:sub": sorted(subjects),
            }
        },
    }

"""A small, strict evaluator of IAM identity policies, for the tests of the documents
Portcullis renders (moto evaluates no policy, and IAM's simulator is not in the stand-in).

It follows AWS's evaluation logic for one principal's identity policies: an explicit Deny
wins, then any Allow, else the request is implicitly denied. A request names one action and
one resource with its context (condition keys); an action on several resources (an SSO
assignment is authorised on its instance, account and permission set) is allowed only when
each of them is. Anything it does not model (an unknown condition operator, IfExists,
ForAnyValue, policy variables, Principal) raises instead of being ignored, so a policy that
starts using one fails the tests until the evaluator learns it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

ALLOW = "Allow"
DENY = "Deny"
IMPLICIT_DENY = "ImplicitDeny"


class Unsupported(Exception):
    """The policy uses something this evaluator does not model."""


@dataclass(frozen=True)
class Request:
    action: str
    resource: str
    context: Mapping[str, str | list[str]] = field(default_factory=dict)


def _glob(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    if "${" in pattern:
        raise Unsupported(f"policy variables are not modelled: {pattern}")
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    flags = (re.IGNORECASE if ignore_case else 0) | re.DOTALL
    return re.compile(f"^{body}$", flags)


def _matches(patterns: Any, value: str, *, ignore_case: bool) -> bool:
    patterns = [patterns] if isinstance(patterns, str) else patterns
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        raise Unsupported(f"not a string or a list of strings: {patterns!r}")
    return any(_glob(p, ignore_case=ignore_case).match(value) for p in patterns)


def _resource_matches(patterns: Any, arn: str) -> bool:
    patterns = [patterns] if isinstance(patterns, str) else patterns
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        raise Unsupported(f"Resource must be strings (resolve CloudFormation first): {patterns!r}")
    return any(p == "*" or _arn_like(p, arn) for p in patterns)


def _values(value: Any) -> list[str]:
    values = [value] if isinstance(value, (str, bool)) else value
    if not isinstance(values, list) or not all(isinstance(v, (str, bool)) for v in values):
        raise Unsupported(f"condition values must be strings: {value!r}")
    if any(isinstance(v, str) and "${" in v for v in values):
        raise Unsupported(f"policy variables are not modelled: {value!r}")
    return [str(v).lower() if isinstance(v, bool) else v for v in values]


def _equals(expected: str, actual: str) -> bool:
    return expected == actual


def _like(expected: str, actual: str) -> bool:
    return bool(_glob(expected, ignore_case=False).match(actual))


def _arn_like(expected: str, actual: str) -> bool:
    # ArnLike compares the six colon-separated parts each on its own; a wildcard does not
    # reach across parts.
    wanted, got = expected.split(":", 5), actual.split(":", 5)
    if len(wanted) != 6 or len(got) != 6:
        return False
    return all(_glob(w, ignore_case=False).match(g) for w, g in zip(wanted, got, strict=True))


# Operator -> (compare one policy value with one request value, negated?)
OPERATORS = {
    "StringEquals": (_equals, False),
    "StringNotEquals": (_equals, True),
    "StringLike": (_like, False),
    "StringNotLike": (_like, True),
    "ArnEquals": (_arn_like, False),
    "ArnLike": (_arn_like, False),
    "ArnNotEquals": (_arn_like, True),
    "ArnNotLike": (_arn_like, True),
}


def _context_value(context: Mapping[str, Any], key: str) -> list[str] | None:
    for name, value in context.items():
        if name.lower() == key.lower():  # condition key names are case-insensitive
            return [value] if isinstance(value, str) else list(value)
    return None


def _condition_holds(condition: Mapping[str, Any], context: Mapping[str, Any]) -> bool:
    for operator, keys in condition.items():
        if not isinstance(keys, dict):
            raise Unsupported(f"{operator} must map condition keys to values")
        for key, expected in keys.items():
            if not _key_holds(operator, key, _values(expected), _context_value(context, key)):
                return False  # every operator and every key must hold
    return True


def _key_holds(operator: str, key: str, expected: list[str], actual: list[str] | None) -> bool:
    if operator == "Null":
        if expected not in (["true"], ["false"]):
            raise Unsupported(f"Null takes true or false, not {expected!r}")
        return (actual is None) == (expected == ["true"])
    if operator not in OPERATORS:
        raise Unsupported(f"condition operator {operator!r} (key {key})")
    compare, negated = OPERATORS[operator]
    if actual is None:
        # A missing key matches no value: positive operators fail, negated ones hold.
        return negated
    if len(actual) != 1:
        raise Unsupported(f"multivalued key {key} needs ForAnyValue/ForAllValues")
    matched = any(compare(e, actual[0]) for e in expected)
    return not matched if negated else matched


def _applies(statement: Mapping[str, Any], request: Request) -> bool:
    known = {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition"}
    if set(statement) - known:
        raise Unsupported(f"statement elements {sorted(set(statement) - known)}")
    if ("Action" in statement) == ("NotAction" in statement):
        raise Unsupported("a statement needs exactly one of Action and NotAction")
    if ("Resource" in statement) == ("NotResource" in statement):
        raise Unsupported("a statement needs exactly one of Resource and NotResource")
    if "Action" in statement:
        action_ok = _matches(statement["Action"], request.action, ignore_case=True)
    else:
        action_ok = not _matches(statement["NotAction"], request.action, ignore_case=True)
    if "Resource" in statement:
        resource_ok = _resource_matches(statement["Resource"], request.resource)
    else:
        resource_ok = not _resource_matches(statement["NotResource"], request.resource)
    if not (action_ok and resource_ok):
        return False
    return _condition_holds(statement.get("Condition", {}), request.context)


def decision(policies: Iterable[Mapping[str, Any]], request: Request) -> str:
    """ALLOW, DENY (an explicit Deny matched) or IMPLICIT_DENY, over all the policies."""
    allowed = False
    for policy in policies:
        statements = policy["Statement"]
        for statement in [statements] if isinstance(statements, dict) else statements:
            effect = statement.get("Effect")
            if effect not in (ALLOW, DENY):
                raise Unsupported(f"Effect {effect!r}")
            if _applies(statement, request):
                if effect == DENY:
                    return DENY
                allowed = True
    return ALLOW if allowed else IMPLICIT_DENY


def allowed(policies: Iterable[Mapping[str, Any]], *requests: Request) -> bool:
    """True when every request (one per resource the action is authorised on) is allowed."""
    policies = list(policies)
    return all(decision(policies, r) == ALLOW for r in requests)

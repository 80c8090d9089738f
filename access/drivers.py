"""The small interface through which access reaches a provider.

``access`` never imports boto3: a provider app (``aws_integration``) registers one driver
per resource type at start-up (in its AppConfig.ready). A driver makes one Assignment true
or false in the provider: the (user, resource, access level) triple that overlapping grants
share. Drivers are idempotent: applying what exists or removing what is gone is success.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from access.models import Assignment


# An error people read is one line of at most this many characters.
MAX_ERROR_LENGTH = 1000
# Of what a provider answered, the start is read: the patterns below take time growing with
# the square of a page's length on some pages, and an AWS error's code and message come
# first. (botocore puts a whole response body it cannot parse in its error.)
READ_AT_MOST = 16_384
# A page, not a message: what a proxy or a stand-in answers for a call it does not know.
_DOCUMENT = re.compile(r"<(?:!doctype|html|head|body|\?xml)\b", re.IGNORECASE)
_UNREAD = re.compile(r"<(script|style|title|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_MARKUP = re.compile(r"<!--.*?-->|<[!?/]?[a-zA-Z][^<>]*>", re.DOTALL)
_SPACE = re.compile(r"\s+")


def readable(text: str) -> str:
    """An error as people are shown it (a grant's last error, the audit log): one line,
    without the markup of a web page the provider's endpoint may have answered with, at
    most MAX_ERROR_LENGTH characters. The words stay (an AWS error's code and message)."""
    text = text[:READ_AT_MOST]
    if _DOCUMENT.search(text):
        text = html.unescape(_MARKUP.sub(" ", _UNREAD.sub(" ", text)))
    text = _SPACE.sub(" ", text).strip()
    if len(text) > MAX_ERROR_LENGTH:
        text = text[: MAX_ERROR_LENGTH - 1].rstrip() + "…"
    return text


class DriverError(Exception):
    """The provider refused or failed. ``message`` is shown to the user and the admin, so it
    says what was wrong and, where it can, what to do; it is made ``readable`` here, the one
    place every provider error and every unexpected one passes on its way to a grant's last
    error. Every error is retried with backoff; ``retryable=False`` only tells the admin
    that retrying alone will not fix it.

    ``left_nothing``: the failed call left nothing in the provider (it failed before
    changing anything, or undid what it had changed), so an assignment that held nothing
    before still holds nothing."""

    def __init__(self, message: str, *, retryable: bool = True, left_nothing: bool = False) -> None:
        message = readable(message)
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.left_nothing = left_nothing


class SubjectUnknown(DriverError):
    """The grant needs the user's OIDC subject, known only after their first sign-in through
    the identity provider. The grant waits; it is applied when the subject becomes known."""

    def __init__(
        self, message: str = "Waiting for the user's first sign-in through the identity provider."
    ) -> None:
        super().__init__(message, retryable=False)


@dataclass
class Outcome:
    """What a driver did. ``state`` replaces Assignment.driver_state (the driver's own notes, e.g.
    the managed role it created or the accounts below an OU it assigned); ``note`` is a
    one-line summary for the audit log."""

    state: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    # Ids of the user's grants found in the provider (observed) that stood for access this
    # call removed along with this assignment's (one provider-side thing they shared): they
    # end with it.
    also_removed: list[int] = field(default_factory=list)


class Driver(Protocol):
    def apply(self, assignment: Assignment) -> Outcome:
        """Make the assignment hold in the provider. ``assignment.user``, ``.resource`` and
        ``.access_level`` are loaded; ``assignment.driver_state`` is what the last call returned."""

    def remove(self, assignment: Assignment) -> Outcome:
        """Make the assignment no longer hold in the provider."""

    # Optional: ``lock_key(assignment) -> str`` names the shared thing in the provider that
    # the call edits (a trust policy, a user's account assignments); calls with one key run
    # one at a time across processes.
    # Optional: ``covered_elsewhere(assignments) -> set[int]``, the ids of those assignments
    # whose provider-side access another current grant of the same user (on another
    # resource) stands for, so that the provider holds it for that grant.


_registry: dict[str, Driver] = {}


def register(resource_type: str, driver: Driver) -> None:
    _registry[resource_type] = driver


def get_driver(resource_type: str) -> Driver:
    try:
        return _registry[resource_type]
    except KeyError:
        raise DriverError(
            f"No driver is registered for resource type {resource_type!r}.", retryable=False
        ) from None


def registered_types() -> frozenset[str]:
    return frozenset(_registry)


# The issuer whose subjects trust policies name (the provider app's OIDC client settings).
_subject_issuer: list[Callable[[], str]] = []


def register_subject_issuer(source: Callable[[], str]) -> None:
    _subject_issuer[:] = [source]


def subject_issuer() -> str:
    """The issuer AWS trusts for users' sessions, "" when none is configured."""
    return (_subject_issuer[0]() if _subject_issuer else "").rstrip("/")


def trusted_subject(user: Any) -> str:
    """The user's OIDC subject when it comes from the issuer AWS trusts now, else "": the
    same subject at another issuer may be someone else."""
    issuer = subject_issuer()
    subject = getattr(user, "oidc_subject", "") or ""
    recorded = (getattr(user, "oidc_issuer", "") or "").rstrip("/")
    if not subject or not issuer or recorded != issuer:
        return ""
    return subject

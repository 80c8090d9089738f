"""What fetchers hand to the writer: plain records of what AWS holds, per scope.

Fetchers run on worker threads and never touch the database; they describe what one
listing found (``ScopeResult``) and which inventory rows that listing is authoritative
for (``Sweep``). The writer, on the main thread, turns them into bulk upserts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ResourceKey = tuple[str, str]  # (Resource.type, Resource.remote_id)


@dataclass(frozen=True)
class Scope:
    """One unit of listing: an account × region × service. Its string form is what a
    SyncIssue's ``scope`` holds ("-" for an empty account or region)."""

    account_id: str
    region: str
    service: str

    def __str__(self) -> str:
        return f"{self.account_id or '-'}/{self.region or '-'}/{self.service}"


@dataclass
class LevelRecord:
    """An access level as found in AWS."""

    remote_id: str
    name: str
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class ResourceRecord:
    """A resource as found in AWS. ``levels`` is its complete list of access levels when the
    same listing knows them (None: another scope owns its levels)."""

    type: str
    remote_id: str
    name: str
    arn: str = ""
    account_id: str = ""
    region: str = ""
    parent: ResourceKey | None = None
    tags: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    levels: list[LevelRecord] | None = None

    @property
    def key(self) -> ResourceKey:
        return (self.type, self.remote_id)


@dataclass
class Sweep:
    """Rows a complete listing is authoritative for: those of ``type`` (narrowed by account,
    region, remote ids or a predicate on the row) that the listing did not return are
    marked deleted."""

    type: str
    account_id: str | None = None
    region: str | None = None
    remote_ids: frozenset[str] | None = None
    predicate: Callable[[Any], bool] | None = None


@dataclass
class IdcUserRecord:
    """An Identity Center user."""

    remote_id: str
    user_name: str
    email: str
    display_name: str


@dataclass
class ScopeError:
    code: str
    message: str


@dataclass
class ScopeResult:
    """What one scope's listing found. With ``error`` set, nothing else is applied: the
    scope's rows stay as they were and a SyncIssue is recorded.

    Identity Center data: ``idc_users`` (with ``idc_users_complete`` when every user was
    listed), ``memberships`` (group id -> complete set of member user ids, for the groups
    listed) and ``user_assignments`` (account id -> complete set of (permission set ARN,
    user id) USER assignments, for the accounts listed). ``org_account_ids`` is every
    account of the organization, when the organization was listed completely;
    ``removed_account_ids`` are accounts AWS says have left it. What was synced in an
    account that left the organization is swept with it.
    """

    scope: Scope
    error: ScopeError | None = None
    resources: list[ResourceRecord] = field(default_factory=list)
    sweeps: list[Sweep] = field(default_factory=list)
    level_sets: dict[ResourceKey, list[LevelRecord]] = field(default_factory=dict)
    # Resource type -> the complete levels of every present resource of that type loaded.
    type_level_sets: dict[str, list[LevelRecord]] = field(default_factory=dict)
    idc_users: list[IdcUserRecord] | None = None
    idc_users_complete: bool = False
    memberships: dict[str, set[str]] | None = None
    user_assignments: dict[str, set[tuple[str, str]]] | None = None
    org_account_ids: set[str] | None = None
    removed_account_ids: set[str] = field(default_factory=set)
    # Bookkeeping: False for refreshes of single objects, which say nothing about the
    # rest of the scope (no SyncScope row, no issue resolved).
    complete_scope: bool = True

    @property
    def ok(self) -> bool:
        return self.error is None

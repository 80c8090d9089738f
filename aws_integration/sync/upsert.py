"""Writing what fetchers found into the inventory: bulk upserts that leave unchanged rows
alone, sweeps of complete scopes, observed grants, and the sync's bookkeeping.

One ``InventoryWriter`` serves one sync run or one refresh, on one thread. It loads the
existing rows it may touch once (a query per table), compares in memory, and writes
only what differs: ``bulk_create`` for new rows, ``bulk_update`` of just the changed
fields for changed rows, one ``UPDATE`` per batch for rows to mark deleted. A sync that
finds nothing new writes no inventory row at all.

``Resource.last_seen_at`` moves only when a row is created, changed or restored. Bumping
it on every sync would rewrite every row each time; when a resource was last confirmed
is instead ``SyncScope.last_success_at`` of its scope (account × region × service).

Every row it creates, changes or marks deleted (resources, access levels, Identity
Center users) gets its own audit event, written in bulk in the transaction that writes
the rows (``audit.services.record_events``), named as the admin names its edits of the
same rows (``inventory.resource``, ...): ``<kind>.created`` with the row's values,
``<kind>.updated`` with the changed fields before and after, ``<kind>.gone`` when AWS no
longer shows it. So each inventory row's history is in the audit log, not only counts.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from allauth.account.models import EmailAddress
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from access.choices import GrantSource, GrantStatus, PropagationStatus, ResourceType
from access.models import AccessLevel, Grant, Resource, User
from access.services import grants as grant_service
from access.services.change_log import action_prefix
from audit.services import PendingEvent, record_event, record_events
from aws_integration import setup_policies, trust_policy_editor
from aws_integration.grants import identity_center as idc_grants
from aws_integration.models import (
    AwsApp,
    AwsSettings,
    IdentityCenterUser,
    SyncIssue,
    SyncRun,
    SyncScope,
)
from aws_integration.sync.fetch_results import (
    IdcUserRecord,
    LevelRecord,
    ResourceKey,
    ResourceRecord,
    Scope,
    ScopeResult,
)

logger = logging.getLogger("aws_integration.sync")

BATCH_SIZE = 500
REVOKE_REASON = "no longer present in AWS"
ACCOUNT = ResourceType.ACCOUNT.value
GROUP = ResourceType.IDC_GROUP.value
IAM_ROLE = ResourceType.IAM_ROLE.value
ASSUME_LEVEL = "assume"
# Resources whose observed grants end with them when they are gone from AWS.
OBSERVED_TYPES = frozenset({GROUP, ACCOUNT, IAM_ROLE})
# What is synced inside an account, swept with it when it leaves the organization.
IN_ACCOUNT_TYPES = frozenset(
    {
        ResourceType.IDC_ROLE.value,
        ResourceType.IAM_ROLE.value,
        ResourceType.EC2_INSTANCE.value,
        ResourceType.EKS_CLUSTER.value,
        ResourceType.RDS_MYSQL.value,
        ResourceType.RDS_POSTGRES.value,
        ResourceType.AURORA_MYSQL.value,
        ResourceType.AURORA_POSTGRES.value,
    }
)
RESOURCE_FIELDS = ("name", "arn", "account_id", "region", "tags", "metadata")
LEVEL_FIELDS = ("name", "description", "metadata")
USER_FIELDS = ("user_name", "email", "display_name", "portal_user_id")
# Counts keys besides resource types.
LEVEL_COUNT = "access_level"
USER_COUNT = "identity_center_user"
GRANT_COUNT = "observed_grant"
RESOURCE_TARGET = Resource._meta.label_lower
LEVEL_TARGET = AccessLevel._meta.label_lower
USER_TARGET = IdentityCenterUser._meta.label_lower
# The admin's action names for the same rows: a row's history reads the same either way.
RESOURCE_EVENT = action_prefix(Resource)
LEVEL_EVENT = action_prefix(AccessLevel)
USER_EVENT = action_prefix(IdentityCenterUser)
# Bookkeeping, not part of a row's history.
UNAUDITED_FIELDS = frozenset({"last_seen_at", "first_seen_at"})


def _json(value: Any) -> Any:
    # The value as a JSON column gives it back, so comparisons with loaded rows are exact.
    return json.loads(json.dumps(value, default=str))


def _chunks(items: list[Any], size: int = BATCH_SIZE) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _audit_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _values(obj: Any, attributes: Iterable[str]) -> dict[str, Any]:
    """The audited values of ``attributes``, named as fields (parent, not parent_id)."""
    return {
        obj._meta.get_field(a).name: _audit_value(getattr(obj, a))
        for a in attributes
        if a not in UNAUDITED_FIELDS
    }


def _field_name(attribute: str) -> str:
    return attribute[:-3] if attribute.endswith("_id") and attribute != "account_id" else attribute


class _Upsert[RowT: (Resource, AccessLevel, IdentityCenterUser)]:
    """One batch's writes of one model's rows: the fetched values compared with the rows
    already loaded, rows to create, changed rows grouped by the attributes they change (a
    ``bulk_update`` per group), and rows AWS no longer shows marked deleted. Counts go to
    ``counts(row)``; audit events stay with the caller, which knows how each kind reads."""

    def __init__(
        self,
        model: type[RowT],
        counts: Callable[[RowT], dict[str, int]],
        *,
        unique_fields: list[str],
        update_fields: list[str],
    ) -> None:
        self.model: type[RowT] = model
        self.counts: Callable[[RowT], dict[str, int]] = counts
        self.unique_fields = unique_fields
        self.update_fields = update_fields
        self.to_create: list[RowT] = []
        self.updates: dict[tuple[str, ...], list[RowT]] = defaultdict(list)

    def create(self, row: RowT) -> None:
        self.to_create.append(row)

    def change(
        self,
        row: RowT,
        desired: dict[str, Any],
        *,
        before_of: tuple[str, ...] | None = None,
        touch: dict[str, Any] | None = None,
    ) -> tuple[list[str], dict[str, Any]]:
        """Sets the attributes of ``row`` that differ from ``desired`` and undeletes it (AWS
        shows it again); a changed row also gets ``touch`` and is queued for update.
        Returns the attributes changed and, when ``before_of`` is given, the audited values
        they had, with those of ``before_of``."""
        changed: list[str] = [f for f, value in desired.items() if getattr(row, f) != value]
        if not changed and row.deleted_at is None:
            return changed, {}
        before: dict[str, Any] = {}
        if before_of is not None:
            before = _values(row, changed + list(before_of))
        for f in changed:
            setattr(row, f, desired[f])
        if row.deleted_at is not None:
            row.deleted_at = None
            changed.append("deleted_at")
        for f, value in (touch or {}).items():
            setattr(row, f, value)
            changed.append(f)
        self.updates[tuple(changed)].append(row)
        self.counts(row)["updated"] += 1
        return changed, before

    def save(self) -> list[RowT]:
        """Creates the new rows (taking over any a refresh created meanwhile) and updates
        the changed ones. Returns the rows created."""
        if self.to_create:
            self.model.objects.bulk_create(
                self.to_create,
                batch_size=BATCH_SIZE,
                update_conflicts=True,
                unique_fields=self.unique_fields,
                update_fields=self.update_fields,
            )
            for row in self.to_create:
                self.counts(row)["created"] += 1
        for fields, rows in self.updates.items():
            self.model.objects.bulk_update(
                rows, [_field_name(f) for f in fields], batch_size=BATCH_SIZE
            )
        return self.to_create

    def mark_gone(self, rows: Iterable[RowT], now: datetime) -> None:
        """Marks these rows deleted: AWS no longer shows them."""
        gone = {row.pk: row for row in rows}
        for chunk in _chunks(sorted(gone)):
            self.model.objects.filter(pk__in=chunk, deleted_at__isnull=True).update(deleted_at=now)
        for row in gone.values():
            row.deleted_at = now
            self.counts(row)["deleted"] += 1


def managed_subjects(policy: Any, *, issuer_host: str, client_id: str) -> set[str]:
    """The OIDC subjects a role's trust policy admits through Portcullis: those of an Allow
    statement with Sid ``PortcullisManaged`` (or a per-subject ``PortcullisManagedSubject…``
    one) whose ``aud`` is Portcullis's client, with or without the session-name binding of
    current versions. Anything else (another Sid, another provider's or client's statement,
    a policy that trust_policy_editor cannot read) admits no one here."""
    try:
        statements = trust_policy_editor.statements_in(policy)
    except trust_policy_editor.TrustPolicyError:
        return set()
    found: set[str] = set()
    # Statement by statement: a policy with two managed statements (which the grant
    # driver refuses to edit) still shows whom each admits.
    for statement in statements:
        if (
            not trust_policy_editor.is_portcullis_statement(statement)
            or statement.get("Effect") != "Allow"
        ):
            continue
        condition = statement.get("Condition")
        equals = condition.get("StringEquals") if isinstance(condition, dict) else None
        audience = equals.get(f"{issuer_host}:aud") if isinstance(equals, dict) else None
        if audience != client_id and not (isinstance(audience, list) and client_id in audience):
            continue
        found |= trust_policy_editor.subjects_of(statement, issuer_host)
    return found


class InventoryWriter:
    """Applies ScopeResults to one app's inventory. See the module docstring."""

    def __init__(self, app: AwsApp, *, run: SyncRun | None = None, now: datetime | None = None):
        self.app = app
        self.run = run
        self.now = now or timezone.now()
        self.rows: dict[ResourceKey, Resource] = {}
        self.by_type: dict[str, dict[str, Resource]] = defaultdict(dict)
        self.by_type_account: dict[tuple[str, str], dict[str, Resource]] = defaultdict(dict)
        self.by_pk: dict[int, Resource] = {}
        self.levels: dict[int, dict[str, AccessLevel]] = defaultdict(dict)
        self.level_by_pk: dict[int, AccessLevel] = {}
        self._emails: dict[int, str] | None = None
        self.fully_loaded = False
        self.idc_users: dict[str, IdentityCenterUser] | None = None
        self._portal_users: dict[str, tuple[int, str]] | None = None
        self._link_candidates: dict[str, int] | None = None
        self.counts: dict[str, dict[str, int]] = defaultdict(
            lambda: {"created": 0, "updated": 0, "deleted": 0}
        )
        self.ok_scopes: dict[str, Scope] = {}
        self.failed: dict[str, ScopeResult] = {}
        self.memberships: dict[str, set[str]] = {}
        self.assignments: dict[str, set[tuple[str, str]]] = {}
        # Role ARN -> the subjects its managed trust statement admits, for the roles of
        # error-free listings of this run only (never rows merely loaded).
        self.trusted_subjects: dict[str, set[str]] = {}
        self._oidc: tuple[str, str] | None = None
        self._oidc_read = False
        self.deleted_pks: set[int] = set()
        self.gone_accounts: set[str] = set()
        # Audit events of the rows written by the current apply(), recorded with them.
        self.events: list[PendingEvent] = []

    # Loading ----------------------------------------------------------------------------------
    def load(self, where: Q | None = None) -> None:
        """Loads existing resources (all of the app's when ``where`` is None) and their
        access levels: one query each."""
        resources = Resource.objects.filter(app_id=self.app.pk)
        if where is not None:
            resources = resources.filter(where)
        fresh = [row for row in resources if (row.type, row.remote_id) not in self.rows]
        for row in fresh:
            self._index(row)
        if where is None:
            self.fully_loaded = True
            levels = AccessLevel.objects.filter(resource__app_id=self.app.pk)
        else:
            if not fresh:
                return
            levels = AccessLevel.objects.filter(resource_id__in=[row.pk for row in fresh])
        for level in levels:
            self._index_level(level)

    def _ensure_loaded(self, keys: Iterable[ResourceKey]) -> None:
        if self.fully_loaded:
            return
        missing: dict[str, set[str]] = defaultdict(set)
        for key in keys:
            if key not in self.rows:
                missing[key[0]].add(key[1])
        if missing:
            where = Q()
            for type_, remote_ids in missing.items():
                where |= Q(type=type_, remote_id__in=sorted(remote_ids))
            self.load(where)

    def _index(self, row: Resource) -> None:
        self.rows[(row.type, row.remote_id)] = row
        self.by_type[row.type][row.remote_id] = row
        self.by_type_account[(row.type, row.account_id)][row.remote_id] = row
        self.by_pk[row.pk] = row

    def _index_level(self, level: AccessLevel) -> None:
        self.levels[level.resource_id][level.remote_id] = level
        self.level_by_pk[level.pk] = level

    def _load_idc_users(self) -> dict[str, IdentityCenterUser]:
        if self.idc_users is None:
            self.idc_users = {
                u.remote_id: u for u in IdentityCenterUser.objects.filter(app=self.app)
            }
        return self.idc_users

    def _portal(self) -> dict[str, tuple[int, str]]:
        """Portal users by lower-cased email: (id, email)."""
        if self._portal_users is None:
            self._portal_users = {
                email: (pk, email)
                for pk, email in User.objects.annotate(lower_email=Lower("email")).values_list(
                    "pk", "lower_email"
                )
                if email
            }
        return self._portal_users

    def _verified_addresses(self) -> dict[str, int]:
        """Active portal users by lower-cased email, only for addresses verified as theirs
        (allauth's EmailAddress.verified: a confirmed link, or an identity provider that
        vouches for the address). An address two users claim as verified is left out."""
        if self._link_candidates is None:
            found: dict[str, set[int]] = defaultdict(set)
            for user_id, email in EmailAddress.objects.filter(
                verified=True, user__is_active=True
            ).values_list("user_id", "email"):
                if email:
                    found[email.strip().lower()].add(user_id)
            self._link_candidates = {
                email: next(iter(ids)) for email, ids in found.items() if len(ids) == 1
            }
        return self._link_candidates

    # Applying ---------------------------------------------------------------------------------
    def apply(self, results: Iterable[ScopeResult]) -> None:
        """Writes one batch of results in one transaction. Failed scopes change nothing."""
        ok: list[ScopeResult] = []
        for result in results:
            name = str(result.scope)
            if result.ok:
                ok.append(result)
                if result.complete_scope:
                    self.ok_scopes[name] = result.scope
            else:
                self.failed[name] = result
        if not ok:
            return
        try:
            with transaction.atomic():
                self._upsert_resources(ok)
                self._sweep(ok)
                self._upsert_levels(ok)
                users_before = self._idc_user_values(ok)
                self._upsert_idc_users(ok)
                self._audit_idc_users(users_before)
                self._record_events()
        finally:
            self.events.clear()
        for result in ok:
            if result.memberships is not None:
                self.memberships.update(result.memberships)
            if result.user_assignments is not None:
                self.assignments.update(result.user_assignments)
            self._note_trusted_subjects(result)

    def _oidc_client(self) -> tuple[str, str] | None:
        """(issuer host and path, client ID) of the identity provider AWS trusts for users'
        sessions; None when either is not set (read once per writer)."""
        if not self._oidc_read:
            # Read, not get_aws_settings(): a sync must not create the settings row.
            row = AwsSettings.objects.only("oidc_issuer_url", "oidc_client_id").first()
            host = setup_policies.issuer_host_path(row.oidc_issuer_url) if row else ""
            if row is not None and host and row.oidc_client_id:
                self._oidc = (host, row.oidc_client_id)
            self._oidc_read = True
        return self._oidc

    def _note_trusted_subjects(self, result: ScopeResult) -> None:
        # Only the trust policies of roles this (error-free) result describes in full: a
        # role of a failed scope, or one not listed this run, keeps its observed grants.
        roles = [r for r in result.resources if r.type == IAM_ROLE]
        if not roles:
            return
        oidc = self._oidc_client()
        if oidc is None:
            # No identity provider set: no statement can be told to be Portcullis's, so
            # nothing is observed from trust policies (and nothing revoked for them).
            return
        issuer_host, client_id = oidc
        for record in roles:
            self.trusted_subjects[record.remote_id] = managed_subjects(
                record.metadata.get("trust_policy"), issuer_host=issuer_host, client_id=client_id
            )

    def _resource_upsert(self) -> _Upsert[Resource]:
        return _Upsert(
            Resource,
            lambda row: self.counts[row.type],
            # A refresh may have created the same row meanwhile: take it over.
            unique_fields=["app", "type", "remote_id"],
            update_fields=[*RESOURCE_FIELDS, "parent", "deleted_at", "last_seen_at"],
        )

    def _resolve(self, key: ResourceKey | None) -> int | None:
        if key is None:
            return None
        row = self.rows.get(key)
        return row.pk if row is not None else None

    def _upsert_resources(self, results: list[ScopeResult]) -> None:
        records: dict[ResourceKey, ResourceRecord] = {}
        for result in results:
            for record in result.resources:
                records[record.key] = record
        wanted_keys: set[ResourceKey] = set(records)
        wanted_keys.update(r.parent for r in records.values() if r.parent)
        for result in results:
            wanted_keys.update(result.level_sets)
        self._ensure_loaded(wanted_keys)

        writes = self._resource_upsert()
        orphans: list[tuple[Resource, ResourceKey]] = []
        # pk -> (row, audited values before, attributes changed), for existing rows.
        updated: dict[int, tuple[Resource, dict[str, Any], set[str]]] = {}
        for key, record in records.items():
            desired = {
                "name": record.name[:255],
                "arn": record.arn[:2048],
                "account_id": record.account_id,
                "region": record.region,
                "tags": _json(record.tags),
                "metadata": _json(record.metadata),
            }
            parent_id = self._resolve(record.parent)
            row = self.rows.get(key)
            if row is None:
                row = Resource(
                    app_id=self.app.pk,
                    type=record.type,
                    remote_id=record.remote_id,
                    parent_id=parent_id,
                    first_seen_at=self.now,
                    last_seen_at=self.now,
                    deleted_at=None,
                    **desired,
                )
                writes.create(row)
            else:
                # A parent not created yet is set once it is (the orphans below).
                if parent_id is not None or record.parent is None:
                    desired["parent_id"] = parent_id
                changed, before = writes.change(
                    row,
                    desired,
                    before_of=("parent_id", "deleted_at"),
                    touch={"last_seen_at": self.now},
                )
                if changed:
                    updated[row.pk] = (row, before, set(changed))
            if record.parent is not None and parent_id is None:
                orphans.append((row, record.parent))

        to_create = writes.save()
        for row in to_create:
            self._index(row)
        # Parents created in this batch (nested OUs, a new account's resources).
        adopted = []
        created_pks = {row.pk for row in to_create}
        for row, parent_key in orphans:
            parent_id = self._resolve(parent_key)
            if parent_id is not None and row.parent_id != parent_id:
                if row.pk not in created_pks:
                    _, before, changed = updated.setdefault(
                        row.pk, (row, _values(row, ["parent_id", "deleted_at"]), set())
                    )
                    changed.add("parent_id")
                row.parent_id = parent_id
                adopted.append(row)
        if adopted:
            Resource.objects.bulk_update(adopted, ["parent"], batch_size=BATCH_SIZE)
        for row in to_create:
            self._audit(
                f"{RESOURCE_EVENT}.created",
                row,
                after=_values(row, ["type", "remote_id", *RESOURCE_FIELDS, "parent_id"]),
            )
        for row, before, changed in updated.values():
            after = _values(row, changed)
            self._audit(
                f"{RESOURCE_EVENT}.updated", row, before={f: before[f] for f in after}, after=after
            )

    def _sweep(self, results: list[ScopeResult]) -> None:
        doomed: dict[int, Resource] = {}
        for result in results:
            seen = {record.key for record in result.resources}
            for sweep in result.sweeps:
                if sweep.account_id is not None:
                    candidates = self.by_type_account.get((sweep.type, sweep.account_id), {})
                else:
                    candidates = self.by_type.get(sweep.type, {})
                for remote_id, row in candidates.items():
                    if (
                        row.deleted_at is None
                        and (sweep.type, remote_id) not in seen
                        and (sweep.region is None or row.region == sweep.region)
                        and (sweep.remote_ids is None or remote_id in sweep.remote_ids)
                        and (sweep.predicate is None or sweep.predicate(row))
                    ):
                        doomed[row.pk] = row
            gone_accounts = set(result.removed_account_ids)
            if result.org_account_ids is not None:
                known = {a for t, a in self.by_type_account if t in IN_ACCOUNT_TYPES and a}
                gone_accounts |= known - result.org_account_ids
            self.gone_accounts |= gone_accounts
            for account_id in gone_accounts:
                for type_ in IN_ACCOUNT_TYPES:
                    for row in self.by_type_account.get((type_, account_id), {}).values():
                        if row.deleted_at is None:
                            doomed[row.pk] = row
        if not doomed:
            return
        self._resource_upsert().mark_gone(doomed.values(), self.now)
        for row in doomed.values():
            self._audit(
                f"{RESOURCE_EVENT}.gone",
                row,
                before={"deleted_at": None},
                after={"deleted_at": _audit_value(self.now)},
                reason=(
                    "its account left the organization"
                    if row.account_id in self.gone_accounts and row.type in IN_ACCOUNT_TYPES
                    else REVOKE_REASON
                ),
            )
        self.deleted_pks.update(doomed)

    def _upsert_levels(self, results: list[ScopeResult]) -> None:
        wanted: dict[int, list[LevelRecord]] = {}
        removals: list[AccessLevel] = []
        for result in results:
            for record in result.resources:
                if record.levels is not None and (pk := self._resolve(record.key)):
                    wanted[pk] = record.levels
            for key, levels in result.level_sets.items():
                if pk := self._resolve(key):
                    wanted[pk] = levels
            for type_, levels in result.type_level_sets.items():
                for row in self.by_type.get(type_, {}).values():
                    if row.deleted_at is None:
                        wanted[row.pk] = levels

        writes = _Upsert(
            AccessLevel,
            lambda level: self.counts[LEVEL_COUNT],
            unique_fields=["resource", "remote_id"],
            update_fields=[*LEVEL_FIELDS, "deleted_at"],
        )
        level_updates: list[tuple[AccessLevel, dict[str, Any]]] = []

        def upsert(resource_pk: int, record: LevelRecord) -> None:
            desired = {
                "name": record.name[:255],
                "description": record.description,
                "metadata": _json(record.metadata),
            }
            level = self.levels[resource_pk].get(record.remote_id)
            if level is None:
                writes.create(
                    AccessLevel(resource_id=resource_pk, remote_id=record.remote_id, **desired)
                )
                return
            changed, before = writes.change(level, desired, before_of=("deleted_at",))
            if changed:
                level_updates.append((level, {f: before[f] for f in changed}))

        for resource_pk, records in wanted.items():
            seen = set()
            for record in records:
                seen.add(record.remote_id)
                upsert(resource_pk, record)
            removals.extend(
                level
                for remote_id, level in self.levels[resource_pk].items()
                if remote_id not in seen and level.deleted_at is None
            )

        to_create = writes.save()
        for level in to_create:
            self._index_level(level)
        removed = {level.pk: level for level in removals}
        writes.mark_gone(removed.values(), self.now)
        for level in to_create:
            self._audit_level(
                f"{LEVEL_EVENT}.created",
                level,
                after=_values(level, ["resource_id", "remote_id", *LEVEL_FIELDS]),
            )
        for level, before in level_updates:
            self._audit_level(
                f"{LEVEL_EVENT}.updated", level, before=before, after=_values(level, before)
            )
        for level in removed.values():
            self._audit_level(
                f"{LEVEL_EVENT}.gone",
                level,
                before={"deleted_at": None},
                after={"deleted_at": _audit_value(self.now)},
            )

    def _upsert_idc_users(self, results: list[ScopeResult]) -> None:
        listed = [r for r in results if r.idc_users is not None]
        if not listed:
            return
        existing = self._load_idc_users()
        # Portal users already linked to one of the app's Identity Center users: a first
        # match by email never gives them a second.
        taken = {u.portal_user_id for u in existing.values() if u.portal_user_id}
        links: list[IdentityCenterUser] = []
        writes = _Upsert(
            IdentityCenterUser,
            lambda user: self.counts[USER_COUNT],
            unique_fields=["app", "remote_id"],
            update_fields=[*[_field_name(f) for f in USER_FIELDS], "deleted_at"],
        )
        seen: set[str] = set()
        complete = False
        for result in listed:
            complete = complete or result.idc_users_complete
            for record in result.idc_users or []:
                seen.add(record.remote_id)
                user = existing.get(record.remote_id)
                desired = self._user_fields(record)
                desired["portal_user_id"] = self._portal_link(user, record, taken)
                if desired["portal_user_id"] and (user is None or not user.portal_user_id):
                    taken.add(desired["portal_user_id"])
                if user is None:
                    user = IdentityCenterUser(
                        app_id=self.app.pk, remote_id=record.remote_id, **desired
                    )
                    existing[record.remote_id] = user
                    writes.create(user)
                    if user.portal_user_id:
                        links.append(user)
                    continue
                if desired["portal_user_id"] and not user.portal_user_id:
                    links.append(user)
                writes.change(user, desired)
        writes.save()
        self._record_links(links)
        if complete:
            writes.mark_gone(
                (u for rid, u in existing.items() if rid not in seen and u.deleted_at is None),
                self.now,
            )

    @staticmethod
    def _user_fields(record: IdcUserRecord) -> dict[str, Any]:
        return {
            "user_name": record.user_name[:255],
            "email": record.email[:254],
            "display_name": record.display_name[:255],
        }

    def _portal_link(
        self, user: IdentityCenterUser | None, record: IdcUserRecord, taken: set[int]
    ) -> int | None:
        """The portal user an Identity Center user belongs to. The link is by the stable
        UserId: once made it stays, whatever either side's email becomes, so that taking
        someone's address never takes their access. Email only proposes the first match,
        and only for an address verified as the portal user's."""
        if user is not None and user.portal_user_id:
            return user.portal_user_id
        email = record.email.strip().lower()
        candidate = self._verified_addresses().get(email) if email else None
        if candidate is None or candidate in taken:
            return None
        return candidate

    def _record_links(self, links: list[IdentityCenterUser]) -> None:
        """One event per Identity Center user newly linked to a portal user."""
        if not links:
            return
        emails = dict(
            User.objects.filter(pk__in={u.portal_user_id for u in links}).values_list("pk", "email")
        )
        for user in links:
            assert user.portal_user_id is not None  # what a link is
            record_event(
                "identity_center.user_linked",
                target_type="access.user",
                target_id=user.portal_user_id,
                target_label=emails.get(user.portal_user_id, str(user.portal_user_id)),
                details={
                    "app": self.app.name,
                    "identity_center_user_id": user.remote_id,
                    "user_name": user.user_name,
                    "email": user.email,
                    "portal_user": emails.get(user.portal_user_id, ""),
                    "matched_by": "verified email",
                },
            )

    # Audit events of inventory rows -------------------------------------------------------------
    def _audit(
        self,
        action: str,
        row: Resource,
        *,
        before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None,
        **extra: Any,
    ) -> None:
        details: dict[str, Any] = {"app": self.app.name, **self._source()}
        if before is not None:
            details["before"] = before
        if after is not None:
            details["after"] = after
        self.events.append(
            PendingEvent(action, RESOURCE_TARGET, row.pk, str(row), {**details, **extra})
        )

    def _audit_level(self, action: str, level: AccessLevel, **values: dict[str, Any]) -> None:
        row = self.by_pk.get(level.resource_id)
        label = f"{row.name if row else level.resource_id}: {level.name}"
        details = {"app": self.app.name, "resource_id": level.resource_id, **self._source()}
        self.events.append(
            PendingEvent(action, LEVEL_TARGET, level.pk, label, {**details, **values})
        )

    def _source(self) -> dict[str, Any]:
        return {"sync_run": self.run.pk} if self.run is not None else {"source": "sync"}

    def _idc_user_values(self, results: list[ScopeResult]) -> dict[str, dict[str, Any]] | None:
        """The Identity Center users' values before this batch, when it lists users."""
        if not any(r.idc_users is not None for r in results):
            return None
        return {rid: self._user_values(user) for rid, user in self._load_idc_users().items()}

    @staticmethod
    def _user_values(user: IdentityCenterUser) -> dict[str, Any]:
        return _values(
            user,
            [
                f.attname
                for f in IdentityCenterUser._meta.concrete_fields
                if f.attname not in ("id", "app_id")
            ],
        )

    def _audit_idc_users(self, before: dict[str, dict[str, Any]] | None) -> None:
        """Events for the Identity Center users this batch created, changed or marked gone,
        by comparing their values before and after it."""
        if before is None or self.idc_users is None:
            return
        for remote_id, user in self.idc_users.items():
            after = self._user_values(user)
            old = before.get(remote_id)
            if old == after:
                continue
            details: dict[str, Any] = {"app": self.app.name, **self._source()}
            if old is None:
                action, details["after"] = f"{USER_EVENT}.created", after
            else:
                changed = [f for f in after if old.get(f) != after[f]]
                details["before"] = {f: old.get(f) for f in changed}
                details["after"] = {f: after[f] for f in changed}
                gone = after.get("deleted_at") and not old.get("deleted_at")
                action = f"{USER_EVENT}.gone" if gone else f"{USER_EVENT}.updated"
            self.events.append(PendingEvent(action, USER_TARGET, user.pk or "", str(user), details))

    def _record_events(self) -> None:
        if self.events:
            record_events(self.events)

    # Observed grants ----------------------------------------------------------------------------
    def reconcile_observed(self) -> None:
        """Access found in AWS that Portcullis did not grant becomes an observed grant (no
        expiry); an observed grant whose access AWS no longer shows, in a scope listed
        completely, is revoked. Grants from other sources are never touched. Each grant
        created or revoked is audited in the same transaction.

        Access is what complete listings of this run show: group memberships, USER account
        assignments, and the portal users whose OIDC subject is in the managed statement of
        an IAM role's trust policy (level "assume"). An account assignment that a current
        grant of the user stands for on an Identity Center role or OU (one AWS assignment
        per user, account and permission set) is that grant's, not observed. Access whose
        Portcullis grants have all ended is not adopted: grant_service.reassert_revocations
        removes it again."""
        if (
            not self.memberships
            and not self.assignments
            and not self.trusted_subjects
            and not self.deleted_pks
        ):
            return
        link: dict[str, int] = {}
        if self.memberships or self.assignments:
            link = {
                rid: u.portal_user_id
                for rid, u in self._load_idc_users().items()
                if u.portal_user_id and u.deleted_at is None
            }
        # A subject that is no portal user's (someone who never signed in to the portal,
        # another installation's user) is ignored: there is no one to record access for.
        by_subject = (
            self._users_by_subject(set().union(*self.trusted_subjects.values()))
            if self.trusted_subjects
            else {}
        )
        scope_pks: set[int] = set()
        desired: set[tuple[int, int, int]] = set()

        def want(
            row: Resource | None, level_id: str, user_ids: Iterable[int]
        ) -> list[tuple[int, int, int]]:
            if row is None:
                return []
            scope_pks.add(row.pk)
            level = self.levels.get(row.pk, {}).get(level_id)
            if row.deleted_at is not None or level is None or level.deleted_at is not None:
                return []
            keys = [(user_id, row.pk, level.pk) for user_id in user_ids]
            desired.update(keys)
            return keys

        def linked(members: Iterable[str]) -> list[int]:
            return [link[member] for member in members if member in link]

        for group_id, members in self.memberships.items():
            want(self.rows.get((GROUP, group_id)), "member", linked(members))
        for role_arn, subjects in self.trusted_subjects.items():
            users = [pk for subject in subjects for pk in by_subject.get(subject, ())]
            want(self.rows.get((IAM_ROLE, role_arn)), ASSUME_LEVEL, users)
        # The account triples wanted, with the AWS assignment each is.
        account_targets: dict[tuple[int, int, int], idc_grants.Target] = {}
        for account_id, pairs in self.assignments.items():
            row = self.rows.get((ACCOUNT, account_id))
            by_permission_set: dict[str, set[str]] = defaultdict(set)
            for permission_set_arn, member in pairs:
                by_permission_set[permission_set_arn].add(member)
            if row is not None:
                scope_pks.add(row.pk)
            for permission_set_arn, members in by_permission_set.items():
                target = idc_grants.Target(account_id, permission_set_arn)
                for key in want(row, permission_set_arn, linked(members)):
                    account_targets[key] = target
        scope_pks |= {pk for pk in self.deleted_pks if self.by_pk[pk].type in OBSERVED_TYPES}
        if not scope_pks:
            return

        existing: dict[tuple[int, int, int], int] = {}
        covered: set[tuple[int, int, int]] = set()
        for chunk in _chunks(sorted(scope_pks), 2000):
            for pk, user_id, resource_id, level_id, source, status in Grant.objects.filter(
                resource_id__in=chunk,
                status__in=[GrantStatus.PENDING, GrantStatus.ACTIVE, GrantStatus.REVOKING],
            ).values_list("pk", "user_id", "resource_id", "access_level_id", "source", "status"):
                key = (user_id, resource_id, level_id)
                if source == GrantSource.OBSERVED and status == GrantStatus.ACTIVE:
                    existing[key] = pk
                else:
                    covered.add(key)
        covered |= self._covered_elsewhere(account_targets)
        # Access Portcullis revoked that is back in AWS is removed again, not adopted.
        reasserted = grant_service.reassert_revocations(desired - set(existing) - covered)
        if reasserted:
            counts = self.counts[GRANT_COUNT]
            counts["reasserted"] = counts.get("reasserted", 0) + len(reasserted)
        to_create = sorted(desired - set(existing) - covered - reasserted)
        to_revoke = sorted((pk, key) for key, pk in existing.items() if key not in desired)
        if not to_create and not to_revoke:
            return
        with transaction.atomic():
            grants = Grant.objects.bulk_create(
                [
                    Grant(
                        user_id=user_id,
                        resource_id=resource_id,
                        access_level_id=level_id,
                        source=GrantSource.OBSERVED,
                        status=GrantStatus.ACTIVE,
                        starts_at=self.now,
                        expires_at=None,
                        propagation_status=PropagationStatus.APPLIED,
                    )
                    for user_id, resource_id, level_id in to_create
                ],
                batch_size=BATCH_SIZE,
            )
            for grant in grants:
                record_event(
                    "grant.observed",
                    target_type="access.grant",
                    target_id=grant.pk,
                    target_label=self._grant_label(
                        grant.user_id, grant.resource_id, grant.access_level_id
                    ),
                    details=self._grant_details(
                        grant.user_id, grant.resource_id, grant.access_level_id
                    ),
                )
            revoke_pks = [pk for pk, _ in to_revoke]
            for chunk in _chunks(revoke_pks):
                Grant.objects.filter(pk__in=chunk, status=GrantStatus.ACTIVE).update(
                    status=GrantStatus.REVOKED,
                    revoked_at=self.now,
                    revoke_reason=REVOKE_REASON,
                    propagation_status=PropagationStatus.REMOVED,
                    updated_at=self.now,
                )
            for pk, (user_id, resource_id, level_id) in to_revoke:
                record_event(
                    "grant.revoked",
                    target_type="access.grant",
                    target_id=pk,
                    target_label=self._grant_label(user_id, resource_id, level_id),
                    details={
                        **self._grant_details(user_id, resource_id, level_id),
                        "reason": REVOKE_REASON,
                    },
                )
        self.counts[GRANT_COUNT]["created"] += len(grants)
        self.counts[GRANT_COUNT]["deleted"] += len(to_revoke)

    def _covered_elsewhere(
        self, account_targets: dict[tuple[int, int, int], idc_grants.Target]
    ) -> set[tuple[int, int, int]]:
        """The account triples whose AWS assignment a current grant of the same user stands
        for on another resource (an Identity Center role, an OU, another account row):
        AWS holds those for that grant, so they are neither observed nor removed again."""
        if not account_targets:
            return set()
        held = idc_grants.covered_targets(
            self.app.pk,
            {user_id for user_id, _, _ in account_targets},
            grant_statuses=idc_grants.CURRENT_GRANT_STATUSES,
        )
        return {key for key, target in account_targets.items() if target in held.get(key[0], ())}

    @staticmethod
    def _users_by_subject(subjects: set[str]) -> dict[str, set[int]]:
        """Portal users by OIDC subject, for these subjects: a query per 2,000 subjects."""
        found: dict[str, set[int]] = defaultdict(set)
        for chunk in _chunks(sorted(s for s in subjects if s), 2000):
            for pk, subject in User.objects.filter(oidc_subject__in=chunk).values_list(
                "pk", "oidc_subject"
            ):
                found[subject].add(pk)
        return found

    def _grant_parts(self, user_id: int, resource_id: int, level_id: int) -> tuple[str, str, str]:
        if self._emails is None:
            self._emails = dict(self._portal().values())
        row = self.by_pk.get(resource_id)
        level = self.level_by_pk.get(level_id)
        return (
            self._emails.get(user_id, str(user_id)),
            row.name if row else str(resource_id),
            level.name if level else str(level_id),
        )

    def _grant_label(self, user_id: int, resource_id: int, level_id: int) -> str:
        user, resource, level = self._grant_parts(user_id, resource_id, level_id)
        return f"{user} → {resource} ({level})"

    def _grant_details(self, user_id: int, resource_id: int, level_id: int) -> dict[str, Any]:
        user, resource, level = self._grant_parts(user_id, resource_id, level_id)
        return {
            "source": GrantSource.OBSERVED.value,
            "user": user,
            "resource_id": resource_id,
            "resource": resource,
            "access_level": level,
            "app": self.app.name,
        }

    # Bookkeeping ----------------------------------------------------------------------------------
    def record_bookkeeping(self) -> list[SyncIssue]:
        """Marks complete scopes as listed now, resolves their issues, and records an issue
        (or one more occurrence of it) for each failed scope. Returns the open issues of
        this run."""
        with transaction.atomic():
            if self.ok_scopes:
                SyncScope.objects.bulk_create(
                    [
                        SyncScope(
                            app_id=self.app.pk,
                            account_id=s.account_id,
                            region=s.region,
                            service=s.service,
                            last_success_at=self.now,
                        )
                        for s in self.ok_scopes.values()
                    ],
                    batch_size=BATCH_SIZE,
                    update_conflicts=True,
                    unique_fields=["app", "account_id", "region", "service"],
                    update_fields=["last_success_at"],
                )
                for chunk in _chunks(sorted(self.ok_scopes)):
                    SyncIssue.objects.filter(
                        app_id=self.app.pk, scope__in=chunk, resolved_at__isnull=True
                    ).update(resolved_at=self.now)
            # An account that left the organization will not be read again.
            for account_id in sorted(self.gone_accounts):
                SyncIssue.objects.filter(
                    app_id=self.app.pk, scope__startswith=f"{account_id}/", resolved_at__isnull=True
                ).update(resolved_at=self.now)
            return self.record_issues(self.failed.values())

    def record_issues(self, failed: Iterable[ScopeResult]) -> list[SyncIssue]:
        failed = [r for r in failed if r.error is not None]
        if not failed:
            return []
        existing = {
            (issue.scope, issue.code): issue
            for issue in SyncIssue.objects.filter(
                app_id=self.app.pk, scope__in=sorted({str(r.scope) for r in failed})
            )
        }
        issues: list[SyncIssue] = []
        with transaction.atomic():
            for result in failed:
                assert result.error is not None
                scope = str(result.scope)
                issue = existing.get((scope, result.error.code))
                if issue is None:
                    issue = SyncIssue.objects.create(
                        app_id=self.app.pk,
                        scope=scope,
                        code=result.error.code[:120],
                        message=result.error.message,
                        last_run=self.run,
                        first_seen_at=self.now,
                        last_seen_at=self.now,
                    )
                else:
                    issue.occurrences += 1
                    issue.message = result.error.message
                    issue.last_run = self.run
                    issue.last_seen_at = self.now
                    issue.resolved_at = None
                    issue.save(
                        update_fields=[
                            "occurrences",
                            "message",
                            "last_run",
                            "last_seen_at",
                            "resolved_at",
                        ]
                    )
                issues.append(issue)
        return issues

    def plain_counts(self) -> dict[str, dict[str, int]]:
        """created/updated/deleted per resource type (and for access levels, Identity
        Center users and observed grants, whose "deleted" are revocations); types with
        no change are left out."""
        return {
            key: dict(value) for key, value in sorted(self.counts.items()) if any(value.values())
        }

    def summary(self) -> dict[str, int]:
        """Flat counts: resources (and Identity Center users) created, updated and deleted;
        access levels changed; observed grants created and revoked."""
        totals = {"created": 0, "updated": 0, "deleted": 0}
        for key, value in self.counts.items():
            if key not in (LEVEL_COUNT, GRANT_COUNT):
                for field in totals:
                    totals[field] += value[field]
        levels = self.counts.get(LEVEL_COUNT, {})
        grants = self.counts.get(GRANT_COUNT, {})
        return {
            **totals,
            "access_levels_changed": sum(levels.values()),
            "grants_observed": grants.get("created", 0),
            "grants_revoked": grants.get("deleted", 0),
            # Only when it happened: access Portcullis had revoked, found back in AWS.
            **(
                {"revocations_reasserted": grants["reasserted"]} if grants.get("reasserted") else {}
            ),
        }

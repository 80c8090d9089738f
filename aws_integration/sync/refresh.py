"""Targeted refresh: re-read just the objects an event touched, with the fetchers and the
writer of the full sync, and mark them deleted when AWS says they are gone.

Called by real-time sync with the ObjectRefs its CloudTrail events name. Duplicates
and out-of-order events are harmless: each refresh writes what AWS holds now.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from django.db.models import Q

from access.choices import ResourceType
from access.models import Resource
from aws_integration import clients
from aws_integration.models import AwsApp, SyncRun
from aws_integration.sync import scope_jobs
from aws_integration.sync.app_connection import SyncTarget
from aws_integration.sync.engine import workers
from aws_integration.sync.fetch_results import Scope, ScopeResult
from aws_integration.sync.fetchers import identity_center, members, organizations
from aws_integration.sync.fetchers.base import ServiceLimiter, guarded
from aws_integration.sync.fetchers.organizations import ACTIVE
from aws_integration.sync.object_refs import (
    IDENTITY_CENTER_KINDS,
    MEMBER_KINDS,
    ORGANIZATION_KINDS,
    ObjectRef,
)
from aws_integration.sync.upsert import IN_ACCOUNT_TYPES, InventoryWriter

logger = logging.getLogger("aws_integration.sync")

OU = ResourceType.ORGANIZATIONAL_UNIT.value
ACCOUNT = ResourceType.ACCOUNT.value
GROUP = ResourceType.IDC_GROUP.value
IDC_ROLE = ResourceType.IDC_ROLE.value
KIND_TYPES: dict[str, list[str]] = {
    "iam_role": [ResourceType.IAM_ROLE.value],
    "ec2_instance": [ResourceType.EC2_INSTANCE.value],
    "eks_cluster": [ResourceType.EKS_CLUSTER.value],
    "rds_instance": [ResourceType.RDS_MYSQL.value, ResourceType.RDS_POSTGRES.value],
    "rds_cluster": [ResourceType.AURORA_MYSQL.value, ResourceType.AURORA_POSTGRES.value],
}
GLOBAL_KINDS = frozenset({"iam_role"})
WHOLE = None  # in a wanted-ids map: every object of the kind in that scope

Wanted = dict[str, set[str] | None]  # key -> ids, or None for all of them
Job = Callable[[], list[ScopeResult]]


def _merge(wanted: Wanted, key: str, remote_id: str) -> None:
    if not remote_id:
        wanted[key] = WHOLE
        return
    ids = wanted.setdefault(key, set())
    if ids is not WHOLE:
        ids.add(remote_id)


def _arn_location(value: str) -> tuple[str, str]:
    """(region, account id) named by an ARN, or empty strings."""
    parts = value.split(":")
    if value.startswith("arn:") and len(parts) > 5:
        return parts[3], parts[4]
    return "", ""


def refresh(
    app: AwsApp, refs: Iterable[ObjectRef], *, run: SyncRun | None = None
) -> dict[str, int]:
    """Describes just the referenced objects in AWS, upserts them, marks those AWS no longer
    knows as deleted, and updates observed grants. A scope that cannot be read is left as
    it was and becomes a SyncIssue. Returns flat counts: resources (and Identity Center
    users) ``created``, ``updated``, ``deleted``; ``access_levels_changed``;
    ``grants_observed`` and ``grants_revoked``; and ``failed``, the scopes that could not
    be read."""
    refs = list(dict.fromkeys(refs))
    writer = InventoryWriter(app, run=run)
    if not refs:
        return {**writer.summary(), "failed": 0}
    target = SyncTarget.for_app(app)
    plan = _Plan(target, writer)
    for ref in refs:
        plan.add(ref)
    jobs = plan.jobs()
    writer.load(plan.rows_to_load())
    plan.prepare()
    if jobs:
        with ThreadPoolExecutor(
            max_workers=min(len(jobs), workers()), thread_name_prefix="refresh"
        ) as pool:
            futures = [pool.submit(job) for job in jobs]
            for future in as_completed(futures):
                writer.apply(future.result())
    writer.reconcile_observed()
    writer.record_bookkeeping()
    return {**writer.summary(), "failed": len(writer.failed)}


class _Plan:
    """Groups refs into units of work: one for the organization, one for Identity Center,
    one per member account."""

    def __init__(self, target: SyncTarget, writer: InventoryWriter) -> None:
        self.target = target
        self.writer = writer
        self.limiter = ServiceLimiter(workers())
        self.org: Wanted = {}
        self.idc: Wanted = {}
        self.members: dict[str, Wanted] = defaultdict(dict)  # account -> "kind|region" -> ids
        self.all_accounts_members: Wanted = {}
        self.load = Q(type=ACCOUNT)
        # Accounts and OUs the refs name, or all of them: one new to the inventory gets
        # every permission set as its access levels, from a listing of the permission sets.
        self.org_keys: set[tuple[str, str]] = set()
        self.whole_org = False
        # Filled by prepare() in the main thread, read by the jobs.
        self._names: dict[str, str] = {}
        self._levels_for_new = False
        self._active_ids: list[str] = []
        self._known_users: set[str] = set()

    def add(self, ref: ObjectRef) -> None:
        if ref.kind in ORGANIZATION_KINDS:
            _merge(self.org, ref.kind, ref.remote_id)
            if ref.remote_id:
                self.org_keys.add((ACCOUNT if ref.kind == "account" else OU, ref.remote_id))
            else:
                self.whole_org = True
            if not ref.remote_id:  # the whole organization: accounts that left are swept
                self.load |= Q(type=OU) | Q(type__in=sorted(IN_ACCOUNT_TYPES))
            elif ref.kind == "account":  # swept with everything in it if it left
                self.load |= Q(account_id=ref.remote_id, type__in=sorted(IN_ACCOUNT_TYPES))
            else:
                self.load |= Q(type=OU)
        elif ref.kind in IDENTITY_CENTER_KINDS:
            if not self.target.identity_center:
                return
            self._add_identity_center(ref)
        elif ref.kind in MEMBER_KINDS:
            if not self.target.organization_management:
                return
            region, account_id = _arn_location(ref.remote_id)
            account_id = ref.account_id or account_id
            region = "" if ref.kind in GLOBAL_KINDS else (ref.region or region)
            key = f"{ref.kind}|{region}"
            if account_id:
                _merge(self.members[account_id], key, ref.remote_id)
                self.load |= Q(account_id=account_id, type__in=KIND_TYPES[ref.kind])
            else:
                _merge(self.all_accounts_members, key, ref.remote_id)
                self.load |= Q(type__in=KIND_TYPES[ref.kind])

    def _add_identity_center(self, ref: ObjectRef) -> None:
        if ref.kind == "permission_set":
            _merge(self.idc, "permission_set", ref.remote_id)
            self.load |= Q(type__in=[OU, IDC_ROLE])
        elif ref.kind == "account_assignment":
            _merge(self.idc, "account_assignment", ref.account_id)
            if ref.account_id:
                self.load |= Q(type=IDC_ROLE, account_id=ref.account_id)
            else:
                self.load |= Q(type=IDC_ROLE)
        else:  # idc_group, idc_group_membership
            _merge(self.idc, ref.kind, ref.remote_id)
            ids = self.idc[ref.kind]
            self.load |= Q(type=GROUP) if ids is WHOLE else Q(type=GROUP, remote_id__in=ids)

    def rows_to_load(self) -> Q:
        return self.load

    # Jobs -----------------------------------------------------------------------------------
    def jobs(self) -> list[Job]:
        jobs: list[Job] = []
        if self.org or self.idc:
            jobs.append(self._management_job)
        if self.all_accounts_members:
            for account_id in self._active_accounts():
                for key, ids in self.all_accounts_members.items():
                    wanted = self.members[account_id]
                    for remote_id in ids if ids is not WHOLE else [""]:
                        _merge(wanted, key, remote_id)
        for account_id, wanted in self.members.items():
            jobs.append(
                # The loop's values bound as defaults, which mypy cannot infer a type for.
                lambda account_id=account_id, wanted=wanted: self._member_job(account_id, wanted)  # type: ignore[misc]
            )
        return jobs

    def _active_accounts(self) -> list[str]:
        return sorted(
            Resource.objects.filter(
                app_id=self.target.app_id, type=ACCOUNT, deleted_at__isnull=True
            )
            .filter(metadata__status=ACTIVE)
            .values_list("remote_id", flat=True)
        )

    def _account_names(self) -> dict[str, str]:
        # Read in the main thread when the plan is made, not from the jobs' threads.
        return {row.remote_id: row.name for row in self.writer.by_type.get(ACCOUNT, {}).values()}

    def _management_job(self) -> list[ScopeResult]:
        target = self.target
        management = target.management_account_id
        session, opened = scope_jobs.open_account(target, management)
        results = [opened]
        if session is None:
            return results
        shared = target.management_clients(session)
        org = shared["organizations"]
        scope = organizations.organization_scope(management)
        if self.org:
            if any(ids is WHOLE for ids in self.org.values()):
                results.append(scope_jobs.organization(target, org, self.limiter))
            else:
                if ou_ids := self.org.get("ou"):
                    results.append(
                        guarded(scope, lambda: organizations.fetch_ous(org, management, ou_ids))
                    )
                if account_ids := self.org.get("account"):
                    results.append(
                        guarded(
                            scope,
                            lambda: organizations.fetch_accounts(org, management, account_ids),
                        )
                    )
        if self.idc or self._levels_for_new:
            results.extend(self._identity_center(shared))
        return results

    def _identity_center(self, shared: dict[str, Any]) -> list[ScopeResult]:
        target = self.target
        region = target.identity_center_region
        sso, store = shared["sso-admin"], shared["identitystore"]
        results: list[ScopeResult] = []
        if "permission_set" in self.idc or "account_assignment" in self.idc or self._levels_for_new:
            changed = self.idc.get("permission_set") or set()
            listed, by_arn = scope_jobs.permission_sets(target, sso, self.limiter, changed=changed)
            results.extend(listed)
            if "account_assignment" in self.idc and by_arn is not None:
                accounts = self.idc["account_assignment"]
                names = self._names
                account_ids = sorted(accounts) if accounts is not WHOLE else self._active_ids
                for account_id in account_ids:
                    results.extend(
                        scope_jobs.account_assignments(
                            target, sso, account_id, names.get(account_id, ""), by_arn, self.limiter
                        )
                    )
        groups = self.idc.get("idc_group", set())
        memberships = self.idc.get("idc_group_membership", set())
        if (
            "idc_group" in self.idc
            and groups is WHOLE
            or ("idc_group_membership" in self.idc and memberships is WHOLE)
        ):
            results.extend(scope_jobs.identity_store(target, store, self.limiter))
            return results
        store_scope = identity_center.identity_store_scope(target.management_account_id, region)
        known = self._known_users
        if groups:
            results.append(
                guarded(
                    store_scope,
                    lambda: identity_center.fetch_groups(
                        store,
                        target.identity_store_id,
                        target.management_account_id,
                        region,
                        groups,
                        known_user_ids=known,
                    ),
                )
            )
        only_members = set(memberships or ()) - set(groups or ())
        if only_members:
            results.append(
                guarded(
                    store_scope,
                    lambda: identity_center.fetch_groups(
                        store,
                        target.identity_store_id,
                        target.management_account_id,
                        region,
                        only_members,
                        known_user_ids=known,
                        include_groups=False,
                    ),
                )
            )
        return results

    def _member_job(self, account_id: str, wanted: Wanted) -> list[ScopeResult]:
        session, opened = scope_jobs.open_account(self.target, account_id)
        results = [opened]
        if session is None:
            return results
        regions: list[str] | None = None
        for key, ids in sorted(wanted.items()):
            kind, region = key.split("|", 1)
            if kind == "iam_role":
                results.append(
                    guarded(
                        members.iam_scope(account_id),
                        lambda ids=ids: members.fetch_iam_roles(  # type: ignore[misc]  # ids bound
                            clients.client("iam", session=session),
                            account_id,
                            names=ids,
                            ingester_role=self.target.role_name,
                        ),
                    )
                )
                continue
            if region:
                in_regions = [region]
            else:
                if regions is None:
                    regions, listed = scope_jobs.account_regions(
                        self.target, session, account_id, self.limiter
                    )
                    if listed is not None:
                        results.append(listed)
                in_regions = regions
            for each in in_regions:
                results.append(self._regional(session, account_id, each, kind, ids))
        return results

    @staticmethod
    def _regional(
        session: Any, account_id: str, region: str, kind: str, ids: set[str] | None
    ) -> ScopeResult:
        service = {"ec2_instance": "ec2", "eks_cluster": "eks"}.get(kind, "rds")

        def fetch() -> ScopeResult:
            client = clients.client(service, session=session, region=region)
            if kind == "ec2_instance":
                return members.fetch_ec2_instances(client, account_id, region, ids)
            if kind == "eks_cluster":
                return members.fetch_eks_clusters(client, account_id, region, ids)
            if kind == "rds_instance":
                return members.fetch_rds(
                    client, account_id, region, instance_ids=ids, clusters=False
                )
            return members.fetch_rds(client, account_id, region, cluster_ids=ids, instances=False)

        return guarded(Scope(account_id, region, service), fetch)

    # Values the jobs need, read in the main thread before they start -------------------------
    def prepare(self) -> None:
        self._names = self._account_names()
        every_account = "account_assignment" in self.idc and self.idc["account_assignment"] is WHOLE
        self._active_ids = self._active_accounts() if every_account else []
        self._known_users = set(self.writer._load_idc_users()) if self.idc else set()
        rows = self.writer.rows
        self._levels_for_new = self.target.identity_center and (
            self.whole_org
            or any(key not in rows or rows[key].deleted_at is not None for key in self.org_keys)
        )

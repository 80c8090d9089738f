"""The sync benchmark: a full sync of a large stand-in organization against the bare
boto3 listing of the same data, and a resync with nothing changed.

    DEBUG=true .venv/bin/python bench/sync_bench.py [--accounts 50 --ec2 40 ...]
    make bench-sync            (SQLite, a temporary file)
    make bench-sync-postgres   (a temporary database on DATABASE_URL's server)

The stand-in AWS (a moto server started through demo.standin) runs in a child
process, which seeds it: moto's own work then does not compete with the sync for this
process's interpreter lock, as real AWS would not, and this process's peak memory is the
sync's. The database is always a fresh one, created and migrated here and dropped at the
end: a temporary SQLite file, or a ``portcullis_bench_<pid>`` database on the server of
``DATABASE_URL`` (or ``--database-url``).

Figures, one a line as ``name: value unit``, then ``targets: met`` or
``targets: missed (name, ...)``:

- bare_listing_wall: the listing calls for the same data with plain boto3 paginators, on
  a thread pool as wide as the sync engine's, writing nothing (best of two runs);
- full_sync_wall: aws_integration.sync.engine.run_sync on an empty inventory;
- sync_to_listing_ratio: their ratio (target: <= 1.5 on SQLite, <= 1.3 on PostgreSQL);
- resync_wall, resync_rows_written (INSERT/UPDATE/DELETE rows on the inventory tables;
  target 0) and resync_queries: a second run with nothing changed in AWS;
- peak_rss: this process's peak resident memory;
- with --breakdown, engine_listing_wall: the engine's own listing code writing nothing.

It exits 0 whether the targets are met or not; it fails only when it cannot run.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Run as a script: bench/ is on the path.
from benchkit import STANDIN_ENV, print_figures, say, setup_django, start_standin

TARGET_RATIO = {"sqlite": 1.5, "postgresql": 1.3}
WRITE = re.compile(
    r"^\s*(?:INSERT(?:\s+OR\s+\w+)?\s+INTO|UPDATE|DELETE\s+FROM)\s+[\"`]?(\w+)", re.IGNORECASE
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size = parser.add_argument_group("organization size (per member account unless noted)")
    size.add_argument("--accounts", type=int, default=50, help="member accounts (50)")
    size.add_argument("--regions", type=int, default=1, help="regions (1)")
    size.add_argument("--ous", type=int, default=6, help="organizational units (6)")
    size.add_argument("--iam-roles", type=int, default=20, help="IAM roles (20)")
    size.add_argument("--ec2", type=int, default=40, help="EC2 instances per region (40)")
    size.add_argument("--eks", type=int, default=2, help="EKS clusters per region (2)")
    size.add_argument("--rds", type=int, default=4, help="RDS instances per region, half MySQL (4)")
    size.add_argument(
        "--aurora", type=int, default=2, help="Aurora clusters per region, half MySQL (2)"
    )
    size.add_argument("--permission-sets", type=int, default=30, help="in all (30)")
    size.add_argument("--groups", type=int, default=100, help="Identity Center groups (100)")
    size.add_argument("--users", type=int, default=500, help="Identity Center users (500)")
    parser.add_argument(
        "--workers", type=int, help="sync thread-pool width (default: the engine's)"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", ""),
        help="a server to create the benchmark database on (default: DATABASE_URL; "
        "none: a temporary SQLite file)",
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also time the sync engine's own listing without the database "
        "(list_only): tells listing overhead from database time",
    )
    return parser.parse_args(argv)


def seed_size(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "name": "bench",
        "accounts": args.accounts,
        "ous": args.ous,
        "regions": args.regions,
        "iam_roles_per_account": args.iam_roles,
        "ec2_per_account": args.ec2,
        "eks_per_account": args.eks,
        "rds_mysql_per_account": args.rds - args.rds // 2,
        "rds_postgres_per_account": args.rds // 2,
        "aurora_mysql_per_account": args.aurora - args.aurora // 2,
        "aurora_postgres_per_account": args.aurora // 2,
        "permission_sets": args.permission_sets,
        "idc_groups": args.groups,
        "idc_users": args.users,
        "memberships_per_user": min(2, args.groups),
        "assignments_per_account": 3 if args.groups and args.permission_sets else 0,
    }


# The stand-in, in a child process --------------------------------------------------------
# The database ----------------------------------------------------------------------------
def create_database(database_url: str) -> Callable[[], None]:
    """Creates and migrates a fresh database; returns what drops it."""
    from django.db import connection

    workdir = Path(tempfile.mkdtemp(prefix="portcullis-bench-"))
    if connection.vendor == "sqlite":
        test_name = str(workdir / "bench.sqlite3")
    else:
        test_name = f"portcullis_bench_{os.getpid()}"
    connection.settings_dict.setdefault("TEST", {})["NAME"] = test_name
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    say(f"Database: {connection.vendor} {test_name} (fresh, migrated)")

    def drop() -> None:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        shutil.rmtree(workdir, ignore_errors=True)

    return drop


# (a) the bare listing --------------------------------------------------------------------
def paginate(client: Any, operation: str, key: str, **kwargs: Any) -> list[Any]:
    return [
        item for page in client.get_paginator(operation).paginate(**kwargs) for item in page[key]
    ]


class BareListing:
    """What a full sync reads, with plain boto3 calls and nothing else: no records, no
    per-scope bookkeeping, no service limits, no database."""

    def __init__(self, target: Any, workers: int) -> None:
        self.target = target
        self.workers = workers
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def count(self, kind: str, n: int) -> None:
        with self._lock:
            self.counts[kind] += n

    def session(self, account_id: str) -> Any:
        from aws_integration import clients

        credentials = clients.assume_role(
            self.target.role_arn(account_id), external_id=self.target.external_id
        )
        return clients.make_session(credentials)

    def run(self) -> Counter[str]:
        from aws_integration import clients

        target = self.target
        session = self.session(target.management_account_id)
        org = clients.client("organizations", session=session)
        parents = [root["Id"] for root in paginate(org, "list_roots", "Roots")]
        accounts: list[dict[str, Any]] = []
        while parents:
            parent = parents.pop(0)
            ous = paginate(
                org, "list_organizational_units_for_parent", "OrganizationalUnits", ParentId=parent
            )
            parents += [ou["Id"] for ou in ous]
            accounts += paginate(org, "list_accounts_for_parent", "Accounts", ParentId=parent)
            self.count("ou", len(ous))
        active = [a["Id"] for a in accounts if a["Status"] == "ACTIVE"]
        self.count("account", len(accounts))
        region = target.identity_center_region
        sso = clients.client("sso-admin", session=session, region=region)
        store = clients.client("identitystore", session=session, region=region)
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            jobs = [pool.submit(self.identity_store, store)]
            permission_sets = pool.submit(self.permission_sets, sso)
            jobs += [pool.submit(self.member_account, account) for account in active]
            arns = permission_sets.result()
            jobs += [pool.submit(self.assignments, sso, account, arns) for account in active]
            for job in jobs:
                job.result()
        return self.counts

    def identity_store(self, store: Any) -> None:
        store_id = self.target.identity_store_id
        self.count(
            "idc_user", len(paginate(store, "list_users", "Users", IdentityStoreId=store_id))
        )
        groups = paginate(store, "list_groups", "Groups", IdentityStoreId=store_id)
        self.count("group", len(groups))
        for group in groups:
            members = paginate(
                store,
                "list_group_memberships",
                "GroupMemberships",
                IdentityStoreId=store_id,
                GroupId=group["GroupId"],
            )
            self.count("membership", len(members))

    def permission_sets(self, sso: Any) -> list[str]:
        instance = self.target.instance_arn
        arns = paginate(sso, "list_permission_sets", "PermissionSets", InstanceArn=instance)
        for arn in arns:
            sso.describe_permission_set(InstanceArn=instance, PermissionSetArn=arn)
        self.count("permission_set", len(arns))
        return arns

    def assignments(self, sso: Any, account_id: str, arns: Iterable[str]) -> None:
        instance = self.target.instance_arn
        provisioned = set(
            paginate(
                sso,
                "list_permission_sets_provisioned_to_account",
                "PermissionSets",
                InstanceArn=instance,
                AccountId=account_id,
            )
        )
        for arn in provisioned:
            found = paginate(
                sso,
                "list_account_assignments",
                "AccountAssignments",
                InstanceArn=instance,
                AccountId=account_id,
                PermissionSetArn=arn,
            )
            self.count("assignment", len(found))
        self.count("idc_role", len(provisioned))

    def member_account(self, account_id: str) -> None:
        from aws_integration import clients

        session = self.session(account_id)
        iam = clients.client("iam", session=session)
        # ListRoles has the maximum session duration; the authorization details the tags
        # and the last use (as the sync reads them, rather than a GetRole per role).
        paginate(iam, "get_account_authorization_details", "RoleDetailList", Filter=["Role"])
        self.count("iam_role", len(paginate(iam, "list_roles", "Roles")))
        for region in self.target.regions:
            ec2 = clients.client("ec2", session=session, region=region)
            reservations = paginate(ec2, "describe_instances", "Reservations")
            self.count("ec2", sum(len(r["Instances"]) for r in reservations))
            eks = clients.client("eks", session=session, region=region)
            names = paginate(eks, "list_clusters", "clusters")
            for name in names:
                eks.describe_cluster(name=name)
            self.count("eks", len(names))
            rds = clients.client("rds", session=session, region=region)
            self.count("rds", len(paginate(rds, "describe_db_instances", "DBInstances")))
            self.count("aurora", len(paginate(rds, "describe_db_clusters", "DBClusters")))


# (a') the engine's own listing -----------------------------------------------------------
@dataclass
class ListingSummary:
    """How much a bare listing read, per resource type and in all."""

    resources: dict[str, int]
    identity_center_users: int
    failed_scopes: list[str]

    @property
    def total(self) -> int:
        return sum(self.resources.values()) + self.identity_center_users


def list_only(app: Any, *, account_id: str = "", max_workers: int | None = None) -> ListingSummary:
    """Reads everything a full sync reads, through the sync engine's own listing (the same
    calls and concurrency), and writes nothing: tells listing overhead from database time."""
    from access.choices import ResourceType
    from aws_integration.sync import engine
    from aws_integration.sync.app_connection import SyncTarget
    from aws_integration.sync.fetchers.organizations import ACTIVE

    account = ResourceType.ACCOUNT.value
    summary = ListingSummary(resources={}, identity_center_users=0, failed_scopes=[])

    def sink(results: list[Any]) -> None:
        for result in results:
            if not result.ok:
                summary.failed_scopes.append(str(result.scope))
                continue
            for record in result.resources:
                summary.resources[record.type] = summary.resources.get(record.type, 0) + 1
            summary.identity_center_users += len(result.idc_users or [])

    def accounts(org_result: Any) -> list[tuple[str, str]]:
        if not org_result.ok:
            assert org_result.error is not None
            raise engine.ManagementAccountError(org_result.error.message)
        return sorted(
            (r.remote_id, r.name)
            for r in org_result.resources
            if r.type == account and r.metadata.get("status") == ACTIVE
        )

    engine.Listing(
        target=SyncTarget.for_app(app),
        sink=sink,
        accounts_after=accounts,
        account_id=account_id,
        max_workers=max_workers or engine.workers(),
    ).run()
    return summary


# (c) what the resync writes ----------------------------------------------------------------
class WriteCounter:
    """A connection execute_wrapper: counts every query, and the rows each INSERT, UPDATE
    or DELETE on the inventory tables touched (the cursor's rowcount)."""

    def __init__(self, tables: set[str]) -> None:
        self.tables = tables
        self.queries = 0
        self.rows: Counter[str] = Counter()
        self.writes: list[str] = []  # the statements that wrote, to tell why

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.queries += 1
        result = execute(sql, params, many, context)
        match = WRITE.match(sql)
        if match and match.group(1) in self.tables:
            written = max(context["cursor"].rowcount, 0)
            self.rows[match.group(1)] += written
            if written:
                self.writes.append(f"{sql[:300]} -- {str(params)[:300]}")
        return result


def inventory_tables() -> set[str]:
    from access.models import AccessLevel, Grant, Resource
    from aws_integration.models import IdentityCenterUser

    tables = set()
    for model in (Resource, AccessLevel, Grant, IdentityCenterUser):
        tables.add(model._meta.db_table)
        tables.update(
            field.remote_field.through._meta.db_table for field in model._meta.local_many_to_many
        )
    return tables


# The run ---------------------------------------------------------------------------------
def sync_once(app: Any, counter: WriteCounter | None = None) -> tuple[float, Any]:
    from django.db import connection

    from aws_integration.models import SyncRun
    from aws_integration.sync import engine

    run = SyncRun.objects.create(app=app)
    started = time.perf_counter()
    if counter is None:
        run = engine.run_sync(run.pk)
    else:
        with connection.execute_wrapper(counter):
            run = engine.run_sync(run.pk)
    return time.perf_counter() - started, run


def peak_rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux, bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.update(STANDIN_ENV)
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
    else:
        # Settings need some URL; the benchmark database itself is a fresh temporary file
        # (create_database), so this one is never opened.
        os.environ["DATABASE_URL"] = "sqlite:///:memory:"
    size = seed_size(args)
    say(f"Seeding the stand-in AWS: {args.accounts} accounts (takes a while)...")
    child, seeded = start_standin(size)
    try:
        return run_benchmark(args, seeded)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=60)


def run_benchmark(args: argparse.Namespace, seeded: dict[str, Any]) -> int:
    setup_django()
    from django.conf import settings
    from django.db import connection

    settings.AWS_ENDPOINT_URL = seeded["url"]
    # Production runs without DEBUG; with it Django keeps every query in memory.
    settings.DEBUG = False
    drop = create_database(args.database_url)
    try:
        return measure(args, seeded, connection.vendor)
    finally:
        drop()


def measure(args: argparse.Namespace, seeded: dict[str, Any], vendor: str) -> int:
    from django.conf import settings

    from access.models import Resource
    from aws_integration import clients
    from aws_integration.models import AwsApp
    from aws_integration.services import get_aws_settings
    from aws_integration.sync import engine
    from aws_integration.sync.app_connection import SyncTarget

    say(f"Seeded in {seeded['seconds']:.0f} s: {seeded['counts']}")
    app = AwsApp.objects.create(
        name="Benchmark organization",
        management_account_id=seeded["management_account_id"],
        identity_center_management=True,
        identity_center_region=seeded["region"],
        identity_center_instance_arn=seeded["instance_arn"],
        identity_store_id=seeded["identity_store_id"],
        access_portal_url="https://d-1234567890.awsapps.com/start",
        regions=seeded["regions"],
    )
    if args.workers:
        settings.AWS_SYNC_WORKERS = args.workers  # the engine's thread-pool width
    workers = engine.workers()
    target = SyncTarget.for_app(app, external_id=get_aws_settings().external_id)
    # Parse every service model once before timing anything: both sides share them.
    for service in (
        "sts",
        "organizations",
        "sso-admin",
        "identitystore",
        "iam",
        "ec2",
        "eks",
        "rds",
    ):
        clients.client(service)

    say(f"(a) Bare listing with plain boto3 paginators on {workers} threads...")
    bare: list[float] = []
    listed: Counter[str] = Counter()
    for _ in range(2):
        started = time.perf_counter()
        listed = BareListing(target, workers).run()
        bare.append(time.perf_counter() - started)
    say(f"    listed {dict(listed)}")
    engine_wall = None
    if args.breakdown:
        say("(a') The sync engine's listing, without the database...")
        started = time.perf_counter()
        list_only(app, max_workers=workers)
        engine_wall = time.perf_counter() - started

    say("(b) Full sync...")
    full_wall, full_run = sync_once(app)
    if full_run.status != "succeeded":
        say(f"    the full sync ended {full_run.status}: {full_run.message}")
    resources = Resource.objects.filter(app=app).count()

    say("(c) Resync with nothing changed...")
    counter = WriteCounter(inventory_tables())
    resync_wall, resync_run = sync_once(app, counter)
    if resync_run.status != "succeeded":
        say(f"    the resync ended {resync_run.status}: {resync_run.message}")

    bare_wall = min(bare)
    ratio = full_wall / bare_wall
    rows_written = sum(counter.rows.values())
    figures = [
        ("database", vendor, ""),
        ("accounts", args.accounts, ""),
        ("workers", workers, ""),
        ("inventory_resources", resources, "rows"),
        ("full_sync_status", full_run.status, ""),
        ("bare_listing_wall", f"{bare_wall:.2f}", "s"),
        *([("engine_listing_wall", f"{engine_wall:.2f}", "s")] if engine_wall else []),
        ("full_sync_wall", f"{full_wall:.2f}", "s"),
        ("sync_to_listing_ratio", f"{ratio:.2f}", ""),
        ("resync_status", resync_run.status, ""),
        ("resync_wall", f"{resync_wall:.2f}", "s"),
        ("resync_rows_written", rows_written, "rows"),
        ("resync_queries", counter.queries, "queries"),
        ("peak_rss", f"{peak_rss_mb():.0f}", "MB"),
    ]
    print_figures(figures)
    if rows_written:
        say(f"    rows written by the resync, per table: {dict(counter.rows)}")
        for statement in counter.writes[:5]:
            say(f"    {statement}")

    limit = TARGET_RATIO.get(vendor, TARGET_RATIO["sqlite"])
    missed = []
    if full_run.status != "succeeded":
        missed.append("full_sync_status")
    if ratio > limit:
        missed.append("sync_to_listing_ratio")
    if rows_written != 0:
        missed.append("resync_rows_written")
    print("targets: met" if not missed else f"targets: missed ({', '.join(missed)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

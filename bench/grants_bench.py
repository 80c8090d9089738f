"""The grants benchmark: 1,000 approved requests for Identity Center group memberships,
applied in the stand-in AWS by the task cluster and taken away again when they expire,
all within about a minute.

    DEBUG=true .venv/bin/python bench/grants_bench.py [--users 100 --groups 10 ...]
    make bench-grants            (SQLite, a temporary file)
    make bench-grants-postgres   (a temporary database on DATABASE_URL's server)

The stand-in AWS (a moto server) runs in a child process, which seeds it with an
organization whose Identity Center holds ``--users`` users and ``--groups`` groups and no
memberships. This process creates a fresh database (migrated, which installs the
schedules), connects and syncs the organization, then starts the task cluster as a
subprocess (``manage.py qcluster`` on the same database: the embedded default, django-q2's
ORM broker, with ``--q-workers`` workers) and, acting as the portal, submits one request per
(user, group) and has the groups' owner approve it, with durations that make the 1,000
grants expire within one minute (``--spread``), starting ``--lead`` seconds (30) after the
first approval, in a scattered order so that expiries interleave with the approvals still
going on (a grant approved too late for its moment gets ``--first-expiry``, 5 s; the
``expiry_window`` figure says how wide the expiries really spread). The cluster's grant engine (a loop
it runs from its start) drives expiry.

Meanwhile a thread of this process reads the stand-in's memberships over and over (from
the stand-in's own state, ten times a second: benchkit.standin_memberships) and notes when
each membership appears and disappears: the figures are what AWS holds, not what the
database says.

Figures, one a line as ``name: value unit``, then ``targets: met`` or
``targets: missed (name, ...)``:

- approval_to_applied_p50/p99/max: from the approval's commit to the first reading that
  shows the membership (target p99 <= 5 s); never_seen_applied: grants that expired
  before their membership was ever made (they count as missing the target);
- revoke_lag_p50/p99/max: from the grant's expires_at to the first reading without it
  (target p99 <= 10 s);
- left_granted_after_expiry: memberships still in AWS at the end (target 0);
- expiry_window: from the first expiry to the last (target <= 65 s: the scenario's minute,
  which approvals slower than the window stretch);
- approvals_wall, watch_resolution: how long the approvals took, and the time between two
  readings (a stamp is at most that late).

It exits 0 whether the targets are met or not; it fails only when it cannot run.
"""

from __future__ import annotations

import argparse
import io
import itertools
import logging
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# Run as a script: bench/ is on the path.
from benchkit import (
    ROOT,
    STANDIN_ENV,
    print_figures,
    say,
    setup_django,
    standin_memberships,
    start_standin,
)

TARGETS = {"approval_to_applied_p99": 5.0, "revoke_lag_p99": 10.0, "expiry_window": 65.0}
APPROVER_EMAIL = "owner.of.groups@corp.example"
WATCH_PAUSE = 0.1  # seconds between two readings of the stand-in's memberships


def population_args(
    parser: argparse.ArgumentParser, *, lead: float, lead_help: str, settle: float
) -> None:
    """The options the grants and failover benchmarks share: who, how many, and when."""
    parser.add_argument("--users", type=int, default=100, help="Identity Center users (100)")
    parser.add_argument("--groups", type=int, default=10, help="Identity Center groups (10)")
    parser.add_argument(
        "--spread", type=float, default=60.0, help="seconds the expiries spread over (60)"
    )
    parser.add_argument("--lead", type=float, default=lead, help=f"{lead_help} ({lead:.0f})")
    parser.add_argument(
        "--q-workers",
        type=int,
        default=int(os.environ.get("Q_WORKERS") or 2),
        help="task workers per cluster (Q_WORKERS, else 2 as the settings default)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=settle,
        help=f"seconds to wait after the last expiry for the last revokes ({settle:.0f})",
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    population_args(
        parser,
        lead=30.0,
        lead_help="seconds from the first approval to the first expiry",
        settle=150.0,
    )
    parser.add_argument(
        "--first-expiry",
        type=float,
        default=5.0,
        help="the shortest duration, in seconds (5)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", ""),
        help="a server to create the benchmark database on (default: DATABASE_URL; "
        "none: a temporary SQLite file)",
    )
    return parser.parse_args(argv)


# The stand-in, in a child process --------------------------------------------------------
def seed_size(args: argparse.Namespace) -> dict[str, Any]:
    """The seed's minimal organization with ``--users`` users, ``--groups`` groups and no
    memberships."""
    from demo.seed import SeedSize

    return asdict(
        SeedSize.minimal(
            "grants-bench", idc_groups=args.groups, idc_users=args.users, memberships_per_user=0
        )
    )


# The database ----------------------------------------------------------------------------
def create_database() -> tuple[str, Callable[[], None]]:
    """Creates and migrates a fresh database (migrate installs the schedules); returns its
    URL, for the task cluster, and what drops it."""
    from django.conf import settings
    from django.db import connection

    workdir = Path(tempfile.mkdtemp(prefix="portcullis-grants-bench-"))
    if connection.vendor == "sqlite":
        test_name = str(workdir / "bench.sqlite3")
        url = f"sqlite:///{test_name}"
    else:
        test_name = f"portcullis_grants_bench_{os.getpid()}"
        parts = urlsplit(settings.DATABASE_URL)
        url = urlunsplit((parts.scheme, parts.netloc, f"/{test_name}", parts.query, ""))
    connection.settings_dict.setdefault("TEST", {})["NAME"] = test_name
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    say(f"Database: {connection.vendor} {test_name} (fresh, migrated)")

    def drop() -> None:
        connection.close()
        if connection.vendor == "postgresql":
            # FORCE: a killed cluster's sessions, or one a benchmark thread kept, may not
            # have ended yet; PostgreSQL ends them and waits.
            with connection._nodb_cursor() as cursor:
                cursor.execute(
                    f"DROP DATABASE IF EXISTS {connection.ops.quote_name(test_name)} WITH (FORCE)"
                )
            connection.settings_dict["NAME"] = old_name
        else:
            connection.creation.destroy_test_db(old_name, verbosity=0)
        shutil.rmtree(workdir, ignore_errors=True)

    return url, drop


_cluster_numbers = itertools.count(1)


# The task cluster --------------------------------------------------------------------------
def start_cluster(
    database_url: str, endpoint: str, workers: int, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    command = [sys.executable, str(ROOT / "manage.py"), "qcluster"]
    name = f"grants-bench-qcluster-{os.getpid()}-{next(_cluster_numbers)}.log"
    log = open(Path(tempfile.gettempdir()) / name, "wb")  # noqa: SIM115
    say(f"  task cluster log: {log.name}")
    return subprocess.Popen(  # noqa: S603 - this interpreter
        command,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, ended as one at the end
        env={
            **os.environ,
            **STANDIN_ENV,
            "DATABASE_URL": database_url,
            "AWS_ENDPOINT_URL": endpoint,
            "Q_WORKERS": str(workers),
            # The same DEBUG and SECRET_KEY as this process (they derive the key of the
            # encrypted fields); mail goes nowhere.
            "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
            **(extra_env or {}),
        },
    )


def stop_cluster(cluster: subprocess.Popen[bytes]) -> None:
    if cluster.poll() is not None:
        return
    os.killpg(cluster.pid, signal.SIGTERM)
    try:
        cluster.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(cluster.pid, signal.SIGKILL)  # a worker still busy: not waited for
        cluster.wait(timeout=15)


# Watching AWS -------------------------------------------------------------------------------
@dataclass
class Tracked:
    """One (user, group) membership the benchmark grants."""

    approved_at: float = 0.0  # the approval's commit (time.time())
    expires_at: float = 0.0
    seen_at: float | None = None  # first reading that showed it
    gone_at: float | None = None  # first reading after expiry that did not


class Watcher(threading.Thread):
    """Reads what the stand-in's identity store holds in a loop (benchkit's
    ``standin_memberships``, from the stand-in's own state) and stamps what appeared and
    disappeared. A stamp is the time of the reading: at most one round late."""

    def __init__(self, seeded: dict[str, Any], tracked: dict[tuple[str, str], Tracked]) -> None:
        super().__init__(name="aws-watcher", daemon=True)
        self.store_id = seeded["identity_store_id"]
        self.groups = sorted(seeded["groups"].values())
        self.tracked = tracked
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.rounds: list[float] = []

    def snapshot(self) -> dict[str, tuple[set[str], float]]:
        held, at = standin_memberships(self.store_id)
        return {g: (held.get(g, set()), at) for g in self.groups}

    def run(self) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            snapshot = self.snapshot()
            with self.lock:
                for (user_id, group_id), item in self.tracked.items():
                    if not item.approved_at:
                        continue
                    members, at = snapshot[group_id]
                    if user_id in members:
                        if item.seen_at is None:
                            item.seen_at = at
                    elif item.seen_at is not None and at >= item.expires_at and not item.gone_at:
                        item.gone_at = at
            self.rounds.append(time.monotonic() - started)
            time.sleep(WATCH_PAUSE)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)


# The run ---------------------------------------------------------------------------------
def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)  # nearest rank
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.update(STANDIN_ENV)
    os.environ["DATABASE_URL"] = args.database_url or "sqlite:///:memory:"
    say(f"Seeding the stand-in AWS: {args.users} users, {args.groups} groups...")
    child, seeded = start_standin(seed_size(args))
    try:
        return run_benchmark(args, seeded)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=60)


def run_benchmark(args: argparse.Namespace, seeded: dict[str, Any]) -> int:
    setup_django()
    from django.conf import settings

    logging.getLogger("django-q").setLevel(logging.WARNING)  # a line per task queued
    settings.AWS_ENDPOINT_URL = seeded["url"]
    # Production runs without DEBUG; with it Django keeps every query in memory.
    settings.DEBUG = False
    settings.EMAIL_BACKEND = "django.core.mail.backends.dummy.EmailBackend"
    database_url, drop = create_database()
    try:
        return measure(args, seeded, database_url)
    finally:
        drop()


def prepare(seeded: dict[str, Any]) -> tuple[Any, list[Any], list[Any]]:
    """The app, synced; the portal users (one per Identity Center user) and the groups,
    owned by one approver."""
    from allauth.account.models import EmailAddress
    from django.core.management import call_command

    from access.choices import ResourceType
    from access.models import Resource, User
    from aws_integration.models import AwsApp, SyncRun
    from aws_integration.sync import engine

    call_command("install_schedules", verbosity=0, stdout=io.StringIO())
    users = [
        User.objects.create_user(username=email.split("@")[0], email=email)
        for email in sorted(seeded["users"])
    ]
    # Verified addresses, as after single sign-on: Portcullis links a portal user to the
    # Identity Center user with their address only once it is verified.
    EmailAddress.objects.bulk_create(
        EmailAddress(user=user, email=user.email, verified=True, primary=True) for user in users
    )
    approver = User.objects.create_user(username="owner.of.groups", email=APPROVER_EMAIL)
    app = AwsApp.objects.create(
        name="Benchmark organization",
        management_account_id=seeded["management_account_id"],
        organization_management=False,
        identity_center_management=True,
        identity_center_region=seeded["region"],
        identity_center_instance_arn=seeded["instance_arn"],
        identity_store_id=seeded["identity_store_id"],
        access_portal_url="https://d-1234567890.awsapps.com/start",
        regions=seeded["regions"],
    )
    run = engine.run_sync(SyncRun.objects.create(app=app).pk)
    if run.status != "succeeded":
        raise SystemExit(f"The sync ended {run.status}: {run.message}")
    groups = list(
        Resource.objects.filter(app=app, type=ResourceType.IDC_GROUP, deleted_at__isnull=True)
        .prefetch_related("access_levels")
        .order_by("name")
    )
    for group in groups:
        group.owners.create(user=approver)
    return approver, users, groups


def tracked_pairs(
    seeded: dict[str, Any], users: list[Any], groups: list[Any]
) -> tuple[list[tuple[Any, Any]], dict[tuple[str, str], Tracked]]:
    """Every (user, group) to grant, and what is tracked of each, keyed by the Identity
    Center user and group ids the watcher sees."""
    user_ids = seeded["users"]
    pairs = [(user, group) for user in users for group in groups]
    tracked = {(user_ids[u.email], g.remote_id): Tracked() for u, g in pairs}
    say(f"Synced: {len(users)} users, {len(groups)} groups; {len(pairs)} grants to make.")
    return pairs, tracked


def wait_for_revokes(
    watcher: Watcher, tracked: dict[Any, Tracked], last_end: float, settle: float
) -> None:
    """Until AWS no longer holds any tracked membership (from 3 s after the last end), or
    ``settle`` seconds after the last end."""
    while time.time() < last_end + settle:
        with watcher.lock:
            done = all(item.gone_at is not None for item in tracked.values())
        if done and time.time() > last_end + 3:
            return
        time.sleep(0.5)


def measure(args: argparse.Namespace, seeded: dict[str, Any], database_url: str) -> int:
    from django.db import connection, transaction
    from django.utils import timezone

    from access.choices import AssignmentStatus, GrantStatus
    from access.models import Assignment, Grant
    from access.services import requests

    approver, users, groups = prepare(seeded)
    user_ids = seeded["users"]
    pairs, tracked = tracked_pairs(seeded, users, groups)
    total = len(pairs)

    cluster = start_cluster(database_url, seeded["url"], args.q_workers)
    watcher = Watcher(seeded, tracked)
    try:
        # The cluster runs the grant engine as a loop from its start (config/loops.py).
        watcher.start()
        time.sleep(2)  # the cluster's workers start
        say(f"Approving {total} requests...")
        first = time.time()
        window_start = first + args.lead
        for index, (user, group) in enumerate(pairs):
            # Every grant expires within one window of ``spread`` seconds starting ``lead``
            # seconds after the first approval, at moments spread evenly in a scattered order
            # (617 is prime to 1,000), so expiries interleave with the approvals still going
            # on. A grant approved too late for its moment gets the shortest duration.
            share = (index * 617 % total) / max(1, total - 1)
            target = window_start + args.spread * share
            duration = timedelta(seconds=max(args.first_expiry, target - time.time()))
            level = group.access_levels.all()[0]
            (request,) = requests.submit_requests(
                requested_by=user,
                items=[requests.RequestItem(group.pk, level.pk, duration)],
                reason="Benchmark",
            )
            item = tracked[(user_ids[user.email], group.remote_id)]
            with transaction.atomic():
                # Runs first of the commit's callbacks, before the reconcile is queued.
                transaction.on_commit(lambda item=item: setattr(item, "approved_at", time.time()))
                requests.decide(request, reviewer=approver, approve=True)
            grant = Grant.objects.get(request=request)
            with watcher.lock:
                item.expires_at = grant.expires_at.timestamp()
        approvals_wall = time.time() - first
        say(f"  approved in {approvals_wall:.1f} s; waiting for the expiries and revokes...")
        wait_for_revokes(
            watcher, tracked, max(item.expires_at for item in tracked.values()), args.settle
        )
        watcher.stop()
        final = watcher.snapshot()
    finally:
        watcher.stop()
        stop_cluster(cluster)
    connection.close()

    applied = [i.seen_at - i.approved_at for i in tracked.values() if i.seen_at is not None]
    lags = [i.gone_at - i.expires_at for i in tracked.values() if i.gone_at is not None]
    never_seen = sum(1 for i in tracked.values() if i.seen_at is None)
    expiries = [i.expires_at for i in tracked.values() if i.expires_at is not None]
    expiry_window = max(expiries) - min(expiries)  # from the first expiry to the last
    left = sum(1 for (user_id, group_id) in tracked if user_id in final[group_id][0])
    not_ended = Grant.objects.exclude(status=GrantStatus.REVOKED).count()
    failed = Assignment.objects.filter(status=AssignmentStatus.FAILING).count()
    now = timezone.now()
    say(f"  at the end: {not_ended} grants not revoked, {failed} failed assignments ({now:%X})")
    rounds = watcher.rounds or [float("nan")]
    figures = [
        ("database", connection.vendor, ""),
        ("grants", total, ""),
        ("q_workers", args.q_workers, ""),
        ("approvals_wall", f"{approvals_wall:.1f}", "s"),
        ("expiry_window", f"{expiry_window:.1f}", "s"),
        ("watch_resolution", f"{statistics.fmean(rounds) + WATCH_PAUSE:.2f}", "s"),
        ("approval_to_applied_p50", f"{percentile(applied, 0.50):.2f}", "s"),
        ("approval_to_applied_p99", f"{percentile(applied, 0.99):.2f}", "s"),
        ("approval_to_applied_max", f"{max(applied, default=float('nan')):.2f}", "s"),
        ("never_seen_applied", never_seen, ""),
        ("revoke_lag_p50", f"{percentile(lags, 0.50):.2f}", "s"),
        ("revoke_lag_p99", f"{percentile(lags, 0.99):.2f}", "s"),
        ("revoke_lag_max", f"{max(lags, default=float('nan')):.2f}", "s"),
        ("grants_not_revoked", not_ended, ""),
        ("left_granted_after_expiry", left, ""),
    ]
    print_figures(figures)

    missed = []
    if never_seen or not percentile(applied, 0.99) <= TARGETS["approval_to_applied_p99"]:
        missed.append("approval_to_applied_p99")
    if len(lags) < total or not percentile(lags, 0.99) <= TARGETS["revoke_lag_p99"]:
        missed.append("revoke_lag_p99")
    if left:
        missed.append("left_granted_after_expiry")
    if not expiry_window <= TARGETS["expiry_window"]:
        missed.append("expiry_window")
    print("targets: met" if not missed else f"targets: missed ({', '.join(missed)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

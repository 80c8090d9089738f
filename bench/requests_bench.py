"""The requests benchmark: what one request costs on the hot path, from its submission to
its approval, on SQLite and on PostgreSQL in one run.

    DEBUG=true .venv/bin/python bench/requests_bench.py [--cycles 200 --postgres-url URL]
    make bench-requests

A cycle is ``submit_requests`` of one item then its owner's ``decide`` (approve), under the
default rule (no rule saved: the owners approve), with no grant engine and no task cluster
running: the grant is planned and the mail queued on django-q2's ORM broker, as a web
process does. Each cycle asks for another (user, resource) pair, as a portal does.

Each database is measured in a child process of its own (this script with ``--database-url``),
on a fresh database created and migrated there and dropped at the end: a temporary SQLite
file, and ``<name>_requests_bench`` on the server of ``--postgres-url`` (TEST_DATABASE_URL,
else the local server's ``portcullis``). Both run as production does: DEBUG off,
DB_CONN_MAX_AGE 0.

Figures, one a line as ``name: value unit``, then ``targets: met`` or
``targets: missed (name, ...)``:

- cycle_p50_<db>, cycle_p95_<db>: the wall time of a cycle (targets: p50 <= 10 ms on
  SQLite, <= 15 ms on PostgreSQL);
- cycle_cpu_p50_<db>: this process's CPU time in a cycle (the database server's is not in
  it): steadier than the wall time on a busy machine;
- queries_per_cycle_<db>: the statements a cycle sends; queries_per_cycle, the worse of the
  two (target <= 20);
- new_connections_per_cycle_<db>: database connections opened during the cycles, per
  cycle; new_connections_per_cycle, the worse of the two (target 0).

It exits 0 whether the targets are met or not; it fails only when it cannot run.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# Run as a script: bench/ is on the path.
from benchkit import create_database, print_figures, run_database_child, say, setup_django

TARGET_P50_MS = {"sqlite": 10.0, "postgres": 15.0}
TARGET_QUERIES = 20
TARGET_CONNECTIONS = 0
WARMUP = 5  # cycles before the measured ones: the first statements prepare caches
DEFAULT_POSTGRES = "postgres://postgres:postgres@127.0.0.1:5432/portcullis"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=200, help="measured cycles (200)")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TEST_DATABASE_URL") or DEFAULT_POSTGRES,
        help="the PostgreSQL server to create the benchmark database on "
        "(TEST_DATABASE_URL, else the local server)",
    )
    parser.add_argument(
        "--database-url",
        help="measure this one database and print its figures as JSON (the child's mode; "
        "'sqlite' for a temporary SQLite file)",
    )
    return parser.parse_args(argv)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)  # nearest rank
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


# The child: one database -------------------------------------------------------------------
def prepare(pairs: int) -> tuple[Any, list[tuple[Any, Any, Any]]]:
    """The approver, and ``pairs`` (requester, resource, access level) triples: 20
    requesters, and as many accounts as make the pairs, all owned by the approver."""
    from access.models import AccessLevel, App, Resource, User

    approver = User.objects.create_user(username="olga.owner", email="olga.owner@example.com")
    users = [
        User.objects.create_user(username=f"user{n}", email=f"user{n}@example.com")
        for n in range(20)
    ]
    app = App.objects.create(name="Benchmark organization")
    triples = []
    for n in range(math.ceil(pairs / len(users))):
        account = f"{100000000000 + n}"
        resource = Resource.objects.create(
            app=app, type="aws_account", remote_id=account, name=f"account-{n}", account_id=account
        )
        resource.owners.create(user=approver)
        level = AccessLevel.objects.create(
            resource=resource, remote_id=f"arn:aws:sso:::permissionSet/ps-{n}", name="ReadOnly"
        )
        triples.extend((user, resource, level) for user in users)
    return approver, triples[:pairs]


def measure_one(cycles: int) -> dict[str, Any]:
    setup_django()
    from django.conf import settings

    logging.getLogger("django-q").setLevel(logging.WARNING)  # a line per task queued
    # Production runs without DEBUG (with it Django keeps every query in memory) and
    # mails through a server; neither is what is measured.
    settings.DEBUG = False
    settings.EMAIL_BACKEND = "django.core.mail.backends.dummy.EmailBackend"
    drop = create_database("requests")
    try:
        return run_cycles(cycles)
    finally:
        drop()


def run_cycles(cycles: int) -> dict[str, Any]:
    from django.db import connection
    from django.db.backends.signals import connection_created

    from access.services import requests

    approver, triples = prepare(WARMUP + cycles)
    queries = 0
    connections = 0

    def count_query(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        nonlocal queries
        queries += 1
        return execute(sql, params, many, context)

    def count_connection(**kwargs: Any) -> None:
        nonlocal connections
        connections += 1

    times: list[float] = []
    cpu_times: list[float] = []
    total_queries = total_connections = 0
    connection_created.connect(count_connection, weak=False)
    say(f"Running {WARMUP} + {cycles} cycles...")
    with connection.execute_wrapper(count_query):
        for index, (user, resource, level) in enumerate(triples):
            queries = connections = 0
            started, cpu = time.perf_counter(), time.process_time()
            (request,) = requests.submit_requests(
                requested_by=user,
                items=[requests.RequestItem(resource.pk, level.pk, timedelta(hours=8))],
                reason="Benchmark",
            )
            requests.decide(request, reviewer=approver, approve=True)
            elapsed = time.perf_counter() - started
            if index >= WARMUP:
                times.append(elapsed * 1000)
                cpu_times.append((time.process_time() - cpu) * 1000)
                total_queries += queries
                total_connections += connections
    connection_created.disconnect(count_connection)
    return {
        "cycles": cycles,
        "cycle_p50": percentile(times, 0.50),
        "cycle_p95": percentile(times, 0.95),
        "cycle_mean": statistics.fmean(times),
        "cycle_cpu_p50": percentile(cpu_times, 0.50),
        "queries_per_cycle": total_queries / cycles,
        "new_connections_per_cycle": total_connections / cycles,
    }


# The parent: both databases ----------------------------------------------------------------
def postgres_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql", "pgsql"):
        raise SystemExit(f"--postgres-url is not a PostgreSQL URL: {url}")
    return urlunsplit(parts)


def run_child(database: str, url: str, cycles: int) -> dict[str, Any]:
    return run_database_child(__file__, database, url, ["--cycles", str(cycles)])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
        print(json.dumps(measure_one(args.cycles)), flush=True)
        return 0
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="portcullis-requests-bench-") as workdir:
        # The child makes its own fresh file; this one only names the backend.
        runs["sqlite"] = run_child("sqlite", f"sqlite:///{workdir}/unused.sqlite3", args.cycles)
    runs["postgres"] = run_child("postgres", postgres_url(args.postgres_url), args.cycles)

    figures: list[tuple[str, Any, str]] = [("cycles", args.cycles, "")]
    for database, run in runs.items():
        figures += [
            (f"cycle_p50_{database}", f"{run['cycle_p50']:.2f}", "ms"),
            (f"cycle_p95_{database}", f"{run['cycle_p95']:.2f}", "ms"),
            (f"cycle_cpu_p50_{database}", f"{run['cycle_cpu_p50']:.2f}", "ms"),
            (f"queries_per_cycle_{database}", f"{run['queries_per_cycle']:.1f}", ""),
            (
                f"new_connections_per_cycle_{database}",
                f"{run['new_connections_per_cycle']:.2f}",
                "",
            ),
        ]
    worst_queries = max(run["queries_per_cycle"] for run in runs.values())
    worst_connections = max(run["new_connections_per_cycle"] for run in runs.values())
    figures += [
        ("queries_per_cycle", f"{worst_queries:.1f}", ""),
        ("new_connections_per_cycle", f"{worst_connections:.2f}", ""),
    ]
    print_figures(figures)

    missed = [
        f"cycle_p50_{database}"
        for database, run in runs.items()
        if not run["cycle_p50"] <= TARGET_P50_MS[database]
    ]
    if not worst_queries <= TARGET_QUERIES:
        missed.append("queries_per_cycle")
    if not worst_connections <= TARGET_CONNECTIONS:
        missed.append("new_connections_per_cycle")
    print("targets: met" if not missed else f"targets: missed ({', '.join(missed)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

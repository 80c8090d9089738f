"""The pages benchmark: what the busiest list pages cost at the size of a large organization,
on SQLite and on PostgreSQL in one run.

    DEBUG=true .venv/bin/python bench/pages_bench.py [--resources 100000 --grants 50000]
    make bench-pages

Each database is measured in a child process of its own (this script with ``--database-url``),
on a fresh database created and migrated there and dropped at the end: a temporary SQLite
file, and ``<name>_pages_bench`` on the server of ``--postgres-url`` (TEST_DATABASE_URL,
else the local server's ``portcullis``). Both run as production does: DEBUG off,
DB_CONN_MAX_AGE 0 (one connection per child, as a web worker keeps one per request).

The child first seeds 1% of the rows and counts each page's queries, then seeds the rest
(bulk_create: 100 accounts under 5 OUs, the other resources spread over them with tags
``env``, ``team`` and ``cost-center``, an access level each, 2,000 users, grants of
every status) and measures each page through Django's test client: the server's time,
request to response, without a network or a browser. The pages, each as the persona who
uses it:

- catalogue: the catalogue's first page, as a requester;
- catalogue_search: the catalogue searched, in turn, by a name part, ``key=value``, an
  account's name and a word that only one resource has (the search that reads the most);
- api_search: ``GET /api/v1/resources/?search=`` with the same words, as a requester;
- admin_grants: the grants admin's list, as an admin;
- admin_grants_search: that list searched by a user's email, a resource's name and an
  access level.

Figures, one a line as ``name: value unit``, then ``targets: met`` or
``targets: missed (name, ...)``:

- <page>_p50_ms_<db>, <page>_p95_ms_<db>: the page's server time;
- <page>_queries_<db>: the statements the page sends at full size (the most of its
  searches); target: no more than at 1% of the rows;
- <page>_p50_ms: the worse of the two databases (target <= 50 ms for every page).

The machine's load shows in the figures: run it on a quiet machine to compare runs. It exits
0 whether the targets are met or not; it fails only when it cannot run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import tempfile
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

# Run as a script: bench/ is on the path.
from benchkit import create_database, print_figures, run_database_child, say, setup_django
from requests_bench import percentile, postgres_url

TARGET_P50_MS = 50.0
WARMUP = 3  # requests per page before the measured ones: caches, prepared plans
DEFAULT_POSTGRES = "postgres://postgres:postgres@127.0.0.1:5432/portcullis"
PAGES = ("catalogue", "catalogue_search", "api_search", "admin_grants", "admin_grants_search")
ACCOUNTS = 100
OUS = 5
USERS = 2000
TEAMS = ("payments", "analytics", "checkout", "identity", "search", "billing", "ledger", "web")
ENVS = ("prod", "staging", "dev", "sandbox")
# The catalogue's and the API's searches, taken in turn; the last matches one resource.
CATALOGUE_SEARCHES = ("deploy", "env=prod", "payments-prod", "042137")
ADMIN_SEARCHES = ("user0421", "payments-prod-", "ReadOnly")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resources", type=int, default=100_000, help="resources (100,000)")
    parser.add_argument("--grants", type=int, default=50_000, help="grants (50,000)")
    parser.add_argument("--requests", type=int, default=40, help="measured requests a page (40)")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TEST_DATABASE_URL") or DEFAULT_POSTGRES,
        help="the PostgreSQL server to create the benchmark database on "
        "(TEST_DATABASE_URL, else the local server)",
    )
    parser.add_argument(
        "--database-url",
        help="measure this one database and print its figures as JSON (the child's mode)",
    )
    return parser.parse_args(argv)


# The child: one database -------------------------------------------------------------------
class Seed:
    """The organization, written in bulk in slices: ``grow(resources, grants)`` adds rows
    until there are that many."""

    def __init__(self) -> None:
        from django.contrib.auth.models import Group

        from access.models import App, Resource, User
        from access.permissions import ADMIN_ROLE

        self.app = App.objects.create(name="Benchmark organization")
        self.admin = User.objects.create_user(
            username="ada.admin", email="ada.admin@example.com", is_staff=True
        )
        self.admin.groups.add(Group.objects.get(name=ADMIN_ROLE))
        self.requester = User.objects.create_user(
            username="rob.requester", email="rob.requester@example.com"
        )
        self.users = User.objects.bulk_create(
            User(username=f"user{n:04d}", email=f"user{n:04d}@example.com", password="!")
            for n in range(USERS)
        )
        ous = Resource.objects.bulk_create(
            Resource(app=self.app, type="aws_ou", remote_id=f"ou-{n}", name=f"Workloads {n}")
            for n in range(OUS)
        )
        self.accounts = Resource.objects.bulk_create(
            Resource(
                app=self.app,
                type="aws_account",
                remote_id=f"{100000000000 + n}",
                account_id=f"{100000000000 + n}",
                name=self.account_name(n),
                parent=ous[n % OUS],
            )
            for n in range(ACCOUNTS)
        )
        self.resources = OUS + ACCOUNTS
        self.grants = 0
        self.random = random.Random(7)

    @staticmethod
    def account_name(n: int) -> str:
        name = f"{TEAMS[n % len(TEAMS)]}-{ENVS[n // len(TEAMS) % len(ENVS)]}"
        # Some names capitalized, as people name accounts: the catalogue sorts by any case.
        name = name.capitalize() if n % 3 == 0 else name
        return name if n < len(TEAMS) * len(ENVS) else f"{name}-{n}"

    def grow(self, resources: int, grants: int) -> None:
        from access.models import AccessLevel, Grant, Resource

        kinds = (
            ("aws_iam_role", "role", "arn:aws:iam::{account}:role/{name}", ""),
            ("aws_idc_group", "group", "", ""),
            ("aws_ec2_instance", "i", "arn:aws:ec2:{region}:{account}:instance/{name}", "x"),
            ("aws_rds_postgres", "db", "arn:aws:rds:{region}:{account}:db:{name}", "x"),
        )
        batch = 5000
        while self.resources < resources:
            rows = []
            for i in range(self.resources, min(resources, self.resources + batch)):
                account = self.accounts[i % ACCOUNTS]
                type_, prefix, arn, regional = kinds[i % len(kinds)]
                team, env = TEAMS[i % len(TEAMS)], ENVS[i // 7 % len(ENVS)]
                word = ("deploy", "reader", "worker", "api", "etl")[i % 5]
                name = f"{prefix}-{team}-{word}-{i:06d}"
                region = ("eu-west-1", "us-east-1", "ap-south-1")[i % 3] if regional else ""
                rows.append(
                    Resource(
                        app=self.app,
                        type=type_,
                        remote_id=f"r-{i:06d}",
                        name=name.capitalize() if i % 4 == 0 else name,
                        arn=arn.format(account=account.account_id, region=region, name=name),
                        account_id=account.account_id,
                        region=region,
                        parent=account,
                        tags={"env": env, "team": team, "cost-center": f"cc-{i % 200}"},
                    )
                )
            created = Resource.objects.bulk_create(rows, batch_size=batch)
            AccessLevel.objects.bulk_create(
                (
                    AccessLevel(
                        resource=r, remote_id="level", name=("ReadOnly", "Admin", "member")[n % 3]
                    )
                    for n, r in enumerate(created)
                ),
                batch_size=batch,
            )
            self.resources += len(created)
        from django.utils import timezone

        now = timezone.now()
        while self.grants < grants:
            count = min(batch, grants - self.grants)
            picks = self.random.choices(range(OUS + ACCOUNTS, self.resources), k=count)
            levels = dict(
                AccessLevel.objects.filter(
                    resource_id__in=[self.resource_pk(p) for p in picks]
                ).values_list("resource_id", "pk")
            )
            statuses = ("active", "active", "revoked", "pending", "failed")
            Grant.objects.bulk_create(
                (
                    Grant(
                        user=self.users[(self.grants + n) % USERS],
                        resource_id=self.resource_pk(p),
                        access_level_id=levels[self.resource_pk(p)],
                        source="request" if n % 4 else "admin",
                        status=statuses[n % len(statuses)],
                        expires_at=now + timedelta(hours=1 + n % 100),
                    )
                    for n, p in enumerate(picks)
                ),
                batch_size=batch,
            )
            self.grants += count

    def resource_pk(self, index: int) -> int:
        # Rows are created in order in a fresh database: the pk follows the index.
        return self.accounts[0].pk - OUS + index


def page_requests(seed: Seed) -> dict[str, list[tuple[Any, str]]]:
    """Each page's (persona, address) list, taken in turn."""
    from django.urls import reverse

    catalogue = reverse("catalogue")
    resources = reverse("access-api:resource-list")
    grants = reverse("admin:access_grant_changelist")
    return {
        "catalogue": [(seed.requester, catalogue)],
        "catalogue_search": [
            (seed.requester, f"{catalogue}?{urlencode({'q': q})}") for q in CATALOGUE_SEARCHES
        ],
        "api_search": [
            (seed.requester, f"{resources}?{urlencode({'search': q})}") for q in CATALOGUE_SEARCHES
        ],
        "admin_grants": [(seed.admin, grants)],
        "admin_grants_search": [
            (seed.admin, f"{grants}?{urlencode({'q': q})}") for q in ADMIN_SEARCHES
        ],
    }


def measure_pages(seed: Seed, requests: int, warmup: int) -> dict[str, dict[str, Any]]:
    from django.db import connection
    from django.test import Client

    clients: dict[int, Client] = {}
    queries = 0

    def count_query(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        nonlocal queries
        queries += 1
        return execute(sql, params, many, context)

    results: dict[str, dict[str, Any]] = {}
    for page, calls in page_requests(seed).items():
        times: list[float] = []
        most_queries = 0
        for index in range(warmup + requests):
            user, url = calls[index % len(calls)]
            if user.pk not in clients:
                clients[user.pk] = Client()
                clients[user.pk].force_login(user)
            queries = 0
            with connection.execute_wrapper(count_query):
                started = time.perf_counter()
                response = clients[user.pk].get(url)
                elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise SystemExit(f"{url} answered {response.status_code}")
            if index >= warmup:
                times.append(elapsed * 1000)
                most_queries = max(most_queries, queries)
        results[page] = {
            "p50": percentile(times, 0.50) if times else 0.0,
            "p95": percentile(times, 0.95) if times else 0.0,
            "queries": most_queries,
        }
    return results


def measure_one(resources: int, grants: int, requests: int) -> dict[str, Any]:
    os.environ.setdefault("API_THROTTLE_USER", "1000000/minute")
    setup_django()
    from django.conf import settings

    logging.getLogger("django.request").setLevel(logging.ERROR)
    # Production runs without DEBUG (with it Django keeps every query in memory).
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    drop = create_database("pages")
    try:
        seed = Seed()
        small = measure_pages_at(seed, max(1000, resources // 100), grants // 100, 2, 1)
        full = measure_pages_at(seed, resources, grants, requests, WARMUP)
        return {page: {**full[page], "queries_small": small[page]["queries"]} for page in PAGES}
    finally:
        drop()


def measure_pages_at(
    seed: Seed, resources: int, grants: int, requests: int, warmup: int
) -> dict[str, dict[str, Any]]:
    from django.db import connection

    started = time.perf_counter()
    seed.grow(resources, grants)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    say(
        f"Seeded {seed.resources} resources, {seed.grants} grants in "
        f"{time.perf_counter() - started:.1f} s; measuring {requests} requests a page..."
    )
    return measure_pages(seed, requests, warmup)


# The parent: both databases ----------------------------------------------------------------
def run_child(database: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    options = ["--resources", str(args.resources), "--grants", str(args.grants)]
    return run_database_child(__file__, database, url, [*options, "--requests", str(args.requests)])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
        print(json.dumps(measure_one(args.resources, args.grants, args.requests)), flush=True)
        return 0
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="portcullis-pages-bench-") as workdir:
        # The child makes its own fresh file; this one only names the backend.
        runs["sqlite"] = run_child("sqlite", f"sqlite:///{workdir}/unused.sqlite3", args)
    runs["postgres"] = run_child("postgres", postgres_url(args.postgres_url), args)

    figures: list[tuple[str, Any, str]] = [
        ("resources", args.resources, ""),
        ("grants", args.grants, ""),
    ]
    missed: list[str] = []
    for page in PAGES:
        for database, run in runs.items():
            figures += [
                (f"{page}_p50_ms_{database}", f"{run[page]['p50']:.1f}", "ms"),
                (f"{page}_p95_ms_{database}", f"{run[page]['p95']:.1f}", "ms"),
                (f"{page}_queries_{database}", run[page]["queries"], ""),
            ]
            if run[page]["queries"] > run[page]["queries_small"]:
                missed.append(f"{page}_queries_{database}")
        worst = max(run[page]["p50"] for run in runs.values())
        figures.append((f"{page}_p50_ms", f"{worst:.1f}", "ms"))
        if not worst <= TARGET_P50_MS:
            missed.append(f"{page}_p50_ms")
    print_figures(figures)
    print("targets: met" if not missed else f"targets: missed ({', '.join(missed)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

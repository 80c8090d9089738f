"""What the benchmarks share: the stand-in AWS in a child process (seeded, serving until
the parent ends), Django set up from the repository, and progress lines on stderr.

Run as a script, this module is that child: ``python bench/benchkit.py '<seed size JSON>'``.
Besides serving AWS, the child answers the parent on its stdin and stdout: a line
``memberships <identity store id>`` gets one JSON line of what its Identity Center holds,
read from the stand-in's own state. Benchmarks watch AWS that way rather than through the
API: listing every group four times a second cost the benchmark's process three times the
CPU of the portal it measures, and the stand-in the time of the grants it serves.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
# The stand-in accepts any credentials; real ones from the environment are never sent.
STANDIN_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def print_figures(figures: list[tuple[str, Any, str]]) -> None:
    """The figures on stdout, one a line as ``name: value unit``."""
    for name, value, unit in figures:
        print(f"{name}: {value} {unit}".rstrip())


def setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def serve_standin(size_json: str) -> None:
    """Child process: starts moto, seeds it, prints what was seeded as one JSON line, and
    serves until the parent closes stdin."""
    setup_django()
    from django.conf import settings

    from demo import seed, standin

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    server = standin.start_moto()
    settings.AWS_ENDPOINT_URL = server.url
    result = seed.seed_organization(
        seed.SeedSize(**json.loads(size_json)), progress=lambda m: say(f"  seed: {m}")
    )
    summary = {
        "url": server.url,
        "management_account_id": result.management_account_id,
        "region": result.region,
        "regions": result.regions,
        "instance_arn": result.instance_arn,
        "identity_store_id": result.identity_store_id,
        "users": result.users,
        "groups": result.groups,
        "counts": result.counts(),
        "seconds": result.seconds,
        "size": asdict(result.size),
    }
    print(json.dumps(summary), flush=True)
    for line in sys.stdin:  # until the parent ends
        command, _, argument = line.strip().partition(" ")
        if command == "memberships":
            print(json.dumps(held_memberships(argument)), flush=True)
    server.stop()


def held_memberships(store_id: str) -> dict[str, Any]:
    """What the stand-in's identity store holds now: {"at": time, "groups": {group id:
    [user ids]}}."""
    from moto.identitystore.models import identitystore_backends

    groups: dict[str, list[str]] = {}
    for account_id in list(identitystore_backends.keys()):
        for region in list(identitystore_backends[account_id].keys()):
            store = identitystore_backends[account_id][region].identity_stores.get(store_id)
            # list(): one step under the GIL while the server's threads change the dict.
            for membership in list(store.group_memberships.values()) if store else []:
                groups.setdefault(membership["GroupId"], []).append(
                    membership["MemberId"]["UserId"]
                )
    return {"at": time.time(), "groups": groups}


def start_standin(size: dict[str, Any]) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """The seeded stand-in in a child process, and what it seeded."""
    child = subprocess.Popen(  # noqa: S603 - this interpreter running this file
        [sys.executable, str(Path(__file__).resolve()), json.dumps(size)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        # The child needs no database of its own.
        env={**os.environ, **STANDIN_ENV, "DATABASE_URL": "sqlite:///:memory:"},
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line:
        child.wait()
        raise SystemExit(f"The stand-in AWS did not start (exit status {child.returncode}).")
    global _standin
    _standin = child
    return child, json.loads(line)


_standin: subprocess.Popen[str] | None = None
_standin_lock = threading.Lock()


def standin_memberships(store_id: str) -> tuple[dict[str, set[str]], float]:
    """The memberships the stand-in started by ``start_standin`` holds now, per group, and
    when it read them."""
    assert _standin is not None and _standin.stdin is not None and _standin.stdout is not None
    with _standin_lock:
        _standin.stdin.write(f"memberships {store_id}\n")
        _standin.stdin.flush()
        answer = json.loads(_standin.stdout.readline())
    return {g: set(users) for g, users in answer["groups"].items()}, answer["at"]


if __name__ == "__main__":
    os.environ.update(STANDIN_ENV)
    serve_standin(sys.argv[1])


def create_database(name: str) -> Callable[[], None]:
    """Creates and migrates a fresh database for the benchmark ``name``: a file in a
    temporary directory on SQLite, ``<database>_<name>_bench`` on PostgreSQL. Returns what
    drops it."""
    from django.conf import settings
    from django.db import connection

    workdir = Path(tempfile.mkdtemp(prefix=f"portcullis-{name}-bench-"))
    if connection.vendor == "sqlite":
        test_name = str(workdir / "bench.sqlite3")
    else:
        test_name = f"{urlsplit(settings.DATABASE_URL).path.lstrip('/')}_{name}_bench"
    connection.settings_dict.setdefault("TEST", {})["NAME"] = test_name
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    say(f"Database: {connection.vendor} {test_name} (fresh, migrated)")

    def drop() -> None:
        connection.close()
        connection.creation.destroy_test_db(old_name, verbosity=0)
        shutil.rmtree(workdir, ignore_errors=True)

    return drop


def run_database_child(script: str, database: str, url: str, options: list[str]) -> dict[str, Any]:
    """Runs ``script`` (a benchmark's own file) on one database in a child process, as
    production runs (no kept connections, tasks queued), with ``--database-url url`` and
    ``options``; returns the figures it prints as JSON on its last line."""
    say(f"== {database} ==")
    env = {**os.environ, "DATABASE_URL": url, "DB_CONN_MAX_AGE": "0", "TASKS_INLINE": "false"}
    child = subprocess.run(  # noqa: S603 - this interpreter running a benchmark's file
        [sys.executable, str(Path(script).resolve()), "--database-url", url, *options],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if child.returncode != 0:
        raise SystemExit(f"The {database} run failed (exit status {child.returncode}).")
    result: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    return result

"""What the benchmarks share: the stand-in AWS in a child process (seeded, serving until
the parent ends), Django set up from the repository, and progress lines on stderr.

Run as a script, this module is that child: ``python bench/benchkit.py '<seed size JSON>'``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

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
    sys.stdin.read()  # until the parent ends
    server.stop()


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
    return child, json.loads(line)


if __name__ == "__main__":
    os.environ.update(STANDIN_ENV)
    serve_standin(sys.argv[1])

"""The task cluster as operators run it: `manage.py qcluster` in a process of its own, on
both brokers (the database and Redis). Its loops start with it, one holds each lease, and
a SIGTERM, to the cluster's process or to its whole process group, stops it and releases
the leases at once, so that the next cluster takes over."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


def env_for(db: Path, broker: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DEBUG": "true",
        "DATABASE_URL": f"sqlite:///{db}",
        "Q_WORKERS": "1",
        "TASKS_INLINE": "false",
    }
    env.pop("REDIS_URL", None)
    if broker == "redis":
        env["REDIS_URL"] = REDIS_URL
    return env


def leases(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT name, holder FROM access_lease WHERE until > strftime('%Y-%m-%d %H:%M:%f', 'now')"
        ).fetchall()
    return dict(rows)


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("broker", ["orm", "redis"])
def test_a_cluster_runs_the_engine_under_its_lease_and_hands_it_over_on_sigterm(tmp_path, broker):
    if broker == "redis":
        import redis

        redis.Redis.from_url(REDIS_URL).ping()  # Redis must run here: a failure, not a skip
    db = tmp_path / "cluster.sqlite3"
    env = env_for(db, broker)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    first = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env, stderr=subprocess.PIPE
    )
    second = None
    try:
        wait_for(lambda: "engine" in leases(db), 60, "the first cluster's engine lease")
        holder = leases(db)["engine"]
        assert f":{first.pid}:" not in holder  # held by its loop's own process

        second = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, signalled as one below
        )
        time.sleep(3)  # the second cluster's loops are up and stand by
        assert leases(db)["engine"] == holder

        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0
        # Released at the stop: the standing-by engine takes the lease over.
        wait_for(
            lambda: leases(db).get("engine") not in (None, holder),
            10,
            "the second cluster's engine to take over",
        )

        # As a process manager that signals every process of the service (systemd's
        # default): django-q2's sentinel and workers die at once, the loops stop and release.
        os.killpg(second.pid, signal.SIGTERM)
        assert second.wait(timeout=30) == 0
        assert "engine" not in leases(db)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()

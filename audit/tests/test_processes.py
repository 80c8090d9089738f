"""The SQLite database Portcullis runs on by default, written by separate processes.

The in-memory test database cannot show concurrent SQLite writers (its shared
cache uses table locks that fail instead of waiting), so these tests migrate a
database file and run real processes against it, with the project's settings.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

WRITERS = 3
EVENTS_PER_WRITER = 10


def _env(db_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(
        DEBUG="true",
        DATABASE_URL=f"sqlite:///{db_path}",
        PORTCULLIS_VAR_DIR=str(db_path.parent),
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    return env


def _manage(db_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env=_env(db_path),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def migrated_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if connection.vendor != "sqlite":
        pytest.skip("A SQLite file database: exercised in the SQLite run of the suite.")
    path = tmp_path_factory.mktemp("sqlite-template") / "portcullis.sqlite3"
    result = _manage(path, "migrate", "--verbosity", "0")
    assert result.returncode == 0, result.stderr
    return path


@pytest.fixture
def database(migrated_database: Path, tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "portcullis.sqlite3"
    shutil.copyfile(migrated_database, path)
    yield path


def _rows(path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


def test_writer_processes_on_a_sqlite_file_keep_the_chain_linear(database, tmp_path):
    ready = tmp_path / "ready"
    ready.mkdir()
    writers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "audit.tests.sqlite_writer",
                f"writer-{n}",
                str(ready),
                str(WRITERS),
                str(EVENTS_PER_WRITER),
            ],
            cwd=settings.BASE_DIR,
            env=_env(database),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(WRITERS)
    ]
    outcomes: list[tuple[int, str]] = []
    for w in writers:
        _, err = w.communicate(timeout=120)
        outcomes.append((w.returncode, err))
    assert [code for code, _ in outcomes] == [0] * WRITERS, [err for _, err in outcomes]
    rows = _rows(
        database, "SELECT id, actor_name, prev_hash, hash FROM audit_auditevent ORDER BY id"
    )
    assert len(rows) == WRITERS * EVENTS_PER_WRITER
    for (prev_id, _, _, prev_hash), (event_id, _, event_prev, _) in pairwise(rows):
        assert event_prev == prev_hash, f"event {event_id} does not follow {prev_id}"
    assert len({name for _, name, _, _ in rows}) == WRITERS

    verify = _manage(database, "audit_verify")
    assert verify.returncode == 0, verify.stderr
    assert f"audit chain intact: {WRITERS * EVENTS_PER_WRITER} events" in verify.stdout


def test_audit_verify_exits_1_naming_a_row_changed_in_the_file(database, tmp_path):
    ready = tmp_path / "ready"
    ready.mkdir()
    writer = subprocess.run(
        [sys.executable, "-m", "audit.tests.sqlite_writer", "writer", str(ready), "1", "3"],
        cwd=settings.BASE_DIR,
        env=_env(database),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert writer.returncode == 0, writer.stderr
    first, second, third = (
        pk for (pk,) in _rows(database, "SELECT id FROM audit_auditevent ORDER BY id")
    )
    with sqlite3.connect(database) as db:
        # Someone with the database file in hand: triggers first, then the row.
        db.execute("DROP TRIGGER audit_event_no_update")
        db.execute("UPDATE audit_auditevent SET actor_name = 'someone else' WHERE id = ?", [second])

    verify = _manage(database, "audit_verify")

    assert verify.returncode == 1
    assert f"audit chain broken at event {second} " in verify.stderr
    assert "the row was changed" in verify.stderr
    assert "audit chain intact" not in verify.stdout

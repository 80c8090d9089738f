"""PostgreSQL with the application connected as a role that cannot rewrite the audit log.

A new database and a new login role are made for the module: migrate runs as the owner
through MIGRATE_DATABASE_URL, grant_app_role gives the new role its rights, and then,
connected as that role, events can be written while every way of changing, emptying or
unprotecting the log is refused by PostgreSQL's privileges.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from audit import triggers

APP_PASSWORD = "app-role-password"


@dataclass
class RoleDatabase:
    name: str
    role: str
    owner_url: str
    app_url: str
    server: dict[str, Any]

    def manage(self, *args: str, migrate_url: str | None = None) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
        env.update(
            DEBUG="true", DATABASE_URL=self.app_url, DJANGO_SETTINGS_MODULE="config.settings"
        )
        env.pop("MIGRATE_DATABASE_URL", None)
        if migrate_url:
            env["MIGRATE_DATABASE_URL"] = migrate_url
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=settings.BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def connect(self, *, as_app: bool) -> psycopg.Connection:
        if as_app:
            server = {**self.server, "user": self.role, "password": APP_PASSWORD}
            return psycopg.connect(**server, dbname=self.name)
        return psycopg.connect(**self.server, dbname=self.name, autocommit=True)


def _url(user: str, password: str, server: dict[str, Any], name: str) -> str:
    return f"postgres://{user}:{password}@{server['host']}:{server['port']}/{name}"


@pytest.fixture(scope="module")
def role_database() -> Iterator[RoleDatabase]:
    if connection.vendor != "postgresql":
        pytest.skip("Database roles: exercised in the PostgreSQL run of the suite.")
    config = connection.settings_dict
    suffix = secrets.token_hex(4)
    server = {"host": config["HOST"] or "127.0.0.1", "port": config["PORT"] or 5432}
    admin = {**server, "user": config["USER"], "password": config["PASSWORD"]}
    name = f"portcullis_roles_{suffix}"
    role = f"portcullis_test_app_{suffix}"
    with psycopg.connect(**admin, dbname="postgres", autocommit=True) as conn:
        conn.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{APP_PASSWORD}'")
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield RoleDatabase(
            name=name,
            role=role,
            owner_url=_url(config["USER"], config["PASSWORD"], server, name),
            app_url=_url(role, APP_PASSWORD, server, name),
            server=admin,
        )
    finally:
        with psycopg.connect(**admin, dbname="postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.fixture(scope="module")
def granted(role_database: RoleDatabase) -> RoleDatabase:
    db = role_database
    migrated = db.manage("migrate", "--no-input", "-v", "0", migrate_url=db.owner_url)
    assert migrated.returncode == 0, migrated.stderr
    granted = db.manage("grant_app_role", db.role, migrate_url=db.owner_url)
    assert granted.returncode == 0, granted.stderr
    assert "only read and append to the audit log" in granted.stdout
    return db


def test_migrate_runs_as_the_owner_given_by_migrate_database_url(granted: RoleDatabase):
    with granted.connect(as_app=False) as conn:
        owners = conn.execute(
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    assert owners == [(granted.server["user"],)]


def test_the_app_role_writes_and_verifies_events(granted: RoleDatabase):
    wrote = granted.manage(
        "shell", "-c", "from audit.services import record_event; record_event('test.as_app_role')"
    )
    assert wrote.returncode == 0, wrote.stderr
    verified = granted.manage("audit_verify", "--no-progress")
    assert verified.returncode == 0, verified.stderr
    assert "audit chain intact" in verified.stdout
    with granted.connect(as_app=True) as conn:
        actions = conn.execute("SELECT action FROM audit_auditevent").fetchall()
    assert ("test.as_app_role",) in actions


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_auditevent SET action = 'forged'",
        "DELETE FROM audit_auditevent",
        "TRUNCATE audit_auditevent",
        "ALTER TABLE audit_auditevent DISABLE TRIGGER ALL",
        "ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_no_change",
        "DROP TRIGGER audit_event_no_truncate ON audit_auditevent",
        "DROP TABLE audit_auditevent",
        "CREATE TABLE portcullis_intruder (id int)",
        # The triggers' function is the owner's, and the app may create nothing to shadow it.
        "CREATE OR REPLACE FUNCTION audit_event_refuse_change() RETURNS trigger "
        "AS $$ BEGIN RETURN NULL; END; $$ LANGUAGE plpgsql",
        "CREATE FUNCTION public.audit_event_refuse_change(int) RETURNS int "
        "AS 'SELECT 1' LANGUAGE sql",
        "CREATE TRIGGER intruder BEFORE INSERT ON audit_auditevent "
        "FOR EACH ROW EXECUTE FUNCTION audit_event_refuse_change()",
        "SET session_replication_role = replica",
        # Renumbering the chain (it is ordered by id).
        "SELECT setval('audit_auditevent_id_seq', 1)",
        "ALTER SEQUENCE audit_auditevent_id_seq RESTART WITH 1",
        "CREATE SCHEMA intruder",
    ],
)
def test_the_app_role_cannot_change_empty_or_unprotect_the_audit_log(
    granted: RoleDatabase, sql: str
):
    with granted.connect(as_app=True) as conn:
        conn.execute(
            "INSERT INTO audit_auditevent (occurred_at, actor_type, actor_name, action, "
            "target_type, target_id, target_label, details, request_id, prev_hash, hash) "
            "VALUES (now(), 'system', 'system', 'test.raw', '', '', '', '{}', '', '', %s)",
            [secrets.token_hex(32)],
        )
        conn.commit()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql)
        conn.rollback()
        # Still there, and still protected.
        assert conn.execute("SELECT count(*) FROM audit_auditevent").fetchone()[0] >= 1
    with granted.connect(as_app=False) as conn:
        names = conn.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND tgenabled = 'O'",
            [triggers.TABLE],
        ).fetchall()
    assert sorted(names) == [("audit_event_no_change",), ("audit_event_no_truncate",)]


def test_the_app_role_still_writes_every_other_table(granted: RoleDatabase):
    with granted.connect(as_app=True) as conn:
        conn.execute("UPDATE django_q_schedule SET repeats = repeats")
        conn.execute("DELETE FROM django_session")
        conn.rollback()


def test_grant_app_role_refuses_a_superuser_and_the_owner(granted: RoleDatabase):
    owner = granted.server["user"]
    refused = granted.manage("grant_app_role", owner, migrate_url=granted.owner_url)
    assert refused.returncode == 1
    assert "superuser" in refused.stderr
    missing = granted.manage("grant_app_role", "no_such_role_x", migrate_url=granted.owner_url)
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr
    odd = granted.manage("grant_app_role", 'x"; DROP TABLE y; --', migrate_url=granted.owner_url)
    assert odd.returncode == 1
    assert "not a plain PostgreSQL role name" in odd.stderr


def test_grant_app_role_must_run_as_the_owner(granted: RoleDatabase):
    refused = granted.manage("grant_app_role", granted.role)
    assert refused.returncode == 1
    assert "set MIGRATE_DATABASE_URL" in refused.stderr or "owns the tables" in refused.stderr


def test_migrate_database_url_must_name_the_same_database(granted: RoleDatabase):
    other = granted.owner_url.rsplit("/", 1)[0] + "/another_database"
    refused = granted.manage("check", migrate_url=other)
    assert refused.returncode == 1
    assert "both must name the same database" in refused.stderr


def test_grant_app_role_refuses_a_role_that_may_create_in_the_database(granted: RoleDatabase):
    # The owner of a database owns its public schema (pg_database_owner), and a schema's
    # owner may DROP any table in it, the audit log included, whatever its grants; and a
    # role that may create schemas or objects on the search path can shadow the tables.
    with granted.connect(as_app=False) as conn:
        conn.execute(f'ALTER DATABASE "{granted.name}" OWNER TO "{granted.role}"')
    try:
        refused = granted.manage("grant_app_role", granted.role, migrate_url=granted.owner_url)
        assert refused.returncode == 1, refused.stdout
        assert "owns or may create objects in" in refused.stderr
        assert f"database {granted.name}" in refused.stderr
    finally:
        with granted.connect(as_app=False) as conn:
            conn.execute(f'ALTER DATABASE "{granted.name}" OWNER TO "{granted.server["user"]}"')


def test_grant_app_role_refuses_a_role_that_may_create_in_the_schema(granted: RoleDatabase):
    with granted.connect(as_app=False) as conn:
        conn.execute(f'GRANT CREATE ON SCHEMA public TO "{granted.role}"')
    try:
        refused = granted.manage("grant_app_role", granted.role, migrate_url=granted.owner_url)
        assert refused.returncode == 1, refused.stdout
        assert "owns or may create objects in" in refused.stderr
        assert "schema public" in refused.stderr
    finally:
        with granted.connect(as_app=False) as conn:
            conn.execute(f'REVOKE CREATE ON SCHEMA public FROM "{granted.role}"')


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO django_migrations (app, name, applied) "
        "VALUES ('audit', '9999_protection_to_come', now())",
        "DELETE FROM django_migrations WHERE app = 'audit'",
        "UPDATE django_migrations SET name = name",
    ],
)
def test_the_app_role_cannot_mark_migrations_applied_or_unapplied(granted: RoleDatabase, sql: str):
    """migrate, run as the owner, skips what django_migrations lists as applied."""
    with granted.connect(as_app=True) as conn:
        assert conn.execute("SELECT count(*) FROM django_migrations").fetchone()[0] > 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql)

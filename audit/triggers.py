"""Database triggers that refuse UPDATE, DELETE and (on PostgreSQL) TRUNCATE on audit events.

Installed by migrations on SQLite and PostgreSQL. ``drop`` and
``drop_truncate`` exist for test database teardown only: Django's flush
between transactional tests empties every table, with DELETE on SQLite and
TRUNCATE on PostgreSQL. Nothing in the application calls them; lifting a
trigger takes the table owner's rights, which the application's role does not
have when it runs as a restricted role (see ``grant_app_role``).
"""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper

TABLE = "audit_auditevent"
MESSAGE = "audit events are append-only"

_SQLITE_CREATE = [
    f"CREATE TRIGGER IF NOT EXISTS audit_event_no_update BEFORE UPDATE ON {TABLE} "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END;",
    f"CREATE TRIGGER IF NOT EXISTS audit_event_no_delete BEFORE DELETE ON {TABLE} "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END;",
]
_SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS audit_event_no_update;",
    "DROP TRIGGER IF EXISTS audit_event_no_delete;",
]
_PG_CREATE = [
    f"""CREATE OR REPLACE FUNCTION audit_event_refuse_change() RETURNS trigger AS $$
    BEGIN
        RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'insufficient_privilege';
    END;
    $$ LANGUAGE plpgsql;""",
    f"DROP TRIGGER IF EXISTS audit_event_no_change ON {TABLE};",
    f"CREATE TRIGGER audit_event_no_change BEFORE UPDATE OR DELETE ON {TABLE} "
    "FOR EACH ROW EXECUTE FUNCTION audit_event_refuse_change();",
]
# TRUNCATE fires no row trigger: a statement trigger refuses it.
_PG_CREATE_TRUNCATE = [
    f"DROP TRIGGER IF EXISTS audit_event_no_truncate ON {TABLE};",
    f"CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON {TABLE} "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_event_refuse_change();",
]
_PG_DROP_TRUNCATE = [
    f"DROP TRIGGER IF EXISTS audit_event_no_truncate ON {TABLE};",
]
_PG_DROP = [
    f"DROP TRIGGER IF EXISTS audit_event_no_change ON {TABLE};",
    *_PG_DROP_TRUNCATE,
]


def _run(connection: BaseDatabaseWrapper, statements: list[str]) -> None:
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def install(connection: BaseDatabaseWrapper) -> None:
    if connection.vendor == "sqlite":
        _run(connection, _SQLITE_CREATE)
    elif connection.vendor == "postgresql":
        _run(connection, _PG_CREATE)
        _run(connection, _PG_CREATE_TRUNCATE)


def install_truncate(connection: BaseDatabaseWrapper) -> None:
    """The TRUNCATE trigger alone (PostgreSQL; SQLite has no TRUNCATE)."""
    if connection.vendor == "postgresql":
        _run(connection, _PG_CREATE)
        _run(connection, _PG_CREATE_TRUNCATE)


def drop_truncate(connection: BaseDatabaseWrapper) -> None:
    if connection.vendor == "postgresql":
        _run(connection, _PG_DROP_TRUNCATE)


def drop(connection: BaseDatabaseWrapper) -> None:
    if connection.vendor == "sqlite":
        _run(connection, _SQLITE_DROP)
    elif connection.vendor == "postgresql":
        _run(connection, _PG_DROP)

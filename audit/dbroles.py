"""Running the application as a PostgreSQL role that cannot rewrite the audit log.

The tables' owner may do anything to a table, its triggers included. So the owner runs
``migrate`` (``MIGRATE_DATABASE_URL``), and the application connects (``DATABASE_URL``)
as another role, given by :func:`grant_app_role` every right on every table except
UPDATE, DELETE and TRUNCATE on the audit log. Only an owner may disable or drop a
trigger, so the application's role can neither change nor remove events, whatever SQL
it is made to run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction

from audit.triggers import TABLE

# The connection settings MIGRATE_DATABASE_URL replaces; the database name stays (it is
# the same database, and in tests it is the test database's name).
_OWNER_KEYS = ("USER", "PASSWORD", "HOST", "PORT")
MIGRATIONS_TABLE = "django_migrations"
_ROLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")


class RoleError(Exception):
    """The role cannot be set up as the application's role; the message says why."""


@contextmanager
def as_owner(using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Connects ``using`` as MIGRATE_DATABASE_URL's role for the duration, when it is set."""
    owner = settings.MIGRATE_DATABASE
    if not owner or using != DEFAULT_DB_ALIAS:
        yield
        return
    connection = connections[using]
    if connection.in_atomic_block:
        raise RuntimeError("Cannot switch to the owner's role inside a transaction.")
    saved = {key: connection.settings_dict.get(key) for key in _OWNER_KEYS}
    connection.close()
    connection.settings_dict.update({key: owner.get(key) for key in _OWNER_KEYS})
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.update(saved)


def grant_app_role(role: str, *, using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """Grants ``role`` what the application needs, run as the tables' owner; returns the SQL.

    Every table and sequence of the schema, present and future (default privileges of the
    owner), may be read and written, except that the audit log may only be read and
    appended to, and django_migrations only read. Idempotent: run it again after migrate at any time."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        raise RoleError("grant_app_role is for PostgreSQL; SQLite has no roles.")
    if not _ROLE_NAME.match(role):
        raise RoleError(
            f"{role!r} is not a plain PostgreSQL role name (letters, digits, _ and $, "
            "at most 63, not starting with a digit)."
        )
    quote = connection.ops.quote_name
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [role])
        row = cursor.fetchone()
        if row is None:
            raise RoleError(
                f"Role {role!r} does not exist. Create it first, as the database's "
                f"administrator: CREATE ROLE {role} LOGIN PASSWORD '...';"
            )
        if row[0]:
            raise RoleError(
                f"Role {role!r} is a superuser, which no privilege binds: "
                "give the application an ordinary role."
            )
        cursor.execute(
            "SELECT current_schema(), current_user, (SELECT tableowner FROM pg_tables "
            "WHERE schemaname = current_schema() AND tablename = %s)",
            [TABLE],
        )
        schema, me, owner = cursor.fetchone()
        if owner is None:
            raise RoleError(f"Table {TABLE} does not exist here: run migrate first.")
        cursor.execute("SELECT pg_has_role(%s, %s, 'USAGE')", [role, owner])
        if cursor.fetchone()[0]:
            raise RoleError(
                f"Role {role!r} owns the tables, or is a member of their owner {owner!r}, "
                "and so may rewrite the audit log. Run migrate as the owner "
                "(MIGRATE_DATABASE_URL) and give the application a role of its own."
            )
        # A database's owner owns its public schema (pg_database_owner), and a schema's
        # owner may drop any table in it, the audit log included, whatever was granted;
        # a role that may create schemas or objects on the search path can shadow tables.
        cursor.execute(
            "SELECT current_database(), has_database_privilege(%s, current_database(), "
            "'CREATE'), has_schema_privilege(%s, current_schema(), 'CREATE')",
            [role, role],
        )
        database, creates_schemas, creates_here = cursor.fetchone()
        if creates_schemas or creates_here:
            where = f"database {database}" if creates_schemas else f"schema {schema}"
            raise RoleError(
                f"Role {role!r} owns or may create objects in {where}, and so could drop "
                "or shadow the audit log. Give the database and the schema another owner "
                "and revoke CREATE from the role and from PUBLIC, e.g. "
                f"ALTER DATABASE {database} OWNER TO {owner}; "
                f"REVOKE CREATE ON DATABASE {database} FROM PUBLIC, {role}; "
                f"REVOKE CREATE ON SCHEMA {schema} FROM PUBLIC, {role};"
            )
        if me != owner:
            raise RoleError(
                f"grant_app_role runs as the tables' owner {owner!r}, not as {me!r}: "
                "set MIGRATE_DATABASE_URL to the owner's URL."
            )
        schema, role_q, table = quote(schema), quote(role), quote(TABLE)
        statements = [
            f"GRANT USAGE ON SCHEMA {schema} TO {role_q}",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role_q}",
            f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role_q}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} "
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role_q}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} "
            f"GRANT USAGE, SELECT ON SEQUENCES TO {role_q}",
            f"REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON {table} FROM {role_q}",
            # The owner's migrate trusts this table: a row written by the application's
            # role would have it skip a migration (one that protects the log, say).
            f"REVOKE INSERT, UPDATE, DELETE ON {quote(MIGRATIONS_TABLE)} FROM {role_q}",
        ]
        for sql in statements:
            cursor.execute(sql)
    return statements

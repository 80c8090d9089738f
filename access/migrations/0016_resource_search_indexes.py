"""Indexes for the catalogue's order and search, the API's resource search and the grants
admin's list and search.

On both databases:
- ``resource_catalogue_idx``: live resources by ``lower(name), id``, the catalogue's and
  the API's case-insensitive order and keyset. On SQLite it also holds every column the
  search reads (name, ARN, account, the tags' text): a search reads the index in order,
  and the table only for the rows it shows, instead of a table row per row searched.
- ``resource_region_idx``: the catalogue's region choices, read one region at a time
  (``access.querysets.live_regions``).
- ``grant_created_idx``: the grants admin's order (newest first).
- ``assignment_alerted_idx``: the grants failing in AWS, which the grants admin counts.

On PostgreSQL only: the pg_trgm extension and trigram (GIN) indexes on the expressions the
searches filter by (``UPPER(column::text) LIKE UPPER('%...%')``, Django's ``icontains``):
a resource's name, ARN and tags' text, a user's email and an access level's name.

The indexes are written in SQL, outside the models' state: the ORM cannot declare an
operator class, or an index for one database only.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

CATALOGUE_SQLITE = (
    "CREATE INDEX IF NOT EXISTS resource_catalogue_idx ON access_resource "
    "(deleted_at, LOWER(name), id, name, arn, account_id, remote_id, CAST(tags AS text))"
)
# PostgreSQL does not read rows in an index's order after an IS NULL condition on its first
# column: a partial index instead. It filters rows through the table, so the search's
# columns would only make the index larger.
CATALOGUE_POSTGRES = (
    "CREATE INDEX IF NOT EXISTS resource_catalogue_idx ON access_resource "
    "(LOWER(name), id) WHERE deleted_at IS NULL"
)
REGION_SQLITE = (
    "CREATE INDEX IF NOT EXISTS resource_region_idx ON access_resource (deleted_at, region)"
)
REGION_POSTGRES = (
    "CREATE INDEX IF NOT EXISTS resource_region_idx ON access_resource (region) "
    "WHERE deleted_at IS NULL"
)
BOTH = [
    (
        "CREATE INDEX IF NOT EXISTS grant_created_idx ON access_grant (created_at, id)",
        "DROP INDEX IF EXISTS grant_created_idx",
    ),
    (
        "CREATE INDEX IF NOT EXISTS assignment_alerted_idx ON access_assignment (alerted_at)",
        "DROP INDEX IF EXISTS assignment_alerted_idx",
    ),
]
DROP_CATALOGUE = "DROP INDEX IF EXISTS resource_catalogue_idx"
TRIGRAMS = {
    "resource_name_trgm_idx": ("access_resource", "UPPER(name::text)"),
    "resource_arn_trgm_idx": ("access_resource", "UPPER(arn::text)"),
    "resource_tags_trgm_idx": ("access_resource", "UPPER((tags)::text)"),
    "user_email_trgm_idx": ("access_user", "UPPER(email::text)"),
    "accesslevel_name_trgm_idx": ("access_accesslevel", "UPPER(name::text)"),
}
POSTGRES = [
    ("CREATE EXTENSION IF NOT EXISTS pg_trgm", ""),
    # The search's exact remote id: with an index for every condition, PostgreSQL combines
    # them (a bitmap OR) rather than reading every row.
    (
        "CREATE INDEX IF NOT EXISTS resource_remote_id_idx ON access_resource (remote_id)",
        "DROP INDEX IF EXISTS resource_remote_id_idx",
    ),
] + [
    (
        f"CREATE INDEX IF NOT EXISTS {name} ON {table} USING gin ({expression} gin_trgm_ops)",
        f"DROP INDEX IF EXISTS {name}",
    )
    for name, (table, expression) in TRIGRAMS.items()
]


def statements(vendor: str, forward: bool) -> list[str]:
    postgres = vendor == "postgresql"
    catalogue = CATALOGUE_POSTGRES if postgres else CATALOGUE_SQLITE
    region = REGION_POSTGRES if postgres else REGION_SQLITE
    pairs = [
        (catalogue, DROP_CATALOGUE),
        (region, "DROP INDEX IF EXISTS resource_region_idx"),
        *BOTH,
        *(POSTGRES if postgres else []),
    ]
    chosen = [create if forward else drop for create, drop in pairs]
    return [sql for sql in (chosen if forward else reversed(chosen)) if sql]


def create(apps: Any, schema_editor: Any) -> None:
    for sql in statements(schema_editor.connection.vendor, forward=True):
        schema_editor.execute(sql)


def drop(apps: Any, schema_editor: Any) -> None:
    for sql in statements(schema_editor.connection.vendor, forward=False):
        schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("access", "0015_request_rule_require_deny_comment")]

    operations = [migrations.RunPython(create, drop, elidable=False)]

"""``manage.py grant_app_role ROLE``: gives the application's PostgreSQL role its rights."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.dbroles import RoleError, as_owner, grant_app_role


class Command(BaseCommand):
    help = (
        "Run as the tables' owner (MIGRATE_DATABASE_URL): grants ROLE, the role the "
        "application connects as (DATABASE_URL), reading and writing every table except "
        "the audit log, which it may only read and append to. Safe to run again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("role", help="The application's PostgreSQL role.")
        parser.add_argument("--database", default="default", help="Database alias.")

    def handle(self, *args: Any, role: str, database: str, **options: Any) -> None:
        try:
            with as_owner(database):
                statements = grant_app_role(role, using=database)
        except RoleError as exc:
            raise CommandError(str(exc)) from exc
        if options["verbosity"] >= 2:
            for sql in statements:
                self.stdout.write(f"{sql};")
        self.stdout.write(
            f"Role {role} may now read and write Portcullis's tables, and only read and "
            "append to the audit log."
        )

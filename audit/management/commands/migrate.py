"""``manage.py migrate`` as the tables' owner when MIGRATE_DATABASE_URL is set.

The application's own role (DATABASE_URL) need not, and should not, own the tables;
see audit.dbroles. Everything else is Django's migrate.
"""

from __future__ import annotations

from typing import Any

from django.core.management.commands import migrate

from audit.dbroles import as_owner


class Command(migrate.Command):
    help = migrate.Command.help + (
        " Connects with MIGRATE_DATABASE_URL (the tables' owner) when it is set."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        with as_owner(options["database"]):
            super().handle(*args, **options)

"""`manage.py create_demo_users`: one portal user per role, with the shared demo password."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from demo.users import DEMO_PASSWORD, create_demo_users, refuse_unless_debug


class Command(BaseCommand):
    help = (
        "Creates (or brings back in line) the demo users: admin, requester, approver, manager, "
        "auditor and outsider @demo.portcullis.test, all with the shared demo password."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--password", default=DEMO_PASSWORD, help="The shared password (default: %(default)s)."
        )

    def handle(self, *args: Any, password: str, **options: Any) -> None:
        refuse_unless_debug("create_demo_users")
        for demo in create_demo_users(password):
            state = "created" if demo.created else "kept"
            self.stdout.write(f"{demo.person.email:<36} {demo.person.role_label:<26} {state}")
        self.stdout.write(f"Password for every demo user: {password}")

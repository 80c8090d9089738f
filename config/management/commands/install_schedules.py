"""manage.py install_schedules: makes django-q2's schedules match those declared in code."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from config.schedules import install_schedules


class Command(BaseCommand):
    help = (
        "Installs the background schedules declared in code (full sync, SQS polling, "
        "validations, ...): creates missing ones, corrects changed ones, removes "
        "Portcullis schedules no longer declared. Safe to run any number of times; "
        "migrate runs it too."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--database", default="default", help="Database alias.")

    def handle(self, *args: Any, database: str, **options: Any) -> None:
        result = install_schedules(using=database)
        for label, names in (
            ("Created", result.created),
            ("Updated", result.updated),
            ("Removed", result.removed),
        ):
            for name in names:
                self.stdout.write(f"{label}: {name}")
        self.stdout.write(self.style.SUCCESS(f"Schedules: {result}."))

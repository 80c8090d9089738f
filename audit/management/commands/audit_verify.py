"""``manage.py audit_verify``: checks the whole audit hash chain, oldest event first."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from audit.models import AuditEvent
from audit.services import ChainProblem, verify_chain


class Command(BaseCommand):
    help = (
        "Walks the audit log's hash chain from the first event to the last. Prints "
        "'audit chain intact: N events' and exits 0, or names the first broken event "
        "and exits 1."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--no-progress",
            action="store_true",
            help="Do not show the progress bar (it is shown only when stderr is a terminal).",
        )
        parser.add_argument(
            "--chunk-size",
            type=int,
            default=5000,
            help="Events read from the database at a time (default 5000).",
        )

    def handle(
        self, *args: Any, no_progress: bool = False, chunk_size: int = 5000, **options: Any
    ) -> None:
        if chunk_size < 1:
            raise CommandError(f"--chunk-size must be at least 1, not {chunk_size}.")
        # tqdm writes carriage returns itself; Django's OutputWrapper would add newlines.
        stream = getattr(self.stderr, "_out", sys.stderr)
        show_progress = not no_progress and stream.isatty()
        # The total is only for the bar: no COUNT(*) over a large log when nobody watches.
        total = AuditEvent.objects.count() if show_progress else None
        verified = 0
        last_good: int | None = None
        with tqdm(
            total=total, file=stream, disable=not show_progress, unit=" events", desc="verifying"
        ) as bar:
            for item in verify_chain(chunk_size=chunk_size):
                if isinstance(item, ChainProblem):
                    bar.close()
                    raise CommandError(self._describe(item, last_good, verified))
                verified += 1
                last_good = item
                bar.update(1)
        self.stdout.write(f"audit chain intact: {verified} events")
        if last_good is not None:
            latest = AuditEvent.objects.values_list("hash", flat=True).get(pk=last_good)
            self.stdout.write(f"latest hash: {latest} (event {last_good})")

    def _describe(self, problem: ChainProblem, last_good: int | None, verified: int) -> str:
        event = (
            AuditEvent.objects.filter(pk=problem.event_id).values("occurred_at", "action").first()
        )
        when = event["occurred_at"].isoformat() if event else "unknown time"
        action = event["action"] if event else "unknown action"
        before = (
            f"the {verified} events before it are intact, the last of them being event {last_good}"
            if last_good is not None
            else "it is the first event in the log"
        )
        return (
            f"audit chain broken at event {problem.event_id} "
            f"(occurred at {when}, action {action}): {problem.reason}; {before}."
        )

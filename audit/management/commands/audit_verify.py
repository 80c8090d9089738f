"""``manage.py audit_verify``: checks the whole audit hash chain, oldest event first."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from audit.models import AuditEvent
from audit.services import ChainProblem, verify_chain

_HEAD = re.compile(r"^(?P<hash>[0-9a-f]{64})(?::(?P<count>[0-9]+))?$")


@dataclass(frozen=True)
class ExpectedHead:
    hash: str
    count: int | None


def parse_head(text: str) -> ExpectedHead:
    match = _HEAD.match(text.strip().lower())
    if not match or match["count"] and int(match["count"]) == 0:
        raise CommandError(
            f"--expect-head {text!r} is not HASH or HASH:COUNT: HASH is the 64 hex digits "
            "of an event's hash and COUNT the number of events up to and including it, as "
            "a previous run printed them on its 'head:' line."
        )
    return ExpectedHead(match["hash"], int(match["count"]) if match["count"] else None)


class Command(BaseCommand):
    help = (
        "Walks the audit log's hash chain from the first event to the last. Prints "
        "'audit chain intact: N events' and exits 0, or names the first broken event "
        "and exits 1. Keep the printed head (HASH:COUNT) outside the database and pass it "
        "back with --expect-head, so that removing the newest events, or rehashing the "
        "whole chain, is noticed too."
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
        parser.add_argument(
            "--expect-head",
            metavar="HASH[:COUNT]",
            help=(
                "A head printed by an earlier run and kept elsewhere: fails unless the chain "
                "still holds that event (as its COUNT-th event, when COUNT is given)."
            ),
        )

    def handle(
        self,
        *args: Any,
        no_progress: bool = False,
        chunk_size: int = 5000,
        expect_head: str | None = None,
        **options: Any,
    ) -> None:
        expected = parse_head(expect_head) if expect_head is not None else None
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
        if expected is not None:
            self._check_head(expected, verified)
        self.stdout.write(f"audit chain intact: {verified} events")
        if last_good is not None:
            latest = AuditEvent.objects.values_list("hash", flat=True).get(pk=last_good)
            self.stdout.write(f"latest hash: {latest} (event {last_good})")
            self.stdout.write(f"head: {latest}:{verified}")
        if expected is not None:
            self.stdout.write(f"expected head found: {expected.hash}")

    def _check_head(self, expected: ExpectedHead, verified: int) -> None:
        # The chain is intact here, so finding the head's hash at its place proves every
        # event up to it is the one that was there when the head was taken.
        if expected.count is None:
            if not AuditEvent.objects.filter(hash=expected.hash).exists():
                raise CommandError(
                    f"audit chain does not hold the expected head {expected.hash}: events "
                    f"were removed from its end, or the chain was rewritten ({verified} "
                    "events now)."
                )
            return
        if verified < expected.count:
            raise CommandError(
                f"audit chain is shorter than the expected head: {verified} events, not "
                f"at least {expected.count}; the newest events were removed."
            )
        found = (
            AuditEvent.objects.order_by("id")
            .values_list("id", "hash")[expected.count - 1 : expected.count]
            .get()
        )
        if found[1] != expected.hash:
            raise CommandError(
                f"audit chain differs from the expected head: event number {expected.count} "
                f"(id {found[0]}) has hash {found[1]}, not {expected.hash}; the chain was "
                "rewritten."
            )

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

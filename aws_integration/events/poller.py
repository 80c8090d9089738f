"""Long-polls an app's SQS queue of CloudTrail events and refreshes what they touch.

Each message is parsed, handled and deleted. What happens to a message that goes wrong:

- bad input (not JSON, not an event, missing fields, oversized, no account to locate it):
  counted in a SyncIssue (scope "events", one per code), kept as a BadEventMessage (its
  id, receive count, first KiB and error) and deleted, since no retry can make it good;
- an error while handling it (AWS refusing or failing, the database): recorded and left
  on the queue, so SQS delivers it again after its visibility timeout, when a throttle or
  an outage has likely passed. A message that fails ``MAX_RECEIVES`` times is a poison
  message (or the outage is long): it is then deleted with a SyncIssue saying so and kept
  as a BadEventMessage, and the periodic full sync catches up with the change.

Neither stops the loop. Duplicates and out-of-order delivery are harmless, because the
objects are described again in AWS rather than taken from the event. Events Portcullis
does not follow are counted per (source, name) in UnknownEventName.

What a receive leaves behind (issues, bad messages, unknown names, resolutions) is
written once per receive, in one transaction, before its messages are deleted: a good
message costs no query of its own.

Events issues resolve (with their audit event) when they are over:

- "receive_failed" at the next receive that reaches the queue;
- "delete_failed" at the next receive whose handled messages were all deleted;
- "handling_failed" at the next receive in which events were handled and none failed;
- every other code (bad input, given-up messages: messages that are gone) once a receive
  finds it has not recurred for ``GONE_MESSAGE_QUIET``; an admin resolves them sooner,
  after reading the messages, with the SyncIssue admin's actions.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from aws_integration import clients, validators
from aws_integration.aws_settings import get_aws_settings
from aws_integration.choices import SyncKind, SyncStatus
from aws_integration.events.handlers import HANDLED, IGNORED, REFUSED_CALL, UNKNOWN, handle_event
from aws_integration.events.parser import BadMessage, excerpt, parse_message
from aws_integration.models import (
    AwsApp,
    BadEventMessage,
    SyncIssue,
    SyncRun,
    UnknownEventName,
)
from aws_integration.sync import services as sync_services

logger = logging.getLogger(__name__)

SCOPE = "events"
BATCH_SIZE = 10  # SQS's maximum per receive
# Deliveries of one message before it is given up as poison. With SQS's default 30 s
# visibility timeout that is a couple of minutes of retries: enough for throttling and
# brief outages, short enough not to keep refreshing something that always fails.
MAX_RECEIVES = 5

# Issue codes besides BadMessage's.
HANDLING_FAILED = "handling_failed"
GAVE_UP = "gave_up"
RECEIVE_FAILED = "receive_failed"
DELETE_FAILED = "delete_failed"

# Issues about the queue and handling, which resolve when what failed works again; the
# others are about messages that were deleted, and resolve once quiet for this long.
STATE_CODES = frozenset({RECEIVE_FAILED, DELETE_FAILED, HANDLING_FAILED})
GONE_MESSAGE_QUIET = timedelta(days=1)

# Bad messages kept per app, newest first: at 1 KiB of body each, about a megabyte.
BAD_MESSAGES_KEPT = 1_000
BODY_KEPT_BYTES = 1024
# Distinct unknown (source, name) pairs counted per app; later ones share one row.
UNKNOWN_NAMES_KEPT = 200
OTHER_NAMES = ("", UnknownEventName.OTHER_NAMES)

COUNTERS = ("received", HANDLED, IGNORED, UNKNOWN, REFUSED_CALL, "bad", "failed", "gave_up")


def poll_queue(
    app: AwsApp,
    max_seconds: float = 55,
    wait_seconds: int = 20,
    *,
    keep_going: Callable[[], bool] | None = None,
) -> dict[str, int]:
    """Receives and handles messages from ``app.sqs_queue_url`` for about ``max_seconds``
    and returns the counters (received, handled, ignored, unknown, refused_calls, bad,
    failed, gave_up).

    ``wait_seconds`` is SQS's long-poll wait; with 0 the poll ends at the first empty
    receive (a drained queue), which is what tests and one-off runs want. ``keep_going``
    is asked after each receive (the caller's lease and stop); False ends the poll.

    A SyncRun of kind "events" records the counters when something was received, so an
    idle queue adds no row every minute.
    """
    counts: Counter[str] = Counter(dict.fromkeys(COUNTERS, 0))
    inventory: Counter[str] = Counter()
    run: SyncRun | None = None
    reached = False
    if not app.sqs_queue_url:
        return dict(counts)
    issues = EventIssues(app)
    unknown = UnknownNames(app)
    deadline = time.monotonic() + max_seconds
    try:
        sqs = queue_client(app)
        while (remaining := deadline - time.monotonic()) > 0:
            if wait_seconds and remaining < 1:
                break  # too little left for a long poll; the next poll starts soon
            wait = min(wait_seconds, int(remaining))
            try:
                response = sqs.receive_message(
                    QueueUrl=app.sqs_queue_url,
                    MaxNumberOfMessages=BATCH_SIZE,
                    WaitTimeSeconds=wait,
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                )
            except (ClientError, BotoCoreError) as exc:
                issues.record_now(
                    RECEIVE_FAILED,
                    f"Could not receive from the events queue {app.sqs_queue_url}: {exc}. "
                    "Check that the queue exists and that the ingester role may "
                    "sqs:ReceiveMessage and sqs:DeleteMessage on it.",
                    run,
                )
                break
            if not reached:
                reached = True
                with transaction.atomic():
                    issues.resolve([RECEIVE_FAILED], "the events queue was reached again")
                    issues.resolve_quiet()
            messages = response.get("Messages") or []
            if not messages:
                if wait_seconds == 0 or (keep_going is not None and not keep_going()):
                    break
                continue
            if run is None:
                run = _start_run(app)
            batch = Batch()
            done = [m for m in messages if _process(app, m, run, counts, inventory, batch)]
            # Recorded before the delete: a bad message is kept even if the database
            # fails now (it is then delivered again), never deleted unrecorded.
            _record_batch(batch, run, issues, unknown)
            _delete(sqs, app, done, run, issues)
            # Progress an admin can watch while the poll goes on.
            SyncRun.objects.filter(pk=run.pk).update(
                progress_done=counts["received"], progress_total=counts["received"]
            )
            if keep_going is not None and not keep_going():
                break
    except (ClientError, BotoCoreError) as exc:
        # Reaching the queue at all (assuming the ingester role) failed.
        issues.record_now(
            RECEIVE_FAILED,
            f"Could not reach the events queue {app.sqs_queue_url}: {exc}.",
            run,
        )
    finally:
        if run is not None:
            _finish_run(run, counts, inventory)
    return dict(counts)


def queue_client(app: AwsApp) -> Any:
    """An SQS client for the app's queue, in the queue's region, as the management
    account's ingester role (the role an admin grants Portcullis in the organization)."""
    region = validators.queue_region(app.sqs_queue_url) or settings.AWS_DEFAULT_REGION
    session = clients.session_for_account(
        app.management_account_id,
        app.ingester_role_name,
        external_id=get_aws_settings().external_id,
        region=region,
    )
    return clients.client("sqs", session=session, region=region)


@dataclass
class Batch:
    """What one receive leaves to write, written together by :func:`_record_batch`."""

    issues: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    bad_messages: list[BadEventMessage] = field(default_factory=list)
    unknown: Counter[tuple[str, str]] = field(default_factory=Counter)
    handled: int = 0
    failed: int = 0

    def issue(self, code: str, message: str) -> None:
        self.issues[code].append(message)

    def bad_message(
        self, code: str, message: dict[str, Any], attempts: int, error: str, run: SyncRun
    ) -> None:
        body = message.get("Body") or ""
        self.bad_messages.append(
            BadEventMessage(
                app_id=run.app_id,
                run=run,
                code=code[:120],
                message_id=str(message.get("MessageId", "?"))[:128],
                receive_count=max(attempts, 0),
                body=body_start(body),
                body_bytes=len(body.encode("utf-8", errors="replace")),
                error=error,
            )
        )


def body_start(body: str, limit: int = BODY_KEPT_BYTES) -> str:
    """The first ``limit`` bytes of a body in UTF-8, without a character cut in two (and
    without NUL, which PostgreSQL's text refuses)."""
    head = body.encode("utf-8", errors="replace")[:limit]
    return head.decode("utf-8", errors="ignore").replace("\x00", "\N{REPLACEMENT CHARACTER}")


def _process(
    app: AwsApp,
    message: dict[str, Any],
    run: SyncRun,
    counts: Counter[str],
    inventory: Counter[str],
    batch: Batch,
) -> bool:
    """Handles one message; True when it is done with and can be deleted."""
    counts["received"] += 1
    body = message.get("Body") or ""
    message_id = message.get("MessageId", "?")
    attempts = _receive_count(message)
    try:
        event = parse_message(body)
        result = handle_event(event, app, run=run)
    except BadMessage as exc:
        counts["bad"] += 1
        batch.issue(
            exc.code,
            f"{exc.reason} The message ({message_id}) was deleted. It began: {excerpt(body)}",
        )
        batch.bad_message(exc.code, message, attempts, exc.reason, run)
        return True
    except Exception as exc:  # one message never stops the loop
        counts["failed"] += 1
        batch.failed += 1
        logger.warning("Handling event message %s failed", message_id, exc_info=True)
        error = f"{type(exc).__name__}: {exc}"
        if attempts >= MAX_RECEIVES:
            counts["gave_up"] += 1
            batch.issue(
                GAVE_UP,
                f"Gave up on message {message_id} after {attempts} attempts and deleted it; "
                f"the next full sync will pick up the change. Last error: {error}. "
                f"It began: {excerpt(body)}",
            )
            batch.bad_message(GAVE_UP, message, attempts, error, run)
            return True
        batch.issue(
            HANDLING_FAILED,
            f"Handling message {message_id} failed (attempt {attempts} of {MAX_RECEIVES}); "
            f"it stays on the queue and will be tried again. Error: {error}. "
            f"It began: {excerpt(body)}",
        )
        return False
    counts[result.outcome] += 1
    if result.outcome == HANDLED:
        batch.handled += 1
    elif result.outcome == UNKNOWN:
        batch.unknown[(event.source[:128], event.name[:128])] += 1
    inventory.update({k: v for k, v in result.counts.items() if isinstance(v, int)})
    return True


def _receive_count(message: dict[str, Any]) -> int:
    try:
        return int((message.get("Attributes") or {}).get("ApproximateReceiveCount", 1))
    except (TypeError, ValueError):
        return 1


def _delete(
    sqs: Any, app: AwsApp, messages: list[dict[str, Any]], run: SyncRun, issues: EventIssues
) -> None:
    if not messages:
        return
    entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
    try:
        response = sqs.delete_message_batch(QueueUrl=app.sqs_queue_url, Entries=entries)
    except (ClientError, BotoCoreError) as exc:
        failed = [f"{exc}"]
    else:
        failed = [f"{f.get('Code')}: {f.get('Message', '')}" for f in response.get("Failed", [])]
    if failed:
        # The messages come back after their visibility timeout and are handled again,
        # which is harmless; the issue says why they keep coming.
        issues.record_now(
            DELETE_FAILED,
            f"Could not delete {len(failed)} handled message(s) from {app.sqs_queue_url}: "
            f"{failed[0]}. They will be delivered and handled again; check that the "
            "ingester role may sqs:DeleteMessage on the queue.",
            run,
        )
    else:
        issues.resolve([DELETE_FAILED], "handled messages were deleted again")


def _record_batch(batch: Batch, run: SyncRun, issues: EventIssues, unknown: UnknownNames) -> None:
    """Writes what one receive left, in one transaction: a query or two per kind of thing,
    never one per message."""
    with transaction.atomic():
        for code, messages in batch.issues.items():
            issues.record(code, messages[-1], run, count=len(messages))
        if batch.bad_messages:
            for row in batch.bad_messages:
                row.issue = issues.get(row.code)
            BadEventMessage.objects.bulk_create(batch.bad_messages)
            _prune_bad_messages(run.app_id)
        unknown.count(batch.unknown)
        if batch.handled and not batch.failed:
            issues.resolve([HANDLING_FAILED], "events were handled again")


def _prune_bad_messages(app_id: int) -> None:
    """Keeps the newest BAD_MESSAGES_KEPT rows of the app."""
    oldest_dropped = (
        BadEventMessage.objects.filter(app_id=app_id)
        .order_by("-id")
        .values_list("id", flat=True)[BAD_MESSAGES_KEPT : BAD_MESSAGES_KEPT + 1]
        .first()
    )
    if oldest_dropped is not None:
        BadEventMessage.objects.filter(app_id=app_id, id__lte=oldest_dropped).delete()


class EventIssues:
    """An app's events-scope issues (one per code, a dozen at most), read once per poll
    when first needed, so that a receive asks the database only to change them."""

    def __init__(self, app: AwsApp) -> None:
        self.app = app
        self._by_code: dict[str, SyncIssue] | None = None

    @property
    def by_code(self) -> dict[str, SyncIssue]:
        if self._by_code is None:
            self._by_code = {i.code: i for i in SyncIssue.objects.filter(app=self.app, scope=SCOPE)}
        return self._by_code

    def get(self, code: str) -> SyncIssue | None:
        return self.by_code.get(code)

    def record(self, code: str, message: str, run: SyncRun | None, *, count: int = 1) -> SyncIssue:
        """Records ``count`` more occurrences of ``code``, ``message`` the latest, and
        reopens the issue if it was resolved."""
        now = timezone.now()
        issue = self.by_code.get(code)
        if issue is None:
            issue, created = SyncIssue.objects.get_or_create(
                app=self.app,
                scope=SCOPE,
                code=code,
                defaults={
                    "message": message,
                    "last_run": run,
                    "first_seen_at": now,
                    "last_seen_at": now,
                    "occurrences": count,
                },
            )
            self.by_code[code] = issue
            if created:
                return issue
        SyncIssue.objects.filter(pk=issue.pk).update(
            message=message,
            last_run=run,
            last_seen_at=now,
            occurrences=F("occurrences") + count,
            resolved_at=None,
        )
        issue.message, issue.last_run, issue.last_seen_at = message, run, now
        issue.occurrences += count
        issue.resolved_at = None
        return issue

    def record_now(self, code: str, message: str, run: SyncRun | None) -> SyncIssue:
        with transaction.atomic():
            return self.record(code, message, run)

    def resolve(self, codes: Iterable[str], reason: str) -> None:
        """Resolves the open issues of ``codes``, each with its audit event (no query when
        none is open)."""
        open_issues = [
            issue
            for code in codes
            if (issue := self.by_code.get(code)) is not None and issue.resolved_at is None
        ]
        if not open_issues:
            return
        sync_services.resolve_issues(
            SyncIssue.objects.filter(pk__in=[i.pk for i in open_issues]), reason=reason
        )
        now = timezone.now()
        for issue in open_issues:
            issue.resolved_at = now

    def resolve_quiet(self, now: datetime | None = None) -> None:
        """Resolves the issues about deleted messages that have not recurred for
        GONE_MESSAGE_QUIET."""
        before = (now or timezone.now()) - GONE_MESSAGE_QUIET
        quiet = [
            code
            for code, issue in self.by_code.items()
            if code not in STATE_CODES and issue.resolved_at is None and issue.last_seen_at < before
        ]
        self.resolve(quiet, f"it did not recur for {GONE_MESSAGE_QUIET.days} day(s)")


class UnknownNames:
    """Counts events Portcullis does not follow per (source, name). The app's names are
    read once per poll when first needed; a receive then costs one update, and one insert
    when it brings new names."""

    def __init__(self, app: AwsApp) -> None:
        self.app = app
        self._ids: dict[tuple[str, str], int] | None = None

    def _known(self) -> dict[tuple[str, str], int]:
        if self._ids is None:
            rows = UnknownEventName.objects.filter(app=self.app).values_list("source", "name", "pk")
            self._ids = {(source, name): pk for source, name, pk in rows}
        return self._ids

    def count(self, names: Counter[tuple[str, str]]) -> None:
        if not names:
            return
        known = self._known()
        room = UNKNOWN_NAMES_KEPT - sum(1 for key in known if key != OTHER_NAMES)
        counted: Counter[tuple[str, str]] = Counter()
        for key, n in names.items():
            if key not in known:
                if room > 0:
                    room -= 1
                else:
                    key = OTHER_NAMES
            counted[key] += n
        now = timezone.now()
        UnknownEventName.objects.bulk_update(
            [
                UnknownEventName(pk=known[key], count=F("count") + n, last_seen_at=now)
                for key, n in counted.items()
                if key in known
            ],
            ["count", "last_seen_at"],
        )
        new = [
            UnknownEventName(
                app=self.app, source=source, name=name, count=n, first_seen_at=now, last_seen_at=now
            )
            for (source, name), n in counted.items()
            if (source, name) not in known
        ]
        if new:
            UnknownEventName.objects.bulk_create(new, ignore_conflicts=True)
            self._ids = None  # the new rows' ids are read with the next names


def _start_run(app: AwsApp) -> SyncRun:
    now = timezone.now()
    return SyncRun.objects.create(
        app=app, kind=SyncKind.EVENTS, status=SyncStatus.RUNNING, started_at=now
    )


def _finish_run(run: SyncRun, counts: Counter[str], inventory: Counter[str]) -> None:
    troubled = counts["bad"] + counts["failed"]
    run.status = SyncStatus.PARTIAL if troubled else SyncStatus.SUCCEEDED
    run.finished_at = timezone.now()
    run.counts = {"events": dict(counts), **inventory}
    run.progress_done = run.progress_total = counts["received"]
    parts = [f"{counts[key]} {key.replace('_', ' ')}" for key in COUNTERS[1:] if counts[key]]
    run.message = f"{counts['received']} event(s) received" + (
        ": " + ", ".join(parts) + "." if parts else "."
    )
    # Like a full sync's run, the batch's end is in the audit log (the inventory changes
    # themselves are audited by refresh()).
    sync_services.record_finished(run)

"""Long-polls an app's SQS queue of CloudTrail events and refreshes what they touch.

Each message is parsed, handled and deleted. What happens to a message that goes wrong:

- bad input (not JSON, not an event, missing fields, oversized, no account to locate it):
  recorded as a SyncIssue (scope "events") and deleted, since no retry can make it good;
- an error while handling it (AWS refusing or failing, the database): recorded and left
  on the queue, so SQS delivers it again after its visibility timeout, when a throttle or
  an outage has likely passed. A message that fails ``MAX_RECEIVES`` times is a poison
  message (or the outage is long): it is then deleted with a SyncIssue saying so, and
  the periodic full sync catches up with the change.

Neither stops the loop. Duplicates and out-of-order delivery are harmless, because the
objects are described again in AWS rather than taken from the event.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from aws_integration import clients, validators
from aws_integration.aws_settings import get_aws_settings
from aws_integration.choices import SyncKind, SyncStatus
from aws_integration.events.handlers import HANDLED, IGNORED, REFUSED_CALL, UNKNOWN, handle_event
from aws_integration.events.parser import BadMessage, excerpt, parse_message
from aws_integration.models import AwsApp, SyncIssue, SyncRun
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
                record_issue(
                    app,
                    RECEIVE_FAILED,
                    f"Could not receive from the events queue {app.sqs_queue_url}: {exc}. "
                    "Check that the queue exists and that the ingester role may "
                    "sqs:ReceiveMessage and sqs:DeleteMessage on it.",
                    run,
                )
                break
            if not reached:
                reached = True
                _resolve(app, RECEIVE_FAILED)
            messages = response.get("Messages") or []
            if not messages:
                if wait_seconds == 0 or (keep_going is not None and not keep_going()):
                    break
                continue
            if run is None:
                run = _start_run(app)
            done = [m for m in messages if _process(app, m, run, counts, inventory)]
            _delete(sqs, app, done, run)
            # Progress an admin can watch while the poll goes on.
            SyncRun.objects.filter(pk=run.pk).update(
                progress_done=counts["received"], progress_total=counts["received"]
            )
            if keep_going is not None and not keep_going():
                break
    except (ClientError, BotoCoreError) as exc:
        # Reaching the queue at all (assuming the ingester role) failed.
        record_issue(
            app,
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


def _process(
    app: AwsApp,
    message: dict[str, Any],
    run: SyncRun,
    counts: Counter[str],
    inventory: Counter[str],
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
        record_issue(
            app,
            exc.code,
            f"{exc.reason} The message ({message_id}) was deleted. It began: {excerpt(body)}",
            run,
        )
        return True
    except Exception as exc:  # one message never stops the loop
        counts["failed"] += 1
        logger.warning("Handling event message %s failed", message_id, exc_info=True)
        error = f"{type(exc).__name__}: {exc}"
        if attempts >= MAX_RECEIVES:
            counts["gave_up"] += 1
            record_issue(
                app,
                GAVE_UP,
                f"Gave up on message {message_id} after {attempts} attempts and deleted it; "
                f"the next full sync will pick up the change. Last error: {error}. "
                f"It began: {excerpt(body)}",
                run,
            )
            return True
        record_issue(
            app,
            HANDLING_FAILED,
            f"Handling message {message_id} failed (attempt {attempts} of {MAX_RECEIVES}); "
            f"it stays on the queue and will be tried again. Error: {error}. "
            f"It began: {excerpt(body)}",
            run,
        )
        return False
    counts[result.outcome] += 1
    inventory.update({k: v for k, v in result.counts.items() if isinstance(v, int)})
    return True


def _receive_count(message: dict[str, Any]) -> int:
    try:
        return int((message.get("Attributes") or {}).get("ApproximateReceiveCount", 1))
    except (TypeError, ValueError):
        return 1


def _delete(sqs: Any, app: AwsApp, messages: list[dict[str, Any]], run: SyncRun) -> None:
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
        record_issue(
            app,
            DELETE_FAILED,
            f"Could not delete {len(failed)} handled message(s) from {app.sqs_queue_url}: "
            f"{failed[0]}. They will be delivered and handled again; check that the "
            "ingester role may sqs:DeleteMessage on the queue.",
            run,
        )


def record_issue(app: AwsApp, code: str, message: str, run: SyncRun | None) -> SyncIssue:
    """Records (or counts once more) an events issue of ``app``: one row per code, holding
    the latest message."""
    now = timezone.now()
    issue, created = SyncIssue.objects.get_or_create(
        app=app,
        scope=SCOPE,
        code=code,
        defaults={"message": message, "last_run": run, "first_seen_at": now, "last_seen_at": now},
    )
    if not created:
        SyncIssue.objects.filter(pk=issue.pk).update(
            message=message,
            last_run=run,
            last_seen_at=now,
            occurrences=F("occurrences") + 1,
            resolved_at=None,
        )
        issue.refresh_from_db()
    return issue


def _resolve(app: AwsApp, code: str) -> None:
    """The queue answers again: an open issue about reaching it is over."""
    SyncIssue.objects.filter(app=app, scope=SCOPE, code=code, resolved_at__isnull=True).update(
        resolved_at=timezone.now()
    )


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

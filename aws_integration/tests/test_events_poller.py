"""The events poller's loop against an SQS queue of the stand-in AWS: failures while
handling, poison messages, the lease that keeps two workers off one queue, the bad
messages kept, unknown event names counted, and events issues resolving."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from access.models import Lease
from audit.models import AuditEvent
from aws_integration import clients
from aws_integration.events import poller, polling
from aws_integration.models import (
    AwsApp,
    BadEventMessage,
    SyncIssue,
    SyncRun,
    UnknownEventName,
)
from config.loops import StopAfter

MANAGEMENT = "123456789012"  # moto's default account: the stand-in's caller
MEMBER = "210987654321"


@pytest.fixture
def queue(aws) -> Iterator[str]:
    sqs = clients.client("sqs")
    url = sqs.create_queue(
        QueueName=f"events-{uuid.uuid4().hex[:12]}",
        # Visible again at once, so one poll sees every redelivery.
        Attributes={"VisibilityTimeout": "0"},
    )["QueueUrl"]
    yield url


def make_app(queue_url: str, name: str = "Poller organization") -> AwsApp:
    return AwsApp.objects.create(
        name=name, management_account_id=MANAGEMENT, sqs_queue_url=queue_url
    )


@pytest.fixture
def app(queue, db) -> AwsApp:
    return make_app(queue)


def tag_event(instance_id: str = "i-0123456789abcdef0") -> str:
    return json.dumps(
        {
            "detail-type": "AWS API Call via CloudTrail",
            "source": "aws.ec2",
            "account": MEMBER,
            "region": "us-east-1",
            "detail": {
                "eventSource": "ec2.amazonaws.com",
                "eventName": "CreateTags",
                "awsRegion": "us-east-1",
                "recipientAccountId": MEMBER,
                "requestParameters": {"resourcesSet": {"items": [{"resourceId": instance_id}]}},
                "responseElements": {"_return": True},
            },
        }
    )


def unknown_event() -> str:
    return json.dumps({"eventSource": "s3.amazonaws.com", "eventName": "PutObject"})


def send(queue_url: str, *bodies: str) -> None:
    sqs = clients.client("sqs")
    for body in bodies:
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)


def waiting(queue_url: str) -> int:
    attributes = clients.client("sqs").get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def failing_refresh(calls: list[Any]) -> Any:
    def refresh(app: AwsApp, refs: Any, run: Any = None) -> dict[str, int]:
        calls.append(list(refs))
        raise RuntimeError("the inventory writer fell over")

    return refresh


# Failures while handling ----------------------------------------------------------------
def test_a_message_whose_handling_fails_is_recorded_and_left_for_another_attempt(
    app, queue, monkeypatch, settings
):
    calls: list[Any] = []
    monkeypatch.setattr("aws_integration.sync.refresh.refresh", failing_refresh(calls))
    monkeypatch.setattr(poller, "MAX_RECEIVES", 99)
    send(queue, tag_event(), unknown_event())
    # A visibility timeout keeps the failed message out of this poll once received.
    clients.client("sqs").set_queue_attributes(
        QueueUrl=queue, Attributes={"VisibilityTimeout": "30"}
    )

    counts = poller.poll_queue(app, max_seconds=10, wait_seconds=0)

    assert (counts["received"], counts["failed"], counts["unknown"]) == (2, 1, 1)
    assert len(calls) == 1
    assert waiting(queue) == 1  # the failed one, back after its visibility timeout
    issue = SyncIssue.objects.get(app=app, scope="events", code=poller.HANDLING_FAILED)
    assert "RuntimeError: the inventory writer fell over" in issue.message
    assert "attempt 1 of 99" in issue.message
    assert "will be tried again" in issue.message


def test_a_message_that_keeps_failing_is_given_up_after_max_receives(app, queue, monkeypatch):
    calls: list[Any] = []
    monkeypatch.setattr("aws_integration.sync.refresh.refresh", failing_refresh(calls))
    send(queue, tag_event())

    counts = poller.poll_queue(app, max_seconds=20, wait_seconds=0)

    assert len(calls) == poller.MAX_RECEIVES
    assert (counts["received"], counts["failed"], counts["gave_up"]) == (
        poller.MAX_RECEIVES,
        poller.MAX_RECEIVES,
        1,
    )
    assert waiting(queue) == 0
    gave_up = SyncIssue.objects.get(app=app, scope="events", code=poller.GAVE_UP)
    assert f"after {poller.MAX_RECEIVES} attempts" in gave_up.message
    assert "next full sync" in gave_up.message
    retried = SyncIssue.objects.get(app=app, scope="events", code=poller.HANDLING_FAILED)
    assert retried.occurrences == poller.MAX_RECEIVES - 1


def test_the_loop_goes_on_after_a_failure(app, queue, monkeypatch):
    handled: list[str] = []

    def refresh(app: AwsApp, refs: Any, run: Any = None) -> dict[str, int]:
        ref = next(iter(refs))
        if ref.remote_id == "i-00000000000000bad":
            raise RuntimeError("boom")
        handled.append(ref.remote_id)
        return {"updated": 1}

    monkeypatch.setattr("aws_integration.sync.refresh.refresh", refresh)
    monkeypatch.setattr(poller, "MAX_RECEIVES", 1)
    send(queue, tag_event("i-00000000000000bad"), tag_event("i-0000000000000good"))

    counts = poller.poll_queue(app, max_seconds=10, wait_seconds=0)

    assert handled == ["i-0000000000000good"]
    assert (counts["handled"], counts["gave_up"]) == (1, 1)
    run = SyncRun.objects.get(app=app)
    assert run.counts["updated"] == 1
    assert run.status == "partial"


# The lease ------------------------------------------------------------------------------
def test_a_held_lease_keeps_another_worker_off_the_queue(app, queue):
    Lease.objects.create(
        name=polling.poller_lease(app.pk),
        holder="elsewhere",
        until=timezone.now() + timedelta(seconds=60),
    )
    send(queue, unknown_event())

    assert polling.poll_all_queues(max_seconds=5, wait_seconds=0) == {}
    assert waiting(queue) == 1


def test_an_expired_lease_is_taken_over_and_released_after_the_poll(app, queue):
    Lease.objects.create(
        name=polling.poller_lease(app.pk),
        holder="a poller that died",
        until=timezone.now() - timedelta(seconds=1),
    )
    send(queue, unknown_event())

    results = polling.poll_all_queues(max_seconds=5, wait_seconds=0)

    assert results[app.pk]["unknown"] == 1
    assert waiting(queue) == 0
    assert not Lease.objects.filter(name=polling.poller_lease(app.pk)).exists()


def test_a_stop_ends_the_poll_after_the_batch_in_hand(app, queue):
    for _ in range(12):  # two receives' worth
        send(queue, unknown_event())
    stop = StopAfter(60)
    stop.set()

    counts = polling.poll_app_queue(app.pk, max_seconds=30, wait_seconds=1, stop=stop)

    assert 1 <= counts["received"] <= poller.BATCH_SIZE
    assert waiting(queue) == 12 - counts["received"]


def test_apps_without_a_queue_or_inactive_are_not_polled(app, queue):
    AwsApp.objects.create(name="No queue", management_account_id="111111111111")
    inactive = make_app(queue, name="Inactive")
    AwsApp.objects.filter(pk=inactive.pk).update(is_active=False)
    send(queue, unknown_event())

    assert set(polling.poll_all_queues(max_seconds=5, wait_seconds=0)) == {app.pk}


@pytest.mark.django_db(transaction=True)
def test_two_workers_polling_at_once_never_poll_the_same_queue(queue, monkeypatch):
    if connection.vendor == "sqlite":
        # SQLite runs one writer at a time, so the race looked for here exists only on
        # PostgreSQL; and the test database (in memory, shared cache) refuses concurrent
        # access outright ("table is locked") rather than waiting.
        pytest.skip("concurrent claims race only on PostgreSQL")
    app = make_app(queue)
    send(queue, unknown_event(), unknown_event())
    start = threading.Barrier(2)
    turned_away = threading.Event()
    results: list[dict] = []
    errors: list[BaseException] = []
    real_poll = polling.poll_queue

    def poll_holding_the_lease(*args: Any, **kwargs: Any) -> dict[str, int]:
        counts = real_poll(*args, **kwargs)
        # Keep the lease until the other worker has tried, however the threads run.
        turned_away.wait(timeout=10)
        return counts

    monkeypatch.setattr(polling, "poll_queue", poll_holding_the_lease)

    def worker() -> None:
        try:
            start.wait(timeout=10)
            result = polling.poll_all_queues(max_seconds=5, wait_seconds=0)
            results.append(result)
            if not result:
                turned_away.set()
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert not errors
    assert sorted(len(r) for r in results) == [0, 1]
    polled = next(r for r in results if r)[app.pk]
    assert polled["received"] == polled["unknown"] == 2
    assert SyncRun.objects.filter(app=app).count() == 1
    assert waiting(queue) == 0
    assert not Lease.objects.filter(name=polling.poller_lease(app.pk)).exists()


# Bad messages, each kept ----------------------------------------------------------------
def send_ids(queue_url: str, *bodies: str) -> list[str]:
    sqs = clients.client("sqs")
    return [sqs.send_message(QueueUrl=queue_url, MessageBody=b)["MessageId"] for b in bodies]


def test_each_bad_message_is_kept_with_its_id_receive_count_body_and_error(app, queue):
    bodies = ["not JSON, first", "not JSON, second {", "[1, 2, 3]", "42"]
    ids = send_ids(queue, *bodies)

    counts = poller.poll_queue(app, max_seconds=10, wait_seconds=0)

    assert counts["bad"] == 4
    issues = {i.code: i for i in SyncIssue.objects.filter(app=app, scope="events")}
    assert {code: i.occurrences for code, i in issues.items()} == {
        "not_json": 2,
        "not_an_event": 2,
    }
    kept = {m.message_id: m for m in BadEventMessage.objects.filter(app=app)}
    assert set(kept) == set(ids)
    by_body = {m.body: m for m in kept.values()}
    assert set(by_body) == set(bodies)  # the first text is no longer overwritten
    assert by_body["not JSON, first"].issue == issues["not_json"]
    assert by_body["not JSON, first"].error.startswith("The message is not JSON")
    assert by_body["[1, 2, 3]"].error.startswith("The message is JSON but a list")
    assert by_body["42"].code == "not_an_event"
    assert {m.receive_count for m in kept.values()} == {1}
    run = SyncRun.objects.get(app=app)
    assert {m.run_id for m in kept.values()} == {run.pk}


def test_a_bad_message_keeps_the_first_kib_of_its_body_without_cutting_a_character(app, queue):
    body = "é" * 1000  # 2,000 bytes; byte 1,024 ends a character, byte 1,025 would cut one
    send(queue, body, "x" + body)

    poller.poll_queue(app, max_seconds=10, wait_seconds=0)

    kept = sorted(BadEventMessage.objects.filter(app=app), key=lambda m: m.body[0])
    assert [m.body_bytes for m in kept] == [2001, 2000]
    assert kept[0].body == "x" + "é" * 511  # 1,023 bytes: the next character would not fit
    assert kept[1].body == "é" * 512  # exactly 1,024 bytes
    assert all(len(m.body.encode()) <= 1024 for m in kept)


def test_a_given_up_message_is_kept_with_its_receive_count_and_last_error(app, queue, monkeypatch):
    monkeypatch.setattr("aws_integration.sync.refresh.refresh", failing_refresh([]))
    monkeypatch.setattr(poller, "MAX_RECEIVES", 2)
    (message_id,) = send_ids(queue, tag_event())

    poller.poll_queue(app, max_seconds=10, wait_seconds=0)

    kept = BadEventMessage.objects.get(app=app)
    assert (kept.message_id, kept.code, kept.receive_count) == (message_id, poller.GAVE_UP, 2)
    assert kept.error == "RuntimeError: the inventory writer fell over"
    assert kept.body == tag_event()


def test_only_the_newest_bad_messages_are_kept(app, queue, monkeypatch):
    monkeypatch.setattr(poller, "BAD_MESSAGES_KEPT", 3)
    for i in range(5):
        send(queue, f"junk {i}")
        poller.poll_queue(app, max_seconds=10, wait_seconds=0)

    assert [m.body for m in BadEventMessage.objects.filter(app=app)] == [
        "junk 4",
        "junk 3",
        "junk 2",
    ]
    assert SyncIssue.objects.get(app=app, code="not_json").occurrences == 5


def test_a_receive_costs_the_same_queries_for_one_message_of_each_kind_as_for_ten(app, queue):
    def queries_for(*bodies: str) -> int:
        send(queue, *bodies)
        with CaptureQueriesContext(connection) as captured:
            counts = poller.poll_queue(app, max_seconds=10, wait_seconds=0)
        assert counts["received"] == len(bodies)
        return len(captured.captured_queries)

    queries_for("junk", unknown_event())  # the issue and the name exist from now on
    one_each = queries_for("junk", unknown_event())
    ten = queries_for(*["junk"] * 5, *[unknown_event()] * 5)

    assert ten == one_each
    assert BadEventMessage.objects.filter(app=app).count() == 7


# Unknown event names --------------------------------------------------------------------
def named_event(name: str, source: str = "s3.amazonaws.com") -> str:
    return json.dumps({"eventSource": source, "eventName": name})


def test_unknown_events_are_counted_per_source_and_name(app, queue):
    send(queue, *[named_event("PutObject")] * 3, named_event("GetObject"))
    poller.poll_queue(app, max_seconds=10, wait_seconds=0)
    send(queue, named_event("PutObject"), named_event("CreateVolume", "ec2.amazonaws.com"))
    poller.poll_queue(app, max_seconds=10, wait_seconds=0)

    counted = {(u.source, u.name): u.count for u in UnknownEventName.objects.filter(app=app)}
    assert counted == {
        ("s3.amazonaws.com", "PutObject"): 4,
        ("s3.amazonaws.com", "GetObject"): 1,
        ("ec2.amazonaws.com", "CreateVolume"): 1,
    }


def test_names_past_the_cap_are_counted_together(app, queue, monkeypatch):
    monkeypatch.setattr(poller, "UNKNOWN_NAMES_KEPT", 2)
    send(queue, named_event("One"), named_event("Two"))
    poller.poll_queue(app, max_seconds=10, wait_seconds=0)
    send(queue, named_event("Three"), named_event("Four"), named_event("One"))
    poller.poll_queue(app, max_seconds=10, wait_seconds=0)

    counted = {u.name: u.count for u in UnknownEventName.objects.filter(app=app)}
    assert counted == {"One": 2, "Two": 1, UnknownEventName.OTHER_NAMES: 2}


# Events issues resolving ----------------------------------------------------------------
def open_issue(app: AwsApp, code: str, *, seen_ago: timedelta = timedelta(0)) -> SyncIssue:
    seen = timezone.now() - seen_ago
    return SyncIssue.objects.create(
        app=app,
        scope="events",
        code=code,
        message="It began: secret body",
        first_seen_at=seen,
        last_seen_at=seen,
    )


def resolution_events(issue: SyncIssue) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(
            action="sync.issue_resolved",
            target_type="aws_integration.syncissue",
            target_id=str(issue.pk),
        )
    )


def test_handling_failures_resolve_when_events_are_handled_again(app, queue, monkeypatch):
    monkeypatch.setattr(
        "aws_integration.sync.refresh.refresh", lambda app, refs, run=None: {"updated": 1}
    )
    issue = open_issue(app, poller.HANDLING_FAILED)
    send(queue, tag_event())

    poller.poll_queue(app, max_seconds=10, wait_seconds=0)

    issue.refresh_from_db()
    assert issue.resolved_at is not None
    (event,) = resolution_events(issue)
    assert event.actor_type == "system"
    assert event.details["reason"] == "events were handled again"
    assert event.details["code"] == poller.HANDLING_FAILED
    assert "secret body" not in json.dumps(event.details) + event.target_label


def test_handling_failures_stay_open_while_a_message_still_fails(app, queue, monkeypatch):
    def refresh(app: AwsApp, refs: Any, run: Any = None) -> dict[str, int]:
        if next(iter(refs)).remote_id == "i-00000000000000bad":
            raise RuntimeError("boom")
        return {"updated": 1}

    monkeypatch.setattr("aws_integration.sync.refresh.refresh", refresh)
    monkeypatch.setattr(poller, "MAX_RECEIVES", 1)
    issue = open_issue(app, poller.HANDLING_FAILED)
    send(queue, tag_event("i-00000000000000bad"), tag_event("i-0000000000000good"))

    poller.poll_queue(app, max_seconds=10, wait_seconds=0)

    issue.refresh_from_db()
    assert issue.resolved_at is None
    assert not resolution_events(issue)


def test_delete_failures_resolve_when_handled_messages_are_deleted_again(app, queue):
    issue = open_issue(app, poller.DELETE_FAILED)
    send(queue, unknown_event())

    poller.poll_queue(app, max_seconds=10, wait_seconds=0)

    issue.refresh_from_db()
    assert issue.resolved_at is not None
    assert len(resolution_events(issue)) == 1


def test_issues_about_deleted_messages_resolve_after_a_quiet_day(app, queue):
    quiet = open_issue(app, "not_json", seen_ago=timedelta(days=1, minutes=1))
    recent = open_issue(app, "not_an_event", seen_ago=timedelta(hours=23))
    gave_up = open_issue(app, poller.GAVE_UP, seen_ago=timedelta(days=3))
    failing = open_issue(app, poller.HANDLING_FAILED, seen_ago=timedelta(days=3))

    poller.poll_queue(app, max_seconds=10, wait_seconds=0)  # the queue is empty

    for issue in (quiet, recent, gave_up, failing):
        issue.refresh_from_db()
    assert quiet.resolved_at is not None and gave_up.resolved_at is not None
    assert recent.resolved_at is None
    assert failing.resolved_at is None  # resolves only when handling works again
    (event,) = resolution_events(quiet)
    assert event.details["reason"] == "it did not recur for 1 day(s)"


def test_a_resolved_issue_reopens_when_it_recurs(app, queue):
    issue = open_issue(app, "not_json")
    SyncIssue.objects.filter(pk=issue.pk).update(resolved_at=timezone.now())
    send(queue, "junk")

    poller.poll_queue(app, max_seconds=10, wait_seconds=0)

    issue.refresh_from_db()
    assert (issue.resolved_at, issue.occurrences) == (None, 2)


def test_a_bad_message_is_never_deleted_unrecorded(app, queue, monkeypatch):
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the database is gone")

    monkeypatch.setattr(BadEventMessage.objects, "bulk_create", refuse)
    send(queue, "junk")
    clients.client("sqs").set_queue_attributes(
        QueueUrl=queue, Attributes={"VisibilityTimeout": "30"}
    )

    with pytest.raises(RuntimeError):
        poller.poll_queue(app, max_seconds=10, wait_seconds=0)

    assert waiting(queue) == 1  # delivered again after its visibility timeout
    assert not SyncIssue.objects.filter(app=app).exists()  # the batch's writes, undone


def test_a_failed_delete_is_recorded_and_resolves_at_the_next_clean_delete(app, queue, monkeypatch):
    real_client = poller.queue_client

    class RefusingDeletes:
        def __init__(self, sqs: Any) -> None:
            self.sqs = sqs

        def __getattr__(self, name: str) -> Any:
            return getattr(self.sqs, name)

        def delete_message_batch(self, **kwargs: Any) -> dict[str, Any]:
            return {"Failed": [{"Id": "0", "Code": "AccessDenied", "Message": "no"}]}

    monkeypatch.setattr(poller, "queue_client", lambda app: RefusingDeletes(real_client(app)))
    send(queue, unknown_event())
    clients.client("sqs").set_queue_attributes(
        QueueUrl=queue, Attributes={"VisibilityTimeout": "30"}
    )
    poller.poll_queue(app, max_seconds=10, wait_seconds=0)
    issue = SyncIssue.objects.get(app=app, code=poller.DELETE_FAILED)
    assert issue.resolved_at is None and "AccessDenied: no" in issue.message

    monkeypatch.setattr(poller, "queue_client", real_client)
    clients.client("sqs").set_queue_attributes(
        QueueUrl=queue, Attributes={"VisibilityTimeout": "0"}
    )
    send(queue, unknown_event())
    poller.poll_queue(app, max_seconds=10, wait_seconds=0)

    issue.refresh_from_db()
    assert issue.resolved_at is not None

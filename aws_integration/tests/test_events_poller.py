"""The events poller's loop against an SQS queue of the stand-in AWS: failures while
handling, poison messages, and the lease that keeps two workers off one queue."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from access.models import Lease
from aws_integration import clients
from aws_integration.events import poller, polling
from aws_integration.models import AwsApp, SyncIssue, SyncRun
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

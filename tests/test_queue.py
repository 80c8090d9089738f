"""Queueing a task on the ORM broker keeps the caller's database connection."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, transaction
from django.db.backends.signals import connection_created
from django_q.models import OrmQ

from config import queue


@pytest.mark.django_db(transaction=True)
def test_queueing_after_a_commit_opens_no_connection(settings: Any) -> None:
    if connection.vendor == "sqlite" and connection.is_in_memory_db():  # type: ignore[attr-defined]  # SQLite's wrapper only
        pytest.skip("Django never closes an in-memory SQLite database: run on PostgreSQL.")
    settings.TASKS_INLINE = False
    opened: list[Any] = []

    def count(**kwargs: Any) -> None:
        opened.append(kwargs["connection"])

    connection.ensure_connection()
    before = connection.connection
    connection_created.connect(count)
    try:
        with transaction.atomic():
            # Queued as the services queue: once the change commits, outside any
            # transaction, where django-q2's own broker would close the connection.
            transaction.on_commit(lambda: queue.enqueue("access.tasks.deliver_email", ["a"]))
        assert OrmQ.objects.count() == 1
    finally:
        connection_created.disconnect(count)
    assert opened == []
    assert connection.connection is before


@pytest.mark.django_db
def test_mail_is_queued_so_that_only_its_failures_are_stored(
    settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # Storing a success makes the cluster lock and load every stored success to prune
    # the oldest: for mail, sent by the thousand, only failures are kept.
    from datetime import timedelta

    from django.utils import timezone
    from django_q.models import Failure, Success
    from django_q.monitor import save_task
    from django_q.signing import SignedPackage

    from access import notifications
    from access.choices import GrantSource, GrantStatus
    from access.models import AccessLevel, Grant
    from access.tests.factories import AccessLevelFactory
    from tests.fixtures import make_user

    settings.TASKS_INLINE = False
    level: AccessLevel = AccessLevelFactory.create()
    grant = Grant.objects.create(
        user=make_user("holder@example.com"),
        resource=level.resource,
        access_level=level,
        source=GrantSource.ADMIN,
        status=GrantStatus.ACTIVE,
        expires_at=timezone.now() + timedelta(hours=1),
    )
    with django_capture_on_commit_callbacks(execute=True):
        notifications.expiry_warning(grant, within=timedelta(hours=1))
    (queued,) = OrmQ.objects.all()
    task = SignedPackage.loads(queued.payload)
    assert task["func"] == "access.tasks.deliver_emails"
    assert task["save"] is False

    now = timezone.now()
    for success in (True, False):
        save_task(
            {
                **task,
                "success": success,
                "result": None,
                "started": now,
                "stopped": now,
                "sync": True,  # as a task run in process: the test keeps its connection
            },
            None,
        )
    assert not Success.objects.exists()
    assert Failure.objects.count() == 1

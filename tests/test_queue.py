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

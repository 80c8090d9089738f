"""Queueing a background task: the one place that calls django-q2's ``async_task``.

It depends on no app of the project, so models, services and tasks can all queue work
without importing each other.
"""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string


def enqueue(
    func: str,
    *args: Any,
    task_name: str | None = None,
    group: str | None = None,
    keep_success: bool = True,
) -> None:
    """Queue the task ``func`` (a dotted path) with ``args``; with TASKS_INLINE (tests,
    one-off commands) run it here and now.

    ``keep_success=False`` is for tasks run by the thousand (mail): django-q2 then stores
    only their failures. Storing a success costs its cluster a transaction that locks and
    loads every stored success (up to ``save_limit``) to prune the oldest."""
    if settings.TASKS_INLINE:
        import_string(func)(*args)
        return
    from django_q.tasks import async_task  # django-q2 needs the app registry at import

    options: dict[str, Any] = {"group": group or func.rsplit(".", 1)[-1]}
    if task_name:
        options["task_name"] = task_name
    if not keep_success:
        options["save"] = False
    if broker := _orm_broker():
        options["broker"] = broker
    async_task(func, *args, **options)


@functools.cache
def _orm_broker() -> Any:
    """With the ORM broker, one that writes the task on the caller's connection as it is.

    django-q2's own ORM broker closes old connections before each use, which its cluster's
    broker thread needs; in the process that queues, under DB_CONN_MAX_AGE=0, that drops the
    caller's connection at every task queued after a commit, and the next statement opens
    a new one. The caller's connection is managed by whoever opened it (Django's request
    handling, the cluster's workers), so this broker leaves it alone. None with another
    broker (Redis), which has no such cost.
    """
    from django_q.brokers import orm  # django-q2 needs the app registry at import
    from django_q.conf import Conf
    from django_q.models import OrmQ

    if not Conf.ORM or Conf.BROKER_CLASS:
        return None

    class CallerORM(orm.ORM):
        @staticmethod
        def get_connection(list_key: str | None = None) -> Any:
            return OrmQ.objects.using(Conf.ORM)

    return CallerORM(list_key=Conf.CLUSTER_NAME)

"""Queueing a background task: the one place that calls django-q2's ``async_task``.

It depends on no app of the project, so models, services and tasks can all queue work
without importing each other.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string


def enqueue(func: str, *args: Any, task_name: str | None = None, group: str | None = None) -> None:
    """Queue the task ``func`` (a dotted path) with ``args``; with TASKS_INLINE (tests,
    one-off commands) run it here and now."""
    if settings.TASKS_INLINE:
        import_string(func)(*args)
        return
    from django_q.tasks import async_task  # django-q2 needs the app registry at import

    options: dict[str, Any] = {"group": group or func.rsplit(".", 1)[-1]}
    if task_name:
        options["task_name"] = task_name
    async_task(func, *args, **options)

"""django-q2's task admin, read-only.

django-q2's own admin lets whoever may edit a Schedule name any importable function as
its ``func`` (``os.system`` with arguments of their choosing), resubmit tasks, and pause
or delete the schedules Portcullis depends on (the sync and the grant sweep).
Here the results, failures, queue and schedules can be seen and searched, and nothing
can be added, changed, deleted or resubmitted: schedules are declared in code
(``<app>/schedules.py``) and the daily validations reinstall any that drifted.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django_q import admin as q_admin
from django_q.models import Failure, OrmQ, Schedule, Success


class ReadOnlyMixin:
    """No add, change, delete or actions; the change page shows every field read-only."""

    actions: list[Any] = []

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        return {}


class ScheduleAdmin(ReadOnlyMixin, q_admin.ScheduleAdmin):
    pass


class SuccessAdmin(ReadOnlyMixin, q_admin.TaskAdmin):
    pass


class FailureAdmin(ReadOnlyMixin, q_admin.FailAdmin):
    pass


class QueueAdmin(ReadOnlyMixin, q_admin.QueueAdmin):
    pass


# The queue is registered only with the ORM broker, as django-q2 does; the others always.
for model, model_admin in (
    (Schedule, ScheduleAdmin),
    (Success, SuccessAdmin),
    (Failure, FailureAdmin),
    (OrmQ, QueueAdmin),
):
    if admin.site.is_registered(model):
        admin.site.unregister(model)
        admin.site.register(model, model_admin)
    elif model is not OrmQ:
        admin.site.register(model, model_admin)

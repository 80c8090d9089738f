"""The background schedules, declared in code by each app and installed idempotently.

django-q2 keeps schedules as rows (``django_q.models.Schedule``); these declarations are
the source of truth. :func:`install_schedules` makes the rows match them, by name: it
creates what is missing, corrects what drifted, and removes Portcullis schedules that
are no longer declared, leaving schedules an operator added under other names alone.
It runs after every ``migrate`` (post_migrate, see config/apps.py) and as
``manage.py install_schedules``.

Every installed app may declare its own in ``<app>/schedules.py`` as ``SCHEDULES``, a
list of :class:`Schedule`, each named with the :data:`NAME_PREFIX`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from django.apps import apps as global_apps
from django.db import DEFAULT_DB_ALIAS, transaction
from django.utils import timezone

from config.declarations import declared

logger = logging.getLogger(__name__)

NAME_PREFIX = "Portcullis: "
# django_q.models.Schedule.schedule_type values (spelt out so that the historical model
# given to post_migrate, which has no class constants, can be used too).
ScheduleType = Literal["I", "H", "D"]
MINUTES: Final = "I"
HOURLY: Final = "H"
DAILY: Final = "D"
_PERIOD_MINUTES = {HOURLY: 60, DAILY: 24 * 60}


@dataclass(frozen=True)
class Schedule:
    """One schedule: the task ``func`` (dotted path) run every ``minutes`` minutes
    (``schedule_type`` MINUTES) or hourly or daily."""

    name: str
    func: str
    schedule_type: ScheduleType
    minutes: int | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name.startswith(NAME_PREFIX):
            raise ValueError(f"Schedule name {self.name!r} must start with {NAME_PREFIX!r}.")
        if (self.schedule_type == MINUTES) != (self.minutes is not None):
            raise ValueError(f"{self.name}: minutes goes with the MINUTES type, and only with it.")

    def fields(self) -> dict[str, Any]:
        return {
            "func": self.func,
            "schedule_type": self.schedule_type,
            "minutes": self.minutes,
            # django-q2 evaluates kwargs as "a=1, b='x'".
            "kwargs": ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items()) or None,
            "args": None,
            "hook": None,
            "repeats": -1,
            "cron": None,
            "cluster": None,
            "intended_date_kwarg": None,
        }

    def period(self) -> timedelta:
        return timedelta(minutes=self.minutes or _PERIOD_MINUTES[self.schedule_type])


def declared_schedules() -> list[Schedule]:
    """Every installed app's ``SCHEDULES``, refusing two with one name."""
    return declared("schedules", "SCHEDULES", Schedule)


@dataclass
class InstallResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    # name -> field -> [found, restored]; for removed ones, their func.
    changes: dict[str, dict[str, list[Any]]] = field(default_factory=dict)

    @property
    def drifted(self) -> bool:
        return bool(self.created or self.updated or self.removed)

    def __str__(self) -> str:
        return (
            f"{len(self.created)} created, {len(self.updated)} updated, "
            f"{len(self.removed)} removed, {len(self.unchanged)} unchanged"
        )


def install_schedules(
    *,
    using: str = DEFAULT_DB_ALIAS,
    schedule_model: Any = None,
    schedules: list[Schedule] | None = None,
    now: datetime | None = None,
    only_declared: bool = False,
) -> InstallResult:
    """Makes the Schedule rows match the declarations; running it twice changes nothing.

    ``schedule_model`` is the model to write through (post_migrate passes the historical
    one); a schedule that already exists keeps its next run, so re-installing does not
    postpone or hurry anything. ``only_declared`` removes every undeclared schedule, not
    only those named with the prefix."""
    if schedule_model is None:
        from django_q.models import Schedule as ScheduleRow  # needs the app registry

        schedule_model = ScheduleRow
    schedules = declared_schedules() if schedules is None else schedules
    now = now or timezone.now()
    result = InstallResult()
    manager = schedule_model._default_manager.db_manager(using)
    with transaction.atomic(using=using):
        for schedule in schedules:
            wanted = schedule.fields()
            rows = list(manager.filter(name=schedule.name).order_by("pk"))
            if not rows:
                manager.create(name=schedule.name, next_run=now, **wanted)
                result.created.append(schedule.name)
                result.changes[schedule.name] = {"func": [None, schedule.func]}
                continue
            row, extra = rows[0], rows[1:]
            for duplicate in extra:  # a copy made by hand in the admin
                duplicate.delete()
            changed = [name for name, value in wanted.items() if getattr(row, name) != value]
            # A next run beyond one period from now was postponed by hand: it would stop
            # the task (the grant sweep, say) until then.
            if row.next_run is None or row.next_run > now + schedule.period():
                wanted = {**wanted, "next_run": now}
                changed.append("next_run")
            if changed or extra:
                result.changes[schedule.name] = {
                    name: [_plain(getattr(row, name)), _plain(wanted[name])] for name in changed
                }
                if extra:
                    result.changes[schedule.name]["duplicates_removed"] = [len(extra), 0]
                for name in changed:
                    setattr(row, name, wanted[name])
                row.save(update_fields=changed or None)
                result.updated.append(schedule.name)
            else:
                result.unchanged.append(schedule.name)
        declared_names = {schedule.name for schedule in schedules}
        undeclared = (
            manager.all() if only_declared else manager.filter(name__startswith=NAME_PREFIX)
        )
        for row in undeclared.exclude(name__in=declared_names):
            result.removed.append(row.name)
            result.changes[row.name] = {"func": [row.func, None]}
            row.delete()
    if result.drifted:
        logger.info("Schedules installed: %s.", result)
    return result


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def install_after_migrate(
    sender: Any, *, apps: Any = None, using: str = DEFAULT_DB_ALIAS, verbosity: int = 1, **_: Any
) -> None:
    """post_migrate receiver: installs the schedules once django-q2's table exists."""
    try:
        schedule_model = (apps or global_apps).get_model("django_q", "Schedule")
    except LookupError:  # django_q not migrated (yet) on this database
        return
    result = install_schedules(using=using, schedule_model=schedule_model)
    if verbosity >= 2:
        print(f"Schedules: {result}.")

"""The AWS app's schedules (installed by config.schedules, which reads every app's SCHEDULES)."""

from config.schedules import DAILY, MINUTES, NAME_PREFIX, Schedule

SCHEDULES = [
    # Cheap: it enqueues a sync only for apps whose full-sync interval has elapsed, so the
    # check runs far more often than any interval (5 minutes at the least).
    Schedule(
        name=f"{NAME_PREFIX}AWS full syncs",
        func="aws_integration.sync.tasks.schedule_full_syncs",
        schedule_type=MINUTES,
        minutes=2,
    ),
    Schedule(
        name=f"{NAME_PREFIX}AWS validations",
        func="aws_integration.setup_checks.run_all_validations",
        schedule_type=DAILY,
    ),
]

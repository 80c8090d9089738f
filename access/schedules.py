"""The access workflow's schedules (installed by config.schedules, which reads every app's
SCHEDULES).

The grant engine is not scheduled: every task cluster runs it as a loop (access/loops.py)."""

from config.schedules import MINUTES, NAME_PREFIX, Schedule

SCHEDULES = [
    # The safety net under the engine's own sweep: expired grants, work left unplanned,
    # pending requests past their deadline and expiry warnings.
    Schedule(
        name=f"{NAME_PREFIX}grant sweep",
        func="access.tasks.sweep",
        schedule_type=MINUTES,
        minutes=5,
    ),
]

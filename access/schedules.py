"""The access workflow's schedules (installed by aws_integration.schedules.install_schedules,
which reads every app's SCHEDULES; plain dicts here because access imports no provider app).

The grant engine is not scheduled: every task cluster runs it as a loop (access/loops.py)."""

SCHEDULES = [
    # The safety net under the engine's own sweep: expired grants, work left unplanned,
    # pending requests past their deadline and expiry warnings.
    {
        "name": "Portcullis: grant sweep",
        "func": "access.tasks.sweep",
        "schedule_type": "I",
        "minutes": 5,
    },
]

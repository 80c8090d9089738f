"""The access workflow's schedules (installed by aws_integration.schedules.install_schedules,
which reads every app's SCHEDULES; plain dicts here because access imports no provider app)."""

SCHEDULES = [
    # The grant engine: each run loops under a lease, revoking grants the moment they
    # expire and reconciling in AWS (on a pool of threads) every assignment planned for
    # now; a newer run takes over from it within a tick. One run a minute keeps it going;
    # django-q2's scheduler alone only looks every 30 s.
    {
        "name": "Portcullis: grant timer",
        "func": "access.tasks.run_grant_timer",
        "schedule_type": "I",
        "minutes": 1,
    },
    # The safety net under the timer: expired grants, due retries, pending requests past
    # their deadline and expiry warnings, even if no timer ran.
    {
        "name": "Portcullis: grant sweep",
        "func": "access.tasks.sweep",
        "schedule_type": "I",
        "minutes": 5,
    },
]

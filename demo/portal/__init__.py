"""The demo's portal data: what each persona finds waiting when they first sign in.

``seed_portal`` runs every step of ``PORTAL_STEPS`` in order, once the demo app is synced
and its owners assigned. Each step goes through the services (so the audit log records it
as any other change), and is idempotent: the demo may start many times on one database.

Flows of later issues add their demo data as a step of their own here (a module beside
``requests``, appended to ``PORTAL_STEPS``): access reviews (a campaign the auditor started,
with items waiting for the manager), and risk findings.
"""

from __future__ import annotations

from collections.abc import Callable

from aws_integration.models import AwsApp
from demo.portal.requests import seed_requests

PortalStep = Callable[[AwsApp], list[str]]

# Each step returns one line per thing it added, for the demo's output; none on a re-run.
PORTAL_STEPS: tuple[PortalStep, ...] = (
    seed_requests,
    # Access reviews and risk findings: their steps go here.
)


def seed_portal(app: AwsApp) -> list[str]:
    """Seeds the portal data of every step for the demo app; returns what was added."""
    added: list[str] = []
    for step in PORTAL_STEPS:
        added.extend(step(app))
    return added

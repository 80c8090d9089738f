"""Fixtures shared by the AWS app's tests that sync a seeded stand-in organization."""

from typing import Any

import pytest

from aws_integration.tests.sync_fixtures import seeded_org
from demo import seed


@pytest.fixture
def org(moto_server: str, settings: Any) -> seed.SeedResult:
    """The stand-in organization, seeded, with the app's clients pointed at it. A module
    that needs another shape of it (faults kept, a cache) defines its own."""
    settings.AWS_ENDPOINT_URL = moto_server
    settings.AWS_MAX_ATTEMPTS = 2
    return seeded_org()

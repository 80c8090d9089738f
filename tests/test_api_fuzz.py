"""The API fuzzed from its own OpenAPI schema (schemathesis), with each persona's token.

Every operation of /api/schema/ gets generated requests, valid and invalid, sent to the
app in-process (WSGI); each response must be no 5xx and match the schema: a documented
status, content type and body. Bounded and derandomized, so that it fits `make test` and
fails the same way twice.

schemathesis's own pytest loader (``schemathesis.pytest.from_fixture``) needs a pytest node
attribute that pytest 9 no longer has, so the test drives hypothesis itself: one strategy
per operation and generation mode, every failing operation reported together.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from config.wsgi import application
from tests.fixtures import Personas

# Examples per operation, mode and persona: 6 personas x 19 operations x 2 modes x 10 is
# about 2,300 requests, some 30 s of one core.
MAX_EXAMPLES = 10
FUZZED_PERSONAS = ("outsider", "requester", "approver", "manager", "auditor", "admin")
# Every check schemathesis has runs, except "a request the schema allows must be accepted":
# the API refuses with a clear 400 what a schema cannot say (a date range the wrong way
# round, a NUL character in a filter, a submission with no items), and that is right.
NOT_CHECKED = [positive_data_acceptance]


@pytest.fixture
def in_process(db: Any) -> Iterator[None]:
    """Lets the WSGI app run inside the test's transaction: Django's handler would close the
    connection (and so the transaction) at each request's start and end; its test client
    stops that the same way."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def objects(personas: Personas) -> None:
    """Something for the ids to find: a grant, a pending request, an access level."""
    from access.choices import GrantSource, GrantStatus
    from access.models import AccessLevel, Grant
    from access.services import requests as request_service

    level = AccessLevel.objects.create(resource=personas.resource, remote_id="ps-1", name="Read")
    Grant.objects.create(
        user=personas.requester,
        resource=personas.resource,
        access_level=level,
        source=GrantSource.ADMIN,
        status=GrantStatus.ACTIVE,
    )
    request_service.submit_requests(
        requested_by=personas.requester,
        items=[request_service.RequestItem(personas.resource.pk, level.pk, timedelta(hours=1))],
        reason="fuzz",
    )


@pytest.mark.parametrize("persona", FUZZED_PERSONAS)
def test_the_api_answers_every_generated_request_as_its_schema_says(
    persona: str, personas: Personas, objects: None, in_process: None
) -> None:
    from access.tokens import create_api_token

    _, raw = create_api_token(getattr(personas, persona), "fuzz")
    headers = {"Authorization": f"Bearer {raw}"}
    schema = schemathesis.openapi.from_wsgi(
        "/api/schema/?format=json", application, headers=headers
    )
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an Err raises here
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=MAX_EXAMPLES,
                derandomize=True,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def run(case: Any) -> None:
                # Throttles count in the cache: else the examples would be spent on 429s.
                cache.clear()
                # Each example in its own savepoint: one that revokes the token or ends the
                # grant leaves the next as it found it, so the run is the same every time.
                with transaction.atomic():
                    case.call_and_validate(headers=headers, excluded_checks=NOT_CHECKED)
                    transaction.set_rollback(True)

            try:
                run()
            except (Exception, BaseExceptionGroup) as exc:  # each failing operation is reported
                failures.append(f"{operation.label} ({mode.value}) as {persona}:\n{exc}")
    assert not failures, "\n\n".join(failures)

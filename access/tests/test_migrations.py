"""Data migrations, run on the test database from the state before them."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("access", "0012_stage_reviewers")]
COPIED = [("access", "0013_copy_stage_reviewers")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture
def at_the_latest():
    yield
    executor = MigrationExecutor(connection)
    migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_stage_reviewers_move_from_the_json_list_to_the_table(at_the_latest):
    apps = migrate(BEFORE)
    User = apps.get_model("access", "User")
    App = apps.get_model("access", "App")
    Resource = apps.get_model("access", "Resource")
    AccessLevel = apps.get_model("access", "AccessLevel")
    AccessRequest = apps.get_model("access", "AccessRequest")
    olga, sam, rob = (
        User.objects.create(username=name, email=f"{name}@example.com")
        for name in ("olga", "sam", "rob")
    )
    app = App.objects.create(name="Organization")
    resource = Resource.objects.create(
        app=app, type="aws_account", remote_id="111111111111", name="prod"
    )
    level = AccessLevel.objects.create(resource=resource, remote_id="ps-1", name="ReadOnly")

    def request(**fields):
        return AccessRequest.objects.create(
            requested_by=rob, user=rob, resource=resource, access_level=level, **fields
        ).pk

    # The second stage's reviewers, with the id of a user deleted since.
    second = request(current_stage=2, stage_reviewers=[sam.pk, olga.pk, 999999])
    first = request(stage_reviewers=[olga.pk])
    auto = request(stage_reviewers=[])

    apps = migrate(COPIED)
    rows = apps.get_model("access", "StageReviewer").objects.values_list(
        "request_id", "stage", "user_id"
    )
    assert sorted(rows) == sorted([(second, 2, olga.pk), (second, 2, sam.pk), (first, 1, olga.pk)])
    assert auto not in {row[0] for row in rows}

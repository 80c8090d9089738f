"""Every inventory row that sync or refresh creates, changes or marks deleted has its own
audit event, written with the row, so its history is in the audit log (not only counts)."""

from __future__ import annotations

from collections import Counter

import pytest

from access.choices import ResourceType
from access.models import AccessLevel, Resource
from audit.models import AuditEvent
from audit.services import verify_chain
from aws_integration.choices import SyncStatus
from aws_integration.models import IdentityCenterUser
from aws_integration.sync.object_refs import ObjectRef
from aws_integration.sync.refresh import refresh
from aws_integration.tests.sync_fixtures import (
    REGION,
    create_role,
    make_app,
    member,
    run_instance,
    sync,
)

pytestmark = pytest.mark.django_db

T = ResourceType
INVENTORY_ACTIONS = (
    "inventory.resource.",
    "inventory.access_level.",
    "aws_integration.identitycenteruser.",
)


@pytest.fixture
def app(org):
    return make_app(org)


def inventory_events(**filters) -> list[AuditEvent]:
    return [
        e
        for e in AuditEvent.objects.filter(**filters).order_by("id")
        if e.action.startswith(INVENTORY_ACTIONS)
    ]


def events_of(row) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(
            target_type=row._meta.label_lower, target_id=str(row.pk)
        ).order_by("id")
    )


def test_a_full_sync_records_the_creation_of_every_inventory_row(app):
    run = sync(app)

    assert run.status == SyncStatus.SUCCEEDED, run.message
    created = Counter(
        (e.target_type, e.target_id) for e in inventory_events() if e.action.endswith(".created")
    )
    rows = [
        *Resource.objects.filter(app=app),
        *AccessLevel.objects.filter(resource__app=app),
        *IdentityCenterUser.objects.filter(app=app),
    ]
    assert len(rows) > 20
    assert created == Counter((r._meta.label_lower, str(r.pk)) for r in rows)
    instance = Resource.objects.filter(app=app, type=T.EC2_INSTANCE).first()
    (event,) = events_of(instance)
    assert event.action == "inventory.resource.created"
    assert event.actor_type == "system"
    assert event.target_label == str(instance)
    assert event.details["sync_run"] == run.pk
    after = event.details["after"]
    assert (after["remote_id"], after["name"], after["tags"]) == (
        instance.remote_id,
        instance.name,
        instance.tags,
    )
    assert after["parent"] == instance.parent_id and after["metadata"] == instance.metadata
    level = instance.access_levels.get()
    assert events_of(level)[0].details["after"]["remote_id"] == level.remote_id
    assert isinstance(list(verify_chain())[-1], int)


def test_a_resync_with_no_change_records_no_inventory_event(app):
    sync(app)
    last = AuditEvent.objects.order_by("-id").first().pk

    sync(app)

    assert inventory_events(pk__gt=last) == []


def test_a_change_records_the_changed_fields_before_and_after(org, app):
    sync(app)
    instance = Resource.objects.get(
        app=app, type=T.EC2_INSTANCE, account_id=org.accounts[0].account_id
    )
    old_tags = instance.tags
    last = AuditEvent.objects.order_by("-id").first().pk
    ec2 = member(org.accounts[0].account_id, "ec2")
    ec2.create_tags(Resources=[instance.remote_id], Tags=[{"Key": "owner", "Value": "ada"}])
    try:
        run = sync(app)
    finally:
        ec2.delete_tags(Resources=[instance.remote_id], Tags=[{"Key": "owner"}])

    (event,) = inventory_events(pk__gt=last)
    assert (event.action, event.target_id) == ("inventory.resource.updated", str(instance.pk))
    assert event.details["before"] == {"tags": old_tags}
    assert event.details["after"] == {"tags": {**old_tags, "owner": "ada"}}
    assert event.details["sync_run"] == run.pk


def test_a_row_gone_from_aws_and_back_has_both_in_its_history(org, app):
    account_id = org.accounts[0].account_id
    role_arn = create_role(account_id, "ComesAndGoes")
    sync(app)
    role = Resource.objects.get(app=app, remote_id=role_arn)

    member(account_id, "iam").delete_role(RoleName="ComesAndGoes")
    gone_run = sync(app)
    create_role(account_id, "ComesAndGoes")
    try:
        sync(app)
    finally:
        member(account_id, "iam").delete_role(RoleName="ComesAndGoes")

    actions = [e.action for e in events_of(role)]
    assert actions[0] == "inventory.resource.created"
    gone = next(e for e in events_of(role) if e.action == "inventory.resource.gone")
    assert gone.details["reason"] == "no longer present in AWS"
    assert gone.details["after"] == {"deleted_at": gone_run.started_at.isoformat()}
    back = events_of(role)[-1]
    assert back.action == "inventory.resource.updated"
    assert back.details["before"]["deleted_at"] == gone_run.started_at.isoformat()
    assert back.details["after"]["deleted_at"] is None


def test_a_refresh_records_each_row_it_writes(org, app):
    sync(app)
    account_id = org.accounts[0].account_id
    instance_id = run_instance(account_id, "from-an-event")
    ref = ObjectRef("ec2_instance", account_id, REGION, instance_id)
    ec2 = member(account_id, "ec2")

    refresh(app, [ref])
    ec2.create_tags(Resources=[instance_id], Tags=[{"Key": "Name", "Value": "renamed"}])
    refresh(app, [ref])
    ec2.terminate_instances(InstanceIds=[instance_id])
    refresh(app, [ref])

    instance = Resource.objects.get(app=app, remote_id=instance_id)
    history = events_of(instance)
    assert [e.action for e in history] == [
        "inventory.resource.created",
        "inventory.resource.updated",
        "inventory.resource.gone",
    ]
    assert history[1].details["before"]["name"] == "from-an-event"
    assert history[1].details["after"]["name"] == "renamed"
    assert all(e.details.get("sync_run") or e.details.get("source") for e in history)


def test_rows_and_their_events_are_written_together(app, monkeypatch):
    def refuse(events):
        raise RuntimeError("the audit log refused")

    monkeypatch.setattr("aws_integration.sync.upsert.record_events", refuse)

    run = sync(app)

    assert run.status != SyncStatus.SUCCEEDED
    assert not Resource.objects.filter(app=app).exists()
    assert inventory_events() == []

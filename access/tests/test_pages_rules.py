"""Request rules edited by a resource's owners: 1-3 stages, every change audited."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse

from access.models import RequestRule
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def rule_data(**overrides):
    data = {
        "name": "On-call",
        "priority": "100",
        "requester_group": "",
        "allow_requests": "on",
        "max_duration": str(86400),
        "recommended_duration": str(3600),
        "require_reason": "on",
        "extension_policy": "same_as_request",
        "stages-TOTAL_FORMS": "3",
        "stages-INITIAL_FORMS": "0",
        "stages-MIN_NUM_FORMS": "0",
        "stages-MAX_NUM_FORMS": "3",
        "stages-0-order": "1",
        "stages-0-reviewers": "owners",
        "stages-0-mode": "any",
        "stages-1-order": "",
        "stages-1-reviewers": "owners",
        "stages-1-mode": "any",
        "stages-2-order": "",
        "stages-2-reviewers": "owners",
        "stages-2-mode": "any",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


@pytest.fixture
def rule(personas):
    made = RequestRule.objects.create(
        resource=personas.resource, name="Existing", max_duration=timedelta(days=1)
    )
    made.stages.create(order=1, reviewers="owners", mode="any")
    return made


def test_an_owner_adds_a_rule_with_two_stages_and_it_is_audited(personas):
    url = reverse("resource-rule-new", args=[personas.resource.pk])
    client = logged_in(personas.approver)
    assert client.get(url).status_code == 200
    response = client.post(
        url, rule_data(**{"stages-1-order": "2", "stages-1-reviewers": "manager"})
    )
    assert response["Location"] == reverse("resource-rules", args=[personas.resource.pk])
    made = RequestRule.objects.get()
    assert made.max_duration == timedelta(days=1)
    assert list(made.stages.values_list("order", "reviewers")) == [(1, "owners"), (2, "manager")]
    event = AuditEvent.objects.get(action="inventory.request_rule.created")
    assert event.actor_id == personas.approver.pk
    assert [s["reviewers"] for s in event.details["after"]["stages"]] == ["owners", "manager"]
    listing = client.get(reverse("resource-rules", args=[personas.resource.pk])).content.decode()
    assert "Stage 2: the requester&#x27;s manager approves." in listing


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"stages-0-order": ""}, "needs at least one approval stage"),
        ({"stages-1-order": "3"}, "without gaps"),
        ({"auto_approve": "on"}, "An auto-approving rule has no approval stages"),
        (
            {
                "stages-TOTAL_FORMS": "4",
                "stages-3-order": "3",
                "stages-1-order": "2",
                "stages-2-order": "3",
            },
            "at most 3",
        ),
    ],
)
def test_bad_stages_are_refused_with_the_admins_messages(personas, overrides, message):
    # An admin: owners cannot turn on auto-approval at all (see the next test).
    response = logged_in(personas.admin).post(
        reverse("resource-rule-new", args=[personas.resource.pk]), rule_data(**overrides)
    )
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not RequestRule.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="inventory.request_rule").exists()


def test_an_owner_cannot_turn_on_what_would_let_them_approve_themselves(personas):
    response = logged_in(personas.approver).post(
        reverse("resource-rule-new", args=[personas.resource.pk]),
        rule_data(
            auto_approve="on",
            allow_self_approval="on",
            allow_until_revoked="on",
            max_duration="",
            extension_policy="auto_approve",
        ),
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "Only an admin can change this." in page
    assert not RequestRule.objects.exists()
    # Disabled fields keep their defaults; the rest of the rule saves.
    response = logged_in(personas.approver).post(
        reverse("resource-rule-new", args=[personas.resource.pk]),
        rule_data(auto_approve="on", allow_self_approval="on", allow_until_revoked="on"),
    )
    assert response.status_code == 302
    saved = RequestRule.objects.get()
    assert not saved.auto_approve
    assert not saved.allow_self_approval
    assert not saved.allow_until_revoked


def test_an_owner_edits_a_rule_and_the_change_is_audited(personas, rule):
    url = reverse("resource-rule-edit", args=[personas.resource.pk, rule.pk])
    stage = rule.stages.get()
    response = logged_in(personas.approver).post(
        url,
        rule_data(
            name="Existing",
            max_duration=str(3 * 86400),
            **{
                "stages-INITIAL_FORMS": "1",
                "stages-0-id": str(stage.pk),
                "stages-0-rule": str(rule.pk),
                "stages-0-mode": "all",
            },
        ),
    )
    assert response.status_code == 302, response.content.decode()
    rule.refresh_from_db()
    assert rule.max_duration == timedelta(days=3)
    assert rule.stages.get().mode == "all"
    event = AuditEvent.objects.get(action="inventory.request_rule.updated")
    assert set(event.details["changes"]) >= {"max_duration", "stages"}


def test_a_form_that_leaves_out_a_saved_stage_cannot_add_a_second_stage_1(personas, rule):
    # A stale or hand-made form: the saved stage is not among its rows (INITIAL_FORMS=0), so
    # it stays, and the new row numbered 1 would break the one-stage-per-order constraint.
    response = logged_in(personas.approver).post(
        reverse("resource-rule-edit", args=[personas.resource.pk, rule.pk]),
        rule_data(name="Existing", **{"stages-0-reviewers": "manager"}),
    )
    assert response.status_code == 400
    assert "Each stage needs its own order" in response.content.decode()
    assert list(rule.stages.values_list("order", "reviewers")) == [(1, "owners")]
    assert not AuditEvent.objects.filter(action="inventory.request_rule.updated").exists()


def test_an_owner_deletes_a_rule_and_it_is_audited(personas, rule):
    client = logged_in(personas.approver)
    url = reverse("resource-rule-delete", args=[personas.resource.pk, rule.pk])
    assert client.get(url).status_code == 405
    client.post(url)
    assert not RequestRule.objects.exists()
    event = AuditEvent.objects.get(action="inventory.request_rule.deleted")
    assert event.target_id == str(rule.pk) and event.details["before"]["name"] == "Existing"


@pytest.mark.parametrize("persona", ["requester", "manager", "auditor"])
def test_people_who_do_not_own_the_resource_may_not_manage_its_rules(personas, rule, persona):
    client = logged_in(getattr(personas, persona))
    assert client.get(reverse("resource-rules", args=[personas.resource.pk])).status_code == 403
    assert (
        client.post(
            reverse("resource-rule-new", args=[personas.resource.pk]), rule_data()
        ).status_code
        == 403
    )
    assert (
        client.post(
            reverse("resource-rule-delete", args=[personas.resource.pk, rule.pk])
        ).status_code
        == 403
    )
    assert RequestRule.objects.count() == 1
    assert not AuditEvent.objects.filter(action__startswith="inventory.request_rule").exists()


def test_an_admin_manages_any_resources_rules(personas, rule):
    assert (
        logged_in(personas.admin)
        .get(reverse("resource-rules", args=[personas.resource.pk]))
        .status_code
        == 200
    )


def test_a_rule_of_another_resource_is_not_found(personas, rule):
    from access.models import Resource

    other = Resource.objects.create(
        app=personas.app, type="aws_iam_role", remote_id="o", name="Other"
    )
    other.owners.create(user=personas.approver)
    client = logged_in(personas.approver)
    assert client.get(reverse("resource-rule-edit", args=[other.pk, rule.pk])).status_code == 404
    assert client.post(reverse("resource-rule-delete", args=[other.pk, rule.pk])).status_code == 404
    assert RequestRule.objects.filter(pk=rule.pk).exists()


def test_the_rule_pages_send_anonymous_people_to_login(personas, rule):
    client = Client()
    for response in (
        client.get(reverse("resource-rules", args=[personas.resource.pk])),
        client.post(reverse("resource-rule-new", args=[personas.resource.pk]), rule_data()),
        client.post(reverse("resource-rule-delete", args=[personas.resource.pk, rule.pk])),
    ):
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert RequestRule.objects.count() == 1

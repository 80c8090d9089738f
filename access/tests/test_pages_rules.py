"""Request rules edited by a resource's owners: 1-3 stages, every change audited."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.test import Client
from django.urls import reverse

from access.models import RequestRule, UserGroup
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


# An owner cannot get access with nobody else's approval by editing rules ---------------------
def ask_for_myself(user, level):
    from access.services import requests as request_service

    return request_service.submit_requests(
        requested_by=user,
        items=[request_service.RequestItem(level.resource_id, level.pk, timedelta(hours=1))],
        reason="mine",
    )[0]


@pytest.fixture
def level(personas):
    from access.models import AccessLevel

    return AccessLevel.objects.create(resource=personas.resource, remote_id="ps", name="ReadOnly")


@pytest.fixture
def ops(personas):
    from access.models import UserGroup

    return UserGroup.objects.create(name="Ops")


def edit_data(rule, **overrides):
    """The rule as its edit page posts it back, with ``overrides``."""
    fields = {
        "name": rule.name,
        "priority": str(rule.priority),
        "requester_group": str(rule.requester_group_id or ""),
        "allow_requests": "on" if rule.allow_requests else None,
        "auto_approve": "on" if rule.auto_approve else None,
        "max_duration": str(int(rule.max_duration.total_seconds())) if rule.max_duration else "",
        "recommended_duration": "",
        "require_reason": None,
        "extension_policy": rule.extension_policy,
        "stages-INITIAL_FORMS": str(rule.stages.count()),
        "stages-0-order": "",
    }
    for index, stage in enumerate(rule.stages.all()):
        fields |= {
            f"stages-{index}-id": str(stage.pk),
            f"stages-{index}-rule": str(rule.pk),
            f"stages-{index}-order": str(stage.order),
            f"stages-{index}-reviewers": stage.reviewers,
            f"stages-{index}-mode": stage.mode,
        }
    fields.update(overrides)
    return rule_data(**fields)


def save_unguarded(actor, rule, data):
    """Saves through the rule service with a form that fixes no field, as a caller other
    than the owners' page might: the service alone must refuse."""
    from access.forms import RequestRuleForm, StageFormSet
    from access.services import rules as rule_service

    form = RequestRuleForm(data, instance=rule, can_relax=True)
    stages = StageFormSet(data, instance=rule, prefix="stages")
    assert form.is_valid() and stages.is_valid(), (form.errors, stages.non_form_errors())
    return rule_service.save_request_rule(form, stages, actor=actor)


def test_an_owner_cannot_widen_an_admins_auto_approving_rule_to_themselves(personas, level, ops):
    from django.core.exceptions import ValidationError

    auto = RequestRule.objects.create(
        resource=personas.resource, name="Ops", requester_group=ops, auto_approve=True
    )
    url = reverse("resource-rule-edit", args=[personas.resource.pk, auto.pk])
    client = logged_in(personas.approver)
    assert "Only an admin can change this" in client.get(url).content.decode()
    # The page keeps the field as it is ...
    client.post(url, edit_data(auto, requester_group=""))
    auto.refresh_from_db()
    assert auto.requester_group == ops
    # ... and the service refuses the change from any caller.
    with pytest.raises(ValidationError, match="Only an admin can change whom “Ops” applies to"):
        save_unguarded(personas.approver, auto, edit_data(auto, requester_group=""))
    auto.refresh_from_db()
    assert auto.requester_group == ops
    assert not [
        e
        for e in AuditEvent.objects.filter(action="inventory.request_rule.updated")
        if "requester_group" in e.details["changes"]
    ]
    request = ask_for_myself(personas.approver, level)
    assert request.status == "pending" and not request.auto_approved


def test_an_owner_cannot_delete_a_stricter_rule_that_shadows_a_relaxed_one(personas, level, ops):
    RequestRule.objects.create(
        resource=personas.resource, name="Everyone", priority=10, auto_approve=True
    )
    strict = RequestRule.objects.create(resource=personas.resource, name="Strict", priority=100)
    strict.stages.create(order=1, reviewers="owners", mode="any")
    client = logged_in(personas.approver)
    response = client.post(
        reverse("resource-rule-delete", args=[personas.resource.pk, strict.pk]), follow=True
    )
    assert "would make “Everyone” judge your own requests" in response.content.decode()
    assert RequestRule.objects.filter(pk=strict.pk).exists()
    assert not AuditEvent.objects.filter(action="inventory.request_rule.deleted").exists()
    request = ask_for_myself(personas.approver, level)
    assert request.status == "pending" and not request.auto_approved


def test_an_owner_cannot_reprioritise_a_stricter_rule_below_a_relaxed_one(personas, level, ops):
    ops.members.add(personas.approver)
    RequestRule.objects.create(
        resource=personas.resource, name="Ops", priority=10, requester_group=ops, auto_approve=True
    )
    strict = RequestRule.objects.create(resource=personas.resource, name="Strict", priority=100)
    strict.stages.create(order=1, reviewers="owners", mode="any")
    response = logged_in(personas.approver).post(
        reverse("resource-rule-edit", args=[personas.resource.pk, strict.pk]),
        edit_data(strict, priority="1"),
    )
    assert response.status_code == 400
    assert "would make “Ops” judge your own requests" in response.content.decode()
    strict.refresh_from_db()
    assert strict.priority == 100
    request = ask_for_myself(personas.approver, level)
    assert request.status == "pending" and not request.auto_approved


def test_an_owner_cannot_move_a_stricter_rule_away_from_their_group(personas, level, ops):
    ops.members.add(personas.approver)
    RequestRule.objects.create(resource=personas.resource, name="Everyone", auto_approve=True)
    strict = RequestRule.objects.create(
        resource=personas.resource, name="Ops", priority=200, requester_group=ops
    )
    strict.stages.create(order=1, reviewers="owners", mode="any")
    other = UserGroup.objects.create(name="Elsewhere")
    response = logged_in(personas.approver).post(
        reverse("resource-rule-edit", args=[personas.resource.pk, strict.pk]),
        edit_data(strict, requester_group=str(other.pk)),
    )
    assert response.status_code == 400
    strict.refresh_from_db()
    assert strict.requester_group == ops


def test_an_owner_cannot_delete_or_reprioritise_a_relaxing_rule(personas, ops):
    from django.core.exceptions import ValidationError

    auto = RequestRule.objects.create(
        resource=personas.resource, name="Ops", requester_group=ops, auto_approve=True
    )
    client = logged_in(personas.approver)
    listing = client.get(reverse("resource-rules", args=[personas.resource.pk])).content.decode()
    assert (
        "Only an admin can change whom it applies to, its priority or whether it allows "
        "requests, lengthen its maximum duration, or delete it."
    ) in listing
    response = client.post(
        reverse("resource-rule-delete", args=[personas.resource.pk, auto.pk]), follow=True
    )
    assert "Only an admin can delete “Ops”" in response.content.decode()
    client.post(
        reverse("resource-rule-edit", args=[personas.resource.pk, auto.pk]),
        edit_data(auto, priority="500"),
    )
    auto.refresh_from_db()
    assert auto.priority == 100
    with pytest.raises(ValidationError, match="or its priority"):
        save_unguarded(personas.approver, auto, edit_data(auto, priority="500"))
    auto.refresh_from_db()
    assert auto.priority == 100
    assert RequestRule.objects.filter(pk=auto.pk).exists()


def test_an_owner_still_edits_what_does_not_relax_and_admins_change_anything(personas, level, ops):
    auto = RequestRule.objects.create(
        resource=personas.resource,
        name="Ops",
        requester_group=ops,
        auto_approve=True,
        max_duration=timedelta(days=1),
    )
    owner = logged_in(personas.approver)
    response = owner.post(
        reverse("resource-rule-edit", args=[personas.resource.pk, auto.pk]),
        edit_data(auto, name="Ops team", max_duration=str(3600)),
    )
    assert response.status_code == 302, response.content.decode()
    auto.refresh_from_db()
    assert (auto.name, auto.max_duration, auto.requester_group) == (
        "Ops team",
        timedelta(hours=1),
        ops,
    )
    # A stricter rule for everyone, above it, is the owner's to add: it relaxes nothing.
    assert (
        owner.post(
            reverse("resource-rule-new", args=[personas.resource.pk]), rule_data(priority="300")
        ).status_code
        == 302
    )
    admin = logged_in(personas.admin)
    response = admin.post(
        reverse("resource-rule-edit", args=[personas.resource.pk, auto.pk]),
        edit_data(auto, requester_group=""),
    )
    assert response.status_code == 302, response.content.decode()
    admin.post(reverse("resource-rule-delete", args=[personas.resource.pk, auto.pk]))
    assert not RequestRule.objects.filter(pk=auto.pk).exists()


def test_the_rule_service_refuses_relaxing_even_without_the_pages_fixed_fields(personas):
    from django.core.exceptions import ValidationError

    rule = RequestRule(resource=personas.resource)
    with pytest.raises(ValidationError, match="Only an admin can make a rule that approves"):
        save_unguarded(
            personas.approver, rule, rule_data(auto_approve="on", **{"stages-0-order": ""})
        )
    assert not RequestRule.objects.exists()
    off = RequestRule.objects.create(
        resource=personas.resource, name="Off", allow_requests=False, auto_approve=True
    )
    # Letting a relaxing rule take requests again turns its relaxations on.
    with pytest.raises(ValidationError, match="Only an admin can let “Off” take requests again"):
        save_unguarded(personas.approver, off, edit_data(off, allow_requests="on"))
    off.refresh_from_db()
    assert not off.allow_requests


def test_the_admin_site_saves_and_deletes_rules_through_the_same_check(
    personas, ops, rf, monkeypatch
):
    from django.contrib import admin
    from django.core.exceptions import PermissionDenied

    from access import permissions

    auto = RequestRule.objects.create(
        resource=personas.resource, name="Ops", requester_group=ops, auto_approve=True
    )
    data = {
        "resource": str(personas.resource.pk),
        "name": "Ops",
        "priority": "100",
        "requester_group": "",
        "allow_requests": "on",
        "auto_approve": "on",
        "max_duration": "7 00:00:00",
        "extension_policy": "same_as_request",
    }
    model_admin = admin.site._registry[RequestRule]
    request = rf.post("/")
    request.user = personas.admin
    assert model_admin.get_form(request, auto, change=True)(data, instance=auto).is_valid()
    auto.refresh_from_db()
    # Were relaxing ever given to fewer people than the admin site's users, the admin's
    # rule pages would refuse them what the owners' pages refuse.
    monkeypatch.setattr(permissions, "can_relax_rules", lambda user: False)
    form = model_admin.get_form(request, auto, change=True)(data, instance=auto)
    assert not form.is_valid()
    assert "Only an admin can change whom “Ops” applies to" in str(form.non_field_errors())
    with pytest.raises(PermissionDenied, match="Only an admin can delete"):
        model_admin.delete_model(request, auto)
    assert RequestRule.objects.filter(pk=auto.pk).exists()


def test_an_owner_cannot_lengthen_an_auto_approving_rule_or_let_it_extend(personas, ops):
    from django.core.exceptions import ValidationError

    ops.members.add(personas.approver)
    auto = RequestRule.objects.create(
        resource=personas.resource,
        name="Ops",
        requester_group=ops,
        auto_approve=True,
        max_duration=timedelta(days=1),
        extension_policy="not_allowed",
    )
    with pytest.raises(ValidationError, match="lengthen the maximum duration of “Ops”"):
        save_unguarded(personas.approver, auto, edit_data(auto, max_duration=str(7 * 86400)))
    # An auto-approving rule that judges extensions like requests approves them too.
    with pytest.raises(ValidationError, match="approves extensions automatically"):
        save_unguarded(personas.approver, auto, edit_data(auto, extension_policy="same_as_request"))
    auto.refresh_from_db()
    assert (auto.max_duration, auto.extension_policy) == (timedelta(days=1), "not_allowed")
    save_unguarded(personas.approver, auto, edit_data(auto, max_duration=str(3600)))
    auto.refresh_from_db()
    assert auto.max_duration == timedelta(hours=1)


def test_an_owner_cannot_make_themselves_a_reviewer_of_a_self_approving_rule(personas, level):
    from django.core.exceptions import ValidationError

    from access.services import requests as request_service

    # An admin lets reviewers approve their own requests, and only admins review.
    admins_only = RequestRule.objects.create(
        resource=personas.resource,
        name="Break glass",
        allow_self_approval=True,
        max_duration=timedelta(hours=1),
    )
    admins_only.stages.create(order=1, reviewers="admins", mode="any")
    data = edit_data(admins_only, **{"stages-0-reviewers": "owners"})
    client = logged_in(personas.approver)
    url = reverse("resource-rule-edit", args=[personas.resource.pk, admins_only.pk])
    client.post(url, data)
    with pytest.raises(ValidationError, match="Only an admin can change who reviews"):
        save_unguarded(personas.approver, admins_only, data)
    assert list(admins_only.stages.values_list("reviewers", flat=True)) == ["admins"]
    request = ask_for_myself(personas.approver, level)
    assert personas.approver.pk not in request.reviewer_ids
    with pytest.raises(PermissionDenied):
        request_service.decide(request, reviewer=personas.approver, approve=True)


def test_an_owner_cannot_stop_a_relaxing_rule_taking_requests(personas, ops):
    from django.core.exceptions import ValidationError

    auto = RequestRule.objects.create(
        resource=personas.resource, name="Ops", requester_group=ops, auto_approve=True
    )
    url = reverse("resource-rule-edit", args=[personas.resource.pk, auto.pk])
    client = logged_in(personas.approver)
    page = client.get(url).content.decode()
    assert 'name="allow_requests" disabled' in page or (
        'disabled id="id_allow_requests"' in page
    ), page
    # The page keeps the field as it is ...
    client.post(url, edit_data(auto, allow_requests=None))
    auto.refresh_from_db()
    assert auto.allow_requests
    # ... and the service refuses the change from any caller: once off, the owner could
    # not turn it on again, and nobody could request the resource.
    with pytest.raises(ValidationError, match="Only an admin can stop “Ops” taking requests"):
        save_unguarded(personas.approver, auto, edit_data(auto, allow_requests=None))
    auto.refresh_from_db()
    assert auto.allow_requests
    assert not [
        e
        for e in AuditEvent.objects.filter(action="inventory.request_rule.updated")
        if "allow_requests" in e.details["changes"]
    ]
    # An admin may, and back.
    admin = logged_in(personas.admin)
    assert admin.post(url, edit_data(auto, allow_requests=None)).status_code == 302
    auto.refresh_from_db()
    assert not auto.allow_requests
    assert admin.post(url, edit_data(auto, allow_requests="on")).status_code == 302
    auto.refresh_from_db()
    assert auto.allow_requests


def test_an_owner_still_stops_and_restarts_a_rule_that_relaxes_nothing(personas, rule):
    url = reverse("resource-rule-edit", args=[personas.resource.pk, rule.pk])
    client = logged_in(personas.approver)
    response = client.post(url, edit_data(rule, allow_requests=None))
    assert response.status_code == 302, response.content.decode()
    rule.refresh_from_db()
    assert not rule.allow_requests
    response = client.post(url, edit_data(rule, allow_requests="on"))
    assert response.status_code == 302, response.content.decode()
    rule.refresh_from_db()
    assert rule.allow_requests


def test_the_rules_list_names_all_an_owner_may_not_change_of_a_relaxing_rule(personas):
    RequestRule.objects.create(
        resource=personas.resource,
        name="Break glass",
        allow_self_approval=True,
        max_duration=timedelta(hours=1),
    )
    url = reverse("resource-rules", args=[personas.resource.pk])
    listing = logged_in(personas.approver).get(url).content.decode()
    assert (
        "Only an admin can change whom it applies to, its priority or whether it allows "
        "requests, lengthen its maximum duration, change its approval stages while it allows "
        "self-approval, or delete it."
    ) in listing
    assert (
        "Only an admin can change whom" not in logged_in(personas.admin).get(url).content.decode()
    )


@pytest.mark.parametrize(("persona", "offered"), [("approver", False), ("admin", True)])
def test_a_rule_without_stages_offers_auto_approve_only_to_who_may_tick_it(
    personas, persona, offered
):
    response = logged_in(getattr(personas, persona)).post(
        reverse("resource-rule-new", args=[personas.resource.pk]),
        rule_data(**{"stages-0-order": ""}),
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "add a stage (who approves, any or all)" in page
    assert ("or tick auto-approve" in page) is offered
    assert not RequestRule.objects.exists()

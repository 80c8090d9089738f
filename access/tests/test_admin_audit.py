"""Every edit made in the admin is recorded in the audit log, with its values before and after."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from access.models import (
    AccessLevel,
    ApiToken,
    App,
    Grant,
    Owner,
    RequestRule,
    RequestRuleStage,
    Resource,
    User,
    UserGroup,
)
from access.tests.test_admin import add_url, admin_form_data, change_url, changelist, form_errors
from audit.models import AuditEvent


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def only_event(action: str) -> AuditEvent:
    found = events(action)
    assert len(found) == 1, f"{action}: {len(found)} events"
    return found[0]


@pytest.fixture
def admin_client(client, personas):
    client.force_login(personas.admin)
    return client


def post_form(client: Any, url: str, changes: dict[str, Any]) -> Any:
    """GETs an admin form, changes some fields and posts it back, as a browser would."""
    data = admin_form_data(client.get(url))
    data.update(changes)
    data = {k: v for k, v in data.items() if v is not None}
    return client.post(url, data)


def saved(response: Any) -> None:
    assert response.status_code == 302, form_errors(response)


# Resources, owners, access levels ---------------------------------------------------
def test_adding_a_resource_with_an_owner_and_a_level_records_each(admin_client, personas):
    response = post_form(
        admin_client,
        add_url(Resource),
        {
            "app": str(personas.app.pk),
            "type": "aws_iam_role",
            "name": "deployer",
            "remote_id": "AROAEXAMPLE",
            "arn": "arn:aws:iam::111111111111:role/deployer",
            "account_id": "111111111111",
            "tags": "{}",
            "metadata": "{}",
            "owners-TOTAL_FORMS": "1",
            "owners-0-user": str(personas.approver.pk),
            "access_levels-TOTAL_FORMS": "1",
            "access_levels-0-name": "assume",
            "access_levels-0-remote_id": "assume",
        },
    )
    saved(response)
    resource = Resource.objects.get(name="deployer")
    assert resource.owners.get().user == personas.approver
    created = only_event("inventory.resource.created")
    assert created.actor == personas.admin
    assert created.target_id == str(resource.pk)
    assert created.details["after"]["arn"] == "arn:aws:iam::111111111111:role/deployer"
    assert created.details["after"]["app"] == personas.app.pk
    added = only_event("owner.added")
    assert added.target_type == "access.resource"
    assert added.target_id == str(resource.pk)
    assert added.details["user"] == personas.approver.pk
    assert added.details["owner"] == str(personas.approver)
    level = only_event("inventory.access_level.created")
    assert level.details["after"]["name"] == "assume"
    # The resource comes first in the log, then what was added to it.
    assert created.id < added.id


def test_editing_a_resource_records_only_the_changed_fields_in_changes(admin_client, personas):
    saved(
        post_form(
            admin_client,
            change_url(personas.resource),
            {"name": "production", "risk_sensitivity": "critical"},
        )
    )
    event = only_event("inventory.resource.updated")
    assert event.actor == personas.admin
    assert event.details["changes"] == {
        "name": {"from": "prod", "to": "production"},
        "risk_sensitivity": {"from": "medium", "to": "critical"},
    }
    assert event.details["before"]["name"] == "prod"
    assert event.details["after"]["name"] == "production"
    assert event.details["before"]["remote_id"] == "111111111111"


def test_saving_a_resource_unchanged_records_nothing(admin_client, personas):
    saved(post_form(admin_client, change_url(personas.resource), {}))
    assert not events("inventory.resource.updated")
    assert not events("owner.added")
    assert not events("owner.removed")


def test_the_identifiers_of_a_synced_resource_are_read_only(admin_client, personas):
    saved(
        post_form(admin_client, change_url(personas.resource), {"remote_id": "999", "arn": "arn:x"})
    )
    personas.resource.refresh_from_db()
    assert personas.resource.remote_id == "111111111111"
    assert personas.resource.arn == ""


def test_removing_an_owner_in_the_resource_page_records_owner_removed(admin_client, personas):
    owner = Owner.objects.get(resource=personas.resource)
    saved(post_form(admin_client, change_url(personas.resource), {"owners-0-DELETE": "on"}))
    assert not Owner.objects.filter(pk=owner.pk).exists()
    event = only_event("owner.removed")
    assert event.actor == personas.admin
    assert event.target_id == str(personas.resource.pk)
    assert event.details["user"] == personas.approver.pk
    assert event.details["owner_id"] == owner.pk


def test_giving_an_ownership_to_another_user_records_removed_then_added(admin_client, personas):
    owner = Owner.objects.get(resource=personas.resource)
    saved(post_form(admin_client, change_url(owner), {"user": str(personas.manager.pk)}))
    removed, added = only_event("owner.removed"), only_event("owner.added")
    assert removed.details["user"] == personas.approver.pk
    assert added.details["user"] == personas.manager.pk
    assert removed.id < added.id


def test_an_owner_added_on_the_owner_page_records_owner_added(admin_client, personas):
    team = UserGroup.objects.create(name="Platform")
    saved(
        post_form(
            admin_client,
            add_url(Owner),
            {"resource": str(personas.resource.pk), "group": str(team.pk)},
        )
    )
    event = only_event("owner.added")
    assert event.details["group"] == team.pk
    assert event.details["owner"] == "Platform"


def test_an_owner_must_be_a_user_or_a_group(admin_client, personas):
    response = post_form(admin_client, add_url(Owner), {"resource": str(personas.resource.pk)})
    assert response.status_code == 200
    assert "An owner is either a user or a group" in form_errors(response)
    assert not events("owner.added")


def test_deleting_a_resource_records_it_with_its_values(admin_client, personas):
    resource = Resource.objects.create(
        app=personas.app, type="aws_ec2_instance", remote_id="i-1", name="bastion"
    )
    url = reverse("admin:access_resource_delete", args=[resource.pk])
    saved(admin_client.post(url, {"post": "yes"}))
    event = only_event("inventory.resource.deleted")
    assert event.target_id == str(resource.pk)
    assert event.target_label == str(resource)
    assert event.details["before"]["remote_id"] == "i-1"


def test_deleting_a_resource_snapshots_the_rows_it_takes_with_it(admin_client, personas):
    resource = Resource.objects.create(
        app=personas.app, type="aws_ec2_instance", remote_id="i-2", name="builder"
    )
    level = AccessLevel.objects.create(resource=resource, remote_id="ssm", name="SSM session")
    Owner.objects.create(resource=resource, user=personas.approver)
    grant = Grant.objects.create(
        user=personas.requester,
        resource=resource,
        access_level=level,
        source="request",
        status="revoked",
    )
    url = reverse("admin:access_resource_delete", args=[resource.pk])

    saved(admin_client.post(url, {"post": "yes"}))

    cascaded = only_event("inventory.resource.deleted").details["cascaded"]
    assert [row["remote_id"] for row in cascaded["access.accesslevel"]] == ["ssm"]
    assert [row["user"] for row in cascaded["access.owner"]] == [personas.approver.pk]
    assert [(row["id"], row["status"]) for row in cascaded["access.grant"]] == [
        (grant.pk, "revoked")
    ]
    assert "access.resource" not in cascaded


def test_a_bulk_delete_snapshots_each_objects_own_cascade(admin_client, personas):
    levels = [
        AccessLevel.objects.create(resource=personas.resource, remote_id=f"lv-{i}", name=f"L{i}")
        for i in range(2)
    ]
    grant = Grant.objects.create(
        user=personas.requester,
        resource=personas.resource,
        access_level=levels[0],
        source="request",
        status="expired",
    )

    admin_client.post(
        changelist(AccessLevel),
        {"action": "delete_selected", "_selected_action": [lv.pk for lv in levels], "post": "yes"},
    )

    by_level = {e.target_id: e.details for e in events("inventory.access_level.deleted")}
    assert [g["id"] for g in by_level[str(levels[0].pk)]["cascaded"]["access.grant"]] == [grant.pk]
    assert "cascaded" not in by_level[str(levels[1].pk)]


def test_bulk_delete_in_the_list_records_one_event_per_object(admin_client, personas):
    levels = [
        AccessLevel.objects.create(resource=personas.resource, remote_id=f"ps-{i}", name=f"L{i}")
        for i in range(3)
    ]
    response = admin_client.post(
        changelist(AccessLevel),
        {"action": "delete_selected", "_selected_action": [lv.pk for lv in levels], "post": "yes"},
    )
    assert response.status_code == 302
    assert not AccessLevel.objects.filter(pk__in=[lv.pk for lv in levels]).exists()
    deleted = events("inventory.access_level.deleted")
    assert sorted(e.target_id for e in deleted) == sorted(str(lv.pk) for lv in levels)
    assert {e.details["before"]["name"] for e in deleted} == {"L0", "L1", "L2"}
    assert all(e.actor == personas.admin for e in deleted)


def test_it_refuses_to_delete_a_resource_someone_currently_holds(admin_client, personas):
    level = AccessLevel.objects.create(resource=personas.resource, remote_id="ps", name="Admin")
    Grant.objects.create(
        user=personas.requester,
        resource=personas.resource,
        access_level=level,
        source="request",
        status="active",
    )
    url = reverse("admin:access_resource_delete", args=[personas.resource.pk])
    page = admin_client.get(url).content.decode()
    assert "Current grant (revoke it first)" in page
    admin_client.post(url, {"post": "yes"})
    assert Resource.objects.filter(pk=personas.resource.pk).exists()
    assert not events("inventory.resource.deleted")


def test_changing_an_app_records_inventory_app_updated(admin_client, personas):
    saved(post_form(admin_client, change_url(personas.app), {"description": "Main org"}))
    event = only_event("inventory.app.updated")
    assert event.details["changes"] == {"description": {"from": "", "to": "Main org"}}


# Request rules ------------------------------------------------------------------------
def rule_form(personas: Any, stages: list[tuple[str, str, str]], **fields: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "resource": str(personas.resource.pk),
        "name": "Production access",
        "priority": "100",
        "allow_requests": "on",
        "max_duration": "7 00:00:00",
        "recommended_duration": "08:00:00",
        "require_reason": "on",
        "extension_policy": "same_as_request",
        "stages-TOTAL_FORMS": str(len(stages)),
        "stages-INITIAL_FORMS": "0",
    }
    for i, (order, reviewers, mode) in enumerate(stages):
        data.update(
            {
                f"stages-{i}-order": order,
                f"stages-{i}-reviewers": reviewers,
                f"stages-{i}-mode": mode,
            }
        )
    data.update(fields)
    return data


def test_adding_a_rule_with_two_stages_records_it_with_its_stages(admin_client, personas):
    url = add_url(RequestRule)
    data = admin_form_data(admin_client.get(url))
    data.update(rule_form(personas, [("1", "manager", "any"), ("2", "owners", "all")]))
    saved(admin_client.post(url, data))
    rule = RequestRule.objects.get(name="Production access")
    assert [(s.order, s.reviewers, s.mode) for s in rule.stages.all()] == [
        (1, "manager", "any"),
        (2, "owners", "all"),
    ]
    event = only_event("inventory.request_rule.created")
    assert event.actor == personas.admin
    assert event.details["after"]["stages"] == [
        {"order": 1, "reviewers": "manager", "mode": "any"},
        {"order": 2, "reviewers": "owners", "mode": "all"},
    ]
    assert event.details["after"]["max_duration"] == "P7DT00H00M00S"
    # The stages are part of the rule's event, not events of their own.
    assert not events("inventory.request_rule_stage.created")


def test_changing_a_stage_records_the_rule_updated_with_the_stage_change(admin_client, personas):
    rule = RequestRule.objects.create(resource=personas.resource, name="R")
    RequestRuleStage.objects.create(rule=rule, order=1, reviewers="owners")
    saved(post_form(admin_client, change_url(rule), {"stages-0-reviewers": "admins"}))
    event = only_event("inventory.request_rule.updated")
    assert event.details["changes"] == {
        "stages": {
            "from": [{"order": 1, "reviewers": "owners", "mode": "any"}],
            "to": [{"order": 1, "reviewers": "admins", "mode": "any"}],
        }
    }


@pytest.mark.parametrize(
    ("stages", "extra", "message"),
    [
        ([], {}, "A rule that is not auto-approved needs at least one approval stage"),
        (
            [("1", "owners", "any"), ("1", "manager", "any")],
            {},
            "Each stage needs its own order; 1 is used more than once.",
        ),
        (
            [("1", "owners", "any"), ("3", "manager", "any")],
            {},
            "Number the stages 1, 2 in order, without gaps; they are numbered 1, 3.",
        ),
        (
            [("1", "owners", "any")],
            {"auto_approve": "on"},
            "An auto-approving rule has no approval stages",
        ),
        (
            [
                ("1", "owners", "any"),
                ("2", "owners", "any"),
                ("3", "owners", "any"),
                ("3", "admins", "any"),
            ],
            {},
            "Please submit at most 3 forms.",
        ),
    ],
)
def test_it_explains_what_is_wrong_with_a_rules_stages(
    admin_client, personas, stages, extra, message
):
    url = add_url(RequestRule)
    data = admin_form_data(admin_client.get(url))
    data.update(rule_form(personas, stages, **extra))
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert message in form_errors(response)
    assert message in response.content.decode().replace("&#x27;", "'")
    assert not RequestRule.objects.exists()
    assert not events("inventory.request_rule.created")


def test_an_auto_approving_rule_needs_no_stage(admin_client, personas):
    url = add_url(RequestRule)
    data = admin_form_data(admin_client.get(url))
    data.update(rule_form(personas, [], auto_approve="on"))
    saved(admin_client.post(url, data))
    assert only_event("inventory.request_rule.created").details["after"]["stages"] == []


def test_a_rule_recommending_more_than_its_maximum_is_refused(admin_client, personas):
    url = add_url(RequestRule)
    data = admin_form_data(admin_client.get(url))
    data.update(rule_form(personas, [("1", "owners", "any")], recommended_duration="8 00:00:00"))
    response = admin_client.post(url, data)
    assert "The recommended duration cannot exceed the maximum." in form_errors(response)


def test_deleting_a_rule_records_it_with_its_stages(admin_client, personas):
    rule = RequestRule.objects.create(resource=personas.resource, name="R")
    RequestRuleStage.objects.create(rule=rule, order=1, reviewers="manager")
    url = reverse("admin:access_requestrule_delete", args=[rule.pk])
    saved(admin_client.post(url, {"post": "yes"}))
    event = only_event("inventory.request_rule.deleted")
    assert event.details["before"]["stages"] == [
        {"order": 1, "reviewers": "manager", "mode": "any"}
    ]


# Grants -------------------------------------------------------------------------------
def test_an_admin_grant_is_recorded_with_its_source_and_granter(admin_client, personas):
    level = AccessLevel.objects.create(resource=personas.resource, remote_id="ps", name="Admin")
    expires = timezone.now() + timedelta(days=1)
    saved(
        post_form(
            admin_client,
            add_url(Grant),
            {
                "user": str(personas.requester.pk),
                "resource": str(personas.resource.pk),
                "access_level": str(level.pk),
                "expires_at_0": expires.strftime("%Y-%m-%d"),
                "expires_at_1": expires.strftime("%H:%M:%S"),
            },
        )
    )
    grant = Grant.objects.get()
    assert (grant.source, grant.status, grant.granted_by) == ("admin", "pending", personas.admin)
    event = only_event("grant.created")
    assert event.actor == personas.admin
    assert event.details["source"] == "admin"


# Users and roles -----------------------------------------------------------------------
def test_adding_a_user_with_a_role_records_user_created_then_role_granted(admin_client, personas):
    saved(
        post_form(
            admin_client,
            add_url(User),
            {
                "email": "Nina.New@Example.com",
                "username": "",
                "first_name": "Nina",
                "title": "SRE",
                "manager": str(personas.manager.pk),
                "groups": str(Group.objects.get(name="Auditor").pk),
                "usable_password": "false",
            },
        )
    )
    user = User.objects.get(email="nina.new@example.com")
    assert user.username == "nina.new"
    assert not user.has_usable_password()
    assert user.manager == personas.manager
    assert list(user.groups.values_list("name", flat=True)) == ["Auditor"]
    created = only_event("user.created")
    granted = only_event("role.granted")
    assert created.actor == granted.actor == personas.admin
    assert created.details["after"]["manager"] == personas.manager.pk
    assert "password" not in created.details["after"]
    assert granted.target_id == str(user.pk)
    assert granted.details == {"role": "Auditor"}
    assert created.id < granted.id


def test_changing_a_users_roles_records_each_grant_and_revocation(admin_client, personas):
    auditor_role = Group.objects.get(name="Auditor")
    admin_role = Group.objects.get(name="Admin")
    saved(post_form(admin_client, change_url(personas.auditor), {"groups": str(admin_role.pk)}))
    assert list(personas.auditor.groups.values_list("name", flat=True)) == ["Admin"]
    assert only_event("role.granted").details == {"role": "Admin"}
    revoked = only_event("role.revoked")
    assert revoked.details == {"role": auditor_role.name}
    assert revoked.target_id == str(personas.auditor.pk)
    assert revoked.actor == personas.admin
    # Only the roles changed: no user.updated event.
    assert not events("user.updated")


def test_editing_a_users_profile_records_user_updated(admin_client, personas):
    saved(
        post_form(
            admin_client,
            change_url(personas.requester),
            {"title": "Engineer", "manager": str(personas.approver.pk)},
        )
    )
    event = only_event("user.updated")
    assert event.details["changes"] == {
        "manager": {"from": personas.manager.pk, "to": personas.approver.pk},
        "title": {"from": "", "to": "Engineer"},
    }
    assert not events("role.granted")


def test_an_admin_cannot_remove_their_own_admin_role(admin_client, personas):
    response = post_form(admin_client, change_url(personas.admin), {"groups": None})
    assert response.status_code == 200
    assert "You cannot remove your own Admin role" in form_errors(response)
    assert list(personas.admin.groups.values_list("name", flat=True)) == ["Admin"]
    assert not events("role.revoked")


def test_a_user_cannot_be_their_own_manager(admin_client, personas):
    response = post_form(
        admin_client, change_url(personas.requester), {"manager": str(personas.requester.pk)}
    )
    assert "A user cannot be their own manager." in form_errors(response)


def test_changing_a_password_in_the_admin_records_it_without_the_hash(admin_client, personas):
    url = reverse("admin:auth_user_password_change", args=[personas.outsider.pk])
    response = admin_client.post(
        url,
        {
            "password1": "a-new-long-passphrase",
            "password2": "a-new-long-passphrase",
            "usable_password": "true",
        },
    )
    saved(response)
    event = only_event("user.password_changed")
    assert event.target_id == str(personas.outsider.pk)
    assert event.details == {"sign_in": "password"}
    personas.outsider.refresh_from_db()
    assert personas.outsider.check_password("a-new-long-passphrase")


def test_changing_group_members_records_user_group_updated(admin_client, personas):
    team = UserGroup.objects.create(name="Platform")
    saved(
        post_form(
            admin_client,
            change_url(team),
            {"members": [str(personas.requester.pk), str(personas.approver.pk)]},
        )
    )
    event = only_event("user_group.updated")
    assert event.details["changes"] == {
        "members": {"from": [], "to": sorted([personas.requester.pk, personas.approver.pk])}
    }


# API tokens ---------------------------------------------------------------------------
def test_revoking_tokens_in_the_list_records_one_event_per_token(admin_client, personas):
    live = ApiToken.objects.create(
        user=personas.requester, name="ci", prefix="pcl_11111111", digest="a" * 64
    )
    gone = ApiToken.objects.create(
        user=personas.requester,
        name="old",
        prefix="pcl_22222222",
        digest="b" * 64,
        revoked_at=timezone.now(),
    )
    response = admin_client.post(
        changelist(ApiToken),
        {"action": "revoke_tokens", "_selected_action": [live.pk, gone.pk]},
        follow=True,
    )
    assert "Revoked 1 API token. 1 was already revoked." in response.content.decode()
    live.refresh_from_db()
    assert live.revoked_at is not None
    event = only_event("api_token.revoked")
    assert event.actor == personas.admin
    assert event.target_id == str(live.pk)
    assert "a" * 64 not in str(event.details)


def test_an_audit_event_is_never_written_when_the_edit_fails(admin_client, personas):
    # A duplicate remote id breaks the unique constraint: no resource, no event.
    response = post_form(
        admin_client,
        add_url(Resource),
        {
            "app": str(personas.app.pk),
            "type": "aws_account",
            "name": "copy",
            "remote_id": "111111111111",
            "tags": "{}",
            "metadata": "{}",
        },
    )
    assert response.status_code == 200
    assert "already exists" in form_errors(response)
    assert not events("inventory.resource.created")
    assert App.objects.count() == 1


def test_editing_an_access_level_records_inventory_access_level_updated(admin_client, personas):
    level = AccessLevel.objects.create(resource=personas.resource, remote_id="ps", name="Admin")
    saved(post_form(admin_client, change_url(level), {"description": "Full control"}))
    event = only_event("inventory.access_level.updated")
    assert event.details["changes"] == {"description": {"from": "", "to": "Full control"}}
    assert event.target_label == "Admin"


def test_adding_a_group_records_user_group_created_with_its_members(admin_client, personas):
    saved(
        post_form(
            admin_client,
            add_url(UserGroup),
            {"name": "Data", "members": [str(personas.requester.pk)], "admins": None},
        )
    )
    event = only_event("user_group.created")
    assert event.details["after"]["members"] == [personas.requester.pk]
    assert event.details["after"]["admins"] == []


# allauth's models: addresses and single sign-on identities decide who an account is --------
# allauth's admin pages are a superuser's only (the Admin role has no model permissions).
@pytest.fixture
def superuser(db):
    return User.objects.create_superuser("root", "root@example.com", "a-long-root-passphrase")


@pytest.fixture
def superuser_client(client, superuser):
    client.force_login(superuser)
    return client


def test_marking_an_address_verified_in_the_admin_is_recorded(
    superuser_client, superuser, personas
):
    from allauth.account.models import EmailAddress

    address = EmailAddress.objects.create(
        user=personas.requester, email="rob@elsewhere.example", verified=False
    )

    saved(post_form(superuser_client, change_url(address), {"verified": "on"}))

    changed = only_event("account.emailaddress.updated")
    assert changed.actor == superuser
    assert changed.target_id == str(address.pk)
    assert changed.details["before"]["verified"] is False
    assert changed.details["after"]["verified"] is True


def test_giving_someone_a_single_sign_on_identity_in_the_admin_is_recorded(
    superuser_client, superuser, personas
):
    from allauth.socialaccount.models import SocialAccount

    saved(
        post_form(
            superuser_client,
            add_url(SocialAccount),
            {
                "user": str(personas.approver.pk),
                "provider": "sso",
                "uid": "sub-of-someone-else",
                "extra_data": '{"sub": "sub-of-someone-else"}',
            },
        )
    )

    created = only_event("socialaccount.socialaccount.created")
    assert created.actor == superuser
    assert created.details["after"]["uid"] == "sub-of-someone-else"
    assert created.details["after"]["user"] == personas.approver.pk

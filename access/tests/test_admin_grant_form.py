"""The admin's grant pages at a glance: the add form picks the resource first and then
offers its levels, labelled with it; the list shows every column in six narrow ones."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from access.choices import GrantSource, GrantStatus, PropagationStatus, ResourceType
from access.models import AccessLevel, Grant, Resource
from access.tests.test_admin import NON_ADMINS, add_url, changelist
from access.tests.test_admin_audit import only_event

LONG_ERROR = (
    "AccessDeniedException: " + "not authorized to perform sso:CreateAccountAssignment " * 4
)


@pytest.fixture
def admin_client(client, personas):
    client.force_login(personas.admin)
    return client


@pytest.fixture
def groups(personas) -> list[Resource]:
    """Four Identity Center groups, each with the level "Member", like a real organization."""
    made = []
    for team in ("platform", "payments", "data", "security"):
        group = Resource.objects.create(
            app=personas.app, type=ResourceType.IDC_GROUP, remote_id=f"g-{team}", name=team
        )
        AccessLevel.objects.create(resource=group, remote_id="member", name="Member")
        made.append(group)
    return made


def level_choices(response: Any) -> list[str]:
    field = response.context["adminform"].form.fields["access_level"]
    return [label for value, label in field.choices if value != ""]


# Adding: the resource first, then its levels ---------------------------------------------
def test_adding_a_grant_starts_by_choosing_the_resource(admin_client, groups):
    response = admin_client.get(add_url(Grant))
    assert response.status_code == 200
    assert [t.name for t in response.templates][0] == "admin/access/grant/choose_resource.html"
    page = response.content.decode()
    assert 'method="get"' in page and 'name="resource"' in page
    assert 'name="access_level"' not in page
    # The resource is searched as on the add form (the admin's autocomplete).
    assert 'data-model-name="grant"' in page and 'data-field-name="resource"' in page


def test_the_form_offers_only_the_chosen_resources_levels_labelled_with_it(admin_client, groups):
    payments = groups[1]
    AccessLevel.objects.create(
        resource=payments, remote_id="gone", name="Old", deleted_at="2026-01-01T00:00Z"
    )
    response = admin_client.get(add_url(Grant) + f"?resource={payments.pk}")
    assert response.status_code == 200
    assert level_choices(response) == ["payments · Member"]
    assert response.context["adminform"].form.initial["resource"] == str(payments.pk)
    # No "add another level" beside it: a level added there could be any resource's.
    assert 'id="add_id_access_level"' not in response.content.decode()
    assert 'id="add_id_user"' in response.content.decode()


def test_an_admin_grants_a_level_chosen_after_the_resource(admin_client, personas, groups):
    data = groups[2]
    level = data.access_levels.get()
    response = admin_client.post(
        add_url(Grant) + f"?resource={data.pk}",
        {"user": personas.requester.pk, "resource": data.pk, "access_level": level.pk},
    )
    assert response.status_code == 302
    grant = Grant.objects.get()
    assert (grant.resource, grant.access_level, grant.source) == (data, level, GrantSource.ADMIN)
    assert only_event("grant.created").target_id == str(grant.pk)


def test_a_level_of_another_resource_is_refused_by_the_form_and_the_model(
    admin_client, personas, groups
):
    platform, payments = groups[0], groups[1]
    foreign = payments.access_levels.get()
    response = admin_client.post(
        add_url(Grant),
        {"user": personas.requester.pk, "resource": platform.pk, "access_level": foreign.pk},
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["access_level"] == [
        "Choose one of the access levels listed: they are those of the resource above."
    ]
    # Re-rendered, the form lists the levels of the resource as sent.
    assert level_choices(response) == ["platform · Member"]
    assert not Grant.objects.exists()
    # The model refuses it too, for every other way of making a grant.
    grant = Grant(user=personas.requester, resource=platform, access_level=foreign, source="admin")
    with pytest.raises(ValidationError) as caught:
        grant.full_clean()
    assert caught.value.message_dict["access_level"] == [
        "This access level belongs to another resource."
    ]


def test_the_first_step_passes_on_what_the_link_named(admin_client, personas, groups):
    response = admin_client.get(add_url(Grant) + f"?user={personas.requester.pk}")
    assert f'<input type="hidden" name="user" value="{personas.requester.pk}">' in (
        response.content.decode()
    )
    assert not response.context["form"].is_bound  # no "required" error before a choice


def test_a_resource_that_is_no_number_returns_to_the_first_step_with_an_error(admin_client):
    response = admin_client.get(add_url(Grant) + "?resource=prod")
    assert response.status_code == 200
    assert response.context["form"].errors["resource"] == [
        "No resource has this id: choose one from the list."
    ]
    nothing = admin_client.get(add_url(Grant) + "?resource=")
    assert nothing.context["form"].errors["resource"] == ["Choose the resource to grant access to."]


@pytest.mark.parametrize("persona", NON_ADMINS)
def test_the_first_step_is_refused_to_non_admins(client, personas, persona):
    client.force_login(getattr(personas, persona))
    response = client.get(add_url(Grant))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_the_first_step_is_refused_to_an_admin_who_may_not_add(admin_client, monkeypatch):
    from access.admin.grants import GrantAdmin

    monkeypatch.setattr(GrantAdmin, "has_add_permission", lambda self, request: False)
    assert admin_client.get(add_url(Grant)).status_code == 403


# The list -----------------------------------------------------------------------------------
def test_the_list_shows_status_propagation_and_source_together_and_cuts_errors_short(
    admin_client, personas
):
    level = AccessLevel.objects.create(resource=personas.resource, remote_id="ps", name="ReadOnly")
    Grant.objects.create(
        user=personas.requester,
        resource=personas.resource,
        access_level=level,
        source=GrantSource.REQUEST,
        status=GrantStatus.FAILED,
        propagation_status=PropagationStatus.FAILED,
        last_error=LONG_ERROR,
    )
    response = admin_client.get(changelist(Grant))
    page = response.content.decode()
    headers = [h["text"] for h in response.context["result_headers"]]
    assert headers[1:] == ["user", "access", "status", "expires", "last error"]
    assert "rob.requester@example.com" in page
    assert "prod" in page and "ReadOnly" in page
    assert "Failed</span><div>Failed</div>" in page and "Access request" in page
    # The whole error in the title; the cell shows its first 60 characters.
    assert f'title="{LONG_ERROR}"' in page
    assert f">{LONG_ERROR[:59]}…</span>" in page

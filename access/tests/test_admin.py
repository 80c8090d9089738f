"""Who reaches the admin, and that its pages render; form helpers used by the other admin tests."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from access.models import (
    AccessLevel,
    ApiToken,
    Grant,
    Owner,
    RequestRule,
    RequestRuleStage,
    UserGroup,
)

NON_ADMINS = ("requester", "approver", "manager", "auditor", "outsider")


# Form helpers -------------------------------------------------------------------
class _FormParser(HTMLParser):
    """Collects what a browser would submit from the admin's main form."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.data: dict[str, list[str]] = {}
        self.in_form = False
        self.select: tuple[str, bool] | None = None
        self.select_options: list[tuple[str, bool]] = []
        self.textarea: str | None = None
        self.textarea_text = ""

    def _add(self, name: str, value: str) -> None:
        self.data.setdefault(name, []).append(value)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v if v is not None else "") for k, v in attrs}
        if tag == "form" and a.get("id", "").endswith("_form"):
            self.in_form = True
        if not self.in_form:
            return
        name = a.get("name")
        if tag == "input" and name:
            kind = a.get("type", "text").lower()
            if kind in ("submit", "button", "file", "image", "reset"):
                return
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    self._add(name, a.get("value", "on"))
                return
            self._add(name, a.get("value", ""))
        elif tag == "select" and name:
            self.select = (name, "multiple" in a)
            self.select_options = []
        elif tag == "option" and self.select is not None:
            self.select_options.append((a.get("value", ""), "selected" in a))
        elif tag == "textarea" and name:
            self.textarea = name
            self.textarea_text = ""

    def handle_data(self, data: str) -> None:
        if self.textarea is not None:
            self.textarea_text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self.in_form:
            self.in_form = False
        elif tag == "select" and self.select is not None:
            name, multiple = self.select
            chosen = [v for v, selected in self.select_options if selected]
            if not chosen and not multiple and self.select_options:
                chosen = [self.select_options[0][0]]
            for value in chosen:
                self._add(name, value)
            self.select = None
        elif tag == "textarea" and self.textarea is not None:
            # Browsers drop the one newline that follows <textarea>.
            self._add(self.textarea, self.textarea_text.removeprefix("\n"))
            self.textarea = None


def admin_form_data(response: Any) -> dict[str, Any]:
    """The fields of an admin add/change page as a browser would post them (inline
    management forms included), without the empty-form templates."""
    assert response.status_code == 200, response.status_code
    parser = _FormParser()
    parser.feed(response.content.decode())
    return {
        name: values if len(values) > 1 else values[0]
        for name, values in parser.data.items()
        if "__prefix__" not in name
    }


def form_errors(response: Any) -> str:
    """Every error the admin shows on a re-rendered form, for assertion messages."""
    parts = []
    adminform = response.context.get("adminform") if response.context else None
    if adminform is not None:
        parts.append(str(adminform.form.errors))
    for inline in (response.context or {}).get("inline_admin_formsets", []):
        parts.append(str(inline.formset.errors) + str(inline.formset.non_form_errors()))
    return " ".join(parts)


def changelist(model: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def change_url(obj: Any) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def add_url(model: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_add")


# Objects for the pages ------------------------------------------------------------
@pytest.fixture
def inventory(personas: Any) -> dict[str, Any]:
    resource = personas.resource
    level = AccessLevel.objects.create(resource=resource, remote_id="ps-admin", name="Admin")
    team = UserGroup.objects.create(name="Platform")
    team.members.add(personas.requester)
    rule = RequestRule.objects.create(resource=resource, name="Default")
    RequestRuleStage.objects.create(rule=rule, order=1)
    grant = Grant.objects.create(
        user=personas.requester, resource=resource, access_level=level, source="request"
    )
    token = ApiToken.objects.create(
        user=personas.requester, name="laptop", prefix="pcl_abcdefgh", digest="d" * 64
    )
    return {
        "level": level,
        "team": team,
        "rule": rule,
        "grant": grant,
        "token": token,
        "owner": Owner.objects.get(resource=resource),
    }


def _admin_urls(personas: Any, inventory: dict[str, Any]) -> list[str]:
    from access.models import App, Resource, User

    models = (App, Resource, AccessLevel, Owner, RequestRule, Grant, User, UserGroup, ApiToken)
    urls = ["/admin/", "/admin/access/", reverse("admin:access_user_import")]
    urls += [changelist(m) for m in models] + [changelist(Group)]
    urls += [add_url(m) for m in models if m is not ApiToken]
    urls += [
        change_url(personas.app),
        change_url(personas.resource),
        change_url(inventory["level"]),
        change_url(inventory["owner"]),
        change_url(inventory["rule"]),
        change_url(inventory["grant"]),
        change_url(personas.requester),
        change_url(inventory["team"]),
        change_url(inventory["token"]),
        change_url(Group.objects.get(name="Admin")),
        reverse("admin:auth_user_password_change", args=[personas.requester.pk]),
    ]
    return urls


# Access ---------------------------------------------------------------------------
def test_every_admin_page_renders_for_the_admin(client, personas, inventory):
    client.force_login(personas.admin)
    for url in _admin_urls(personas, inventory):
        response = client.get(url)
        assert response.status_code == 200, url


@pytest.mark.parametrize("persona", NON_ADMINS)
def test_it_refuses_every_admin_page_to_people_without_the_admin_role(
    client, personas, inventory, persona
):
    client.force_login(getattr(personas, persona))
    for url in _admin_urls(personas, inventory):
        response = client.get(url)
        # The admin sends people it refuses to its login, which refuses those already
        # signed in (allauth would send them straight back: a loop).
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("admin:login")), url
        refused = client.get(response["Location"])
        assert refused.status_code == 403, url
    # The portal's refusal page, not a bare "403 Forbidden".
    assert "You don't have access to this page" in refused.content.decode()


def test_it_refuses_admin_posts_to_people_without_the_admin_role(client, personas, inventory):
    client.force_login(personas.auditor)
    response = client.post(change_url(personas.resource), {"name": "renamed"})
    assert response.status_code == 302
    personas.resource.refresh_from_db()
    assert personas.resource.name == "prod"


def test_it_sends_anonymous_visitors_to_the_portal_login(client, personas):
    response = client.get("/admin/access/resource/", follow=True)
    login = reverse("account_login")
    assert response.redirect_chain == [
        (f"{reverse('admin:login')}?next=/admin/access/resource/", 302),
        (f"{login}?next={quote('/admin/access/resource/', safe='')}", 302),
    ]
    assert response.status_code == 200


def test_the_autocomplete_endpoint_is_refused_to_non_admins(client, personas):
    url = "/admin/autocomplete/?app_label=access&model_name=resource&field_name=parent&term=pr"
    client.force_login(personas.auditor)
    response = client.get(url)
    assert response.status_code == 302
    assert client.get(response["Location"]).status_code == 403
    client.force_login(personas.admin)
    assert client.get(url).json()["results"][0]["text"] == str(personas.resource)


def test_the_admin_index_shows_the_access_models(client, personas):
    client.force_login(personas.admin)
    content = client.get("/admin/").content.decode()
    for name in ("Resources", "Grants", "Request rules", "API tokens", "Access levels"):
        assert name in content


# Pages that must not offer some actions ---------------------------------------------
def test_api_tokens_cannot_be_added_changed_or_deleted_and_their_digest_is_never_shown(
    client, personas, inventory
):
    token = inventory["token"]
    client.force_login(personas.admin)
    assert client.get(add_url(ApiToken)).status_code == 403
    page = client.get(change_url(token)).content.decode()
    assert "laptop" in page
    assert token.digest not in page
    listing = client.get(changelist(ApiToken)).content.decode()
    assert token.digest not in listing
    assert "pcl_abcdefgh" in listing
    delete = reverse("admin:access_apitoken_delete", args=[token.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert ApiToken.objects.filter(pk=token.pk).exists()


def test_the_roles_are_read_only_in_the_admin(client, personas):
    group = Group.objects.get(name="Admin")
    client.force_login(personas.admin)
    assert client.post(change_url(group), {"name": "Admins"}).status_code == 403
    assert client.get(add_url(Group)).status_code == 403
    group.refresh_from_db()
    assert group.name == "Admin"


def test_users_are_deactivated_not_deleted_in_the_admin(client, personas):
    client.force_login(personas.admin)
    delete = reverse("admin:access_user_delete", args=[personas.outsider.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    personas.outsider.refresh_from_db()


def test_the_user_form_offers_the_roles_and_no_permissions(client, personas):
    client.force_login(personas.admin)
    response = client.get(change_url(personas.requester))
    form = response.context["adminform"].form
    assert "user_permissions" not in form.fields
    assert sorted(g.name for g in form.fields["groups"].queryset) == ["Admin", "Auditor"]
    assert form.fields["groups"].label == "Roles"


def test_the_user_list_offers_csv_import_and_export(client, personas):
    client.force_login(personas.admin)
    page = client.get(changelist(personas.admin)).content.decode()
    assert reverse("admin:access_user_import") in page
    assert reverse("admin:access_user_export") in page

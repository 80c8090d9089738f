"""The catalogue (search, filters, keyset pages, 100,000 resources) and a resource's page."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from access.choices import GrantSource, GrantStatus, ResourceType
from access.models import AccessLevel, Grant, Resource
from access.views.catalogue import PAGE_SIZE
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def make(personas, name, **fields) -> Resource:
    fields.setdefault("type", ResourceType.IAM_ROLE)
    fields.setdefault("remote_id", name)
    resource = Resource.objects.create(app=personas.app, name=name, **fields)
    AccessLevel.objects.create(resource=resource, remote_id="assume", name="assume")
    return resource


def shown(response) -> list[str]:
    body = response.content.decode()
    return [part.split('"')[0] for part in body.split('data-resource-id="')[1:]]


def names(response, personas) -> set[str]:
    ids = [int(i) for i in shown(response)]
    return set(Resource.objects.filter(pk__in=ids).values_list("name", flat=True))


@pytest.fixture
def org(personas):
    """Root > Workloads > Production (account 222) ; Root > Sandbox (account 333)."""
    root = make(personas, "Root", type=ResourceType.ORGANIZATIONAL_UNIT)
    workloads = make(personas, "Workloads", type=ResourceType.ORGANIZATIONAL_UNIT, parent=root)
    production = make(
        personas, "Production", type=ResourceType.ORGANIZATIONAL_UNIT, parent=workloads
    )
    sandbox = make(personas, "Sandbox", type=ResourceType.ORGANIZATIONAL_UNIT, parent=root)
    make(
        personas,
        "payments",
        type=ResourceType.ACCOUNT,
        account_id="222222222222",
        remote_id="222222222222",
        parent=production,
    )
    make(
        personas,
        "playground",
        type=ResourceType.ACCOUNT,
        account_id="333333333333",
        remote_id="333333333333",
        parent=sandbox,
    )
    make(
        personas,
        "PaymentsDeploy",
        account_id="222222222222",
        region="",
        arn="arn:aws:iam::222222222222:role/PaymentsDeploy",
        tags={"team": "checkout"},
    )
    make(
        personas,
        "payments-db",
        type=ResourceType.RDS_POSTGRES,
        account_id="222222222222",
        region="eu-west-1",
    )
    make(personas, "SandboxAdmin", account_id="333333333333", tags={"team": "platform"})
    make(personas, "old-role", account_id="333333333333", deleted_at=timezone.now())
    return {"production": production, "workloads": workloads, "sandbox": sandbox}


def test_it_lists_live_resources_only(personas, org):
    response = logged_in(personas.requester).get(reverse("catalogue"))
    assert response.status_code == 200
    got = names(response, personas)
    assert {"PaymentsDeploy", "payments-db", "SandboxAdmin", "prod"} <= got
    assert "old-role" not in got


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"q": "checkout"}, {"PaymentsDeploy"}),  # a tag value
        ({"q": "role/PaymentsDep"}, {"PaymentsDeploy"}),  # the ARN
        ({"q": "PAYMENTS-"}, {"payments-db"}),  # the name, any case
        ({"type": ResourceType.RDS_POSTGRES}, {"payments-db"}),
        ({"region": "eu-west-1"}, {"payments-db"}),
        ({"account": "333333333333"}, {"playground", "SandboxAdmin"}),
        ({"ou": "WORKLOADS"}, {"payments", "PaymentsDeploy", "payments-db"}),
        ({"ou": "SANDBOX", "q": "admin"}, {"SandboxAdmin"}),
        # A tag as the pages show it: that key, a value starting so, any case.
        ({"q": "team=checkout"}, {"PaymentsDeploy"}),
        ({"q": "Team=Check"}, {"PaymentsDeploy"}),
        ({"q": " team = platform "}, {"SandboxAdmin"}),
        ({"q": "team="}, {"PaymentsDeploy", "SandboxAdmin"}),
        ({"q": "checkout=team"}, set()),
        ({"q": "eam=checkout"}, set()),
        # An account's name finds the account and what is in it.
        ({"q": "playground"}, {"playground", "SandboxAdmin"}),
        ({"q": "PAYMENTS"}, {"payments", "PaymentsDeploy", "payments-db"}),
    ],
)
def test_it_searches_and_filters(personas, org, params, expected):
    params = {
        k: (org[v.lower()].pk if v.isupper() and v.lower() in org else v) for k, v in params.items()
    }
    response = logged_in(personas.requester).get(reverse("catalogue"), params)
    assert response.status_code == 200
    assert names(response, personas) == expected


def test_names_sort_without_regard_to_case(personas, org):
    response = logged_in(personas.requester).get(reverse("catalogue"))
    by_id = dict(Resource.objects.values_list("pk", "name"))
    order = [by_id[int(pk)] for pk in shown(response)]
    assert order == sorted(order, key=lambda name: (name.lower(), name))
    assert order.index("payments-db") < order.index("PaymentsDeploy") < order.index("Workloads")


def test_a_deleted_accounts_name_finds_nothing(personas, org):
    make(
        personas,
        "retired-acct",
        type=ResourceType.ACCOUNT,
        account_id="444444444444",
        remote_id="444444444444",
        deleted_at=timezone.now(),
    )
    make(personas, "LiveInRetired", account_id="444444444444")
    response = logged_in(personas.requester).get(reverse("catalogue"), {"q": "retired-acct"})
    assert names(response, personas) == set()
    # Once live again, it does.
    Resource.objects.filter(name="retired-acct").update(deleted_at=None)
    response = logged_in(personas.requester).get(reverse("catalogue"), {"q": "retired-acct"})
    assert names(response, personas) == {"retired-acct", "LiveInRetired"}


def test_bad_filters_say_what_is_wrong(personas, org):
    response = logged_in(personas.requester).get(reverse("catalogue"), {"type": "bogus", "ou": "x"})
    assert response.status_code == 400
    body = response.content.decode()
    assert "Unknown resource type" in body and "&#x27;ou&#x27; must be a resource number" in body


def test_the_catalogue_pages_forward_and_back_by_name(personas):
    Resource.objects.bulk_create(
        Resource(
            app=personas.app, type=ResourceType.IAM_ROLE, remote_id=f"r{i}", name=f"role-{i:03d}"
        )
        for i in range(PAGE_SIZE * 2 + 5)
    )
    client = logged_in(personas.requester)
    first = client.get(reverse("catalogue"), {"q": "role-"})
    first_ids = shown(first)
    assert len(first_ids) == PAGE_SIZE
    second = client.get(reverse("catalogue"), {"q": "role-", "after": first_ids[-1]})
    second_ids = shown(second)
    assert len(second_ids) == PAGE_SIZE and not set(first_ids) & set(second_ids)
    assert names(second, personas) == {f"role-{i:03d}" for i in range(PAGE_SIZE, PAGE_SIZE * 2)}
    back = client.get(reverse("catalogue"), {"q": "role-", "before": second_ids[0]})
    assert shown(back) == first_ids
    third = client.get(reverse("catalogue"), {"q": "role-", "after": second_ids[-1]})
    assert len(shown(third)) == 5 and 'data-testid="next-page"' not in third.content.decode()
    assert 'data-testid="next-page"' in second.content.decode()


def test_the_catalogue_stays_fast_at_100000_resources(personas, django_assert_max_num_queries):
    ous = [
        Resource.objects.create(
            app=personas.app,
            type=ResourceType.ORGANIZATIONAL_UNIT,
            remote_id=f"ou-{i}",
            name=f"OU {i}",
        )
        for i in range(5)
    ]
    accounts = Resource.objects.bulk_create(
        Resource(
            app=personas.app,
            type=ResourceType.ACCOUNT,
            remote_id=f"{i:012d}",
            account_id=f"{i:012d}",
            name=f"account-{i}",
            parent=ous[i % 5],
        )
        for i in range(100)
    )
    now = timezone.now()
    Resource.objects.bulk_create(
        (
            Resource(
                app=personas.app,
                type=ResourceType.IAM_ROLE,
                first_seen_at=now,
                last_seen_at=now,
                remote_id=f"role-{i}",
                name=f"role-{i:06d}",
                arn=f"arn:aws:iam::{i % 100:012d}:role/role-{i:06d}",
                account_id=f"{i % 100:012d}",
                region=("us-east-1", "eu-west-1")[i % 2],
                tags={"team": f"team-{i % 50}"},
            )
            for i in range(100_000 - len(accounts) - len(ous))
        ),
        batch_size=5000,
    )
    assert Resource.objects.count() >= 100_000
    client = logged_in(personas.requester)
    with django_assert_max_num_queries(12):
        response = client.get(reverse("catalogue"))
    assert len(shown(response)) == PAGE_SIZE
    for params in (
        {"q": "team-7"},
        {"ou": ous[2].pk, "region": "eu-west-1"},
        {"after": Resource.objects.get(name="role-050000").pk},
    ):
        started = time.monotonic()
        with django_assert_max_num_queries(12):
            response = client.get(reverse("catalogue"), params)  # type: ignore[arg-type]  # str or int
        assert response.status_code == 200
        assert len(shown(response)) == PAGE_SIZE
        # Generous, for a loaded machine: a page that scanned per row would take minutes.
        assert time.monotonic() - started < 5, params


def test_the_catalogue_costs_the_same_queries_for_10_or_50_rows(
    personas, django_assert_max_num_queries
):
    for i in range(60):
        make(personas, f"svc-{i:02d}")
    client = logged_in(personas.requester)
    with django_assert_max_num_queries(12):
        assert client.get(reverse("catalogue")).status_code == 200


def test_the_catalogue_sends_anonymous_people_to_login(db):
    response = Client().get(reverse("catalogue"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_checkboxes_lead_to_the_request_form(personas, org):
    body = logged_in(personas.requester).get(reverse("catalogue")).content.decode()
    assert f'action="{reverse("request-new")}"' in body
    assert 'type="checkbox" name="resource"' in body


# A resource's page --------------------------------------------------------------------------------
@pytest.fixture
def grant(personas):
    level = AccessLevel.objects.create(resource=personas.resource, remote_id="ps", name="ReadOnly")
    return Grant.objects.create(
        user=personas.requester,
        resource=personas.resource,
        access_level=level,
        source=GrantSource.ADMIN,
        status=GrantStatus.ACTIVE,
    )


def test_the_resource_page_says_the_rule_and_the_owners(personas, grant):
    body = (
        logged_in(personas.requester)
        .get(reverse("resource-detail", args=[personas.resource.pk]))
        .content.decode()
    )
    assert "olga.owner@example.com" in body
    assert "Access lasts at most 7 days." in body
    assert "ReadOnly" in body
    # The requester sees their own grant, not who else holds access.
    assert 'data-testid="holders"' not in body
    assert "Manage request rules" not in body


@pytest.mark.parametrize(
    ("persona", "may_revoke"), [("approver", True), ("admin", True), ("auditor", False)]
)
def test_owners_admins_and_auditors_see_who_holds_access(personas, grant, persona, may_revoke):
    body = (
        logged_in(getattr(personas, persona))
        .get(reverse("resource-detail", args=[personas.resource.pk]))
        .content.decode()
    )
    holders = body.split('data-testid="holders"')[1].split("</table>")[0]
    assert "rob.requester@example.com" in holders
    assert (reverse("grant-revoke", args=[grant.pk]) in holders) is may_revoke


def test_an_owner_revokes_from_the_resource_page_with_a_reason(personas, grant):
    client = logged_in(personas.approver)
    page = reverse("resource-detail", args=[personas.resource.pk])
    refused = client.post(
        reverse("grant-revoke", args=[grant.pk]), {"next": page, "confirm": "yes"}, follow=True
    )
    assert "Say why you revoke" in refused.content.decode()
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE
    response = client.post(
        reverse("grant-revoke", args=[grant.pk]),
        {"reason": "left the team", "next": page, "confirm": "yes"},
    )
    assert response["Location"] == page
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKING and grant.revoke_reason == "left the team"
    event = AuditEvent.objects.get(action="grant.revoked", target_id=str(grant.pk))
    assert event.details["reason"] == "left the team" and event.actor_id == personas.approver.pk


def test_a_deleted_resource_is_not_found_by_users(personas):
    Resource.objects.filter(pk=personas.resource.pk).update(deleted_at=timezone.now())
    url = reverse("resource-detail", args=[personas.resource.pk])
    assert logged_in(personas.requester).get(url).status_code == 404
    assert logged_in(personas.auditor).get(url).status_code == 200


def test_the_resource_page_sends_anonymous_people_to_login(personas):
    response = Client().get(reverse("resource-detail", args=[personas.resource.pk]))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_a_resource_the_provider_will_not_grant_says_why_and_cannot_be_requested(personas):
    from access.services.requests import RequestItem, validate_items

    reason = "The role is not tagged portcullis:requestable=true: tag it in AWS to offer it."
    role = make(personas, "UntaggedAdmin", metadata={"not_requestable": reason})
    body = (
        logged_in(personas.requester).get(reverse("resource-detail", args=[role.pk])).content
    ).decode()
    assert 'id="not-requestable"' in body
    assert "not tagged portcullis:requestable=true" in body
    assert f"{reverse('request-new')}?resource={role.pk}" not in body

    level = role.access_levels.get()
    errors = validate_items(
        requested_by=personas.requester,
        user=personas.requester,
        items=[RequestItem(role.pk, level.pk, timedelta(hours=1))],
        reason="deploy",
        ticket="",
    )
    assert errors == {0: [f"Access to UntaggedAdmin cannot be requested: {reason}"]}


def test_an_account_offers_only_the_permission_sets_the_provider_will_assign(personas):
    from access.services.requests import RequestItem, validate_items

    reason = "The permission set is not tagged portcullis:requestable=true: tag it in AWS."
    account = Resource.objects.create(
        app=personas.app, type=ResourceType.ACCOUNT, remote_id="222222222222", name="staging"
    )
    tagged = AccessLevel.objects.create(resource=account, remote_id="ps-ro", name="ReadOnly")
    untagged = AccessLevel.objects.create(
        resource=account,
        remote_id="ps-admin",
        name="AdministratorAccess",
        metadata={"not_requestable": reason},
    )
    client = logged_in(personas.requester)
    page = client.get(reverse("resource-detail", args=[account.pk])).content.decode()
    assert f"{reverse('request-new')}?resource={account.pk}" in page  # ReadOnly still is
    assert 'data-testid="level-not-requestable"' in page and reason in page

    form = client.get(f"{reverse('request-new')}?resource={account.pk}").content.decode()
    assert f'<option value="{tagged.pk}"' in form
    assert f'<option value="{untagged.pk}"' not in form

    def errors_for(level: AccessLevel) -> dict:
        return validate_items(
            requested_by=personas.requester,
            user=personas.requester,
            items=[RequestItem(account.pk, level.pk, timedelta(hours=1))],
            reason="deploy",
            ticket="",
        )

    assert errors_for(tagged) == {}
    assert errors_for(untagged) == {
        0: [f"Access to staging (AdministratorAccess) cannot be requested: {reason}"]
    }

    untagged.metadata = {}
    untagged.save()
    AccessLevel.objects.filter(pk=tagged.pk).update(metadata={"not_requestable": reason})
    page = client.get(reverse("resource-detail", args=[account.pk])).content.decode()
    assert f"{reverse('request-new')}?resource={account.pk}" in page
    AccessLevel.objects.filter(pk=untagged.pk).update(metadata={"not_requestable": reason})
    page = client.get(reverse("resource-detail", args=[account.pk])).content.decode()
    assert f"{reverse('request-new')}?resource={account.pk}" not in page  # nothing to offer


def test_the_catalogue_does_not_let_you_pick_what_cannot_be_requested(personas):
    reason = "The role is not tagged portcullis:requestable=true: tag it in AWS to offer it."
    refused = make(personas, "UntaggedAdmin", metadata={"not_requestable": reason})
    offered = make(personas, "TaggedDeveloper")

    body = logged_in(personas.requester).get(reverse("catalogue")).content.decode()

    def checkbox(resource: Resource) -> str:
        start = body.index(f'id="pick-{resource.pk}"')
        return body[start : body.index(">", start)]

    assert "disabled" in checkbox(refused)
    assert "not tagged portcullis:requestable=true" in checkbox(refused)
    assert "disabled" not in checkbox(offered)


# The basket: ticks kept across searches and pages ---------------------------------------------
def basket_ids(response) -> list[str]:
    body = response.content.decode()
    checked = [
        part.split('"')[0]
        for part in body.split('name="resource" value="')[1:]
        if part.split(">")[0].find(" checked") != -1
    ]
    hidden = [p.split('"')[0] for p in body.split('type="hidden" name="resource" value="')[1:]]
    return sorted(checked + hidden)


def test_ticks_are_kept_on_a_new_search_and_go_to_the_request_form_together(personas, org):
    client = logged_in(personas.requester)
    deploy = Resource.objects.get(name="PaymentsDeploy")
    db = Resource.objects.get(name="payments-db")
    # Ticked on a search for "checkout", then searching for "db": both stay selected.
    response = client.get(
        reverse("catalogue"), {"q": "db", "resource": [str(deploy.pk), str(db.pk)]}
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert "2 selected" in body
    # The one shown is ticked; the other rides along hidden, so the request form gets both.
    assert f'type="hidden" name="resource" value="{deploy.pk}"' in body
    assert f'type="hidden" name="resource" value="{db.pk}"' not in body
    assert basket_ids(response) == sorted([str(deploy.pk), str(db.pk)])
    assert f'formaction="{reverse("request-new")}"' in body
    # The request form lists both.
    form = client.get(reverse("request-new"), {"q": "db", "resource": [str(deploy.pk), str(db.pk)]})
    assert "Access level for PaymentsDeploy" in form.content.decode()
    assert "Access level for payments-db" in form.content.decode()


def test_a_selected_resource_can_be_removed(personas, org):
    client = logged_in(personas.requester)
    deploy = Resource.objects.get(name="PaymentsDeploy")
    db = Resource.objects.get(name="payments-db")
    response = client.get(
        reverse("catalogue"), {"q": "zzz", "resource": [str(deploy.pk), str(db.pk)]}
    )
    body = response.content.decode()
    remove = body.split('aria-label="Remove PaymentsDeploy from the selection"')[0]
    href = remove.rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    after = client.get(reverse("catalogue") + href)
    assert "1 selected" in after.content.decode()
    assert basket_ids(after) == [str(db.pk)]


def test_the_basket_shows_only_what_the_user_may_see(personas, org):
    # A deleted resource's id in the address does not show its name to a requester.
    hidden = Resource.objects.get(name="old-role")
    deploy = Resource.objects.get(name="PaymentsDeploy")
    response = logged_in(personas.requester).get(
        reverse("catalogue"), {"resource": [str(hidden.pk), str(deploy.pk), "x", "-1"]}
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert "1 selected" in body and "old-role" not in body
    assert basket_ids(response) == [str(deploy.pk)]


def test_the_basket_holds_as_many_as_one_request(personas):
    ids = [str(make(personas, f"svc-{i:02d}").pk) for i in range(51)]
    response = logged_in(personas.requester).get(reverse("catalogue"), {"resource": ids})
    assert response.status_code == 400
    assert "At most 50 resources" in response.content.decode()


def test_the_basket_costs_one_query_whatever_its_size(personas, django_assert_max_num_queries):
    ids = [str(make(personas, f"svc-{i:02d}").pk) for i in range(50)]
    client = logged_in(personas.requester)
    with django_assert_max_num_queries(13):
        response = client.get(reverse("catalogue"), {"q": "svc-4", "resource": ids})
    assert "50 selected" in response.content.decode()


def test_the_region_choices_are_the_live_resources_regions_in_order(personas, org):
    make(personas, "tokyo-db", region="ap-northeast-1")
    make(personas, "gone-db", region="sa-east-1", deleted_at=timezone.now())
    make(personas, "dublin-2", region="eu-west-1")
    response = logged_in(personas.requester).get(reverse("catalogue"))
    assert list(response.context["regions"]) == ["ap-northeast-1", "eu-west-1"]

"""The read API: /api/v1/resources/, grants/ and me/, and the schema and docs pages."""

from __future__ import annotations

from datetime import timedelta
from itertools import count

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from access.choices import GrantSource, GrantStatus, ResourceType
from access.models import AccessLevel, App, Grant, Resource, UserGroup
from access.tokens import create_api_token

RESOURCES = "/api/v1/resources/"
GRANTS = "/api/v1/grants/"
ME = "/api/v1/me/"
_ids = count(1)


def make_resource(app: App, name: str, **fields) -> Resource:
    n = next(_ids)
    fields.setdefault("type", ResourceType.IAM_ROLE)
    fields.setdefault("remote_id", f"remote-{n}")
    fields.setdefault("account_id", "111111111111")
    return Resource.objects.create(app=app, name=name, **fields)


def make_grant(user, resource: Resource, level: str = "admin", **fields) -> Grant:
    access_level, _ = AccessLevel.objects.get_or_create(
        resource=resource, remote_id=level, defaults={"name": level}
    )
    fields.setdefault("source", GrantSource.ADMIN)
    fields.setdefault("status", GrantStatus.ACTIVE)
    return Grant.objects.create(user=user, resource=resource, access_level=access_level, **fields)


def bearer(user) -> APIClient:
    _, raw = create_api_token(user, "tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def session(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


CLIENTS = {"token": bearer, "session": session}
# What authenticating costs: the token (with its user), or the session and the user.
AUTH_QUERIES = {"token": 1, "session": 2}


def names(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["name"] for row in response.json()["results"]]


@pytest.fixture
def deleted(personas) -> Resource:
    return make_resource(personas.app, "gone", deleted_at=timezone.now())


# Anonymous and bad credentials ---------------------------------------------------------------


@pytest.mark.parametrize("url", [RESOURCES, "detail", GRANTS, ME, "/api/schema/"])
def test_anonymous_callers_get_401_with_a_challenge(personas, url):
    url = f"{RESOURCES}{personas.resource.pk}/" if url == "detail" else url

    response = APIClient().get(url)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


@pytest.mark.parametrize(
    ("method", "url"), [("post", RESOURCES), ("put", "detail"), ("post", GRANTS), ("post", ME)]
)
def test_the_read_endpoints_refuse_writes(personas, method, url):
    url = f"{RESOURCES}{personas.resource.pk}/" if url == "detail" else url

    response = getattr(bearer(personas.admin), method)(url, {}, format="json")

    assert response.status_code == 405


# Resources -------------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", CLIENTS)
@pytest.mark.parametrize("persona", ["requester", "approver", "manager", "outsider"])
def test_people_without_a_role_see_live_resources_but_not_deleted_ones(
    personas, deleted, auth, persona
):
    client = CLIENTS[auth](getattr(personas, persona))

    assert names(client.get(RESOURCES)) == ["prod"]
    # Asking for deleted ones changes nothing for them.
    assert names(client.get(RESOURCES, {"include_deleted": "true"})) == ["prod"]
    assert client.get(f"{RESOURCES}{deleted.pk}/").status_code == 404
    assert client.get(f"{RESOURCES}{personas.resource.pk}/").status_code == 200


@pytest.mark.parametrize("auth", CLIENTS)
@pytest.mark.parametrize("persona", ["admin", "auditor"])
def test_admins_and_auditors_see_deleted_resources_when_they_ask(personas, deleted, auth, persona):
    client = CLIENTS[auth](getattr(personas, persona))

    assert names(client.get(RESOURCES)) == ["prod"]
    assert names(client.get(RESOURCES, {"include_deleted": "true"})) == ["gone", "prod"]
    detail = client.get(f"{RESOURCES}{deleted.pk}/")
    assert detail.status_code == 200
    assert detail.json()["deleted_at"] is not None


def test_a_superuser_counts_as_an_admin(personas, deleted):
    personas.outsider.is_superuser = True
    personas.outsider.save()

    assert names(bearer(personas.outsider).get(RESOURCES, {"include_deleted": "1"})) == [
        "gone",
        "prod",
    ]


def test_a_deactivated_users_session_is_refused(personas):
    client = session(personas.requester)
    personas.requester.is_active = False
    personas.requester.save()

    assert client.get(RESOURCES).status_code == 401


def test_the_resource_list_shows_the_inventory_fields(personas):
    response = bearer(personas.requester).get(RESOURCES)

    row = response.json()["results"][0]
    assert row["id"] == personas.resource.pk
    assert row["app"] == {"id": personas.app.pk, "name": "Example organization", "provider": "aws"}
    assert row["type"] == "aws_account"
    assert row["type_display"] == "AWS account"
    assert row["remote_id"] == "111111111111"
    assert row["deleted_at"] is None
    assert "metadata" not in row


def test_a_resource_detail_has_its_access_levels_and_owners(personas):
    resource = personas.resource
    resource.metadata = {"email": "prod@example.com"}
    resource.save()
    AccessLevel.objects.create(resource=resource, remote_id="ps-admin", name="AdministratorAccess")
    AccessLevel.objects.create(resource=resource, remote_id="ps-ro", name="ReadOnlyAccess")
    AccessLevel.objects.create(
        resource=resource, remote_id="ps-old", name="Retired", deleted_at=timezone.now()
    )
    team = UserGroup.objects.create(name="Platform")
    resource.owners.create(group=team)

    body = bearer(personas.outsider).get(f"{RESOURCES}{resource.pk}/").json()

    assert [level["name"] for level in body["access_levels"]] == [
        "AdministratorAccess",
        "ReadOnlyAccess",
    ]
    assert body["owners"] == [
        {
            "id": resource.owners.get(user=personas.approver).pk,
            "user": {
                "id": personas.approver.pk,
                "email": "olga.owner@example.com",
                "name": "Olga Owner",
            },
            "group": None,
        },
        {
            "id": resource.owners.get(group=team).pk,
            "user": None,
            "group": {"id": team.pk, "name": "Platform"},
        },
    ]
    # Admins also see the access level that was deleted in AWS.
    admin_body = bearer(personas.admin).get(f"{RESOURCES}{resource.pk}/").json()
    assert [level["name"] for level in admin_body["access_levels"]] == [
        "AdministratorAccess",
        "ReadOnlyAccess",
        "Retired",
    ]


TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "PortcullisManaged",
            "Effect": "Allow",
            "Principal": {"Federated": "arn:aws:iam::111111111111:oidc-provider/idp.example.com"},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {"idp.example.com:sub": ["holder-subject-1"]}},
        }
    ],
}


@pytest.fixture
def role(personas) -> Resource:
    role = make_resource(
        personas.app,
        "deploy",
        arn="arn:aws:iam::111111111111:role/deploy",
        metadata={"trust_policy": TRUST_POLICY},
    )
    role.owners.create(user=personas.approver)
    return role


@pytest.mark.parametrize("persona", ["requester", "manager", "outsider"])
@pytest.mark.parametrize("auth", CLIENTS)
def test_a_resource_detail_hides_metadata_from_those_who_may_not_see_holders(
    personas, role, persona, auth
):
    # An IAM role's metadata is its trust policy, which names every holder's subject.
    response = CLIENTS[auth](getattr(personas, persona)).get(f"{RESOURCES}{role.pk}/")

    assert response.status_code == 200
    assert response.json()["metadata"] is None
    assert b"holder-subject-1" not in response.content


@pytest.mark.parametrize("persona", ["approver", "admin", "auditor"])
def test_owners_admins_and_auditors_see_a_resources_metadata(personas, role, persona):
    response = bearer(getattr(personas, persona)).get(f"{RESOURCES}{role.pk}/")

    assert response.json()["metadata"] == {"trust_policy": TRUST_POLICY}


def test_a_member_of_an_owning_group_sees_a_resources_metadata(personas, role):
    team = UserGroup.objects.create(name="Deployers")
    team.members.add(personas.outsider)
    role.owners.create(group=team)

    response = bearer(personas.outsider).get(f"{RESOURCES}{role.pk}/")

    assert response.json()["metadata"] == {"trust_policy": TRUST_POLICY}


def test_metadata_is_never_in_the_resource_list(personas, role):
    for persona in ("outsider", "admin"):
        response = bearer(getattr(personas, persona)).get(RESOURCES, {"search": "deploy"})
        assert [row["name"] for row in response.json()["results"]] == ["deploy"]
        assert b"holder-subject-1" not in response.content


def test_the_resource_page_shows_no_metadata_to_anyone(personas, role):
    # The page never shows metadata, so it can be no wider than the API's rule.
    for persona in ("outsider", "approver", "admin"):
        client = Client()
        client.force_login(getattr(personas, persona))
        response = client.get(reverse("resource-detail", args=[role.pk]))
        assert response.status_code == 200
        assert b"holder-subject-1" not in response.content


def test_an_unknown_resource_is_not_found(personas):
    assert bearer(personas.admin).get(f"{RESOURCES}999999/").status_code == 404


@pytest.fixture
def inventory(personas) -> dict[str, Resource]:
    other_app = App.objects.create(name="Other organization")
    return {
        "web": make_resource(
            personas.app,
            "web-server",
            type=ResourceType.EC2_INSTANCE,
            remote_id="i-0abc",
            arn="arn:aws:ec2:eu-west-1:111111111111:instance/i-0abc",
            region="eu-west-1",
            tags={"env": "production", "team": "web"},
        ),
        "db": make_resource(
            personas.app,
            "orders-db",
            type=ResourceType.RDS_POSTGRES,
            region="us-east-1",
            account_id="222222222222",
        ),
        "role": make_resource(
            other_app,
            "DeployRole",
            type=ResourceType.IAM_ROLE,
            arn="arn:aws:iam::333333333333:role/DeployRole",
            account_id="333333333333",
        ),
    }


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"type": "aws_ec2_instance"}, ["web-server"]),
        ({"type": ["aws_ec2_instance", "aws_rds_postgres"]}, ["orders-db", "web-server"]),
        ({"account_id": "222222222222"}, ["orders-db"]),
        ({"region": "eu-west-1"}, ["web-server"]),
        ({"app": "other"}, ["DeployRole"]),
        ({"search": "SERVER"}, ["web-server"]),
        ({"search": "i-0abc"}, ["web-server"]),
        ({"search": "arn:aws:iam::333333333333:role/DeployRole"}, ["DeployRole"]),
        ({"search": "i-0ab"}, ["web-server"]),  # part of the ARN
        ({"search": "i-0abd"}, []),
        # A tag as the portal shows it, and an account's name (account 111111111111).
        ({"search": "env=prod"}, ["web-server"]),
        ({"search": "ENV=PRODUCTION"}, ["web-server"]),
        ({"search": "web=team"}, []),
        ({"search": "prod"}, ["prod", "web-server"]),
        ({"type": "aws_account", "account_id": "111111111111"}, ["prod"]),
    ],
)
def test_resources_can_be_filtered(personas, inventory, params, expected):
    if params.get("app") == "other":
        params = {"app": inventory["role"].app_id}

    assert names(bearer(personas.requester).get(RESOURCES, params)) == expected


@pytest.mark.parametrize(
    ("params", "field"),
    [({"type": "aws_bucket"}, "type"), ({"app": "x"}, "app"), ({"app": "1.5"}, "app")],
)
def test_a_bad_filter_value_is_refused_and_named(personas, params, field):
    response = bearer(personas.requester).get(RESOURCES, params)

    assert response.status_code == 400
    assert field in response.json()


def test_resources_are_paged_with_a_cursor(personas):
    for i in range(6):
        make_resource(personas.app, f"r{i}")
    client = bearer(personas.requester)

    seen: list[str] = []
    response = client.get(RESOURCES, {"page_size": 4})
    pages = 0
    while True:
        pages += 1
        seen += names(response)
        if not response.json()["next"]:
            break
        assert "cursor=" in response.json()["next"]
        response = client.get(response.json()["next"])

    assert pages == 2
    assert seen == ["prod", "r0", "r1", "r2", "r3", "r4", "r5"]


@pytest.mark.parametrize("auth", CLIENTS)
def test_the_resource_list_costs_the_same_queries_for_5_and_50_rows(
    personas, django_assert_max_num_queries, auth
):
    client = CLIENTS[auth](personas.auditor)
    client.get(ME)  # a token's first use records last_used_at; later ones within a minute do not
    for rows in (5, 50):
        while Resource.objects.count() < rows:
            resource = make_resource(personas.app, f"r{Resource.objects.count()}")
            resource.owners.create(user=personas.approver)
            AccessLevel.objects.create(resource=resource, remote_id="a", name="a")
        # authentication, roles, resources
        with django_assert_max_num_queries(AUTH_QUERIES[auth] + 2):
            response = client.get(RESOURCES, {"include_deleted": "true"})
        assert len(response.json()["results"]) == rows


def test_a_resource_detail_costs_the_same_queries_for_few_and_many_levels_and_owners(
    personas, django_assert_max_num_queries
):
    client = bearer(personas.requester)
    resource = personas.resource
    url = f"{RESOURCES}{resource.pk}/"
    client.get(ME)
    for size in (2, 20):
        for i in range(resource.access_levels.count(), size):
            AccessLevel.objects.create(resource=resource, remote_id=f"l{i}", name=f"l{i}")
            resource.owners.create(group=UserGroup.objects.create(name=f"g{i}"))
        # token, roles, resource, access levels, owners with their user or group, whether
        # the caller owns it (for the metadata), and the request rule: the caller's groups,
        # the resource's rules
        with django_assert_max_num_queries(8):
            response = client.get(url)
        assert len(response.json()["access_levels"]) == size


# Grants ----------------------------------------------------------------------------------------


@pytest.fixture
def grants(personas) -> dict[str, Grant]:
    other = make_resource(personas.app, "staging")
    return {
        "requester": make_grant(personas.requester, personas.resource),
        "requester_revoked": make_grant(
            personas.requester, other, status=GrantStatus.REVOKED, revoked_at=timezone.now()
        ),
        "outsider": make_grant(personas.outsider, personas.resource, level="read"),
        "admin": make_grant(personas.admin, other),
    }


def grant_ids(response) -> set[int]:
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


@pytest.mark.parametrize("auth", CLIENTS)
@pytest.mark.parametrize("persona", ["requester", "outsider", "admin", "auditor", "approver"])
def test_everyone_lists_their_own_grants_by_default(personas, grants, auth, persona):
    user = getattr(personas, persona)

    listed = grant_ids(CLIENTS[auth](user).get(GRANTS))

    assert listed == {g.pk for g in grants.values() if g.user_id == user.pk}


@pytest.mark.parametrize("persona", ["outsider", "approver", "requester"])
def test_it_refuses_to_list_someone_elses_grants_for_a_normal_user(personas, grants, persona):
    client = bearer(getattr(personas, persona))

    response = client.get(GRANTS, {"user": personas.admin.pk})

    assert response.status_code == 403
    assert "only your own grants" in response.json()["detail"]
    # An unknown id gets the same answer, so it tells nothing about who exists.
    assert client.get(GRANTS, {"user": 999999}).status_code == 403


@pytest.mark.parametrize("persona", ["admin", "auditor"])
def test_admins_and_auditors_list_anyones_grants(personas, grants, persona):
    client = bearer(getattr(personas, persona))

    assert grant_ids(client.get(GRANTS, {"user": personas.requester.pk})) == {
        grants["requester"].pk,
        grants["requester_revoked"].pk,
    }
    assert grant_ids(client.get(GRANTS, {"user": 999999})) == set()


def test_a_manager_lists_their_reports_grants(personas, grants):
    client = bearer(personas.manager)

    assert grant_ids(client.get(GRANTS, {"user": personas.requester.pk})) == {
        grants["requester"].pk,
        grants["requester_revoked"].pk,
    }
    assert client.get(GRANTS, {"user": personas.outsider.pk}).status_code == 403


def test_naming_myself_lists_my_grants(personas, grants):
    listed = grant_ids(bearer(personas.outsider).get(GRANTS, {"user": personas.outsider.pk}))

    assert listed == {grants["outsider"].pk}


def test_a_bad_user_filter_is_refused(personas):
    response = bearer(personas.admin).get(GRANTS, {"user": "rob"})

    assert response.status_code == 400
    assert "user" in response.json()


def test_grants_can_be_filtered(personas, grants):
    client = bearer(personas.requester)

    assert grant_ids(client.get(GRANTS, {"status": "active"})) == {grants["requester"].pk}
    assert grant_ids(client.get(GRANTS, {"status": ["active", "revoked"]})) == {
        grants["requester"].pk,
        grants["requester_revoked"].pk,
    }
    assert grant_ids(client.get(GRANTS, {"resource": personas.resource.pk})) == {
        grants["requester"].pk
    }
    assert grant_ids(client.get(GRANTS, {"source": "request"})) == set()
    assert client.get(GRANTS, {"status": "granted"}).status_code == 400


def test_a_grant_row_names_the_resource_and_access_level(personas, grants):
    expires = timezone.now() + timedelta(hours=8)
    Grant.objects.filter(pk=grants["requester"].pk).update(
        expires_at=expires, granted_by=personas.admin
    )

    rows = bearer(personas.requester).get(GRANTS, {"status": "active"}).json()["results"]

    assert len(rows) == 1
    row = rows[0]
    assert row["user"]["email"] == personas.requester.email
    assert row["resource"]["name"] == "prod"
    assert row["access_level"]["name"] == "admin"
    assert row["granted_by"]["email"] == personas.admin.email
    assert row["status"] == "active"
    assert row["expires_at"] is not None


@pytest.mark.parametrize("auth", CLIENTS)
def test_the_grant_list_costs_the_same_queries_for_5_and_50_rows(
    personas, django_assert_max_num_queries, auth
):
    client = CLIENTS[auth](personas.requester)
    client.get(ME)
    for rows in (5, 50):
        while Grant.objects.count() < rows:
            resource = make_resource(personas.app, f"r{Grant.objects.count()}")
            make_grant(personas.requester, resource, granted_by=personas.admin)
        # authentication, grants
        with django_assert_max_num_queries(AUTH_QUERIES[auth] + 1):
            response = client.get(GRANTS)
        assert len(response.json()["results"]) == rows


def test_listing_another_users_grants_costs_a_fixed_number_of_queries(
    personas, django_assert_max_num_queries
):
    client = bearer(personas.auditor)
    client.get(ME)
    for rows in (5, 50):
        while Grant.objects.count() < rows:
            make_grant(personas.requester, make_resource(personas.app, "r"))
        # token, the named user, roles, grants
        with django_assert_max_num_queries(4):
            response = client.get(GRANTS, {"user": personas.requester.pk})
        assert len(response.json()["results"]) == rows


# Me ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", CLIENTS)
def test_me_describes_the_caller(personas, auth):
    body = CLIENTS[auth](personas.requester).get(ME).json()

    assert body == {
        "id": personas.requester.pk,
        "username": personas.requester.username,
        "email": "rob.requester@example.com",
        "name": "Rob",
        "title": "",
        "department": "",
        "roles": [],
        "manager": {
            "id": personas.manager.pk,
            "email": "mia.manager@example.com",
            "name": "Mia Manager",
        },
    }


@pytest.mark.parametrize(("persona", "roles"), [("admin", ["Admin"]), ("auditor", ["Auditor"])])
def test_me_lists_the_callers_roles(personas, persona, roles):
    body = bearer(getattr(personas, persona)).get(ME).json()

    assert body["roles"] == roles
    assert body["manager"] is None


# Schema and docs ---------------------------------------------------------------------------------


def test_the_schema_needs_a_signed_in_user(personas):
    assert APIClient().get("/api/schema/").status_code == 401

    response = session(personas.outsider).get("/api/schema/")

    assert response.status_code == 200
    assert b"/api/v1/resources/" in response.content
    assert b"/api/v1/tokens/{id}/revoke/" in response.content


def test_the_schema_is_served_to_token_holders(personas):
    response = bearer(personas.outsider).get("/api/schema/", HTTP_ACCEPT="application/json")

    assert response.status_code == 200
    assert "apiToken" in response.json()["components"]["securitySchemes"]


def test_the_schema_documents_the_errors_each_operation_answers_with(personas):
    paths = bearer(personas.outsider).get("/api/schema/?format=json").json()["paths"]

    # Found by fuzzing the API from this schema (tests/test_api_fuzz.py): these answers
    # came back undocumented.
    assert set(paths["/api/v1/me/"]["get"]["responses"]) == {"200", "401", "403"}
    # Lists: bad filters (400) and a stale cursor (404, "Invalid cursor").
    assert set(paths["/api/v1/audit-events/"]["get"]["responses"]) == {
        "200",
        "400",
        "401",
        "403",
        "404",
    }
    assert set(paths["/api/v1/tokens/{id}/revoke/"]["post"]["responses"]) >= {"401", "404"}
    created = paths["/api/v1/tokens/"]["post"]
    assert set(created["responses"]) == {"201", "400", "401", "403"}
    # A token with a blank name is refused, and the schema says so.
    body = created["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    component = bearer(personas.outsider).get("/api/schema/?format=json").json()["components"]
    name = component["schemas"][body.rsplit("/", 1)[1]]["properties"]["name"]
    assert name["minLength"] == 1


def test_a_path_under_the_api_that_matches_nothing_is_a_json_404(personas):
    # The router's ids exclude dots: /grants/1.5/ reaches no endpoint at all.
    for path in ("/api/v1/grants/1.5/", "/api/v1/no-such-thing/"):
        response = bearer(personas.outsider).get(path)

        assert response.status_code == 404
        assert response["Content-Type"] == "application/json"
        assert response.json() == {"detail": "No API endpoint has this path."}
    # Pages keep the HTML page.
    client = Client()
    client.force_login(personas.outsider)
    assert client.get("/no-such-page/")["Content-Type"].startswith("text/html")


def test_the_docs_page_sends_anonymous_visitors_to_login(personas):
    response = Client().get("/api/docs/")

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


def test_the_docs_page_is_served_to_signed_in_users(personas):
    client = Client()
    client.force_login(personas.outsider)

    response = client.get("/api/docs/")

    assert response.status_code == 200
    # Swagger UI's start-up script comes from the same URL, not inline (the CSP).
    assert b'<script src="/api/docs/?script="></script>' in response.content
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert reverse("api-schema").encode() in script.content


def test_resources_are_listed_by_name_in_any_case(personas):
    for name in ("Workloads", "analytics-sandbox", "Billing", "zeta"):
        make_resource(personas.app, name)
    got = names(bearer(personas.requester).get(RESOURCES))
    assert got == sorted(got, key=str.lower)
    assert got.index("analytics-sandbox") < got.index("Workloads")

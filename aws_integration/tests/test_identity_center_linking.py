"""Identity Center users belong to portal users by their stable UserId: email proposes only
a first match, for a verified address, and changing an address never moves access.

End to end: the portal's email page, then a sync against the stand-in AWS."""

from __future__ import annotations

import re

import pytest
from allauth.account.models import EmailAddress
from django.core import mail

from access.choices import GrantSource, GrantStatus
from access.models import Grant, User
from audit.models import AuditEvent
from aws_integration.models import IdentityCenterUser
from aws_integration.tests.sync_fixtures import ADA_EMAIL, make_app, management, sync
from demo import seed
from tests.fixtures import PASSWORD, make_user

pytestmark = pytest.mark.django_db

CONFIRM_LINK = re.compile(r"/accounts/confirm-email/([-:\w]+)/")


@pytest.fixture
def app(org):
    return make_app(org)


def ada_in_engineering(org: seed.SeedResult) -> bool:
    """Whether the stand-in still holds Ada's membership of Engineering."""
    store = management("identitystore")
    pages = store.get_paginator("list_group_memberships").paginate(
        IdentityStoreId=org.identity_store_id, GroupId=org.groups["Engineering"]
    )
    return any(
        m["MemberId"].get("UserId") == org.users[ADA_EMAIL]
        for page in pages
        for m in page["GroupMemberships"]
    )


def test_taking_an_identity_center_users_address_in_the_portal_takes_none_of_their_access(
    org, app, client
):
    # Ada is in Identity Center (member of Engineering) but has no portal account.
    mallory = make_user("mallory@example.com")
    client.force_login(mallory)
    taken = ADA_EMAIL.lower()

    client.post("/accounts/email/", {"action_add": "", "email": taken})
    response = client.post("/accounts/email/", {"action_primary": "", "email": taken})

    assert response.status_code == 302
    mallory.refresh_from_db()
    assert mallory.email == "mallory@example.com"
    assert not EmailAddress.objects.filter(user=mallory, email=taken, verified=True).exists()

    sync(app)

    ada = IdentityCenterUser.objects.get(app=app, remote_id=org.users[ADA_EMAIL])
    assert ada.portal_user is None
    assert not Grant.objects.filter(user=mallory).exists()
    assert not AuditEvent.objects.filter(action="identity_center.user_linked").exists()
    # Nothing for Mallory to give up, and AWS still holds Ada's access.
    assert ada_in_engineering(org)


def test_an_identity_center_user_stays_with_the_portal_user_it_was_first_linked_to(
    org, app, client
):
    ada = make_user(ADA_EMAIL.lower(), email_verified=True)
    sync(app)

    idc_ada = IdentityCenterUser.objects.get(app=app, remote_id=org.users[ADA_EMAIL])
    assert idc_ada.portal_user == ada
    linked = AuditEvent.objects.get(action="identity_center.user_linked")
    assert linked.target_id == str(ada.pk)
    assert linked.details["identity_center_user_id"] == org.users[ADA_EMAIL]
    assert linked.details["matched_by"] == "verified email"
    observed = Grant.objects.get(user=ada, source=GrantSource.OBSERVED)

    # Ada moves to a new address, verified through the link mailed to it.
    client.force_login(ada)
    client.post("/accounts/email/", {"action_add": "", "email": "ada@new.example.com"})
    ada.refresh_from_db()
    assert ada.email == ADA_EMAIL.lower()  # not before the link is opened
    (key,) = CONFIRM_LINK.findall(str(mail.outbox[-1].body))
    client.post(f"/accounts/confirm-email/{key}/")
    client.post("/accounts/email/", {"action_primary": "", "email": "ada@new.example.com"})
    client.post("/accounts/email/", {"action_remove": "", "email": ADA_EMAIL.lower()})
    ada.refresh_from_db()
    assert ada.email == "ada@new.example.com"
    changed = AuditEvent.objects.get(action="user.email_changed")
    assert changed.details["before"] == ADA_EMAIL.lower()
    assert changed.details["after"] == "ada@new.example.com"

    # Someone else now holds Ada's old address, even verified.
    mallory = User.objects.create_user(
        username="mallory", email=ADA_EMAIL.lower(), password=PASSWORD
    )
    EmailAddress.objects.create(user=mallory, email=ADA_EMAIL.lower(), verified=True, primary=True)
    sync(app)

    idc_ada.refresh_from_db()
    assert idc_ada.portal_user == ada
    observed.refresh_from_db()
    assert observed.status == GrantStatus.ACTIVE
    assert not Grant.objects.filter(user=mallory).exists()
    assert AuditEvent.objects.filter(action="identity_center.user_linked").count() == 1
    assert ada_in_engineering(org)


@pytest.mark.parametrize("chain_key", ["", "k" * 32], ids=["sha256", "hmac"])
def test_the_upgrade_undoes_links_an_unverified_address_made_and_the_next_sync_redoes_the_rest(
    org, app, settings, chain_key
):
    from importlib import import_module
    from types import SimpleNamespace

    from django.apps import apps
    from django.db import connection

    from audit.services import ChainProblem, verify_chain

    sync(app)
    other_email = next(e for e in org.users if e != ADA_EMAIL)
    # Links as versions before the link by UserId made them: by any address of the user.
    mallory = make_user("mallory@example.com")
    EmailAddress.objects.create(user=mallory, email=ADA_EMAIL.lower(), verified=False)
    grace = make_user(other_email.upper(), email_verified=True)  # verified, in another case
    idc_ada = IdentityCenterUser.objects.get(app=app, remote_id=org.users[ADA_EMAIL])
    idc_grace = IdentityCenterUser.objects.get(app=app, remote_id=org.users[other_email])
    IdentityCenterUser.objects.filter(pk=idc_ada.pk).update(portal_user=mallory)
    IdentityCenterUser.objects.filter(pk=idc_grace.pk).update(portal_user=grace)
    sync(app)  # Ada's access shows as Mallory's observed grants
    assert Grant.objects.filter(user=mallory, source=GrantSource.OBSERVED).exists()
    before = AuditEvent.objects.count()
    settings.AUDIT_CHAIN_KEY = [chain_key] if chain_key else []

    import_module(
        "aws_integration.migrations.0005_unlink_identity_center_users_without_a_verified_email"
    ).unlink_unverified(apps, SimpleNamespace(connection=connection))

    idc_ada.refresh_from_db()
    idc_grace.refresh_from_db()
    assert idc_ada.portal_user is None
    assert idc_grace.portal_user == grace
    (unlinked,) = AuditEvent.objects.filter(action="identity_center.user_unlinked")
    assert AuditEvent.objects.count() == before + 1
    assert (unlinked.target_type, unlinked.target_id) == ("access.user", str(mallory.pk))
    assert unlinked.details["identity_center_user_id"] == org.users[ADA_EMAIL]
    assert unlinked.details["portal_user"] == "mallory@example.com"
    assert (unlinked.key_id is not None) == bool(chain_key)
    assert not [p for p in verify_chain() if isinstance(p, ChainProblem)]

    # The next sync gives Mallory nothing back; it links the real Ada, verified.
    ada = make_user(ADA_EMAIL.lower(), email_verified=True)
    sync(app)
    idc_ada.refresh_from_db()
    assert idc_ada.portal_user == ada
    linked = AuditEvent.objects.get(action="identity_center.user_linked")
    assert linked.target_id == str(ada.pk)
    assert not Grant.objects.filter(user=mallory, status=GrantStatus.ACTIVE).exists()

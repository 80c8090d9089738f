"""allauth's admin pages (a superuser's only, as allauth sets them up), audited like every
other edit: an address marked verified, or a single sign-on identity given to an account,
decides who can sign in as whom and which Identity Center user is theirs."""

from __future__ import annotations

from allauth.account.admin import EmailAddressAdmin
from allauth.account.models import EmailAddress
from allauth.socialaccount.admin import SocialAccountAdmin, SocialAppAdmin, SocialTokenAdmin
from allauth.socialaccount.models import SocialAccount, SocialApp, SocialToken
from django.contrib import admin

from access.admin.base import AuditedAdminMixin


class AuditedEmailAddressAdmin(AuditedAdminMixin, EmailAddressAdmin):
    # allauth's bulk "mark verified" saves outside save_model, unaudited by the admin (its
    # signal's event would name the address's owner as the one who did it): an address is
    # marked verified on its own page.
    actions: list = []


class AuditedSocialAccountAdmin(AuditedAdminMixin, SocialAccountAdmin):
    pass


class AuditedSocialAppAdmin(AuditedAdminMixin, SocialAppAdmin):
    pass


class AuditedSocialTokenAdmin(AuditedAdminMixin, SocialTokenAdmin):
    pass


for model, model_admin in (
    (EmailAddress, AuditedEmailAddressAdmin),
    (SocialAccount, AuditedSocialAccountAdmin),
    (SocialApp, AuditedSocialAppAdmin),
    (SocialToken, AuditedSocialTokenAdmin),
):
    if admin.site.is_registered(model):
        admin.site.unregister(model)
    admin.site.register(model, model_admin)

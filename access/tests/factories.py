"""factory_boy factories for the access app's data: people, apps, resources and their
access levels and owners. Tests name only what matters to them; the rest is made up here
(each call a new, unique person or resource)."""

from __future__ import annotations

from typing import Any

import factory
from django.contrib.auth.models import Group

from access.choices import ResourceType
from access.models import AccessLevel, App, Owner, Resource, User
from tests.fixtures import PASSWORD


class UserFactory(factory.django.DjangoModelFactory):
    """A portal user with PASSWORD. ``roles``: names of role groups (access.permissions);
    ``email_verified``: their address is verified (allauth), as after opening the
    confirmation link or signing in through single sign-on."""

    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"person{n}@example.com")
    username = factory.LazyAttribute(lambda user: user.email.split("@")[0])
    password = factory.django.Password(PASSWORD)

    @factory.post_generation
    def roles(user: User, create: bool, names: tuple[str, ...] | None, **_: Any) -> None:
        for name in names or ():
            user.groups.add(Group.objects.get(name=name))

    @factory.post_generation
    def email_verified(user: User, create: bool, verified: bool | None, **_: Any) -> None:
        if verified:
            from allauth.account.models import EmailAddress

            EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)


class AppFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = App
        django_get_or_create = ("name",)

    name = "Example organization"


class ResourceFactory(factory.django.DjangoModelFactory):
    """An AWS account by default, with a unique twelve-digit id."""

    class Meta:
        model = Resource

    app = factory.SubFactory(AppFactory)
    type = ResourceType.ACCOUNT
    account_id = factory.Sequence(lambda n: f"{111111111111 + n:012d}")
    remote_id = factory.LazyAttribute(lambda resource: resource.account_id)
    name = factory.Sequence(lambda n: f"account-{n}")


class AccessLevelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AccessLevel

    resource = factory.SubFactory(ResourceFactory)
    remote_id = factory.Sequence(lambda n: f"level-{n}")
    name = factory.Sequence(lambda n: f"Level {n}")


class OwnerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Owner

    resource = factory.SubFactory(ResourceFactory)
    user = factory.SubFactory(UserFactory)

"""The access API: resources, the caller, their grants and their API tokens.

Views are thin: they scope querysets through the model querysets and
access.permissions, and change state only through access.tokens.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import APIView

from access import permissions, tokens
from access.api.filters import GrantFilter, ResourceFilter
from access.api.permissions import CanRevokeApiToken, CanUseApi, CanViewResource
from access.api.serializers import (
    ApiTokenCreatedSerializer,
    ApiTokenCreateSerializer,
    ApiTokenSerializer,
    GrantSerializer,
    MeSerializer,
    ResourceDetailSerializer,
    ResourceSerializer,
)
from access.models import AccessLevel, ApiToken, Grant, Owner, Resource, User


class Pagination(CursorPagination):
    """Cursor pagination: stable under inserts and as fast on page 1,000 as on page 1."""

    page_size_query_param = "page_size"
    max_page_size = 500


class ResourcePagination(Pagination):
    ordering = ("name", "id")


class GrantPagination(Pagination):
    ordering = ("-created_at", "-id")


class TokenPagination(Pagination):
    ordering = ("-created_at", "-id")


@extend_schema_view(
    list=extend_schema(
        summary="List resources",
        description="Live resources; admins and auditors may add deleted ones with include_deleted.",
    ),
    retrieve=extend_schema(
        summary="A resource, with its access levels and owners",
        description="Resources deleted in AWS are 404 for everyone but admins and auditors.",
    ),
)
class ResourceViewSet(viewsets.ReadOnlyModelViewSet):
    permission_classes = [CanViewResource]
    filterset_class = ResourceFilter
    pagination_class = ResourcePagination

    def get_queryset(self) -> QuerySet[Resource]:
        queryset = Resource.objects.visible_to(self.request.user).select_related("app")
        if self.action == "list":
            # Metadata can be large and the list does not show it.
            return queryset.defer("metadata")
        levels = AccessLevel.objects.order_by("name", "id")
        # Like deleted resources, deleted access levels are shown to admins and auditors only.
        if not (
            permissions.is_admin(self.request.user) or permissions.is_auditor(self.request.user)
        ):
            levels = levels.filter(deleted_at__isnull=True)
        return queryset.prefetch_related(
            Prefetch("access_levels", queryset=levels),
            Prefetch(
                "owners", queryset=Owner.objects.select_related("user", "group").order_by("id")
            ),
        )

    def filter_queryset(self, queryset: QuerySet[Resource]) -> QuerySet[Resource]:
        # The list filters (which hide deleted rows by default) do not apply to a
        # detail: a deleted resource stays reachable for those allowed to see it.
        if self.action != "list":
            return queryset
        return super().filter_queryset(queryset)

    def get_serializer_class(self) -> type:
        return ResourceDetailSerializer if self.action == "retrieve" else ResourceSerializer


@extend_schema_view(
    list=extend_schema(
        summary="List grants",
        description=(
            "The caller's grants, newest first. Admins and auditors may list anyone's with "
            "?user=<id>, managers their reports'; asking for someone else's otherwise is 403."
        ),
    ),
)
class GrantViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    permission_classes = [CanUseApi]
    serializer_class = GrantSerializer
    filterset_class = GrantFilter
    pagination_class = GrantPagination

    def get_queryset(self) -> QuerySet[Grant]:
        if getattr(self, "swagger_fake_view", False):  # schema generation, no real caller
            return Grant.objects.none()
        return Grant.objects.filter(user=self._subject()).select_related(
            "user", "resource", "access_level", "granted_by"
        )

    def _subject(self) -> User:
        """Whose grants are listed: the caller, or ?user= when the caller may see that."""
        caller = self.request.user
        raw = self.request.query_params.get("user", "").strip()
        if not raw:
            return caller
        try:
            pk = int(raw)
        except ValueError as exc:
            raise exceptions.ValidationError({"user": [f"{raw!r} is not a user id."]}) from exc
        if pk == caller.pk:
            return caller
        # An unknown id is judged like any other user's, so the answer does not
        # tell someone who may not look whether the user exists.
        other = User.objects.filter(pk=pk).first() or User(pk=pk)
        if not permissions.can_view_grants_of(caller, other):
            raise exceptions.PermissionDenied(
                "You can list only your own grants and your reports'; admins and auditors "
                "can list anyone's."
            )
        return other


class MeView(APIView):
    permission_classes = [CanUseApi]

    @extend_schema(summary="The caller", responses=MeSerializer)
    def get(self, request: Request) -> Response:
        return Response(MeSerializer(request.user).data)


@extend_schema_view(
    list=extend_schema(summary="List your API tokens", description="Secrets are never listed."),
    create=extend_schema(
        summary="Create an API token",
        description=(
            "The response holds the token's secret, once: it cannot be read again. "
            "A token created with an API token cannot outlive that token."
        ),
        request=ApiTokenCreateSerializer,
        responses={201: ApiTokenCreatedSerializer},
    ),
    revoke=extend_schema(
        summary="Revoke one of your API tokens",
        description="Takes effect at once; revoking a revoked token changes nothing.",
        request=None,
        responses=ApiTokenSerializer,
    ),
)
class ApiTokenViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    permission_classes = [CanRevokeApiToken]
    serializer_class = ApiTokenSerializer
    pagination_class = TokenPagination
    filter_backends: list = []

    def get_queryset(self) -> QuerySet[ApiToken]:
        if getattr(self, "swagger_fake_view", False):  # schema generation, no real caller
            return ApiToken.objects.none()
        # Someone else's token is simply not found (404), whoever asks.
        return ApiToken.objects.filter(user=self.request.user)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = ApiTokenCreateSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        try:
            token, raw = tokens.create_api_token(
                request.user,
                serializer.validated_data["name"],
                expires_at=serializer.validated_data["expires_at"],
            )
        except DjangoValidationError as exc:
            raise exceptions.ValidationError(as_serializer_error(exc)) from exc
        except DjangoPermissionDenied as exc:
            raise exceptions.PermissionDenied(str(exc)) from exc
        data = dict(ApiTokenSerializer(token).data)
        data["token"] = raw
        return Response(data, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})

    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str | None = None) -> Response:
        token = self.get_object()
        token = tokens.revoke_api_token(token, actor=request.user)
        return Response(ApiTokenSerializer(token).data)


class ApiSchemaView(SpectacularAPIView):
    """The OpenAPI schema, for signed-in users and token holders only (anonymous: 401)."""

    permission_classes = [CanUseApi]


class ApiDocsView(LoginRequiredMixin, SpectacularSwaggerView):
    """The interactive docs page; anonymous visitors are sent to the login page."""

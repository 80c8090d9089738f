"""The access API: the catalogue, access requests and their decisions, grants (revoke,
extend), the caller and their API tokens.

Views are thin: they scope querysets through the model querysets and
access.permissions, and change state only through the services (access.services.requests,
access.services.grants, access.tokens), which write the audit events.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Prefetch, Q, QuerySet
from django.db.models.functions import Lower
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import APIView

from access import permissions, tokens
from access.api.filters import (
    FALSE_WORDS,
    TRUE_WORDS,
    AccessRequestFilter,
    ApprovalQueueFilter,
    GrantFilter,
    ResourceFilter,
    awaiting_decision_by,
)
from access.api.permissions import (
    CanActOnGrant,
    CanRevokeApiToken,
    CanUseApi,
    CanViewResource,
)
from access.api.serializers import (
    AccessRequestSerializer,
    ApiTokenCreatedSerializer,
    ApiTokenCreateSerializer,
    ApiTokenSerializer,
    DecisionSerializer,
    ErrorSerializer,
    ExtendSerializer,
    GrantSerializer,
    MeSerializer,
    RequestCreateSerializer,
    RequestInvalidSerializer,
    RequestsCreatedSerializer,
    ResourceDetailSerializer,
    ResourceSerializer,
    RevokeSerializer,
)
from access.api.throttling import TokenCreateThrottle
from access.choices import RequestStatus
from access.models import (
    AccessLevel,
    AccessRequest,
    ApiToken,
    Approval,
    Grant,
    Owner,
    Resource,
    User,
)
from access.querysets import AccessRequestQuerySet
from access.services import grants as grant_service
from access.services import requests as request_service
from audit.api.pagination import CursorPagination


class Conflict(exceptions.APIException):
    """The action does not fit the object's state any more (already decided, ended...)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "This conflicts with the current state; reload and try again."
    default_code = "conflict"


def request_invalid(exc: request_service.RequestInvalid) -> exceptions.ValidationError:
    """The service's problems in the API's error shape: per item index under "items",
    problems of the whole submission under "non_field_errors"."""
    body: dict[str, Any] = {}
    for key, messages in exc.errors.items():
        if key == "":
            body.setdefault("non_field_errors", []).extend(messages)
        else:
            body.setdefault("items", {})[str(key)] = list(messages)
    return exceptions.ValidationError(body)


ERRORS = {
    403: OpenApiResponse(ErrorSerializer, description="The caller may not do this."),
    404: OpenApiResponse(ErrorSerializer, description="No such object the caller may see."),
}
CONFLICT = {
    409: OpenApiResponse(
        ErrorSerializer, description="Already decided, canceled or ended; the detail says which."
    )
}


class Pagination(CursorPagination):
    """Cursor pagination: stable under inserts and as fast on page 1,000 as on page 1."""


class ResourcePagination(Pagination):
    # By name in any case, as the catalogue (ResourceViewSet annotates sort_name), on the
    # catalogue's index.
    ordering = ("sort_name", "id")


class GrantPagination(Pagination):
    ordering = ("-created_at", "-id")


class TokenPagination(Pagination):
    ordering = ("-created_at", "-id")


class RequestPagination(Pagination):
    ordering = ("-created_at", "-id")


class ApprovalQueuePagination(Pagination):
    # Oldest first: they are the closest to expiring without a decision.
    ordering = ("created_at", "id")


@extend_schema_view(
    list=extend_schema(
        summary="List resources",
        description="Live resources; admins and auditors may add deleted ones with include_deleted.",
    ),
    retrieve=extend_schema(
        summary="A resource, with its access levels, owners and request rule",
        description=(
            "request_rule is the rule that would judge the caller's request: in plain words, "
            "with the durations to choose from (in seconds) and the default one. Resources "
            "deleted in AWS are 404 for everyone but admins and auditors."
        ),
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
            return queryset.defer("metadata").annotate(sort_name=Lower("name"))
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

    def filter_queryset[Row](self, queryset: QuerySet[Resource, Row]) -> QuerySet[Resource, Row]:
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
            "?user=<id>, managers their reports'; asking for someone else's otherwise is 403. "
            "Each grant says its status, whether it is applied in AWS (propagation_status, "
            "last_error), when it expires and the request it came from."
        ),
    ),
    retrieve=extend_schema(
        summary="A grant",
        description=(
            "Readable by its holder, the resource's owners, the holder's manager, admins and "
            "auditors; 404 for anyone else."
        ),
        responses={200: GrantSerializer, 404: ERRORS[404]},
    ),
    revoke=extend_schema(
        summary="Revoke a grant",
        description=(
            "Holders give up their own access (the reason may then be omitted: it is recorded "
            'as "Given up by the holder"); owners and admins revoke any grant of their '
            "resources, with a reason. The grant turns revoking at once and revoked once AWS "
            "no longer holds the access. 409 when it has already ended."
        ),
        request=RevokeSerializer,
        responses={200: GrantSerializer, **ERRORS, **CONFLICT},
    ),
    extend=extend_schema(
        summary="Ask to extend a grant",
        description=(
            "Makes an extension request, judged by the resource's extension rule: refused, "
            "approved at once, or sent to reviewers like a new request. 400 names each "
            "problem (too long, no reason, already pending, access ended)."
        ),
        request=ExtendSerializer,
        responses={
            201: AccessRequestSerializer,
            400: OpenApiResponse(RequestInvalidSerializer, description="Nothing was created."),
            **ERRORS,
        },
    ),
)
class GrantViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    permission_classes = [CanActOnGrant]
    serializer_class = GrantSerializer
    filterset_class = GrantFilter
    pagination_class = GrantPagination

    def get_queryset(self) -> QuerySet[Grant]:
        if getattr(self, "swagger_fake_view", False):  # schema generation, no real caller
            return Grant.objects.none()
        if self.action == "list":
            grants = Grant.objects.filter(user=self._subject())
        else:
            # One grant by id: found if the caller may see it; what they may do to it is
            # the object permission's question (403), so others' grants stay hidden (404).
            grants = Grant.objects.visible_to(self.request.user)
        return grants.select_related("user", "resource", "access_level", "granted_by")

    def filter_queryset[Row](self, queryset: QuerySet[Grant, Row]) -> QuerySet[Grant, Row]:
        if self.action != "list":
            return queryset
        return super().filter_queryset(queryset)

    def _subject(self) -> User:
        """Whose grants are listed: the caller, or ?user= when the caller may see that."""
        caller = permissions.signed_in(self.request.user)
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

    def _fresh(self, grant: Grant) -> Grant:
        return self.get_queryset().get(pk=grant.pk)

    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str | None = None) -> Response:
        grant = self.get_object()
        data = RevokeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            revoked = grant_service.revoke_grant(
                grant,
                actor=permissions.signed_in(request.user),
                reason=data.validated_data["reason"],
            )
        except grant_service.GrantError as exc:
            raise exceptions.ValidationError({"reason": [str(exc)]}) from exc
        except DjangoPermissionDenied as exc:
            raise exceptions.PermissionDenied(str(exc)) from exc
        if not revoked:
            raise Conflict("This access has already ended.")
        return Response(GrantSerializer(self._fresh(grant)).data)

    @action(detail=True, methods=["post"])
    def extend(self, request: Request, pk: str | None = None) -> Response:
        grant = self.get_object()
        data = ExtendSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            extension = request_service.request_extension(
                grant,
                requested_by=permissions.signed_in(request.user),
                duration=timedelta(seconds=data.validated_data["duration_seconds"]),
                reason=data.validated_data["reason"],
                ticket=data.validated_data["ticket"],
            )
        except request_service.RequestInvalid as exc:
            raise request_invalid(exc) from exc
        except DjangoPermissionDenied as exc:
            raise exceptions.PermissionDenied(str(exc)) from exc
        fresh = access_requests().get(pk=extension.pk)
        return Response(AccessRequestSerializer(fresh).data, status=status.HTTP_201_CREATED)


# Requests and approvals --------------------------------------------------------------------------
def access_requests() -> AccessRequestQuerySet:
    """Requests with what their serializer reads, in a fixed number of queries."""
    return AccessRequest.objects.select_related(
        "user", "requested_by", "resource", "access_level"
    ).prefetch_related(
        Prefetch(
            "approvals",
            queryset=Approval.objects.select_related("reviewer").order_by(
                "stage", "created_at", "id"
            ),
        ),
        Prefetch("granted", queryset=Grant.objects.only("id", "request_id").order_by("id")),
    )


@extend_schema_view(
    list=extend_schema(
        summary="List your access requests",
        description=(
            "Requests made by the caller or for them, newest first. Each names its current "
            "stage's reviewers and the decisions so far."
        ),
    ),
    retrieve=extend_schema(
        summary="An access request",
        description=(
            "Readable by the requester, the person it is for, its reviewers, the resource's "
            "owners, the person's manager, admins and auditors; 404 for anyone else."
        ),
        responses={200: AccessRequestSerializer, 404: ERRORS[404]},
    ),
    create=extend_schema(
        summary="Request access",
        description=(
            "One request per item, each judged by its resource's rule (see request_rule on "
            "the resource): all are made, or none. Problems come back per item index. "
            "Requests the rule approves automatically come back approved, with the grant ids "
            "under granted."
        ),
        request=RequestCreateSerializer,
        responses={
            201: RequestsCreatedSerializer,
            400: OpenApiResponse(RequestInvalidSerializer, description="Nothing was created."),
        },
    ),
    approve=extend_schema(
        summary="Approve a request",
        description=(
            "Records the caller's approval of the current stage; the request moves to the "
            "next stage, or is approved and the access granted. Admins outside the stage "
            "override. 403 for someone who is not a reviewer of the current stage; 409 when "
            "it is already decided, already decided by the caller, or the caller's own."
        ),
        request=DecisionSerializer,
        responses={200: AccessRequestSerializer, **ERRORS, **CONFLICT},
    ),
    deny=extend_schema(
        summary="Deny a request",
        description="Ends the request. Same rules as approving.",
        request=DecisionSerializer,
        responses={200: AccessRequestSerializer, **ERRORS, **CONFLICT},
    ),
    cancel=extend_schema(
        summary="Cancel a pending request",
        description=(
            "By the requester, the person it is for, or an admin. 409 when it is no longer pending."
        ),
        request=None,
        responses={200: AccessRequestSerializer, **ERRORS, **CONFLICT},
    ),
)
class AccessRequestViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    permission_classes = [CanUseApi]
    serializer_class = AccessRequestSerializer
    filterset_class = AccessRequestFilter
    pagination_class = RequestPagination

    def get_queryset(self) -> QuerySet[AccessRequest]:
        if getattr(self, "swagger_fake_view", False):  # schema generation, no real caller
            return AccessRequest.objects.none()
        requests = access_requests()
        if self.action == "list":
            me = self.request.user
            return requests.filter(Q(user=me) | Q(requested_by=me))
        return requests

    def filter_queryset[Row](
        self, queryset: QuerySet[AccessRequest, Row]
    ) -> QuerySet[AccessRequest, Row]:
        if self.action != "list":
            return queryset
        return super().filter_queryset(queryset)

    def get_object(self) -> AccessRequest:
        access_request = super().get_object()
        # Someone else's request is not found, rather than refused: its existence is
        # nobody else's business.
        if not permissions.can_view_request(self.request.user, access_request):
            raise Http404
        return access_request

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = RequestCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        subject = permissions.signed_in(request.user)
        user_id = data.validated_data.get("user")
        if user_id is not None and user_id != request.user.pk:
            # An unknown id is refused like anyone the caller may not ask for, with the
            # same message, so the answer does not tell whether the user exists.
            subject = User.objects.filter(pk=user_id).first() or request_service.unknown_user(
                user_id
            )
        items = [
            request_service.RequestItem(
                resource_id=item["resource"],
                access_level_id=item["access_level"],
                duration=(
                    None
                    if item["duration_seconds"] is None
                    else timedelta(seconds=item["duration_seconds"])
                ),
            )
            for item in data.validated_data["items"]
        ]
        try:
            made = request_service.submit_requests(
                requested_by=permissions.signed_in(request.user),
                items=items,
                reason=data.validated_data["reason"],
                ticket=data.validated_data["ticket"],
                user=subject,
            )
        except request_service.RequestInvalid as exc:
            raise request_invalid(exc) from exc
        fresh = access_requests().filter(pk__in=[r.pk for r in made]).order_by("id")
        return Response(
            RequestsCreatedSerializer({"requests": fresh}).data, status=status.HTTP_201_CREATED
        )

    def _decide(self, request: Request, *, approve: bool) -> Response:
        access_request = self.get_object()
        data = DecisionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            request_service.decide(
                access_request,
                reviewer=permissions.signed_in(request.user),
                approve=approve,
                comment=data.validated_data["comment"],
            )
        except request_service.CommentRequired as exc:
            raise exceptions.ValidationError({"comment": [str(exc)]}) from exc
        except request_service.DecisionError as exc:
            raise Conflict(str(exc)) from exc
        except DjangoPermissionDenied as exc:
            raise exceptions.PermissionDenied(str(exc)) from exc
        return Response(AccessRequestSerializer(access_requests().get(pk=access_request.pk)).data)

    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        return self._decide(request, approve=True)

    @action(detail=True, methods=["post"])
    def deny(self, request: Request, pk: str | None = None) -> Response:
        return self._decide(request, approve=False)

    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        access_request = self.get_object()
        try:
            request_service.cancel_request(
                access_request, actor=permissions.signed_in(request.user)
            )
        except request_service.DecisionError as exc:
            raise Conflict(str(exc)) from exc
        except DjangoPermissionDenied as exc:
            raise exceptions.PermissionDenied(str(exc)) from exc
        return Response(AccessRequestSerializer(access_requests().get(pk=access_request.pk)).data)


@extend_schema_view(
    list=extend_schema(
        summary="Requests awaiting your decision",
        description=(
            "Pending requests whose current stage the caller reviews and can still decide "
            "(not their own, unless the rule allows self-approval, nor those they already "
            "decided), oldest first. Admins may pass ?all=1 for every pending request."
        ),
        responses={200: AccessRequestSerializer(many=True), 403: ERRORS[403]},
    ),
)
class ApprovalQueueViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    permission_classes = [CanUseApi]
    serializer_class = AccessRequestSerializer
    filterset_class = ApprovalQueueFilter
    pagination_class = ApprovalQueuePagination

    def get_queryset(self) -> QuerySet[AccessRequest]:
        if getattr(self, "swagger_fake_view", False):  # schema generation, no real caller
            return AccessRequest.objects.none()
        caller = permissions.signed_in(self.request.user)
        if self._wants_all():
            if not permissions.is_admin(caller):
                raise exceptions.PermissionDenied(
                    "Only admins can list every pending request; leave out all= to list "
                    "those awaiting you."
                )
            return access_requests().filter(status=RequestStatus.PENDING)
        return awaiting_decision_by(access_requests(), caller)

    def _wants_all(self) -> bool:
        raw = self.request.query_params.get("all", "").strip().lower()
        if raw in ("", *FALSE_WORDS):
            return False
        if raw in TRUE_WORDS:
            return True
        # Anything else used to mean "no" without a word: a typo hid the other requests.
        raise exceptions.ValidationError({"all": [f"{raw!r} is not true or false."]})


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
            "A token created with an API token cannot outlive that token. Creating tokens "
            "has a stricter rate limit than the rest of the API (429 with Retry-After)."
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

    def get_throttles(self) -> list[Any]:
        throttles = super().get_throttles()
        if self.action == "create":
            throttles.append(TokenCreateThrottle())
        return throttles

    def get_queryset(self) -> QuerySet[ApiToken]:
        if getattr(self, "swagger_fake_view", False):  # schema generation, no real caller
            return ApiToken.objects.none()
        # Someone else's token is simply not found (404), whoever asks.
        return ApiToken.objects.filter(user=permissions.signed_in(self.request.user))

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = ApiTokenCreateSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        try:
            token, raw = tokens.create_api_token(
                permissions.signed_in(request.user),
                serializer.validated_data["name"],
                expires_at=serializer.validated_data["expires_at"],
                read_only=serializer.validated_data["read_only"],
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
        token = tokens.revoke_api_token(token, actor=permissions.signed_in(request.user))
        return Response(ApiTokenSerializer(token).data)


class ApiSchemaView(SpectacularAPIView):
    """The OpenAPI schema, for signed-in users and token holders only (anonymous: 401)."""

    permission_classes = [CanUseApi]


class ApiDocsView(LoginRequiredMixin, SpectacularSwaggerSplitView):
    """The interactive docs page; anonymous visitors are sent to the login page.

    The split view serves Swagger UI's start-up script from this same URL (?script=)
    instead of inline, and the template takes its CSS from a file, so the page needs no
    exception to the Content-Security-Policy."""

    template_name = "access/api_docs.html"

"""The audit log API: read-only, for the same people as the audit page."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import permissions, viewsets
from rest_framework.request import Request

from audit.api.pagination import CursorPagination
from audit.api.serializers import AuditEventSerializer
from audit.filters import AuditEventFilter
from audit.models import AuditEvent
from audit.views import can_read_audit_log


class CanReadAuditLog(permissions.BasePermission):
    """Auditors and admins, by settings.AUDIT_READ_RULE; anonymous callers get 401."""

    message = "The audit log is open to auditors and admins only."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and can_read_audit_log(user))


class AuditEventPagination(CursorPagination):
    """Newest first by id: as fast deep in the log as at its head, stable while events arrive."""

    ordering = "-id"
    page_size = 100


@extend_schema_view(
    list=extend_schema(
        summary="List audit events",
        description=(
            "Newest first, cursor-paginated. Filters: actor (part of the name), actor_type, "
            "action (exact), target_type and target_id (exact), target (part of the label), "
            "date_from and date_to (YYYY-MM-DD, both included, in the server's time zone)."
        ),
    ),
    retrieve=extend_schema(summary="One audit event"),
)
class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    permission_classes = [CanReadAuditLog]
    filterset_class = AuditEventFilter
    pagination_class = AuditEventPagination

    def filter_queryset[Row](
        self, queryset: QuerySet[AuditEvent, Row]
    ) -> QuerySet[AuditEvent, Row]:
        # Filters narrow the list; a detail is reachable by id whatever the query string says.
        if self.action != "list":
            return queryset
        return super().filter_queryset(queryset)

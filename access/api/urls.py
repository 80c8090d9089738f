from django.urls import path
from rest_framework.routers import SimpleRouter

from access.api import views

# SimpleRouter, not DefaultRouter: the audit API shares the /api/v1/ prefix, and two
# generated root views would shadow each other.
router = SimpleRouter()
router.register("resources", views.ResourceViewSet, basename="resource")
router.register("grants", views.GrantViewSet, basename="grant")
router.register("requests", views.AccessRequestViewSet, basename="access-request")
router.register("approvals", views.ApprovalQueueViewSet, basename="approval")
router.register("tokens", views.ApiTokenViewSet, basename="api-token")

app_name = "access-api"
urlpatterns = [
    path("me/", views.MeView.as_view(), name="me"),
    *router.urls,
]

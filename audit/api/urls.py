from rest_framework.routers import SimpleRouter

from audit.api import views

# SimpleRouter: access.api.urls shares the /api/v1/ prefix, so no generated root view here.
router = SimpleRouter()
router.register("audit-events", views.AuditEventViewSet, basename="audit-event")

app_name = "audit-api"
urlpatterns = router.urls

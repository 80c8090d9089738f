from django.contrib import admin
from django.urls import include, path

from access import views as access_views
from access.api.views import ApiDocsView, ApiSchemaView

urlpatterns = [
    path("", access_views.home, name="home"),
    path("healthz", access_views.healthz, name="healthz"),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
    path("audit/", include("audit.urls")),
    path("", include("access.urls")),
    path("api/v1/", include("access.api.urls")),
    path("api/v1/", include("audit.api.urls")),
    path("api/schema/", ApiSchemaView.as_view(), name="api-schema"),
    path("api/docs/", ApiDocsView.as_view(url_name="api-schema"), name="api-docs"),
]

# Paths under /api/ that match no endpoint get a JSON 404, like the API's own.
handler404 = "access.views.not_found"

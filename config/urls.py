from django.contrib import admin
from django.urls import include, path, re_path

from access import views as access_views
from access.api.views import ApiDocsView, ApiSchemaView
from access.views import account

urlpatterns = [
    path("", access_views.home, name="home"),
    path("healthz", access_views.healthz, name="healthz"),
    # allauth's account pages that change a password or an address, atomic with their
    # audit event (access/views/account.py); allauth's URLs serve the rest.
    path("accounts/email/", account.email, name="account_email"),
    re_path(
        r"^accounts/confirm-email/(?P<key>[-:\w]+)/$",
        account.confirm_email,
        name="account_confirm_email",
    ),
    path("accounts/password/change/", account.password_change, name="account_change_password"),
    path("accounts/password/set/", account.password_set, name="account_set_password"),
    re_path(
        r"^accounts/password/reset/key/(?P<uidb36>[0-9A-Za-z]+)-(?P<key>.+)/$",
        account.password_reset_from_key,
        name="account_reset_password_from_key",
    ),
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
# The refusal page says why, when the portal itself gave the reason (config/errors.py).
handler403 = "config.errors.permission_denied"

from django.urls import path

from access import views
from access.views import catalogue, grants, requests, rules

urlpatterns = [
    path("settings/tokens/", views.token_list, name="api-token-list"),
    path("settings/tokens/new/", views.token_create, name="api-token-create"),
    path("settings/tokens/<int:pk>/revoke/", views.token_revoke, name="api-token-revoke"),
    # Catalogue and request rules
    path("catalogue/", catalogue.catalogue, name="catalogue"),
    path("catalogue/<int:pk>/", catalogue.resource_detail, name="resource-detail"),
    path("catalogue/<int:pk>/rules/", rules.rule_list, name="resource-rules"),
    path("catalogue/<int:pk>/rules/new/", rules.rule_edit, name="resource-rule-new"),
    path("catalogue/<int:pk>/rules/<int:rule_pk>/", rules.rule_edit, name="resource-rule-edit"),
    path(
        "catalogue/<int:pk>/rules/<int:rule_pk>/delete/",
        rules.rule_delete,
        name="resource-rule-delete",
    ),
    # Requests and approvals
    path("requests/", requests.my_requests, name="my-requests"),
    path("requests/new/", requests.request_new, name="request-new"),
    path("requests/<int:pk>/", requests.request_detail, name="request-detail"),
    path("requests/<int:pk>/decide/", requests.request_decide, name="request-decide"),
    path("requests/<int:pk>/cancel/", requests.request_cancel, name="request-cancel"),
    path("approvals/", requests.approvals, name="approvals"),
    # Grants
    path("access/", grants.my_access, name="my-access"),
    path("access/<int:pk>/revoke/", grants.grant_revoke, name="grant-revoke"),
    path("access/<int:pk>/extend/", grants.grant_extend, name="grant-extend"),
]

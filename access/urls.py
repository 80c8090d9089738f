from django.urls import path

from access import views

urlpatterns = [
    path("settings/tokens/", views.token_list, name="api-token-list"),
    path("settings/tokens/new/", views.token_create, name="api-token-create"),
    path("settings/tokens/<int:pk>/revoke/", views.token_revoke, name="api-token-revoke"),
]

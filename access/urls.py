from django.urls import path

from access import views

urlpatterns = [
    path("settings/tokens/", views.home, name="api-token-list"),
]

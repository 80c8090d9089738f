"""The portal's URLs plus a page that fails, for the 500 page's tests."""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from config.urls import handler403, handler404
from config.urls import urlpatterns as portal_urlpatterns


def fails(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("an internal detail the page must not show")


urlpatterns = [path("fails/", fails), *portal_urlpatterns]

__all__ = ["handler403", "handler404", "urlpatterns"]

"""allauth's account mail is sent during the request: a silent mail server holds the page for
EMAIL_TIMEOUT at most, and the page still answers."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import pytest
from django.core.cache import cache
from django.core.mail import get_connection

pytestmark = pytest.mark.django_db


@pytest.fixture
def silent_mail_server() -> Iterator[int]:
    """A port that accepts connections (the kernel completes them) but never says a word."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


@pytest.fixture(autouse=True)
def _no_rate_limits_left_over() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def test_mail_to_the_smtp_server_is_bounded_by_default(settings):
    assert settings.EMAIL_TIMEOUT == 10
    backend = get_connection("django.core.mail.backends.smtp.EmailBackend")
    assert backend.timeout == 10


def test_a_silent_mail_server_delays_a_password_reset_by_the_timeout_only(
    personas, client, settings, silent_mail_server, caplog
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = silent_mail_server
    settings.EMAIL_TIMEOUT = 1

    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="access.adapters"):
        response = client.post("/accounts/password/reset/", {"email": personas.requester.email})
    took = time.monotonic() - started

    assert response.status_code == 302  # the usual "check your mail" page, no error
    assert took < 5
    assert "Could not send the password_reset_key mail to rob.requester@example.com" in (
        caplog.text
    )

"""The issuer check fetches only what it should: https, public addresses, no redirects, a
capped size, and the address it checked (no DNS rebinding). Each refusal is a form error
on the AWS settings page that says what was wrong, and nothing is saved.

Tests run with OIDC_DISCOVERY_ALLOW_LOCAL on (DEBUG=true), which lets the check reach the
local servers; the refusals of http and of local addresses turn it off, as production has it.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.test import override_settings

from audit.models import AuditEvent
from aws_integration import outbound, services
from aws_integration.models import AwsSettings
from aws_integration.tests.test_admin_settings import admin_client, aws_settings, form, settings_url
from aws_integration.tests.test_setup_services import FakeIssuer, _Handler, issuer

__all__ = ["admin_client", "aws_settings", "issuer"]  # fixtures used below

pytestmark = pytest.mark.django_db

production = override_settings(OIDC_DISCOVERY_ALLOW_LOCAL=False)
KEYS = {"keys": [{"kty": "RSA", "kid": "1", "n": "x", "e": "AQAB"}]}


def issuer_error(admin_client, aws_settings, url: str) -> str:
    """Saves ``url`` as the issuer; returns the one error the form shows for it."""
    before = AuditEvent.objects.count()
    response = admin_client.post(settings_url(aws_settings), form(url))
    assert response.status_code == 200, "the form was accepted"
    (message,) = response.context["adminform"].form.errors["oidc_issuer_url"]
    assert AwsSettings.objects.get().oidc_issuer_url == ""
    assert AuditEvent.objects.count() == before
    return message


def serve_valid(issuer: FakeIssuer, base: str | None = None) -> None:
    base = base or issuer.url
    issuer.serve("/.well-known/openid-configuration", issuer.discovery(issuer=base))
    issuer.serve("/jwks", KEYS)


# https only ------------------------------------------------------------------------------------
@production
def test_an_http_issuer_is_refused_outside_debug(admin_client, aws_settings, issuer):
    # The same issuer passes with DEBUG (below); before, http passed on local hosts always.
    serve_valid(issuer)
    assert issuer_error(admin_client, aws_settings, issuer.url) == (
        f"AWS accepts only https issuers; “{issuer.url}” uses http."
    )


def test_an_http_issuer_on_this_machine_passes_with_debug(admin_client, aws_settings, issuer):
    serve_valid(issuer)
    response = admin_client.post(settings_url(aws_settings), form(issuer.url))
    assert response.status_code == 302
    assert AwsSettings.objects.get().oidc_issuer_url == issuer.url


def test_a_jwks_uri_that_is_not_http_is_refused(admin_client, aws_settings, issuer):
    issuer.serve(
        "/.well-known/openid-configuration", issuer.discovery(jwks_uri="file:///etc/passwd")
    )
    assert issuer_error(admin_client, aws_settings, issuer.url) == (
        "The signing keys (jwks_uri) URL “file:///etc/passwd” is not an http(s) URL."
    )


@production
def test_an_http_jwks_uri_is_refused_outside_debug():
    with pytest.raises(outbound.FetchRefused) as refused:
        outbound.fetch_json("http://keys.example.com/jwks", "The signing keys (jwks_uri)")
    assert str(refused.value) == (
        "The signing keys (jwks_uri) URL “http://keys.example.com/jwks” must use https, not http."
    )


# Public addresses only -------------------------------------------------------------------------
@production
@pytest.mark.parametrize(
    "url, address, reason",
    [
        ("https://127.0.0.2", "127.0.0.2", "a loopback address"),
        ("https://[::1]", "::1", "a loopback address"),
        ("https://[::ffff:127.0.0.1]", "::ffff:127.0.0.1", "a loopback address"),
        ("https://169.254.169.254", "169.254.169.254", "a link-local address"),
        ("https://[fe80::1]", "fe80::1", "a link-local address"),
        ("https://10.1.2.3", "10.1.2.3", "a private address"),
        ("https://172.16.0.1", "172.16.0.1", "a private address"),
        ("https://192.168.1.1", "192.168.1.1", "a private address"),
        ("https://[fd00::1]", "fd00::1", "a private address"),
        ("https://100.64.0.1", "100.64.0.1", "not a public address"),
        ("https://0.0.0.0", "0.0.0.0", "a private address"),
    ],
)
def test_an_issuer_on_a_local_or_private_address_is_refused(
    admin_client, aws_settings, url, address, reason
):
    assert issuer_error(admin_client, aws_settings, url) == (
        f"The discovery document: {address} resolves to {address}, {reason}. AWS fetches the "
        "issuer over the internet, so Portcullis fetches only public addresses."
    )


@production
@pytest.mark.parametrize(
    "address, reason",
    [
        # NAT64 (DNS64 in an IPv6-only subnet turns these into the IPv4 address).
        ("64:ff9b::a9fe:a9fe", "an IPv6 form of 169.254.169.254, a link-local address"),
        ("64:ff9b::a00:7", "an IPv6 form of 10.0.0.7, a private address"),
        ("64:ff9b:1::a00:7", "a local-use NAT64 address, not a public address"),
        # 6to4, IPv4-compatible and IPv4-translated forms.
        ("2002:a9fe:a9fe::1", "an IPv6 form of 169.254.169.254, a link-local address"),
        ("::127.0.0.1", "an IPv6 form of 127.0.0.1, a loopback address"),
        ("::ffff:0:a00:7", "an IPv6 form of 10.0.0.7, a private address"),
        ("fec0::1", "a site-local address"),
    ],
)
def test_an_ipv6_form_of_a_private_ipv4_address_is_refused(address, reason):
    # Before, each passed as public: the check looked only at IPv4-mapped forms.
    with pytest.raises(outbound.FetchRefused) as refused:
        outbound.fetch_json(f"https://[{address}]/jwks", "The signing keys (jwks_uri)")
    assert str(refused.value) == (
        f"The signing keys (jwks_uri): {address} resolves to {address}, {reason}. AWS "
        "fetches the issuer over the internet, so Portcullis fetches only public addresses."
    )


@production
def test_an_ipv6_form_of_a_public_ipv4_address_is_judged_as_public():
    for address in ("64:ff9b::5db8:d70e", "2002:5db8:d70e::1"):
        assert outbound.refusal_reason(ipaddress.ip_address(address)) == ""


@production
def test_an_issuer_whose_name_resolves_to_this_machine_is_refused(admin_client, aws_settings):
    message = issuer_error(admin_client, aws_settings, "https://localhost:8443")
    assert message.startswith("The discovery document: localhost resolves to ")
    assert "a loopback address. AWS fetches the issuer over the internet" in message


@production
def test_a_name_with_one_private_address_among_public_ones_is_refused(
    admin_client, aws_settings, monkeypatch
):
    real = socket.getaddrinfo

    def two_answers(host, port, *args, **kwargs):
        if host != "login.example.com":
            return real(host, port, *args, **kwargs)
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", two_answers)
    assert issuer_error(admin_client, aws_settings, "https://login.example.com") == (
        "The discovery document: login.example.com resolves to 10.0.0.7, a private address. "
        "AWS fetches the issuer over the internet, so Portcullis fetches only public addresses."
    )


@production
def test_a_jwks_uri_on_a_link_local_address_is_refused():
    # The same fetch serves the jwks_uri, which the discovery document may point anywhere.
    with pytest.raises(outbound.FetchRefused) as refused:
        outbound.fetch_json(
            "https://169.254.169.254/latest/meta-data/", "The signing keys (jwks_uri)"
        )
    assert str(refused.value).startswith(
        "The signing keys (jwks_uri): 169.254.169.254 resolves to 169.254.169.254, a "
        "link-local address."
    )


def test_the_fetch_connects_to_the_address_it_checked(issuer, monkeypatch):
    # A name that answers 127.0.0.1 to the check and somewhere else afterwards (DNS
    # rebinding) is still fetched from 127.0.0.1: the name is resolved once.
    real = socket.getaddrinfo
    answers = iter(["127.0.0.1"])
    port = int(issuer.url.rsplit(":", 1)[1])

    def rebinding(host, port_, *args, **kwargs):
        if host != "rebind.example.com":
            return real(host, port_, *args, **kwargs)
        address = next(answers, "192.0.2.1")  # TEST-NET-1: nothing answers there
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port_))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    issuer.serve("/jwks", KEYS)

    assert outbound.fetch_json(f"http://rebind.example.com:{port}/jwks", "The keys") == KEYS


# No redirects ----------------------------------------------------------------------------------
def test_a_redirected_discovery_document_is_refused(admin_client, aws_settings, issuer):
    # Before, the redirect was followed and the document it led to accepted.
    serve_valid(issuer)
    issuer.serve(
        "/moved/.well-known/openid-configuration",
        "",
        status=302,
        content_type="text/plain",
        headers={"Location": f"{issuer.url}/.well-known/openid-configuration"},
    )
    url = f"{issuer.url}/moved/.well-known/openid-configuration"
    assert issuer_error(admin_client, aws_settings, f"{issuer.url}/moved") == (
        f"The discovery document at {url} answered HTTP 302, a redirect to "
        f"{issuer.url}/.well-known/openid-configuration. Portcullis follows no redirects: "
        "if that is the right place, enter the URL it leads to."
    )


def test_redirected_signing_keys_are_refused(admin_client, aws_settings, issuer):
    issuer.serve(
        "/.well-known/openid-configuration", issuer.discovery(jwks_uri=f"{issuer.url}/old-jwks")
    )
    issuer.serve("/jwks", KEYS)
    issuer.serve(
        "/old-jwks",
        "",
        status=301,
        content_type="text/plain",
        headers={"Location": "http://169.254.169.254/latest/meta-data/"},
    )
    assert issuer_error(admin_client, aws_settings, issuer.url).startswith(
        f"The signing keys (jwks_uri) at {issuer.url}/old-jwks answered HTTP 301, a redirect "
        "to http://169.254.169.254/latest/meta-data/."
    )


# A capped size ---------------------------------------------------------------------------------
@pytest.mark.parametrize("length", [True, False], ids=["content-length", "until-close"])
def test_a_discovery_document_larger_than_the_cap_is_refused(
    admin_client, aws_settings, issuer, length
):
    # Valid, but padded past the cap: before, any size was read into memory.
    document = issuer.discovery(padding="x" * outbound.MAX_BODY_BYTES)
    issuer.serve("/.well-known/openid-configuration", document, length=length)
    issuer.serve("/jwks", KEYS)
    assert issuer_error(admin_client, aws_settings, issuer.url) == (
        f"The discovery document at {issuer.url}/.well-known/openid-configuration is larger "
        "than 512 KiB: it cannot be one."
    )


def test_signing_keys_larger_than_the_cap_are_refused(admin_client, aws_settings, issuer):
    issuer.serve("/.well-known/openid-configuration", issuer.discovery())
    issuer.serve("/jwks", {**KEYS, "padding": "x" * outbound.MAX_BODY_BYTES}, length=False)
    assert issuer_error(admin_client, aws_settings, issuer.url) == (
        f"The signing keys (jwks_uri) at {issuer.url}/jwks is larger than 512 KiB: it "
        "cannot be one."
    )


# A bounded time ---------------------------------------------------------------------------------
DRIP_SECONDS = 6  # how long the slow server keeps sending before it hangs up


def drip_server(where: str, wrap: ssl.SSLContext | None = None) -> int:
    """A server that sends one byte every 0.1 s, in the headers or the body, for
    DRIP_SECONDS, then closes: each read gets a byte long before its timeout."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        raw, _ = listener.accept()
        conn = wrap.wrap_socket(raw, server_side=True) if wrap else raw
        try:
            conn.recv(65536)
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            if where == "headers":
                conn.sendall(head + b"X-Slow: ")
            else:
                conn.sendall(head + b"Content-Length: 4096\r\n\r\n")
            stop = time.monotonic() + DRIP_SECONDS
            while time.monotonic() < stop:
                conn.sendall(b" ")
                time.sleep(0.1)
        except OSError:
            pass  # the client hung up, as it should
        finally:
            conn.close()
            listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1]


@pytest.mark.parametrize("where", ["headers", "body"])
def test_an_answer_that_drips_in_is_cut_off_after_the_total_time(monkeypatch, where):
    # Before, the total time was checked only between chunks of 16 KiB (and not at all
    # while the headers came): the fetch waited for the server to hang up.
    monkeypatch.setattr(outbound, "TOTAL_SECONDS", 1)
    url = f"http://127.0.0.1:{drip_server(where)}/jwks"
    with pytest.raises(outbound.FetchRefused) as refused:
        outbound.fetch_json(url, "The signing keys (jwks_uri)")
    assert (
        str(refused.value)
        == f"The signing keys (jwks_uri) at {url} took longer than 1 s to arrive."
    )


# https with the certificate checked for the name -----------------------------------------------
def _certificate_authority(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for localhost that it signed: (ca.pem, cert.pem, key.pem)."""
    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("Portcullis test CA"))
        .issuer_name(name("Portcullis test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = tmp / "ca.pem", tmp / "cert.pem", tmp / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.fixture
def tls_issuer(tmp_path, monkeypatch) -> Iterator[FakeIssuer]:
    """The fake issuer over https, at https://localhost:<port>, with a CA the fetch trusts
    through REQUESTS_CA_BUNDLE (as requests does)."""
    ca, cert, key = _certificate_authority(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield FakeIssuer(f"https://localhost:{server.server_address[1]}")
    server.shutdown()
    server.server_close()


def test_an_https_issuer_is_checked_against_its_certificate_for_the_name(tls_issuer):
    # The connection goes to the address checked, yet the certificate is verified for
    # the name typed (localhost), not for 127.0.0.1.
    serve_valid(tls_issuer)
    ok, message = services.check_oidc_discovery(tls_issuer.url)
    assert ok, message


def test_an_https_issuer_whose_certificate_names_another_host_is_refused(tls_issuer):
    port = tls_issuer.url.rsplit(":", 1)[1]
    url = f"https://127.0.0.1:{port}"
    tls_issuer.serve("/.well-known/openid-configuration", tls_issuer.discovery(issuer=url))
    ok, message = services.check_oidc_discovery(url)
    assert not ok
    assert message.startswith(
        f"Cannot fetch {url}/.well-known/openid-configuration: its TLS certificate is refused"
    )


@production
def test_an_https_issuer_on_this_machine_is_refused_outside_debug(tls_issuer):
    # Before, this fetched the document from the loopback address and accepted it.
    serve_valid(tls_issuer)
    ok, message = services.check_oidc_discovery(tls_issuer.url)
    assert not ok
    assert message.startswith(
        "The discovery document: localhost resolves to 127.0.0.1, a loopback address."
    )


def test_an_https_answer_that_drips_in_is_cut_off_after_the_total_time(tmp_path, monkeypatch):
    # The same under TLS: the deadline shuts the socket under the TLS layer.
    ca, cert, key = _certificate_authority(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    monkeypatch.setattr(outbound, "TOTAL_SECONDS", 1)
    url = f"https://localhost:{drip_server('body', wrap=context)}/jwks"
    with pytest.raises(outbound.FetchRefused) as refused:
        outbound.fetch_json(url, "The signing keys (jwks_uri)")
    assert str(refused.value) == (
        f"The signing keys (jwks_uri) at {url} took longer than 1 s to arrive."
    )

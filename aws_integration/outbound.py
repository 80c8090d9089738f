"""Fetching a document from a URL an admin typed (the OIDC issuer's discovery document and
the signing keys it names), without letting the URL reach inside our network.

The rules: https only; no redirects; at most ``MAX_BODY_BYTES`` read, within
``TOTAL_SECONDS`` (the connection is shut then); and every address the host resolves to
must be public (not loopback, link-local, private, shared or reserved). The connection then goes to the address that
was checked, with the certificate verified for the host name, so a DNS answer that
changes between the check and the fetch (rebinding) cannot send it elsewhere. Outbound
proxies (HTTPS_PROXY) are not used: a proxy would resolve the name itself, after the check.

``settings.OIDC_DISCOVERY_ALLOW_LOCAL`` (on with DEBUG) lifts the https and address rules,
for a test identity provider on this machine; redirects and the size cap stay.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import urllib3
from django.conf import settings
from requests.certs import where as requests_ca_bundle  # type: ignore[attr-defined]  # certifi's

TIMEOUT_SECONDS: float = 10  # for connecting, and for each read
TOTAL_SECONDS: float = 20  # for the whole answer, however slowly it drips in
MAX_BODY_BYTES = 512 * 1024  # discovery documents and key sets are a few KiB
CHUNK_BYTES = 16 * 1024


class FetchRefused(Exception):
    """The URL or its answer breaks a rule; the message says which, for the admin."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str  # with the query, as sent


def allow_local() -> bool:
    return settings.OIDC_DISCOVERY_ALLOW_LOCAL


def parse(url: str, what: str) -> Target:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise FetchRefused(f"{what} URL “{url}” is not a valid URL: {exc}.") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchRefused(f"{what} URL “{url}” is not an http(s) URL.")
    if parts.scheme != "https" and not allow_local():
        raise FetchRefused(f"{what} URL “{url}” must use https, not {parts.scheme}.")
    if parts.username or parts.password:
        raise FetchRefused(f"{what} URL “{url}” must not hold a user name or password.")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    default_port = 443 if parts.scheme == "https" else 80
    return Target(parts.scheme, parts.hostname, port or default_port, path)


# IPv6 prefixes whose last 32 bits are an IPv4 address that a translator (NAT64, as in
# AWS's IPv6-only subnets with DNS64, or SIIT) or the kernel may connect to: the address
# is judged by that IPv4 address. The local-use NAT64 prefix is refused outright.
_EMBEDDING_IPV4 = tuple(
    ipaddress.IPv6Network(prefix)
    for prefix in ("64:ff9b::/96", "::/96", "::ffff:0:0:0/96")  # NAT64, compatible, SIIT
)
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (NAT64, 6to4, IPv4-compatible), if any."""
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in prefix for prefix in _EMBEDDING_IPV4):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal_reason(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """Why an address may not be fetched, or "" when it is a public one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    reason = _own_refusal_reason(address)
    if reason or isinstance(address, ipaddress.IPv4Address):
        return reason
    if address in _LOCAL_NAT64:
        return "a local-use NAT64 address, not a public address"
    if address.is_site_local:
        return "a site-local address"
    inner = embedded_ipv4(address)
    if inner is not None:
        inner_reason = _own_refusal_reason(inner)
        if inner_reason:
            return f"an IPv6 form of {inner}, {inner_reason}"
    return ""


def _own_refusal_reason(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_private:
        return "a private address"
    if not address.is_global or address.is_multicast:
        return "not a public address"
    return ""


def resolve(target: Target, what: str) -> list[str]:
    """The addresses to connect to, once every address of the host passed the rules."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchRefused(
            f"{what}: the host name {target.host} does not resolve ({exc.strerror})."
        ) from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise FetchRefused(f"{what}: the host name {target.host} has no address.")
    if not allow_local():
        for raw in addresses:
            reason = refusal_reason(ipaddress.ip_address(raw.split("%", 1)[0]))
            if reason:
                raise FetchRefused(
                    f"{what}: {target.host} resolves to {raw}, {reason}. AWS fetches the "
                    "issuer over the internet, so Portcullis fetches only public addresses."
                )
    return addresses


def fetch_json(url: str, what: str) -> Any:
    """The JSON document at ``url``. Raises FetchRefused naming what was wrong."""
    target = parse(url, what)
    addresses = resolve(target, what)
    try:
        # Like a browser, the next checked address when one refuses the connection.
        for address in addresses[:-1]:
            try:
                body, content_type = fetch_from(address, target, url, what)
                break
            except urllib3.exceptions.NewConnectionError:
                continue
        else:
            body, content_type = fetch_from(addresses[-1], target, url, what)
    # NewConnectionError is a ConnectTimeoutError in urllib3, hence first.
    except urllib3.exceptions.NewConnectionError as exc:
        raise FetchRefused(f"Cannot connect to {url}: {connection_reason(exc)}.") from exc
    except (urllib3.exceptions.ConnectTimeoutError, urllib3.exceptions.ReadTimeoutError) as exc:
        raise FetchRefused(f"{what} at {url} did not answer within {TIMEOUT_SECONDS} s.") from exc
    except urllib3.exceptions.SSLError as exc:
        raise FetchRefused(f"Cannot fetch {url}: its TLS certificate is refused ({exc}).") from exc
    except urllib3.exceptions.HTTPError as exc:
        raise FetchRefused(f"Cannot fetch {url}: {exc}.") from exc
    try:
        return json.loads(body)
    except ValueError as exc:
        raise FetchRefused(f"{what} at {url} is not JSON ({content_type}).") from exc


class Deadline:
    """Shuts the connections of one fetch once ``TOTAL_SECONDS`` have passed. The timeout
    of each read does not bound a server that sends a byte every few seconds (in the
    headers, the body or a chunk size): every read then gets its byte in time."""

    def __init__(self, pool: urllib3.HTTPConnectionPool) -> None:
        self.expired = threading.Event()
        self.connections: list[Any] = []
        opened = self.connections

        class Watched(pool.ConnectionCls):  # type: ignore[name-defined]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                opened.append(self)

        pool.ConnectionCls = Watched
        self.timer = threading.Timer(TOTAL_SECONDS, self.expire)
        self.timer.daemon = True

    def expire(self) -> None:
        self.expired.set()
        for connection in self.connections:
            sock = connection.sock
            if sock is not None:
                # The plain socket's shutdown, also under TLS: the reading thread then
                # sees the end of the stream.
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def __enter__(self) -> Deadline:
        self.timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.timer.cancel()


def fetch_from(address: str, target: Target, url: str, what: str) -> tuple[bytes, str]:
    """The body and content type of one GET of ``target`` at ``address``."""
    timeout = urllib3.Timeout(connect=TIMEOUT_SECONDS, read=TIMEOUT_SECONDS)
    pool: urllib3.HTTPConnectionPool
    if target.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            address,
            target.port,
            timeout=timeout,
            retries=False,
            cert_reqs="CERT_REQUIRED",
            ca_certs=ca_bundle(),
            # The certificate is checked for the name typed, not for the address used.
            server_hostname=target.host,
            assert_hostname=target.host,
        )
    else:
        pool = urllib3.HTTPConnectionPool(address, target.port, timeout=timeout, retries=False)
    host_header = target.host if ":" not in target.host else f"[{target.host}]"
    if target.port != (443 if target.scheme == "https" else 80):
        host_header = f"{host_header}:{target.port}"
    too_slow = f"{what} at {url} took longer than {TOTAL_SECONDS} s to arrive."
    with pool, Deadline(pool) as deadline:
        try:
            response = pool.urlopen(
                "GET",
                target.path,
                headers={"Host": host_header, "Accept": "application/json"},
                redirect=False,
                preload_content=False,
            )
            try:
                status = response.status
                if 300 <= status < 400:
                    location = response.headers.get("Location", "nowhere")
                    raise FetchRefused(
                        f"{what} at {url} answered HTTP {status}, a redirect to {location}. "
                        "Portcullis follows no redirects: if that is the right place, enter "
                        "the URL it leads to."
                    )
                if status != 200:
                    raise FetchRefused(
                        f"{what} at {url} answered HTTP {status}, not 200: is the issuer URL right?"
                    )
                body = read_capped(response, url, what)
            finally:
                response.release_conn()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if deadline.expired.is_set():
                raise FetchRefused(too_slow) from exc
            raise
        if deadline.expired.is_set():  # cut short: what arrived is not the whole body
            raise FetchRefused(too_slow)
        return body, response.headers.get("Content-Type", "no content type")


def read_capped(response: urllib3.BaseHTTPResponse, url: str, what: str) -> bytes:
    too_big = f"{what} at {url} is larger than {MAX_BODY_BYTES // 1024} KiB: it cannot be one."
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise FetchRefused(too_big)
    body = bytearray()
    for chunk in response.stream(CHUNK_BYTES, decode_content=True):
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise FetchRefused(too_big)
    return bytes(body)


def connection_reason(exc: Exception) -> str:
    text = str(exc)
    for marker in ("Connection refused", "Network is unreachable", "No route to host"):
        if marker in text:
            return marker.lower()
    return text


def ca_bundle() -> str:
    """The CA certificates requests would use: REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE when
    set (a company CA), else certifi's."""
    return (
        os.environ.get("REQUESTS_CA_BUNDLE")
        or os.environ.get("CURL_CA_BUNDLE")
        or requests_ca_bundle()
    )

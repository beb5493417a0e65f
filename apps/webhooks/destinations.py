"""Where outbound webhooks may go: public addresses only, never the hub's own network.

A service registers the URL, so without this check it could make the hub POST to its database, its cloud's metadata
service (169.254.169.254) or its own admin. A URL is checked when the endpoint is registered and again before every
send; the sender then connects to the very address checked (`Destination.address`), so a name that resolves to a
public address at the check and to 127.0.0.1 a moment later (DNS rebinding) gains nothing.

`WEBHOOK_ALLOWED_HOSTS` lists host names exempt from the check, for development and tests whose receivers listen on
127.0.0.1.
"""
from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings


class DestinationRefused(Exception):
    """The URL may not receive webhooks; the message says why and is safe to show."""


class DestinationUnresolved(DestinationRefused):
    """The host name did not resolve (perhaps for now: DNS may be down)."""


@dataclass(frozen=True)
class Destination:
    scheme: str  # http or https
    host: str  # the name in the URL: Host header and TLS certificate check
    port: int
    target: str  # path and query, as sent on the request line
    address: str  # the checked IP address to connect to


def _address_refused(address: str, own: set[str]) -> str | None:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone index
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global or ip.is_multicast:
        return "a reserved address"
    if str(ip) in own:
        return "the hub's own address"
    return None


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise DestinationUnresolved(f"{host} does not resolve ({exc})") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


_OWN_TTL_SECONDS = 300.0
_own_cache: dict[tuple, tuple[float, tuple[set[str], set[str]]]] = {}


def _own_addresses() -> tuple[set[str], set[str]]:
    """Return the hub's own host names and the addresses they resolve to (cached a few minutes: a close sends
    thousands of webhooks, and these names rarely move)."""
    names = {urlsplit(settings.PUBLIC_BASE_URL).hostname or "", socket.gethostname()}
    names |= {h.lstrip(".") for h in settings.ALLOWED_HOSTS if h and "*" not in h}
    names = {n.lower() for n in names if n}
    key = tuple(sorted(names))
    cached = _own_cache.get(key)
    if cached is not None and time.monotonic() - cached[0] < _OWN_TTL_SECONDS:
        return cached[1]
    own = _own_resolve(names)
    _own_cache.clear()
    _own_cache[key] = (time.monotonic(), own)
    return own


def _own_resolve(names: set[str]) -> tuple[set[str], set[str]]:
    addresses: set[str] = set()
    for name in names:
        try:
            addresses |= set(_resolve(name, 443))
        except DestinationRefused:
            continue
    return names, addresses


def destination_resolve(url: str) -> Destination:
    """Resolve `url`'s host once and return where to connect; raise DestinationRefused if any address is off-limits.

    Every address the name resolves to must be public: a receiver could otherwise publish one public and one
    private address and rely on the connection picking the private one.
    """
    parts = urlsplit(url)
    scheme = (parts.scheme or "").lower()
    if scheme not in ("http", "https"):
        raise DestinationRefused("only http and https URLs receive webhooks")
    host = (parts.hostname or "").lower()
    if not host:
        raise DestinationRefused("the URL has no host")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise DestinationRefused("the URL's port is invalid") from None
    target = parts.path or "/"
    if parts.query:
        target = f"{target}?{parts.query}"
    addresses = _resolve(host, port)
    if host not in {h.lower() for h in settings.WEBHOOK_ALLOWED_HOSTS}:
        own_names, own_addresses = _own_addresses()
        if host in own_names:
            raise DestinationRefused(f"{host} is the hub itself")
        for address in addresses:
            reason = _address_refused(address, own_addresses)
            if reason:
                raise DestinationRefused(f"{host} resolves to {reason} ({address})")
    return Destination(scheme=scheme, host=host, port=port, target=target, address=addresses[0])

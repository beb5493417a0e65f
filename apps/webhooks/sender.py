"""HTTP adapter for webhook POSTs (standard library only). Never raises for the receiver's faults."""
from __future__ import annotations

import http.client
import socket
import time
from dataclasses import dataclass

from .destinations import Destination

EXCERPT_CHARS = 500


@dataclass(frozen=True)
class SendResult:
    status_code: int | None  # None: no HTTP answer (refused, timeout, DNS)
    duration_ms: int
    response_excerpt: str
    error: str

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _connection(destination: Destination, timeout: float) -> http.client.HTTPConnection:
    cls = http.client.HTTPSConnection if destination.scheme == "https" else http.client.HTTPConnection
    conn = cls(destination.host, destination.port, timeout=timeout)

    # Connect to the address checked by destinations.destination_resolve, not to a fresh lookup of the name (DNS
    # rebinding); the Host header, TLS SNI and the certificate check still use the name.
    def create_connection(address, timeout=timeout, source_address=None):
        return socket.create_connection((destination.address, address[1]), timeout, source_address)

    conn._create_connection = create_connection
    return conn


def post(*, destination: Destination, body: bytes, headers: dict[str, str], timeout: float) -> SendResult:
    """POST `body` once to the checked `destination`; `timeout` bounds connect and each read, in seconds.

    A redirect is a failed delivery: following it would skip the destination check (and turn a POST into a GET).
    """
    started = time.monotonic()
    conn = _connection(destination, timeout)
    try:
        conn.request("POST", destination.target, body=body, headers=headers)
        response = conn.getresponse()
        excerpt = response.read(EXCERPT_CHARS * 4).decode("utf-8", "replace")[:EXCERPT_CHARS]
        ok = 200 <= response.status < 300
        return SendResult(response.status, _ms(started), excerpt, "" if ok else f"HTTP {response.status}")
    except (http.client.HTTPException, OSError, ValueError) as exc:
        return SendResult(None, _ms(started), "", f"{type(exc).__name__}: {exc}"[:500])
    finally:
        conn.close()


def refused(reason: str) -> SendResult:
    return SendResult(None, 0, "", f"destination refused: {reason}"[:500])


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)

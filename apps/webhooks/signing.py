"""Lago's HMAC webhook signature (research/lago-api.md §2.13). Pure: no ORM, no I/O.

X-Lago-Signature = base64(HMAC-SHA256(key=endpoint secret as UTF-8, msg=the exact body bytes sent)).
"""
from __future__ import annotations

import base64
import hashlib
import hmac

SIGNATURE_HEADER = "X-Lago-Signature"
ALGORITHM_HEADER = "X-Lago-Signature-Algorithm"
UNIQUE_KEY_HEADER = "X-Lago-Unique-Key"
ALGORITHM = "hmac"


def signature(*, secret: str, body: bytes) -> str:
    """Return the base64 HMAC-SHA256 of `body` keyed with `secret`."""
    if not isinstance(body, bytes):
        raise TypeError("sign the exact bytes sent, not a decoded string")
    mac = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(mac).decode("ascii")


def signature_valid(*, secret: str, body: bytes, header_value: str) -> bool:
    """Check a received X-Lago-Signature in constant time."""
    return hmac.compare_digest(signature(secret=secret, body=body).encode("ascii"), header_value.strip().encode("ascii"))


def signed_headers(*, secret: str, body: bytes, event_id: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "NexaBilling-Webhooks/1.0",
        SIGNATURE_HEADER: signature(secret=secret, body=body),
        ALGORITHM_HEADER: ALGORITHM,
        UNIQUE_KEY_HEADER: event_id,
    }

"""Lago's HMAC signature: base64(HMAC-SHA256(secret, exact body bytes)). No DB, no network."""
from __future__ import annotations

from datetime import timedelta

import pytest

from apps.webhooks.services import backoff_delay
from apps.webhooks.signing import signature, signature_valid, signed_headers


def test_signature_matches_a_known_vector():
    # RFC 4231 test case 2 (key "Jefe"), base64 instead of hex.
    body = b"what do ya want for nothing?"
    assert signature(secret="Jefe", body=body) == "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="


def test_signature_covers_every_byte_and_the_secret():
    body = b'{"webhook_type":"invoice.created","invoice":{"total_amount_cents":11300}}'
    good = signature(secret="s3cret", body=body)
    assert signature_valid(secret="s3cret", body=body, header_value=good)
    assert not signature_valid(secret="s3cret", body=body.replace(b"11300", b"11301"), header_value=good)
    assert not signature_valid(secret="other", body=body, header_value=good)
    assert not signature_valid(secret="s3cret", body=body + b" ", header_value=good)


def test_signing_a_decoded_string_is_refused():
    with pytest.raises(TypeError):
        signature(secret="s", body='{"a":1}')  # type: ignore[arg-type]


def test_headers_carry_the_algorithm_and_the_event_id():
    headers = signed_headers(secret="s", body=b"{}", event_id="e-1")
    assert headers["X-Lago-Signature-Algorithm"] == "hmac"
    assert headers["X-Lago-Unique-Key"] == "e-1"
    assert headers["X-Lago-Signature"] == signature(secret="s", body=b"{}")


def test_backoff_doubles_from_thirty_seconds_and_is_capped():
    assert [backoff_delay(n).total_seconds() for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert backoff_delay(50) == timedelta(hours=6)

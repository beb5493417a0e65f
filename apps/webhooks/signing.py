"""Lago's webhook signatures (research/lago-api.md §2.13), per endpoint's `signature_algo`. Pure: no ORM, no I/O.

hmac: X-Lago-Signature = base64(HMAC-SHA256(key=endpoint secret as UTF-8, msg=the exact body bytes sent)).
jwt:  X-Lago-Signature = an RS256 JWT of {"data": the body as sent, "iss": the hub's URL}, signed with the hub's RSA
      key (WEBHOOK_JWT_PRIVATE_KEY); receivers verify it with the public key GET /webhooks/json_public_key serves
      (lago-api app/models/webhook.rb `jwt_signature`). Built with `cryptography` (already a dependency): the JWS
      compact form is three base64url parts, and RS256 is RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

SIGNATURE_HEADER = "X-Lago-Signature"
ALGORITHM_HEADER = "X-Lago-Signature-Algorithm"
UNIQUE_KEY_HEADER = "X-Lago-Unique-Key"
ALGORITHM = "hmac"
JWT = "jwt"


def signature(*, secret: str, body: bytes) -> str:
    """Return the base64 HMAC-SHA256 of `body` keyed with `secret`."""
    if not isinstance(body, bytes):
        raise TypeError("sign the exact bytes sent, not a decoded string")
    mac = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(mac).decode("ascii")


def signature_valid(*, secret: str, body: bytes, header_value: str) -> bool:
    """Check a received X-Lago-Signature in constant time."""
    return hmac.compare_digest(signature(secret=secret, body=body).encode("ascii"), header_value.strip().encode("ascii"))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def rsa_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the webhook JWT key must be an RSA private key")
    return key


def jwt_signature(*, private_key_pem: bytes, body: bytes, issuer: str) -> str:
    """Return Lago's JWT signature of `body`: RS256 over {"data": body, "iss": issuer}."""
    if not isinstance(body, bytes):
        raise TypeError("sign the exact bytes sent, not a decoded string")
    header = _b64url(json.dumps({"typ": "JWT", "alg": "RS256"}, separators=(",", ":")).encode())
    claims = _b64url(json.dumps({"data": body.decode("utf-8"), "iss": issuer}, separators=(",", ":")).encode())
    signing_input = f"{header}.{claims}".encode("ascii")
    signed = rsa_private_key(private_key_pem).sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{claims}.{_b64url(signed)}"


def public_key_pem(private_key_pem: bytes) -> bytes:
    """The PEM (SubjectPublicKeyInfo) of the key pair's public half, as Lago's `RsaPublicKey.to_s`."""
    return rsa_private_key(private_key_pem).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_base64(private_key_pem: bytes) -> str:
    """The public PEM in Ruby's `Base64.encode64` form, as Lago serves it: lines of 60 characters, each ending "\n"."""
    text = base64.b64encode(public_key_pem(private_key_pem)).decode("ascii")
    return "".join(text[i:i + 60] + "\n" for i in range(0, len(text), 60))


def signed_headers(*, secret: str, body: bytes, event_id: str, algo: str = ALGORITHM,
                   jwt_key_pem: bytes | None = None, issuer: str = "") -> dict[str, str]:
    """The headers of one webhook POST; `algo` "jwt" needs the hub's RSA key (`jwt_key_pem`)."""
    if algo == JWT:
        if not jwt_key_pem:
            raise ValueError("a JWT-signed endpoint needs WEBHOOK_JWT_PRIVATE_KEY")
        signed = jwt_signature(private_key_pem=jwt_key_pem, body=body, issuer=issuer)
    else:
        signed = signature(secret=secret, body=body)
    return {
        "Content-Type": "application/json",
        "User-Agent": "NexaBilling-Webhooks/1.0",
        SIGNATURE_HEADER: signed,
        ALGORITHM_HEADER: algo,
        UNIQUE_KEY_HEADER: event_id,
    }

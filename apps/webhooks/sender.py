"""HTTP adapter for webhook POSTs (standard library only). Never raises for the receiver's faults."""
from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

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


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would turn a redirected POST into a GET without the body; a redirect is a failed delivery.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def post(*, url: str, body: bytes, headers: dict[str, str], timeout: float) -> SendResult:
    """POST `body` to `url` once; `timeout` bounds connect and each read, in seconds."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    started = time.monotonic()
    try:
        with _opener.open(request, timeout=timeout) as response:
            excerpt = response.read(EXCERPT_CHARS * 4).decode("utf-8", "replace")[:EXCERPT_CHARS]
            return SendResult(response.status, _ms(started), excerpt, "")
    except urllib.error.HTTPError as exc:
        try:
            excerpt = exc.read(EXCERPT_CHARS * 4).decode("utf-8", "replace")[:EXCERPT_CHARS]
        except Exception:  # the error body itself may be cut off
            excerpt = ""
        return SendResult(exc.code, _ms(started), excerpt, f"HTTP {exc.code}")
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return SendResult(None, _ms(started), "", f"{type(exc).__name__}: {reason}"[:500])


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)

"""A hub instance as the Lago source: the stand-in's server forwarding to a live hub's Lago-shaped API.

For the round-trip test, where the "Lago" being migrated from is a hub seeded with `seed_demo` and served by
pytest-django's live server. Both systems share the test database, so invoice numbers are given a `LAGO-`
prefix on the way out (the imported history would otherwise collide with the source's own rows); everything
else is the hub's API as it answers. Events posted here reach the source hub, which bills them, as Lago bills
what the relay sends it.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from tests.lago_standin.server import LagoStandIn

NUMBER_PREFIX = "LAGO-"


class HubAsLago(LagoStandIn):
    def __init__(self, *, upstream: str, upstream_key: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.upstream, self.upstream_key = upstream.rstrip("/"), upstream_key

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: bytes | None,
               auth: str | None) -> tuple[int, Any]:
        token = (auth or "").split(" ")[1] if auth and " " in auth else None
        if token != self.api_key:
            return 401, {"status": 401, "error": "Unauthorized"}
        url = self.upstream + path + ("?" + urllib.parse.urlencode(query, doseq=True) if query else "")
        request = urllib.request.Request(url, data=body, method=method, headers={
            "Authorization": f"Bearer {self.upstream_key}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, payload = response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            status, payload = exc.code, json.loads(exc.read() or b"null")
        if method == "POST" and path.endswith("/events/batch") and status == 200:
            with self.lock:
                self.events.extend(payload["events"])
        for key in ("invoice", "invoices"):
            if isinstance(payload, dict) and key in payload:
                for invoice in payload[key] if key == "invoices" else [payload[key]]:
                    if invoice.get("number"):
                        invoice["number"] = NUMBER_PREFIX + invoice["number"]
        return status, payload

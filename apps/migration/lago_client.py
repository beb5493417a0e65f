"""Adapter for Lago's REST API (shared/research/lago-api.md): the only module here that speaks HTTP to Lago.

Plain `urllib` rather than `lago-python-client`: the importer needs the pagination `meta` and the per-index
422 details of a refused event batch, which the SDK's models drop, and its pydantic models crash on fields an
older Lago omits. Objects cross the boundary as Lago's documented JSON shapes (dicts, numbers with a fraction parsed as Decimal:
no float reaches a money path), lists as `Page`s.
"""
from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

BATCH_MAX = 100  # Lago's LAGO_EVENTS_BATCH_MAX_LENGTH default: POST /events/batch refuses more


class LagoError(Exception):
    """Lago refused the request; retrying will not help."""

    def __init__(self, message: str, *, status: int | None = None, body: Any = None):
        super().__init__(message)
        self.status, self.body = status, body


class LagoUnavailable(LagoError):
    """Timeout, refused connection, 429 or 5xx: safe to retry later."""


@dataclass(frozen=True)
class Page:
    items: list[dict]
    current_page: int
    next_page: int | None
    total_pages: int
    total_count: int


@dataclass(frozen=True)
class BatchOutcome:
    """What Lago did with one events batch. Lago refuses a batch whole when any event is a duplicate or invalid."""

    accepted: bool  # every event stored
    duplicates: frozenset[int] = frozenset()  # indexes of events whose transaction_id Lago already knows
    rejected: dict[int, str] = field(default_factory=dict)  # index -> Lago's error details, for other problems


class LagoClient:
    def __init__(self, *, api_url: str, api_key: str, timeout: float = 30.0):
        self.base = urllib.parse.urljoin(api_url.rstrip("/") + "/", "api/v1/")
        self.api_key, self.timeout = api_key, timeout

    def _call(self, method: str, path: str, *, params: list[tuple[str, Any]] | None = None,
              body: dict | None = None) -> Any:
        url = self.base + path + ("?" + urllib.parse.urlencode(params) if params else "")
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json",
            "Accept": "application/json", "User-Agent": "nexabilling-migration",
        })
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
                return json.loads(raw, parse_float=Decimal) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                payload = json.loads(raw) if raw else None
            except ValueError:
                payload = raw[:500].decode(errors="replace")
            kind = LagoUnavailable if exc.code >= 500 or exc.code == 429 else LagoError
            raise kind(f"Lago answered {exc.code} to {method} {path}: {payload}", status=exc.code, body=payload) from None
        except (urllib.error.URLError, socket.timeout, ConnectionError, TimeoutError) as exc:
            raise LagoUnavailable(f"Lago unreachable for {method} {path}: {exc}") from None
        except ValueError as exc:  # a 2xx that is not JSON
            raise LagoUnavailable(f"Lago answered {method} {path} with invalid JSON: {exc}") from None

    def list_page(self, resource: str, *, page: int = 1, per_page: int = 100,
                  params: list[tuple[str, Any]] | None = None) -> Page:
        """One page of `GET /<resource>`; `params` may repeat a key (`status[]`)."""
        payload = self._call("GET", resource, params=[("page", page), ("per_page", per_page), *(params or [])])
        if not isinstance(payload, dict) or not isinstance(payload.get(resource), list):
            raise LagoError(f"GET {resource}: no {resource!r} list in the answer", body=payload)
        meta = payload.get("meta") or {}
        return Page(
            items=payload[resource],
            current_page=int(meta.get("current_page") or 0),
            next_page=meta.get("next_page"),
            total_pages=int(meta.get("total_pages") or 0),
            total_count=int(meta.get("total_count") or 0),
        )

    def get(self, resource: str, key: str, *, root: str) -> dict:
        """`GET /<resource>/<key>` and return the object under `root`."""
        payload = self._call("GET", f"{resource}/{urllib.parse.quote(key, safe='')}")
        if not isinstance(payload, dict) or not isinstance(payload.get(root), dict):
            raise LagoError(f"GET {resource}/{key}: no {root!r} object in the answer", body=payload)
        return payload[root]

    def events_batch(self, events: list[dict]) -> BatchOutcome:
        """POST /events/batch (at most BATCH_MAX events); a refusal is classified per event, never raised."""
        if not events or len(events) > BATCH_MAX:
            raise ValueError(f"a batch holds 1 to {BATCH_MAX} events, not {len(events)}")
        try:
            self._call("POST", "events/batch", body={"events": events})
            return BatchOutcome(accepted=True)
        except LagoUnavailable:
            raise
        except LagoError as exc:
            details = (exc.body or {}).get("error_details") if isinstance(exc.body, dict) else None
            if exc.status != 422 or not isinstance(details, dict) or not all(key.isdigit() for key in details):
                raise
            duplicates, rejected = set(), {}
            for key, problems in details.items():
                if problems == {"transaction_id": ["value_already_exist"]}:
                    duplicates.add(int(key))
                else:
                    rejected[int(key)] = json.dumps(problems, sort_keys=True)
            return BatchOutcome(accepted=False, duplicates=frozenset(duplicates), rejected=rejected)

"""Lago stand-in: a wire-level test double of the Lago REST API that the migration app reads and relays to.

Serves Lago's exact response shapes (shared/research/lago-api.md): root keys, list envelopes with pagination
`meta` (Lago's quirk of `current_page: 0` on an empty list included), error bodies (401 without `code`,
404 `<resource>_not_found`, 400 for a missing root key, 422 `validation_errors` with `error_details`), and
the Postgres event store's idempotency: a known `transaction_id` (per external subscription) answers 422
`{"transaction_id": ["value_already_exist"]}`, and a batch with any duplicate or invalid event is refused whole,
with details keyed by index. Stdlib only.

Use from a fixture::

    standin = LagoStandIn(org=fixtures.nexacloud_org()).start()   # 127.0.0.1, free port; standin.url
    standin.slow(0.5)          # every answer waits 0.5 s
    standin.erroring(2)        # the next 2 requests answer 500 (None: every request until erroring(0))
    standin.down()             # stop listening: connections are refused; restart() listens again, same port
    standin.events             # accepted events, in arrival order
    standin.stop()

Simplified here, unlike Lago: no write endpoints besides events, no rate limiting (429), lists filter only
on the parameters the hub's importer and reconciliation send, and events are not checked against metrics or
subscriptions (neither does Lago at ingestion).
"""
from __future__ import annotations

import copy
import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

BATCH_MAX = 100  # LAGO_EVENTS_BATCH_MAX_LENGTH default
RESOURCES = ("taxes", "billable_metrics", "plans", "customers", "subscriptions", "invoices")
# The singular root key and the `<resource>_not_found` code of each list.
SINGULAR = {
    "taxes": "tax", "billable_metrics": "billable_metric", "plans": "plan", "customers": "customer",
    "subscriptions": "subscription", "invoices": "invoice",
}
# Path key of each resource (GET /<resource>/<key>).
PATH_KEY = {
    "taxes": "code", "billable_metrics": "code", "plans": "code", "customers": "external_id",
    "subscriptions": "external_id", "invoices": "lago_id",
}


class LagoStandIn:
    """One in-process Lago API with fault knobs; `org` maps each resource name to a list of Lago objects."""

    def __init__(self, *, org: dict[str, list[dict]] | None = None, api_key: str = "lago-standin-key",
                 host: str = "127.0.0.1", port: int = 0):
        self.api_key, self.host, self.port = api_key, host, port
        self.org: dict[str, list[dict]] = {name: [] for name in RESOURCES}
        for name, rows in (org or {}).items():
            self.org[name] = copy.deepcopy(rows)
        self.events: list[dict] = []  # accepted, in arrival order
        self.requests: list[tuple[str, str]] = []  # (method, path with query), every request received
        self.lock = threading.Lock()
        self._delay = 0.0
        self._errors_left: int | None = 0  # None: every request errs
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> LagoStandIn:
        httpd = ThreadingHTTPServer((self.host, self.port), _Handler)
        httpd.daemon_threads = True
        httpd.standin = self  # type: ignore[attr-defined]
        self._httpd, self.port = httpd, httpd.server_address[1]
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"lago-standin-{self.port}", daemon=True)
        self._thread.start()
        return self

    def down(self) -> None:
        """Stop listening (connections are refused); the data stays for restart()."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            assert self._thread is not None
            self._thread.join(timeout=5)
            self._httpd = self._thread = None

    def restart(self) -> LagoStandIn:
        self.down()
        return self.start()

    def stop(self) -> None:
        self.down()

    def __enter__(self) -> LagoStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- knobs ----------------------------------------------------------------------------------
    def slow(self, seconds: float) -> None:
        """Delay every answer by `seconds` (0: answer at once)."""
        self._delay = seconds

    def erroring(self, count: int | None = None) -> None:
        """Answer the next `count` requests with Lago's 500 body; None: every request until erroring(0)."""
        with self.lock:
            self._errors_left = count

    def _take_error(self) -> bool:
        with self.lock:
            if self._errors_left is None:
                return True
            if self._errors_left > 0:
                self._errors_left -= 1
                return True
            return False

    # -- reads for assertions -------------------------------------------------------------------
    def event_ids(self) -> list[str]:
        with self.lock:
            return [event["transaction_id"] for event in self.events]

    def requests_to(self, method: str, path_prefix: str) -> int:
        with self.lock:
            return sum(1 for m, p in self.requests if m == method and p.startswith(path_prefix))

    # -- the API --------------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict[str, list[str]], body: bytes | None,
               auth: str | None) -> tuple[int, Any]:
        if self._delay:
            time.sleep(self._delay)
        if self._take_error():
            return 500, {"status": 500, "error": "Internal Server Error"}
        token = (auth or "").split(" ")[1] if auth and " " in auth else None
        if token != self.api_key:
            return 401, {"status": 401, "error": "Unauthorized"}
        if not path.startswith("/api/v1/"):
            return 404, _not_found("route")
        parts = [unquote(part) for part in path[len("/api/v1/"):].split("/")]
        if method == "POST" and parts == ["events"]:
            return self._events_create(body, batch=False)
        if method == "POST" and parts == ["events", "batch"]:
            return self._events_create(body, batch=True)
        if method == "GET" and len(parts) == 2 and parts[0] == "events":
            with self.lock:
                found = [event for event in self.events if event["transaction_id"] == parts[1]]
            return (200, {"event": found[0]}) if found else (404, _not_found("event"))
        if method != "GET" or parts[0] not in RESOURCES or len(parts) > 2:
            return 404, _not_found("route")
        resource = parts[0]
        with self.lock:
            rows = copy.deepcopy(self.org[resource])
        if len(parts) == 2:
            key = PATH_KEY[resource]
            found = [row for row in rows if str(row.get(key)) == parts[1]]
            if resource == "subscriptions":
                wanted = query.get("status", ["active"])
                found = [row for row in found if row.get("status") in wanted]
            if not found:
                return 404, _not_found(SINGULAR[resource])
            return 200, {SINGULAR[resource]: found[0]}
        rows = _filtered(resource, rows, query)
        if resource == "invoices":
            # Lago's index renders invoices without their fees and billing periods (GET /invoices/{id} has them).
            for row in rows:
                row.pop("fees", None)
                row.pop("billing_periods", None)
        return 200, _page(resource, rows, query)

    def _events_create(self, body: bytes | None, *, batch: bool) -> tuple[int, Any]:
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            return 400, {"status": 400, "error": "BadRequest: invalid JSON"}
        root = "events" if batch else "event"
        if not isinstance(payload, dict) or payload.get(root) in (None, "", []):
            if batch and isinstance(payload, dict) and payload.get(root) == []:
                return 422, _invalid({"events": ["no_events"]})
            return 400, {"status": 400, "error": f"BadRequest: param is missing or the value is empty: {root}"}
        events = payload[root] if batch else [payload[root]]
        if batch and len(events) > BATCH_MAX:
            return 422, _invalid({"events": ["too_many_events"]})
        with self.lock:
            known = {(event["external_subscription_id"], event["transaction_id"]) for event in self.events}
            details: dict[str, dict[str, list[str]]] = {}
            seen: set[tuple[str, str]] = set()
            for index, event in enumerate(events):
                problems: dict[str, list[str]] = {}
                for field in ("transaction_id", "external_subscription_id", "code"):
                    if not isinstance(event, dict) or not event.get(field):
                        problems[field] = ["value_is_mandatory"]
                if not problems:
                    key = (event["external_subscription_id"], event["transaction_id"])
                    if key in known or key in seen:
                        problems["transaction_id"] = ["value_already_exist"]
                    seen.add(key)
                    timestamp = event.get("timestamp")
                    if timestamp is not None:
                        try:
                            float(timestamp)
                        except (TypeError, ValueError):
                            problems["timestamp"] = ["invalid_format"]
                if problems:
                    details[str(index)] = problems
            if details:
                return 422, _invalid(details if batch else details["0"])
            now = _now()
            out = []
            for event in events:
                stored = {
                    "lago_id": None, "transaction_id": event["transaction_id"], "lago_customer_id": None,
                    "lago_subscription_id": None, "external_subscription_id": event["external_subscription_id"],
                    "code": event["code"], "timestamp": event.get("timestamp"), "properties": event.get("properties") or {},
                    "precise_total_amount_cents": event.get("precise_total_amount_cents"), "created_at": now,
                }
                self.events.append(stored)
                out.append(stored)
        return 200, ({"events": out} if batch else {"event": out[0]})


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _not_found(resource: str) -> dict:
    return {"status": 404, "error": "Not Found", "code": f"{resource}_not_found"}


def _invalid(details: dict) -> dict:
    return {"status": 422, "error": "Unprocessable Entity", "code": "validation_errors", "error_details": details}


def _filtered(resource: str, rows: list[dict], query: dict[str, list[str]]) -> list[dict]:
    def one(name: str) -> str | None:
        values = query.get(name)
        return values[0] if values else None

    if resource == "subscriptions":
        statuses = query.get("status[]") or ["active"]
        rows = [row for row in rows if row.get("status") in statuses]
    if resource in ("subscriptions", "invoices") and one("external_customer_id"):
        rows = [row for row in rows if _external_customer_id(row) == one("external_customer_id")]
    if resource == "invoices":
        if query.get("statuses[]"):
            rows = [row for row in rows if row.get("status") in query["statuses[]"]]
        if one("issuing_date_from"):
            rows = [row for row in rows if row["issuing_date"] >= one("issuing_date_from")]
        if one("issuing_date_to"):
            rows = [row for row in rows if row["issuing_date"] <= one("issuing_date_to")]
        if one("invoice_type"):
            rows = [row for row in rows if row.get("invoice_type") == one("invoice_type")]
    return rows


def _external_customer_id(row: dict) -> str | None:
    return row.get("external_customer_id") or (row.get("customer") or {}).get("external_id")


def _page(resource: str, rows: list[dict], query: dict[str, list[str]]) -> dict:
    """Lago's list envelope (lago-api:app/controllers/concerns/pagination.rb), empty-list quirk included."""
    page = max(int((query.get("page") or ["1"])[0]), 1)
    per_page = max(int((query.get("per_page") or ["100"])[0]), 1)
    total = len(rows)
    if total == 0:
        meta = {"current_page": 0, "next_page": None, "prev_page": None, "total_pages": 0, "total_count": 0}
        return {resource: [], "meta": meta}
    pages = math.ceil(total / per_page)
    chunk = rows[(page - 1) * per_page: page * per_page]
    meta = {
        "current_page": page,
        "next_page": page + 1 if page < pages else None,
        "prev_page": page - 1 if page > 1 else None,
        "total_pages": pages,
        "total_count": total,
    }
    return {resource: chunk, "meta": meta}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _serve(self, method: str) -> None:
        standin: LagoStandIn = self.server.standin  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        split = urlsplit(self.path)
        with standin.lock:
            standin.requests.append((method, self.path))
        query = parse_qs(split.query, keep_blank_values=True)
        try:
            status, payload = standin.handle(method, split.path, query, body, self.headers.get("Authorization"))
        except Exception as exc:  # a stand-in bug answers like Lago's 500, with the reason for the test log
            status, payload = 500, {"status": 500, "error": f"Internal Server Error: {exc!r}"}
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")


if __name__ == "__main__":  # python -m tests.lago_standin.server [--port N]
    import argparse

    from tests.lago_standin.fixtures import nexacloud_org

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args()
    standin = LagoStandIn(org=nexacloud_org(), port=args.port).start()
    print(f"Lago stand-in at {standin.url} (api key {standin.api_key})", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        standin.stop()

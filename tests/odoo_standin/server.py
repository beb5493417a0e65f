"""Odoo 19 stand-in: a wire-level test double for NexaBilling's Odoo adapter (stdlib only).

Speaks JSON-2 (`POST /json/2/<model>/<method>`, bearer API key, optional `X-Odoo-Database`) and
XML-RPC (`/xmlrpc/2/common`, `/xmlrpc/2/object`) with Odoo's error shapes (research/odoo.md §1, §2),
over the accounting subset of odoo.md §7 (records and rules live in store.py). Each call is one
transaction: an error restores the state from before the call.

Use from a fixture::

    standin = OdooStandIn().start()          # 127.0.0.1, free port; standin.url
    standin.fail_next(1, "timeout_after_create", model="account.move")
    standin.call_count("account.move", "create")
    standin.stop()

or by hand: ``python -m tests.odoo_standin.server --port 8069`` (prints the URL and credentials).

Fault kinds for ``fail_next(n, kind, model=None, method=None)``: ``timeout_after_create`` (run and
commit the call, then stall ``stall_seconds`` before answering; matches ``create`` unless ``method``
is given), ``drop_after_commit`` (commit, then close without an answer), ``http_500`` (answer 500
before doing anything), ``down`` (stop listening now; ``restart()`` listens again on the same port
with the same data; ``n`` is ignored).

Simplified here; real Odoo 19 does these and the stand-in does not (odoo.md §7.4):
- Taxes: Odoo 19's engine is ported in tax_engine.py (floats and `float_round`, the company's
  round_per_line or round_globally with its delta spreading, groups, price-included, fixed and
  division taxes, `extra_tax_data` manual amounts) but not cash rounding, early-payment discounts,
  currency rates, reverse charge, `code` taxes or manually edited tax lines; no 'Product Unit' /
  'Product Price' rounding of quantity and price_unit (real instances round them per their decimal
  accuracy).
- Fiscal positions (auto-mapping, `_validate_taxes_country`), archived-tax subtleties, the NS 14%
  rollout state, taxes renamed by accountants.
- Access rights, record rules, multi-company, API-key expiry/rotation/scopes, the bot user's groups.
- Lock dates, hash-restricted journals, `auto_post`, EDI cancel requests, mail on post, Studio
  fields, automated/server actions, localisation overrides.
- Enterprise `account_accountant`: `in_payment` is a flag (`store.in_payment_mode`), there is no bank
  reconciliation, no reconciliation models, no `payment_stripe` duplicates. Payments get no journal
  entry (`move_id`); reversal/credit-note reconciliation is amount bookkeeping, not partials (only
  `account.move.line.reconcile` of receivable lines makes `account.partial.reconcile` records).
- Only `out_invoice`/`out_refund` moves; no `account.move.reversal` wizard, `load`, `fields_get`,
  `/jsonrpc`, `/xmlrpc` (non-/2) string fault codes, payment terms or due-date computation.
- Default search order is `id` for every model; Odoo's is per model (`_order`).
- Latency, worker limits (60 s CPU / 120 s wall), sequence contention, serialization retries,
  Online throttling: never use the stand-in for throughput numbers.
- API drift (18.x JSON-2 string errors, renamed parameters) and XML-RPC removal (Odoo 20/22).
"""
from __future__ import annotations

import argparse
import copy
import json
import re
import sys
import threading
import traceback
import xmlrpc.client
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.odoo_standin.store import (
    BUSINESS_METHODS,
    GENERIC_METHODS,
    REQUIRED,
    SCHEMA,
    AccessDenied,
    AccessError,
    HttpException,
    OdooException,
    Store,
    UserError,
)

_READ_ONLY_METHODS = frozenset({"search", "search_read", "search_count", "read", "context_get"})
FAULT_KINDS = ("timeout_after_create", "drop_after_commit", "http_500", "down")
VERSION_INFO = [19, 0, 0, "final", 0, ""]
_PATH_JSON2 = re.compile(r"^/json/2/([^/]+)/([^/]+)$")


class _Fault:
    def __init__(self, n: int, kind: str, model: str | None, method: str | None):
        self.left, self.kind, self.model, self.method = n, kind, model, method


class _Bound(Exception):
    """A Python TypeError while binding arguments (werkzeug UnprocessableEntity over JSON-2)."""


class OdooStandIn:
    """One in-process Odoo 19 stand-in server with fault-injection knobs and round-trip counters."""

    def __init__(self, *, database: str = "nexa", login: str = "nexa-bot", password: str = "bot-password",
                 api_key: str = "nexa-standin-api-key", host: str = "127.0.0.1", port: int = 0,
                 stall_seconds: float = 5.0):
        self.database, self.login, self.password, self.api_key = database, login, password, api_key
        self.host, self.port, self.stall_seconds = host, port, stall_seconds
        self.store = Store(login=login, password=password, api_key=api_key)
        self.calls: Counter[tuple[str, str]] = Counter()
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()  # one call at a time, like a single Odoo worker
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> OdooStandIn:
        self._stopping.clear()
        httpd = ThreadingHTTPServer((self.host, self.port), _Handler)
        httpd.daemon_threads = True  # a stalled handler must not block stop()
        httpd.standin = self  # type: ignore[attr-defined]
        self._httpd, self.port = httpd, httpd.server_address[1]
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"odoo-standin-{self.port}", daemon=True)
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

    def restart(self) -> OdooStandIn:
        self.down()
        return self.start()

    def stop(self) -> None:
        self._stopping.set()  # wakes stalled handlers
        self.down()

    def __enter__(self) -> OdooStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- knobs ----------------------------------------------------------------------------------
    def fail_next(self, n: int, kind: str, *, model: str | None = None, method: str | None = None) -> None:
        """Make the next `n` matching requests fail as `kind` (see module docstring)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        if kind == "down":
            self.down()
            return
        if kind == "timeout_after_create" and method is None:
            method = "create"
        with self._lock:
            self._faults.append(_Fault(n, kind, model, method))

    def call_count(self, model: str | None = None, method: str | None = None) -> int:
        """Return requests received for (model, method); None matches any. XML-RPC common is 'common'."""
        return sum(n for (m, f), n in self.calls.items()
                   if (model is None or m == model) and (method is None or f == method))

    def reset_counts(self) -> None:
        self.calls.clear()

    def search_read(self, model: str, domain: list[Any] | None = None,
                    fields: list[str] | None = None) -> list[dict[str, Any]]:
        """Read records directly (for assertions), bypassing HTTP and the counters."""
        with self._lock:
            ids = self.store.search(model, domain or [], context={"active_test": False})
            return self.store.read(model, ids, fields)

    def _take_fault(self, model: str, method: str) -> str | None:
        for fault in self._faults:
            if fault.left > 0 and fault.model in (None, model) and fault.method in (None, method):
                fault.left -= 1
                return fault.kind
        return None

    # -- dispatch (shared by both protocols) ----------------------------------------------------
    def resolve(self, model: str, method: str) -> tuple[bool, list[tuple[str, Any]]]:
        if method.startswith("_"):
            raise AccessError(f"Private methods (such as '{model}.{method}') cannot be called remotely.")
        spec = BUSINESS_METHODS.get(model, {}).get(method) or GENERIC_METHODS.get(method)
        if spec is None:
            raise AttributeError(f"The method '{model}.{method}' does not exist")
        return spec

    @staticmethod
    def bind(method: str, params: list[tuple[str, Any]], args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Bind like inspect.signature().bind and raise _Bound with Python's TypeError text."""
        names = [name for name, _ in params]
        if len(args) > len(names):
            raise _Bound(f"{method}() takes {len(names) + 1} positional arguments but {len(args) + 1} were given")
        bound = dict(zip(names, args))
        for key, value in kwargs.items():
            if key not in names:
                raise _Bound(f"got an unexpected keyword argument '{key}'")
            if key in bound:
                raise _Bound(f"multiple values for argument '{key}'")
            bound[key] = value
        for name, default in params:
            if name not in bound:
                if default is REQUIRED:
                    raise _Bound(f"missing a required argument: '{name}'")
                bound[name] = default
        return bound

    def execute(self, model: str, method: str, ids: list[int], kw: dict[str, Any], context: dict[str, Any],
                *, xmlrpc: bool) -> Any:
        """Run one call as one transaction: on any error, restore the records as they were."""
        with self._lock:
            if method in _READ_ONLY_METHODS:  # nothing to roll back; a snapshot costs O(records) per call
                return self._call(model, method, ids, kw, context, xmlrpc=xmlrpc)
            snapshot = copy.deepcopy((self.store.records, self.store.last_ids))
            try:
                return self._call(model, method, ids, kw, context, xmlrpc=xmlrpc)
            except BaseException:
                self.store.records, self.store.last_ids = snapshot
                raise

    def _call(self, model: str, method: str, ids: list[int], kw: dict[str, Any], context: dict[str, Any],
              *, xmlrpc: bool) -> Any:
        store = self.store
        if method == "search":
            return store.search(model, kw["domain"], kw["offset"], kw["limit"], kw["order"], context)
        if method == "search_read":
            found = store.search(model, kw["domain"], kw["offset"], kw["limit"], kw["order"], context)
            return store.read(model, found, kw["fields"])
        if method == "search_count":
            return len(store.search(model, kw["domain"], 0, kw["limit"], None, context))
        if method == "read":
            return store.read(model, ids, kw["fields"])
        if method == "create":
            vals_list = kw["vals_list"]
            single = isinstance(vals_list, dict)
            new_ids = store.create(model, [vals_list] if single else list(vals_list), context)
            # XML-RPC returns an int for a dict and a list for a list; JSON-2 always a list (odoo.md §1).
            return new_ids[0] if single and xmlrpc else new_ids
        if method == "write":
            return store.write(model, ids, kw["vals"])
        if method == "unlink":
            return store.unlink(model, ids)
        if method == "action_post":
            return store.payment_post(ids) if model == "account.payment" else store.action_post(ids)
        if method == "button_draft":
            return store.button_draft(ids)
        if method == "button_cancel":
            return store.button_cancel(ids)
        if method == "action_create_payments":
            return store.action_create_payments(ids, context)
        if method == "reconcile":
            return store.reconcile(ids)
        if method == "context_get":
            return store.context_get()
        raise AttributeError(f"The method '{model}.{method}' does not exist")


class _Handler(BaseHTTPRequestHandler):
    server_version = "Werkzeug/3.0 Python"
    standin: OdooStandIn

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    def setup(self) -> None:
        super().setup()
        self.standin = self.server.standin  # type: ignore[attr-defined]

    # -- plumbing -------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout); Odoo has committed anyway

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json; charset=utf-8", headers)

    def _html(self, status: int, text: str) -> None:
        self._send(status, f"<!doctype html><title>{status}</title><p>{text}</p>".encode(),
                   "text/html; charset=utf-8")

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _fault_before(self, model: str, method: str) -> str | None:
        self.standin.calls[(model, method)] += 1
        kind = self.standin._take_fault(model, method)
        if kind == "http_500":
            self._html(500, "Internal Server Error")
        return kind

    def _finish(self, kind: str | None, respond: Any) -> None:
        """Answer after the commit, unless a fault says to stall or drop."""
        if kind == "drop_after_commit":
            self.close_connection = True
            return
        if kind == "timeout_after_create":
            self.standin._stopping.wait(self.standin.stall_seconds)
        respond()

    # -- routes ---------------------------------------------------------------------------------
    def do_GET(self) -> None:
        if self.path == "/web/version":
            self.standin.calls[("web", "version")] += 1
            self._json(200, {"version_info": VERSION_INFO, "version": "19.0"})
        elif self.path.startswith("/json/2"):
            self._json2_not_found("Did you mean POST /json/2/<model>/<method>?")
        else:
            self._html(404, "Not Found")

    def do_POST(self) -> None:
        if self.path in ("/xmlrpc/2/common", "/xmlrpc/2/object"):
            self._xmlrpc(self.path.rsplit("/", 1)[1])
            return
        match = _PATH_JSON2.match(self.path)
        if match is None:
            if self.path.startswith("/json/2"):
                self._json2_not_found("Did you mean POST /json/2/<model>/<method>?")
            else:
                self._html(404, "Not Found")
            return
        self._json2(match.group(1), match.group(2))

    # -- JSON-2 ---------------------------------------------------------------------------------
    def _json2_error(self, status: int, name: str, message: str, arguments: list[Any],
                     headers: dict[str, str] | None = None) -> None:
        self._json(status, {"name": name, "message": message, "arguments": arguments, "context": {},
                            "debug": traceback.format_exc() if sys.exc_info()[0] else ""}, headers)

    def _json2_not_found(self, description: str) -> None:
        self._json2_error(404, "werkzeug.exceptions.NotFound", description, [description, 404])

    def _json2(self, model: str, method: str) -> None:
        raw = self._body()
        kind = self._fault_before(model, method)
        if kind == "http_500":
            return
        database = self.headers.get("X-Odoo-Database")
        if database is not None and database != self.standin.database:
            self._html(404, "Not Found")  # dbfilter could not pick a database (T-J2)
            return
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
            self._html(415, "Unsupported Media Type")
            return
        try:
            body = json.loads(raw or b"null")
            if not isinstance(body, dict):
                raise ValueError("the request body must be a JSON object")
        except ValueError as exc:
            self._json2_error(400, "werkzeug.exceptions.BadRequest", str(exc), [str(exc), 400])
            return
        auth = re.match(r"^bearer\s+(.+)$", self.headers.get("Authorization") or "", re.IGNORECASE)
        if auth is None or auth.group(1).strip() != self.standin.api_key:
            message = ("Invalid apikey" if auth else 'User not authenticated, use the "Authorization" header')
            self._json2_error(401, "werkzeug.exceptions.Unauthorized", message, [message, 401],
                              {"WWW-Authenticate": "bearer"})
            return
        standin = self.standin
        try:
            if model not in SCHEMA:
                raise HttpException(404, "werkzeug.exceptions.NotFound", f"the model '{model}' does not exist")
            try:
                is_model_method, params = standin.resolve(model, method)
            except AttributeError as exc:
                raise HttpException(404, "werkzeug.exceptions.NotFound", str(exc)) from None
            ids = body.pop("ids", [])
            context = body.pop("context", {})
            if is_model_method and ids:
                raise HttpException(422, "werkzeug.exceptions.UnprocessableEntity",
                                    f"cannot call {model}.{method} with ids")
            try:
                kw = standin.bind(method, params, [], body)
            except _Bound as exc:
                raise HttpException(422, "werkzeug.exceptions.UnprocessableEntity", str(exc)) from None
            result = standin.execute(model, method, ids, kw, context, xmlrpc=False)
        except HttpException as exc:
            self._json2_error(exc.code, exc.name, exc.description, [exc.description, exc.code])
            return
        except OdooException as exc:
            self._json2_error(exc.http_status, exc.name, str(exc), [str(exc)])
            return
        except Exception as exc:  # anything else is a 500, as Json2Dispatcher.handle_error does
            name = f"{type(exc).__module__}.{type(exc).__name__}"
            self._json2_error(500, name, str(exc), list(map(str, exc.args)))
            return
        self._finish(kind, lambda: self._json(200, result))

    # -- XML-RPC --------------------------------------------------------------------------------
    def _xmlrpc_reply(self, value: Any) -> None:
        try:
            payload = xmlrpc.client.dumps((value,), methodresponse=True, allow_none=False)
        except TypeError:  # e.g. None: Odoo has already committed, the client gets Fault 1 (odoo.md §1a)
            payload = xmlrpc.client.dumps(xmlrpc.client.Fault(1, traceback.format_exc()), methodresponse=True)
        self._send(200, payload.encode(), "text/xml")

    def _xmlrpc_fault(self, exc: BaseException) -> None:
        if isinstance(exc, OdooException):
            fault = xmlrpc.client.Fault(exc.fault_code, str(exc))
        else:
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            fault = xmlrpc.client.Fault(1, text)
        self._send(200, xmlrpc.client.dumps(fault, methodresponse=True).encode(), "text/xml")

    def _xmlrpc(self, service: str) -> None:
        raw = self._body()
        standin = self.standin
        try:
            params, rpc_method = xmlrpc.client.loads(raw)
        except Exception as exc:
            self._xmlrpc_fault(exc)
            return
        if service == "common":
            if self._fault_before("common", rpc_method) == "http_500":
                return
            self._xmlrpc_common(rpc_method, list(params))
            return
        model = str(params[3]) if len(params) > 4 else "?"
        method = str(params[4]) if len(params) > 4 else rpc_method
        kind = self._fault_before(model, method)
        if kind == "http_500":
            return
        try:
            if rpc_method == "execute_kw":
                db, uid, password, model, method, args, *rest = params
                kwargs = dict(rest[0] or {}) if rest else {}
            elif rpc_method == "execute":
                db, uid, password, model, method, *args = params
                kwargs = {}
            else:
                raise NameError(f"Method not available {rpc_method}")
            if db != standin.database:
                raise RuntimeError(f'psycopg2.OperationalError: FATAL:  database "{db}" does not exist')
            if not password or uid != standin.store.credentials["uid"] or password not in (
                    standin.password, standin.api_key):
                raise AccessDenied("Access Denied")
            if model not in SCHEMA:
                raise UserError(f"Object {model} doesn't exist")
            is_model_method, params_spec = standin.resolve(model, method)
            args = list(args)
            ids = [] if is_model_method else list(args.pop(0) if args else [])
            context = kwargs.pop("context", {}) or {}
            try:
                kw = standin.bind(method, params_spec, args, kwargs)
            except _Bound as exc:
                raise TypeError(str(exc)) from None
            result = standin.execute(model, method, ids, kw, context, xmlrpc=True)
        except BaseException as exc:
            self._xmlrpc_fault(exc)
            return
        self._finish(kind, lambda: self._xmlrpc_reply(result))

    def _xmlrpc_common(self, method: str, params: list[Any]) -> None:
        standin = self.standin
        if method == "version":
            self._xmlrpc_reply({"server_version": "19.0", "server_version_info": VERSION_INFO,
                                "server_serie": "19.0", "protocol_version": 1})
        elif method in ("login", "authenticate"):
            db, login, password = (params + [None, None, None])[:3]
            ok = db == standin.database and login == standin.login and password in (standin.password,
                                                                                   standin.api_key)
            self._xmlrpc_reply(standin.store.credentials["uid"] if ok else False)  # never a Fault (odoo.md §1a)
        else:
            self._xmlrpc_fault(NameError(f"Method not available {method}"))


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the Odoo 19 stand-in on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8069)
    parser.add_argument("--database", default="nexa")
    parser.add_argument("--login", default="nexa-bot")
    parser.add_argument("--api-key", default="nexa-standin-api-key")
    args = parser.parse_args()
    standin = OdooStandIn(port=args.port, database=args.database, login=args.login, api_key=args.api_key).start()
    print(f"Odoo stand-in at {standin.url} database={args.database} login={args.login} api_key={args.api_key}",
          flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        standin.stop()


if __name__ == "__main__":
    main()

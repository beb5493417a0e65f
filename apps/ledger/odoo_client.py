"""Odoo 19 adapter: the only module that speaks to Odoo (research/odoo.md).

Two transports behind one `OdooClient`: JSON-2 (`POST /json/2/<model>/<method>`, the default and
the future) and legacy XML-RPC (`/xmlrpc/2`, removed in Odoo 22). Standard library only.
Dataclasses, ints, strs, dates and Decimals cross the boundary; Odoo's floats, raw dicts and the
transport choice stay inside. Amounts become floats only here (STYLE.md §3.5).

Odoo has no idempotency header: every move carries a deterministic `ref` and callers run
`move_find` before `moves_create` and again after any `OdooUnavailable` (a timeout may follow a
commit, odoo.md §4). Payments are keyed by `memo` the same way.
"""
from __future__ import annotations

import http.client
import json
import socket
import urllib.error
import urllib.request
import xmlrpc.client
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from apps.core.money import currency_exponent, from_minor_units, to_minor_units

TRANSPORTS = ("json2", "xmlrpc")
MOVE_TYPES = ("out_invoice", "out_refund")
READ_BATCH_SIZE = 500  # refs per search_read; odoo.md §6 suggests pages of 500-1500
# Server errors that are worth retrying: concurrency failures Odoo gave up on after its own retries.
_TRANSIENT_MARKERS = ("SerializationFailure", "could not serialize", "DeadlockDetected", "LockNotAvailable",
                      "ConcurrencyError", "odoo.exceptions.LockError")
# Field that holds the human code of a record, for refs_resolve / refs_exist.
CODE_FIELDS = {
    "account.account": "code",
    "account.journal": "code",
    "account.tax": "name",  # taxes have no code; prefer xml ids (odoo.md §5.2)
    "product.product": "default_code",
    "account.analytic.account": "code",
    "res.currency": "name",
}
_MOVE_FIELDS = ["id", "ref", "name", "state", "move_type", "currency_id", "partner_id", "invoice_date",
                "amount_untaxed", "amount_tax", "amount_total", "amount_residual", "payment_state",
                "reversed_entry_id"]


class OdooError(Exception):
    """Odoo refused the call; retrying will not help. `message` is Odoo's text."""

    def __init__(self, message: str, *, name: str = "", status: int | None = None):
        super().__init__(message)
        self.message, self.name, self.status = message, name, status


class OdooUnavailable(OdooError):
    """Timeout, connection error or 5xx; safe to retry after checking what was committed."""


@dataclass(frozen=True)
class OdooConfig:
    url: str  # e.g. "https://nexa.odoo.com", no trailing path
    database: str
    username: str  # login; XML-RPC authenticates with it, JSON-2 needs only the key
    api_key: str
    transport: str = "json2"
    timeout_seconds: float = 30.0  # per HTTP call
    create_batch_size: int = 50  # moves per create call (odoo.md §6: 50-100)
    post_batch_size: int = 25  # moves per action_post call (odoo.md §6: 20-50; one failure fails the batch)

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, not {self.transport!r}")
        if self.create_batch_size < 1 or self.post_batch_size < 1 or self.timeout_seconds <= 0:
            raise ValueError("batch sizes and timeout must be positive")


@dataclass(frozen=True)
class ServerInfo:
    version: str  # e.g. "19.0" or "saas~19.1"
    uid: int


@dataclass(frozen=True)
class CompanyInfo:
    id: int
    name: str
    tax_calculation_rounding_method: str  # round_per_line | round_globally (Odoo's company setting)


@dataclass(frozen=True)
class PartnerDraft:
    ref: str  # the hub's customer reference; Odoo's res.partner.ref
    name: str
    email: str = ""
    country_code: str = ""  # ISO 3166-1 alpha-2
    state_code: str = ""  # province code, e.g. "ON"
    vat: str = ""


@dataclass(frozen=True)
class PaymentResult:
    id: int
    name: str  # e.g. "PSTRIP/2026/00001"
    memo: str
    state: str
    currency: str
    amount_cents: int  # minor units of `currency`


@dataclass(frozen=True)
class MoveLineDraft:
    name: str
    price_unit: Decimal  # major units of the move currency; send the rounded line subtotal with quantity 1
    quantity: Decimal = Decimal(1)
    product_id: int | None = None
    account_id: int | None = None  # None: Odoo takes the product's income account
    tax_ids: tuple[int, ...] = ()  # sent explicitly, so no fiscal-position mapping applies (odoo.md §5.3)
    analytic_distribution: Mapping[int, Decimal] | None = None  # analytic account id -> percent
    # Odoo tax id -> this line's tax in major units, for a line whose tax is not the rate rounded on the line
    # (a credit note item rounded cumulatively over its fee's credits); empty: Odoo computes it.
    manual_tax_amounts: tuple[tuple[int, Decimal], ...] = ()


@dataclass(frozen=True)
class MoveDraft:
    ref: str  # deterministic idempotency key, e.g. "NEXA/NEXA-2026-000123"
    move_type: str  # out_invoice | out_refund
    partner_id: int
    invoice_date: date
    currency: str  # ISO 4217
    journal_id: int
    lines: tuple[MoveLineDraft, ...]
    reversed_entry_id: int | None = None  # the invoice a refund reverses
    invoice_origin: str = ""
    invoice_date_due: date | None = None


@dataclass(frozen=True)
class MoveResult:
    id: int
    ref: str
    name: str  # "/" until posted, then e.g. "INV/2026/00001"
    state: str  # draft | posted | cancel
    move_type: str
    currency: str
    partner_id: int | None
    invoice_date: date | None
    amount_untaxed_cents: int  # minor units of `currency`, as Odoo computed them
    amount_tax_cents: int
    amount_total_cents: int
    amount_residual_cents: int
    payment_state: str  # not_paid | partial | in_payment | paid | reversed | ...
    reversed_entry_id: int | None


# -- money on the wire ---------------------------------------------------------------------------
def amount_to_wire(amount: Decimal) -> float:
    """Return the float Odoo expects for a Decimal amount (exact for 2 decimals up to 10^13)."""
    if not isinstance(amount, Decimal):
        raise TypeError(f"money must be Decimal, not {type(amount).__name__}")
    return float(amount)


def amount_from_wire(value: float | int, currency: str) -> Decimal:
    """Return the Decimal for an Odoo monetary float, rounded half-up to the currency's minor unit."""
    # repr() is the shortest decimal that round-trips the double, so 114.02 reads as 114.02.
    exact = Decimal(repr(float(value)))
    return exact.quantize(Decimal(1).scaleb(-currency_exponent(currency)), ROUND_HALF_UP)


def cents_from_wire(value: float | int, currency: str) -> int:
    return to_minor_units(amount_from_wire(value, currency), currency)


def cents_to_wire(cents: int, currency: str) -> float:
    return amount_to_wire(from_minor_units(cents, currency))


# -- transports -----------------------------------------------------------------------------------
def _transient(text: str) -> bool:
    return any(marker in text for marker in _TRANSIENT_MARKERS)


class _Json2Transport:
    def __init__(self, config: OdooConfig):
        self.config = config
        self.base = config.url.rstrip("/")

    def _request(self, path: str, body: dict[str, Any] | None, what: str) -> Any:
        headers = {"User-Agent": "NexaBilling-ledger/1", "X-Odoo-Database": self.config.database}
        data = None
        if body is not None:
            headers.update({"Content-Type": "application/json", "Authorization": f"bearer {self.config.api_key}"})
            data = json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, headers=headers,
                                         method="POST" if body is not None else "GET")
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_seconds) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise self._error(exc, what) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException, socket.timeout) as exc:
            reason = getattr(exc, "reason", exc)
            raise OdooUnavailable(f"{what}: {type(reason).__name__}: {reason}") from exc

    @staticmethod
    def _error(exc: urllib.error.HTTPError, what: str) -> OdooError:
        raw = exc.read()
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = None
        if isinstance(payload, dict) and "message" in payload:  # 19.0 body {name, message, arguments, ...}
            name, message = str(payload.get("name", "")), str(payload["message"])
        elif isinstance(payload, str):  # 18.x sent a bare string
            name, message = "", payload
        else:  # a proxy, a crashed worker, or the 404 HTML of an unknown database
            name, message = "", f"HTTP {exc.code} from Odoo ({what})"
            if exc.code >= 500 or exc.code == 429:
                return OdooUnavailable(message, status=exc.code)
            return OdooError(message, status=exc.code)
        if exc.code in (409, 429, 502, 503, 504) or _transient(name):
            return OdooUnavailable(message, name=name, status=exc.code)
        # Other 500s with an Odoo body are deterministic server errors (bad field, RedirectWarning).
        return OdooError(message, name=name, status=exc.code)

    def version(self) -> str:
        return str(self._request("/web/version", None, "GET /web/version")["version"])

    def uid(self) -> int:
        return int(self.call("res.users", "context_get")["uid"])

    def call(self, model: str, method: str, *, ids: Sequence[int] | None = None,
             context: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        body: dict[str, Any] = dict(kwargs)
        if ids is not None:
            body["ids"] = list(ids)
        if context:
            body["context"] = dict(context)
        return self._request(f"/json/2/{model}/{method}", body, f"{model}.{method}")


def _xmlrpc_transport(timeout: float, https: bool) -> xmlrpc.client.Transport:
    base = xmlrpc.client.SafeTransport if https else xmlrpc.client.Transport

    class _TimeoutTransport(base):  # type: ignore[valid-type, misc]
        def make_connection(self, host: Any) -> http.client.HTTPConnection:
            connection = super().make_connection(host)
            connection.timeout = timeout  # applies to connect and every read
            return connection

        def request(self, host: Any, handler: str, request_body: bytes, verbose: bool = False) -> Any:
            # Transport.request silently re-sends once when the server drops the connection; Odoo
            # may have committed the first one, so a re-sent create would duplicate the move.
            return self.single_request(host, handler, request_body, verbose)

    return _TimeoutTransport()


class _XmlRpcTransport:
    def __init__(self, config: OdooConfig):
        self.config = config
        self.base = config.url.rstrip("/")
        self._uid: int | None = None

    def _rpc(self, service: str, method: str, *params: Any) -> Any:
        what = f"{service}.{method}" if service == "common" else f"{params[3]}.{params[4]}"
        proxy = xmlrpc.client.ServerProxy(
            f"{self.base}/xmlrpc/2/{service}", allow_none=False,
            transport=_xmlrpc_transport(self.config.timeout_seconds, self.base.startswith("https")))
        try:
            return getattr(proxy, method)(*params)
        except xmlrpc.client.Fault as fault:
            raise self._fault_error(fault) from None
        except xmlrpc.client.ProtocolError as exc:
            error = OdooUnavailable if exc.errcode >= 500 or exc.errcode == 429 else OdooError
            raise error(f"HTTP {exc.errcode} from Odoo ({what})", status=exc.errcode) from None
        except (OSError, http.client.HTTPException, socket.timeout) as exc:
            raise OdooUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc

    @staticmethod
    def _fault_error(fault: xmlrpc.client.Fault) -> OdooError:
        text = str(fault.faultString)
        # /xmlrpc/2 codes (odoo.md §2): 2 UserError family, 3 AccessDenied, 4 AccessError, 1 anything else.
        if fault.faultCode == 3:
            return OdooError(text, name="odoo.exceptions.AccessDenied")
        if fault.faultCode == 4:
            return OdooError(text, name="odoo.exceptions.AccessError")
        if fault.faultCode == 2:
            return OdooError(text, name="odoo.exceptions.UserError")
        last = next((line for line in reversed(text.strip().splitlines()) if line.strip()), text)
        if _transient(text):
            return OdooUnavailable(last.strip())
        return OdooError(last.strip(), name="fault 1")

    def version(self) -> str:
        return str(self._rpc("common", "version")["server_version"])

    def uid(self) -> int:
        if self._uid is None:
            uid = self._rpc("common", "authenticate", self.config.database, self.config.username,
                            self.config.api_key, {})
            if not uid:  # authenticate answers False, never a Fault (odoo.md §1a)
                raise OdooError(f"Access Denied: Odoo refused login {self.config.username!r} on database "
                                f"{self.config.database!r}", name="odoo.exceptions.AccessDenied")
            self._uid = int(uid)
        return self._uid

    def call(self, model: str, method: str, *, ids: Sequence[int] | None = None,
             context: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        args: list[Any] = [] if ids is None else [list(ids)]
        if method == "create":  # positional, so a list returns a list of ids (odoo.md §1a)
            args.append(kwargs.pop("vals_list"))
        if context:
            kwargs["context"] = dict(context)
        return self._rpc("object", "execute_kw", self.config.database, self.uid(), self.config.api_key,
                         model, method, args, kwargs)


# -- client ---------------------------------------------------------------------------------------
def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _m2o_id(value: Any) -> int | None:
    return int(value[0]) if value else None  # [id, display_name] or False


def _date_or_none(value: Any) -> date | None:
    return date.fromisoformat(value) if value else None


@dataclass
class OdooClient:
    """Ledger operations on one Odoo database. Not thread-safe; make one per task run."""

    config: OdooConfig
    _currency_ids: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._transport = (_Json2Transport(self.config) if self.config.transport == "json2"
                           else _XmlRpcTransport(self.config))

    def _call(self, model: str, method: str, **kwargs: Any) -> Any:
        return self._transport.call(model, method, **kwargs)

    def check_connection(self) -> ServerInfo:
        """Return the server version and our uid; raises OdooError on bad credentials."""
        return ServerInfo(version=self._transport.version(), uid=self._transport.uid())

    # -- reference data ------------------------------------------------------------------------
    def journal_company(self, *, journal_id: int) -> CompanyInfo:
        """Return the company owning a journal: its moves round taxes with that company's setting. Two calls."""
        journals = self._call("account.journal", "search_read", domain=[["id", "=", journal_id]],
                              fields=["company_id"], limit=1)
        if not journals or not journals[0]["company_id"]:
            raise OdooError(f"journal {journal_id} or its company is not readable in Odoo")
        company_id = int(journals[0]["company_id"][0])
        rows = self._call("res.company", "search_read", domain=[["id", "=", company_id]],
                          fields=["name", "tax_calculation_rounding_method"], limit=1)
        if not rows:
            raise OdooError(f"company {company_id} is not readable in Odoo")
        return CompanyInfo(id=company_id, name=str(rows[0]["name"]),
                           tax_calculation_rounding_method=str(rows[0]["tax_calculation_rounding_method"]))

    def currency_id(self, *, code: str) -> int:
        """Return the id of an active res.currency by ISO code (cached per client)."""
        if code not in self._currency_ids:
            rows = self._call("res.currency", "search_read", domain=[["name", "=", code]], fields=["id"], limit=1)
            if not rows:
                raise OdooError(f"currency {code} is not active in Odoo")
            self._currency_ids[code] = int(rows[0]["id"])
        return self._currency_ids[code]

    def refs_resolve(self, *, model: str, refs: Sequence[int | str]) -> dict[int | str, int]:
        """Map ids, xml ids ("module.name") and codes (CODE_FIELDS) to ids of active records.

        Refs that do not resolve are left out. Two or three calls, whatever the number of refs.
        """
        ints = [ref for ref in refs if isinstance(ref, int)]
        xml_ids = [ref for ref in refs if isinstance(ref, str) and "." in ref]
        codes = [ref for ref in refs if isinstance(ref, str) and "." not in ref]
        found: dict[int | str, int] = {}
        candidates: dict[int | str, int] = {ref: ref for ref in ints}
        if xml_ids:
            pairs = [tuple(ref.split(".", 1)) for ref in xml_ids]
            rows = self._call("ir.model.data", "search_read",
                              domain=[["model", "=", model], ["module", "in", sorted({m for m, _ in pairs})],
                                      ["name", "in", sorted({n for _, n in pairs})]],
                              fields=["module", "name", "res_id"])
            by_pair = {(row["module"], row["name"]): int(row["res_id"]) for row in rows}
            candidates.update({ref: by_pair[pair] for ref, pair in zip(xml_ids, pairs) if pair in by_pair})
        if candidates:  # an xml id may point at a deleted or archived record
            alive = set(self._call(model, "search", domain=[["id", "in", sorted(set(candidates.values()))]]))
            found.update({ref: rid for ref, rid in candidates.items() if rid in alive})
        if codes:
            if model not in CODE_FIELDS:
                raise ValueError(f"no code field known for {model}; use ids or xml ids")
            code_field = CODE_FIELDS[model]
            rows = self._call(model, "search_read", domain=[[code_field, "in", codes]], fields=[code_field])
            by_code = {row[code_field]: int(row["id"]) for row in sorted(rows, key=lambda r: r["id"], reverse=True)}
            found.update({code: by_code[code] for code in codes if code in by_code})
        return found

    def refs_exist(self, *, model: str, refs: Sequence[int | str]) -> list[int | str]:
        """Return the refs (ids, xml ids or codes) with no active record in `model`, in input order."""
        found = self.refs_resolve(model=model, refs=refs)
        return [ref for ref in refs if ref not in found]

    # -- partners -------------------------------------------------------------------------------
    def partner_find_or_create(self, *, ref: str, name: str, email: str = "", country_code: str = "",
                               state_code: str = "", vat: str = "") -> int:
        """Return the res.partner with this `ref`, creating a company partner if there is none.

        Odoo has no unique constraint on `ref` (odoo.md §3.1): serialise calls per ref in the hub.
        An existing partner is returned as is (not updated).
        """
        rows = self._call("res.partner", "search_read", domain=[["ref", "=", ref]], fields=["id"],
                          limit=1, order="id")
        if rows:
            return int(rows[0]["id"])
        vals: dict[str, Any] = {"name": name, "ref": ref, "is_company": True}
        if email:
            vals["email"] = email
        if vat:
            vals["vat"] = vat
        if state_code:
            states = self._call("res.country.state", "search_read",
                                domain=[["country_id.code", "=", country_code], ["code", "=", state_code]],
                                fields=["id", "country_id"], limit=1)
            if not states:
                raise OdooError(f"unknown state {country_code}-{state_code} in Odoo")
            vals["state_id"], vals["country_id"] = states[0]["id"], states[0]["country_id"][0]
        elif country_code:
            countries = self._call("res.country", "search", domain=[["code", "=", country_code]], limit=1)
            if not countries:
                raise OdooError(f"unknown country {country_code} in Odoo")
            vals["country_id"] = countries[0]
        return int(self._call("res.partner", "create", vals_list=[vals])[0])

    def partners_find_or_create(self, *, partners: Sequence[PartnerDraft]) -> dict[str, int]:
        """Return {ref: partner id} for many partners: one search per 500 refs, then at most three calls
        (countries, states, one create) for those missing. Same caveats as partner_find_or_create."""
        by_ref = {p.ref: p for p in partners}
        found: dict[str, int] = {}
        for chunk in _chunks(list(by_ref), READ_BATCH_SIZE):
            for row in self._call("res.partner", "search_read", domain=[["ref", "in", list(chunk)]],
                                  fields=["id", "ref"], order="id"):
                found.setdefault(row["ref"], int(row["id"]))
        missing = [p for ref, p in by_ref.items() if ref not in found]
        if not missing:
            return found
        country_codes = sorted({p.country_code for p in missing if p.country_code})
        countries: dict[str, int] = {}
        states: dict[tuple[str, str], int] = {}
        if country_codes:
            rows = self._call("res.country", "search_read", domain=[["code", "in", country_codes]],
                              fields=["id", "code"])
            countries = {row["code"]: int(row["id"]) for row in rows}
            state_codes = sorted({p.state_code for p in missing if p.state_code})
            if state_codes and countries:
                code_of = {cid: code for code, cid in countries.items()}
                rows = self._call("res.country.state", "search_read",
                                  domain=[["country_id", "in", sorted(countries.values())],
                                          ["code", "in", state_codes]], fields=["id", "code", "country_id"])
                states = {(code_of[row["country_id"][0]], row["code"]): int(row["id"]) for row in rows}
        vals_list: list[dict[str, Any]] = []
        for partner in missing:
            vals: dict[str, Any] = {"name": partner.name, "ref": partner.ref, "is_company": True}
            if partner.email:
                vals["email"] = partner.email
            if partner.vat:
                vals["vat"] = partner.vat
            if partner.country_code:
                if partner.country_code not in countries:
                    raise OdooError(f"unknown country {partner.country_code} in Odoo")
                vals["country_id"] = countries[partner.country_code]
                if partner.state_code:
                    key = (partner.country_code, partner.state_code)
                    if key not in states:
                        raise OdooError(f"unknown state {partner.country_code}-{partner.state_code} in Odoo")
                    vals["state_id"] = states[key]
            vals_list.append(vals)
        for chunk_partners, chunk_vals in zip(_chunks(missing, READ_BATCH_SIZE), _chunks(vals_list, READ_BATCH_SIZE)):
            created = self._call("res.partner", "create", vals_list=list(chunk_vals))
            found.update({p.ref: int(i) for p, i in zip(chunk_partners, created)})
        return found

    def partner_receivables(self, *, refs: Sequence[str]) -> dict[tuple[str, str], int]:
        """Return {(partner ref, currency): minor units} the partners owe: Σ amount_residual of the receivable
        lines of their posted entries (invoices, credit notes, payments), per the entry's currency. What is
        reconciled between them (a payment on an invoice, credit consumed) nets out; an unmatched payment counts
        as credit. Residuals are in the company currency: exact for documents in it. Every partner carrying a ref
        counts for it."""
        ref_of: dict[int, str] = {}
        for chunk in _chunks(list(dict.fromkeys(refs)), READ_BATCH_SIZE):
            for row in self._call("res.partner", "search_read", domain=[["ref", "in", list(chunk)]],
                                  fields=["id", "ref"]):
                ref_of[int(row["id"])] = row["ref"]
        lines: list[Mapping[str, Any]] = []
        for chunk in _chunks(sorted(ref_of), READ_BATCH_SIZE):
            lines += self._call("account.move.line", "search_read",
                                domain=[["partner_id", "in", list(chunk)], ["move_id.state", "=", "posted"],
                                        ["account_id.account_type", "=", "asset_receivable"]],
                                fields=["partner_id", "move_id", "amount_residual"])
        currency_of: dict[int, str] = {}
        for chunk in _chunks(sorted({_m2o_id(line["move_id"]) for line in lines}), READ_BATCH_SIZE):
            for row in self._call("account.move", "read", ids=list(chunk), fields=["currency_id"]):
                currency_of[int(row["id"])] = str(row["currency_id"][1])
        owed: dict[tuple[str, str], int] = {}
        for line in lines:
            currency = currency_of[_m2o_id(line["move_id"])]
            key = (ref_of[_m2o_id(line["partner_id"])], currency)
            owed[key] = owed.get(key, 0) + cents_from_wire(line["amount_residual"], currency)
        return owed

    # -- moves ----------------------------------------------------------------------------------
    def _move_result(self, row: Mapping[str, Any]) -> MoveResult:
        currency = str(row["currency_id"][1])
        return MoveResult(
            id=int(row["id"]), ref=row["ref"] or "", name=row["name"] or "/", state=row["state"],
            move_type=row["move_type"], currency=currency, partner_id=_m2o_id(row["partner_id"]),
            invoice_date=_date_or_none(row["invoice_date"]),
            amount_untaxed_cents=cents_from_wire(row["amount_untaxed"], currency),
            amount_tax_cents=cents_from_wire(row["amount_tax"], currency),
            amount_total_cents=cents_from_wire(row["amount_total"], currency),
            amount_residual_cents=cents_from_wire(row["amount_residual"], currency),
            payment_state=row["payment_state"] or "not_paid",
            reversed_entry_id=_m2o_id(row["reversed_entry_id"]),
        )

    def moves_find(self, *, refs: Sequence[str]) -> dict[str, MoveResult]:
        """Return the customer invoices/refunds carrying these refs, one search_read per 500 refs.

        Duplicates (possible, Odoo does not enforce unique refs) resolve to the oldest move.
        """
        found: dict[str, MoveResult] = {}
        for chunk in _chunks(list(dict.fromkeys(refs)), READ_BATCH_SIZE):
            rows = self._call("account.move", "search_read",
                              domain=[["ref", "in", list(chunk)], ["move_type", "in", list(MOVE_TYPES)]],
                              fields=_MOVE_FIELDS, order="id")
            for row in rows:
                found.setdefault(row["ref"], self._move_result(row))
        return found

    def move_find(self, *, ref: str) -> MoveResult | None:
        return self.moves_find(refs=[ref]).get(ref)

    def _move_vals(self, move: MoveDraft) -> dict[str, Any]:
        if move.move_type not in MOVE_TYPES:
            raise ValueError(f"move_type must be one of {MOVE_TYPES}, not {move.move_type!r}")
        if not move.lines:
            raise ValueError(f"move {move.ref} has no lines")
        vals: dict[str, Any] = {
            "move_type": move.move_type, "ref": move.ref, "partner_id": move.partner_id,
            "journal_id": move.journal_id, "currency_id": self.currency_id(code=move.currency),
            "invoice_date": move.invoice_date.isoformat(), "invoice_line_ids": [],
        }
        if move.invoice_origin:
            vals["invoice_origin"] = move.invoice_origin
        if move.invoice_date_due:
            vals["invoice_date_due"] = move.invoice_date_due.isoformat()
        if move.reversed_entry_id:
            vals["reversed_entry_id"] = move.reversed_entry_id
        for line in move.lines:
            line_vals: dict[str, Any] = {
                "name": line.name, "quantity": float(line.quantity), "price_unit": amount_to_wire(line.price_unit),
                "tax_ids": [[6, 0, list(line.tax_ids)]],
            }
            if line.product_id:
                line_vals["product_id"] = line.product_id
            if line.account_id:
                line_vals["account_id"] = line.account_id
            if line.analytic_distribution:
                # JSON keys are strings; XML-RPC structs only allow string keys too.
                line_vals["analytic_distribution"] = {str(k): float(v) for k, v in line.analytic_distribution.items()}
            if line.manual_tax_amounts:
                # Odoo 19 keeps per-line tax amounts in `extra_tax_data` and uses them instead of its own rounding
                # while currency, price, discount and quantity are unchanged and every tax of the line has one
                # (account.tax `_import_base_line_extra_tax_data`, `_round_base_lines_tax_details`).
                line_vals["extra_tax_data"] = {
                    "currency_id": vals["currency_id"], "price_unit": line_vals["price_unit"],
                    "quantity": line_vals["quantity"], "discount": 0.0,
                    "manual_tax_amounts": {str(tax_id): {"tax_amount_currency": amount_to_wire(amount)}
                                           for tax_id, amount in line.manual_tax_amounts},
                }
            vals["invoice_line_ids"].append([0, 0, line_vals])
        return vals

    def moves_create(self, *, moves: Sequence[MoveDraft]) -> list[int]:
        """Create draft moves, `create_batch_size` per call (one transaction each); return ids in order.

        Not idempotent: call moves_find first, and again after OdooUnavailable.
        """
        ids: list[int] = []
        for chunk in _chunks(list(moves), self.config.create_batch_size):
            created = self._call("account.move", "create", vals_list=[self._move_vals(m) for m in chunk])
            if len(created) != len(chunk):
                raise OdooError(f"Odoo created {len(created)} moves for {len(chunk)} drafts")
            ids.extend(int(i) for i in created)
        return ids

    def moves_post(self, *, ids: Sequence[int]) -> None:
        """Post draft moves, `post_batch_size` per call. Odoo fails a whole call on one bad move."""
        for chunk in _chunks(list(ids), self.config.post_batch_size):
            self._call("account.move", "action_post", ids=list(chunk))

    def moves_read(self, *, ids: Sequence[int]) -> list[MoveResult]:
        """Return moves in the order of `ids`; OdooError if one does not exist."""
        results: dict[int, MoveResult] = {}
        for chunk in _chunks(list(dict.fromkeys(ids)), READ_BATCH_SIZE):
            for row in self._call("account.move", "read", ids=list(chunk), fields=_MOVE_FIELDS):
                results[int(row["id"])] = self._move_result(row)
        return [results[i] for i in ids]

    # -- reconciliation -------------------------------------------------------------------------
    def receivable_lines(self, *, move_ids: Sequence[int]) -> dict[int, int]:
        """Return {move id: id of its receivable line} for posted customer invoices, refunds and payment entries."""
        rows = self._call("account.move.line", "search_read",
                          domain=[["move_id", "in", list(move_ids)],
                                  ["account_id.account_type", "=", "asset_receivable"]],
                          fields=["move_id"], order="id")
        found: dict[int, int] = {}
        for row in rows:
            found.setdefault(int(row["move_id"][0]), int(row["id"]))
        return found

    def partials_between(self, *, debit_line_id: int, credit_line_id: int, currency: str) -> tuple[int, list[int]]:
        """Return the amount (minor units of the documents' currency) reconciled between two lines, and the ids of
        the account.partial.reconcile records doing it."""
        rows = self._call("account.partial.reconcile", "search_read",
                          domain=[["debit_move_id", "=", debit_line_id], ["credit_move_id", "=", credit_line_id]],
                          fields=["debit_amount_currency"], order="id")
        total = sum((amount_from_wire(row["debit_amount_currency"], currency) for row in rows), Decimal(0))
        return to_minor_units(total, currency), [int(row["id"]) for row in rows]

    def lines_reconcile(self, *, line_ids: Sequence[int]) -> None:
        """Reconcile receivable lines as far as their residuals allow (account.move.line.reconcile).

        What it returns is not used: read the result back with partials_between (over XML-RPC a None result
        arrives as a fault after Odoo has committed)."""
        try:
            self._call("account.move.line", "reconcile", ids=list(line_ids))
        except OdooError as exc:
            if "cannot marshal None" not in exc.message:
                raise

    def partials_remove(self, *, ids: Sequence[int]) -> None:
        """Undo reconciliations (unlink account.partial.reconcile records), as Odoo's "unreconcile" does."""
        self._call("account.partial.reconcile", "unlink", ids=list(ids))

    # -- payments -------------------------------------------------------------------------------
    def payment_create_unapplied(self, *, partner_id: int, amount_cents: int, currency: str, journal_id: int,
                                 date: date, ref: str) -> int:
        """Create and post an inbound customer payment matched to no invoice (the partner's outstanding credit in
        Odoo, odoo.md §3.5 "manual alternative"); return the account.payment id.

        Two calls: not idempotent. Call payment_find(ref) first, and again after OdooUnavailable or a failure
        of the second call (a draft payment with this memo is then posted, not created again)."""
        existing = self._call("account.payment", "search_read",
                              domain=[["memo", "=", ref], ["state", "=", "draft"]], fields=["id"], limit=1, order="id")
        if existing:
            payment_id = int(existing[0]["id"])
        else:
            lines = self._call("account.payment.method.line", "search_read",
                               domain=[["journal_id", "=", journal_id], ["payment_type", "=", "inbound"]],
                               fields=["id"], limit=1, order="id")
            if not lines:
                raise OdooError(f"journal {journal_id} has no inbound payment method")
            payment_id = int(self._call("account.payment", "create", vals_list=[{
                "payment_type": "inbound", "partner_type": "customer", "partner_id": partner_id,
                "amount": cents_to_wire(amount_cents, currency), "currency_id": self.currency_id(code=currency),
                "date": date.isoformat(), "journal_id": journal_id, "payment_method_line_id": int(lines[0]["id"]),
                "memo": ref}])[0])
        try:
            self._call("account.payment", "action_post", ids=[payment_id])
        except OdooError as exc:
            if "cannot marshal None" not in exc.message:  # XML-RPC: posted, but Odoo answered None
                raise
        return payment_id

    def payment_move_id(self, *, payment_id: int) -> int | None:
        """Return the journal entry of a posted account.payment (None while it has none)."""
        [row] = self._call("account.payment", "read", ids=[payment_id], fields=["move_id"])
        return _m2o_id(row["move_id"])

    def payment_find(self, *, ref: str) -> int | None:
        """Return the oldest non-cancelled account.payment whose memo is `ref`."""
        found = self._call("account.payment", "search", domain=[["memo", "=", ref], ["state", "!=", "canceled"]],
                           limit=1, order="id")
        return int(found[0]) if found else None

    def payment_read(self, *, payment_id: int) -> PaymentResult:
        """Return one account.payment's name, memo, state and amount."""
        [row] = self._call("account.payment", "read", ids=[payment_id],
                           fields=["name", "memo", "state", "amount", "currency_id"])
        currency = str(row["currency_id"][1])
        return PaymentResult(id=int(row["id"]), name=row["name"] or "", memo=row["memo"] or "", state=row["state"],
                             currency=currency, amount_cents=cents_from_wire(row["amount"], currency))

    def payment_register(self, *, move_id: int, amount_cents: int, currency: str, journal_id: int,
                         date: date, ref: str) -> int:
        """Register and reconcile a payment on a posted move; return the account.payment id.

        Odoo picks the direction from the move: inbound on an invoice, outbound (money back) on a credit note.

        Uses the register-payment wizard (odoo.md §3.5): two calls, the second one commits. Not
        idempotent: call payment_find(ref) first, and again after OdooUnavailable.
        """
        wizard_ids = self._call(
            "account.payment.register", "create",
            vals_list=[{"payment_date": date.isoformat(), "journal_id": journal_id,
                        "amount": cents_to_wire(amount_cents, currency),
                        "currency_id": self.currency_id(code=currency), "communication": ref}],
            context={"active_model": "account.move", "active_ids": [move_id]})
        action = self._call("account.payment.register", "action_create_payments", ids=list(wizard_ids))
        if isinstance(action, dict) and action.get("res_id"):
            return int(action["res_id"])
        payment_id = self.payment_find(ref=ref)
        if payment_id is None:
            raise OdooError(f"Odoo registered no payment with memo {ref!r}")
        return payment_id


def get_odoo_client(config: OdooConfig | None = None) -> OdooClient:
    """Return a client for `config`, or for the ODOO_* Django settings read now."""
    if config is None:
        from django.conf import settings

        config = OdooConfig(
            url=settings.ODOO_URL, database=settings.ODOO_DATABASE, username=settings.ODOO_USERNAME,
            api_key=settings.ODOO_API_KEY, transport=settings.ODOO_TRANSPORT,
            timeout_seconds=float(settings.ODOO_TIMEOUT_SECONDS),
            create_batch_size=int(getattr(settings, "ODOO_CREATE_BATCH_SIZE", 50)),
            post_batch_size=int(getattr(settings, "ODOO_POST_BATCH_SIZE", 25)),
        )
    return OdooClient(config)

"""Pure parts of apps.ledger.odoo_client: money on the wire, config, payloads, error classification."""
from __future__ import annotations

import io
import json
import random
import sys
import types
import urllib.error
import xmlrpc.client
from datetime import date
from decimal import Decimal

import pytest

from apps.ledger.odoo_client import (
    MoveDraft,
    MoveLineDraft,
    OdooClient,
    OdooConfig,
    OdooError,
    OdooUnavailable,
    _Json2Transport,
    _XmlRpcTransport,
    amount_from_wire,
    amount_to_wire,
    cents_from_wire,
    cents_to_wire,
    get_odoo_client,
)

CONFIG = OdooConfig(url="http://odoo.invalid", database="nexa", username="bot", api_key="k")


def test_two_decimal_amounts_survive_the_wire_up_to_10_to_the_12() -> None:
    rng = random.Random(20261031)
    cents = [0, 1, 5, 10, 99, 995, 9975, 11402, 10**14 - 1, 10**14, 10**14 + 1]
    cents += [rng.randrange(0, 10**14 + 1) for _ in range(20_000)]
    cents += [-c for c in cents[:1000]]
    for value in cents:
        amount = Decimal(value).scaleb(-2)
        assert amount_from_wire(amount_to_wire(amount), "CAD") == amount
        assert cents_from_wire(cents_to_wire(value, "CAD"), "CAD") == value


def test_odoo_float_noise_reads_back_as_the_intended_cents() -> None:
    assert cents_from_wire(0.1 + 0.2, "CAD") == 30
    assert cents_from_wire(114.02, "CAD") == 11402
    assert amount_from_wire(13.12, "CAD") == Decimal("13.12")
    assert cents_from_wire(1000, "JPY") == 1000


def test_floats_are_refused_as_money() -> None:
    with pytest.raises(TypeError):
        amount_to_wire(49.99)  # type: ignore[arg-type]


def test_config_refuses_unknown_transport_and_bad_sizes() -> None:
    with pytest.raises(ValueError, match="transport"):
        OdooConfig(url="u", database="d", username="u", api_key="k", transport="jsonrpc")
    with pytest.raises(ValueError):
        OdooConfig(url="u", database="d", username="u", api_key="k", create_batch_size=0)


def test_get_odoo_client_reads_settings_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = types.SimpleNamespace(ODOO_URL="http://odoo.invalid", ODOO_DATABASE="prod", ODOO_USERNAME="bot",
                                     ODOO_API_KEY="secret", ODOO_TRANSPORT="xmlrpc", ODOO_TIMEOUT_SECONDS="7")
    monkeypatch.setitem(sys.modules, "django.conf", types.SimpleNamespace(settings=settings))
    first = get_odoo_client()
    settings.ODOO_TRANSPORT = "json2"
    second = get_odoo_client()
    assert (first.config.transport, first.config.database, first.config.timeout_seconds) == ("xmlrpc", "prod", 7.0)
    assert isinstance(first._transport, _XmlRpcTransport)
    assert isinstance(second._transport, _Json2Transport)


def test_move_payload_uses_odoo_commands_and_wire_floats() -> None:
    client = OdooClient(CONFIG)
    client._currency_ids["CAD"] = 3  # no network: pretend the currency was looked up
    draft = MoveDraft(ref="NEXA/CN-1", move_type="out_refund", partner_id=42, invoice_date=date(2026, 11, 5),
                      currency="CAD", journal_id=1, reversed_entry_id=981,
                      lines=(MoveLineDraft(name="API calls", price_unit=Decimal("43.21"), product_id=7,
                                           account_id=55, tax_ids=(17,),
                                           analytic_distribution={12: Decimal("100")}),))
    vals = client._move_vals(draft)
    assert vals == {
        "move_type": "out_refund", "ref": "NEXA/CN-1", "partner_id": 42, "journal_id": 1, "currency_id": 3,
        "invoice_date": "2026-11-05", "reversed_entry_id": 981,
        "invoice_line_ids": [[0, 0, {"name": "API calls", "quantity": 1.0, "price_unit": 43.21,
                                     "tax_ids": [[6, 0, [17]]], "product_id": 7, "account_id": 55,
                                     "analytic_distribution": {"12": 100.0}}]],
    }
    xmlrpc.client.dumps((vals,), allow_none=False)  # marshallable as is: no None, no Decimal


def test_move_payload_refuses_entries_and_empty_moves() -> None:
    client = OdooClient(CONFIG)
    client._currency_ids["CAD"] = 3
    draft = MoveDraft(ref="r", move_type="entry", partner_id=1, invoice_date=date(2026, 1, 1), currency="CAD",
                      journal_id=1, lines=())
    with pytest.raises(ValueError, match="move_type"):
        client._move_vals(draft)


@pytest.mark.parametrize(
    ("code", "text", "retryable", "name"),
    [
        (2, "You cannot modify the following readonly fields on a posted move: date", False,
         "odoo.exceptions.UserError"),
        (3, "Access Denied", False, "odoo.exceptions.AccessDenied"),
        (4, "Private methods (such as 'account.move._post') cannot be called remotely.", False,
         "odoo.exceptions.AccessError"),
        (1, "Traceback (most recent call last):\n  ...\nValueError: Invalid field 'foo' on model 'account.move'\n",
         False, "fault 1"),
        (1, "Traceback...\npsycopg2.errors.SerializationFailure: could not serialize access\n", True, ""),
    ],
)
def test_xmlrpc_faults_map_to_permanent_or_retryable(code: int, text: str, retryable: bool, name: str) -> None:
    error = _XmlRpcTransport._fault_error(xmlrpc.client.Fault(code, text))
    assert isinstance(error, OdooUnavailable) is retryable
    if not retryable:
        assert error.name == name
        assert error.message in text


def _http_error(status: int, body: bytes) -> urllib.error.HTTPError:
    return urllib.error.HTTPError("http://odoo.invalid/json/2/x/y", status, "err", {}, io.BytesIO(body))  # type: ignore[arg-type]


def _odoo_body(name: str, message: str) -> bytes:
    return json.dumps({"name": name, "message": message, "arguments": [message], "context": {}, "debug": ""}).encode()


@pytest.mark.parametrize(
    ("status", "body", "retryable", "message"),
    [
        (422, _odoo_body("odoo.exceptions.UserError", "You need to add a line before posting."), False,
         "You need to add a line before posting."),
        (401, _odoo_body("werkzeug.exceptions.Unauthorized", "Invalid apikey"), False, "Invalid apikey"),
        (404, b"<html>Not Found</html>", False, "HTTP 404 from Odoo (m)"),
        (500, _odoo_body("builtins.ValueError", "Invalid field 'foo'"), False, "Invalid field 'foo'"),
        (500, _odoo_body("psycopg2.errors.SerializationFailure", "could not serialize"), True, "could not serialize"),
        (409, _odoo_body("odoo.exceptions.LockError", "locked"), True, "locked"),
        (500, b"<html>Internal Server Error</html>", True, "HTTP 500 from Odoo (m)"),
        (502, b"Bad Gateway", True, "HTTP 502 from Odoo (m)"),
        (422, b'"18.x style message"', False, "18.x style message"),
    ],
)
def test_json2_http_errors_map_to_permanent_or_retryable(status: int, body: bytes, retryable: bool,
                                                         message: str) -> None:
    error = _Json2Transport._error(_http_error(status, body), "m")
    assert isinstance(error, OdooError)
    assert isinstance(error, OdooUnavailable) is retryable
    assert (error.message, error.status) == (message, status)

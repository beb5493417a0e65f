"""Failure behaviour of apps.ledger.odoo_client against the stand-in's fault injection, for both transports."""
from __future__ import annotations

import dataclasses
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
    get_odoo_client,
)
from tests.odoo_standin.fixtures import odoo_client, odoo_config, odoo_standin  # noqa: F401 (fixtures)
from tests.odoo_standin.server import OdooStandIn

REF = "NEXA/NEXA-2026-000123"


@pytest.fixture
def fast_client(odoo_config: OdooConfig) -> OdooClient:
    """A client whose timeout is far below the stand-in's stall, so timeouts cost 0.3 s."""
    return get_odoo_client(dataclasses.replace(odoo_config, timeout_seconds=0.3))


def _draft(client: OdooClient, ref: str = REF, tax_id: int | None = None) -> MoveDraft:
    partner_id = client.partner_find_or_create(ref="cust-0001", name="Acme", country_code="CA", state_code="ON")
    if tax_id is None:
        tax_id = client.refs_resolve(model="account.tax", refs=["account.1_hst_sale_tax_13"])[
            "account.1_hst_sale_tax_13"]
    journal_id = client.refs_resolve(model="account.journal", refs=["INV"])["INV"]
    return MoveDraft(ref=ref, move_type="out_invoice", partner_id=partner_id, invoice_date=date(2026, 10, 31),
                     currency="CAD", journal_id=journal_id,
                     lines=(MoveLineDraft(name="Platform fee", price_unit=Decimal("49.99"), tax_ids=(tax_id,)),))


def _send(client: OdooClient, draft: MoveDraft) -> int:
    """The ledger service's idempotent step: find by ref, create only if absent, post only if draft."""
    found = client.move_find(ref=draft.ref)
    move_id = found.id if found else client.moves_create(moves=[draft])[0]
    if found is None or found.state == "draft":
        client.moves_post(ids=[move_id])
    return move_id


def _moves_with_ref(standin: OdooStandIn, ref: str) -> list[dict]:
    return standin.search_read("account.move", [["ref", "=", ref]], ["name", "state"])


def test_timeout_after_commit_is_unavailable_and_retry_does_not_duplicate(
        fast_client: OdooClient, odoo_standin: OdooStandIn) -> None:
    draft = _draft(fast_client)
    odoo_standin.fail_next(1, "timeout_after_create", model="account.move")

    with pytest.raises(OdooUnavailable):
        _send(fast_client, draft)
    assert _moves_with_ref(odoo_standin, REF) == [{"id": 1, "name": "/", "state": "draft"}]  # committed anyway

    move_id = _send(fast_client, draft)

    assert _moves_with_ref(odoo_standin, REF) == [{"id": move_id, "name": "INV/2026/00001", "state": "posted"}]
    assert odoo_standin.call_count("account.move", "create") == 1


def test_response_lost_after_post_is_unavailable_and_retry_does_not_post_twice(
        odoo_client: OdooClient, odoo_standin: OdooStandIn) -> None:
    draft = _draft(odoo_client)
    odoo_standin.fail_next(1, "drop_after_commit", model="account.move", method="action_post")

    with pytest.raises(OdooUnavailable):
        _send(odoo_client, draft)
    move_id = _send(odoo_client, draft)

    assert _moves_with_ref(odoo_standin, REF) == [{"id": move_id, "name": "INV/2026/00001", "state": "posted"}]
    assert odoo_standin.call_count("account.move", "action_post") == 1


def test_server_down_is_unavailable_and_restart_keeps_data(odoo_client: OdooClient,
                                                           odoo_standin: OdooStandIn) -> None:
    [move_id] = odoo_client.moves_create(moves=[_draft(odoo_client)])
    odoo_standin.fail_next(1, "down")

    with pytest.raises(OdooUnavailable):
        odoo_client.moves_post(ids=[move_id])
    with pytest.raises(OdooUnavailable):
        odoo_client.check_connection()

    odoo_standin.restart()
    odoo_client.moves_post(ids=[move_id])
    [move] = odoo_client.moves_read(ids=[move_id])
    assert (move.ref, move.name, move.state) == (REF, "INV/2026/00001", "posted")


def test_http_500_before_commit_is_unavailable_and_creates_nothing(odoo_client: OdooClient,
                                                                   odoo_standin: OdooStandIn) -> None:
    draft = _draft(odoo_client)
    odoo_standin.fail_next(1, "http_500", model="account.move", method="create")

    with pytest.raises(OdooUnavailable):
        odoo_client.moves_create(moves=[draft])

    assert _moves_with_ref(odoo_standin, REF) == []
    assert odoo_client.move_find(ref=REF) is None


def test_unknown_tax_is_a_permanent_error_with_odoo_message(odoo_client: OdooClient,
                                                            odoo_standin: OdooStandIn) -> None:
    with pytest.raises(OdooError) as caught:
        odoo_client.moves_create(moves=[_draft(odoo_client, tax_id=9999)])

    assert not isinstance(caught.value, OdooUnavailable)
    assert caught.value.message.startswith("Record does not exist or has been deleted.\n(Record: account.tax(9999,)")
    assert _moves_with_ref(odoo_standin, REF) == []


def test_one_bad_move_in_a_create_batch_creates_none(odoo_client: OdooClient, odoo_standin: OdooStandIn) -> None:
    good, bad = _draft(odoo_client, ref="NEXA/1"), _draft(odoo_client, ref="NEXA/2", tax_id=9999)

    with pytest.raises(OdooError):
        odoo_client.moves_create(moves=[good, bad])

    assert odoo_client.moves_find(refs=["NEXA/1", "NEXA/2"]) == {}


def test_one_bad_move_in_a_post_batch_posts_none(odoo_client: OdooClient) -> None:
    first, second = odoo_client.moves_create(moves=[_draft(odoo_client, ref="NEXA/1"),
                                                    _draft(odoo_client, ref="NEXA/2")])
    odoo_client.moves_post(ids=[first])

    with pytest.raises(OdooError, match=r"must be in draft"):
        odoo_client.moves_post(ids=[first, second])

    assert [m.state for m in odoo_client.moves_read(ids=[first, second])] == ["posted", "draft"]


def test_unknown_database_is_a_permanent_error(odoo_config: OdooConfig) -> None:
    client = get_odoo_client(dataclasses.replace(odoo_config, database="no-such-db"))
    with pytest.raises(OdooError) as caught:
        client.check_connection()
    assert not isinstance(caught.value, OdooUnavailable)


def test_dropped_connection_after_create_is_not_resent(odoo_client: OdooClient, odoo_standin: OdooStandIn) -> None:
    # xmlrpc.client re-sends once on a dropped connection unless the adapter stops it.
    odoo_standin.fail_next(1, "drop_after_commit", model="account.move", method="create")

    with pytest.raises(OdooUnavailable):
        odoo_client.moves_create(moves=[_draft(odoo_client)])

    assert odoo_standin.call_count("account.move", "create") == 1
    assert len(_moves_with_ref(odoo_standin, REF)) == 1

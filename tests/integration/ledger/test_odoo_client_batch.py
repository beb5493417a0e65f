"""Batched partner lookup and payment read-back of the Odoo adapter, both transports, over HTTP."""
from __future__ import annotations

from apps.ledger.odoo_client import OdooClient, OdooError, PartnerDraft
from tests.odoo_standin.fixtures import odoo_client, odoo_config, odoo_standin  # noqa: F401 (fixtures)
from tests.odoo_standin.server import OdooStandIn

import pytest


def test_partners_find_or_create_batches_and_keeps_existing(odoo_client: OdooClient,
                                                            odoo_standin: OdooStandIn) -> None:
    existing = odoo_client.partner_find_or_create(ref="c-1", name="Old name")
    odoo_standin.reset_counts()
    ids = odoo_client.partners_find_or_create(partners=[
        PartnerDraft(ref="c-1", name="New name"), PartnerDraft(ref="c-2", name="Two", country_code="CA", state_code="QC"),
        PartnerDraft(ref="c-3", name="Three", country_code="US", email="3@example.com", vat="US123")])
    assert ids["c-1"] == existing and len(set(ids.values())) == 3
    assert odoo_standin.call_count() == 4  # search, countries, states, one create
    rows = {r["ref"]: r for r in odoo_standin.search_read("res.partner", [["ref", "in", ["c-1", "c-2", "c-3"]]],
                                                         ["ref", "name", "state_id", "country_id", "vat"])}
    assert rows["c-1"]["name"] == "Old name"
    assert (rows["c-2"]["state_id"][1], rows["c-2"]["country_id"][1]) == ("Quebec", "Canada")
    assert (rows["c-3"]["state_id"], rows["c-3"]["vat"]) == (False, "US123")
    assert odoo_client.partners_find_or_create(partners=[PartnerDraft(ref="c-2", name="x")]) == {"c-2": ids["c-2"]}


def test_unknown_province_is_a_permanent_error(odoo_client: OdooClient) -> None:
    with pytest.raises(OdooError, match="unknown state CA-XX"):
        odoo_client.partners_find_or_create(partners=[PartnerDraft(ref="c-9", name="N", country_code="CA",
                                                                   state_code="XX")])

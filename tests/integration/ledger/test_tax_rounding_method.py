"""Odoo must round taxes as the hub does: odoo_check says when it does not, and posting refuses to send anything
(stand-in over real HTTP, both transports; issue 16)."""
from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.ledger.models import LedgerPosting, OdooTaxMapping
from apps.ledger.odoo_client import OdooConfig
from apps.ledger.services import ledger_mapping_check, ledger_post_pending_batch, ledger_posting_create, ledger_posting_retry
from tests.integration.ledger.builders import customer_make, invoice_make, mapping_make
from tests.odoo_standin.fixtures import odoo_client, odoo_config, odoo_standin  # noqa: F401 (fixtures)
from tests.odoo_standin.server import OdooStandIn

pytestmark = pytest.mark.django_db

EXPECTED = ("tax rounding: Odoo company 'Nexa Demo Inc.' computes taxes with tax_calculation_rounding_method="
            "round_globally, the hub with round_per_line (ODOO_TAX_ROUNDING_METHOD)")


@pytest.fixture
def odoo_settings(settings, odoo_config: OdooConfig):
    settings.ODOO_URL, settings.ODOO_DATABASE = odoo_config.url, odoo_config.database
    settings.ODOO_USERNAME, settings.ODOO_API_KEY = odoo_config.username, odoo_config.api_key
    settings.ODOO_TRANSPORT, settings.ODOO_TIMEOUT_SECONDS = odoo_config.transport, 2
    return settings


@pytest.fixture
def service(service_factory):
    service = service_factory("cloud").service
    mapping_make(service=service)
    for code in ("hst_sale_tax_14", "pst_sale_tax_6", "pst_sale_tax_7_mb"):  # the rest of ca_2023's sales taxes
        OdooTaxMapping.objects.create(tax_code=code, odoo_tax=f"account.1_{code}")
    return service


def _round_globally(standin: OdooStandIn) -> None:
    standin.store.write("res.company", [1], {"tax_calculation_rounding_method": "round_globally"})


def test_odoo_check_names_a_company_that_rounds_globally(service, odoo_settings, odoo_standin) -> None:
    assert ledger_mapping_check().mismatches == []
    _round_globally(odoo_standin)

    out = StringIO()
    with pytest.raises(CommandError, match=r"^1 setting mismatch\(es\)$"):
        call_command("odoo_check", stdout=out)

    assert f"MISMATCH {EXPECTED}" in out.getvalue()
    assert "Set the company's Rounding Method (Accounting settings, Taxes) to 'Round per Line'" in out.getvalue()


def test_posting_refuses_to_send_anything_while_odoo_rounds_globally(service, odoo_client, odoo_standin) -> None:
    customer = customer_make(province="ON")
    # Five 10-cent lines and 49.99 at 13 %: the hub (per line) bills 6.55 of tax, Odoo rounding globally 6.56.
    invoice = invoice_make(service=service, customer=customer, fees_cents=[10] * 5 + [4999])
    posting = ledger_posting_create(invoice=invoice)
    _round_globally(odoo_standin)

    result = ledger_post_pending_batch(limit=10, client=odoo_client)

    posting.refresh_from_db()
    assert (result.failed, posting.status, posting.odoo_move_id) == (1, LedgerPosting.Status.FAILED, None)
    assert posting.last_error.startswith(EXPECTED)
    assert odoo_standin.search_read("account.move", [], ["id"]) == []
    assert odoo_standin.search_read("res.partner", [["ref", "=", customer.external_id]], ["id"]) == []

    odoo_standin.store.write("res.company", [1], {"tax_calculation_rounding_method": "round_per_line"})
    assert ledger_posting_retry(posting_id=posting.pk)
    ledger_post_pending_batch(limit=10, client=odoo_client)

    posting.refresh_from_db()
    assert posting.status == LedgerPosting.Status.POSTED, posting.last_error
    assert (posting.odoo_amount_untaxed_cents, posting.odoo_amount_tax_cents) == (5049, 655)

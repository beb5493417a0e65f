"""Coupons post to Odoo as their own negative lines (issue 20): the fee at its full amount, each coupon's share of
it as a discount line with the fee's taxes; the hub taxed the fee once, net of its coupons, and Odoo's totals still
equal the hub's to the cent, including where Odoo's per-line rounding alone would not (stand-in, real close)."""
from __future__ import annotations

import pytest

from apps.invoicing.close import periods_close
from apps.invoicing.models import Invoice
from apps.ledger.models import LedgerPosting
from apps.ledger.services import ledger_post_pending_batch
from tests.integration.invoicing.conftest import Billing, at
from tests.integration.invoicing.test_coupons_close import apply, coupon
from tests.integration.ledger.builders import mapping_make
from tests.odoo_standin.fixtures import odoo_client, odoo_config, odoo_standin  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db


def test_coupons_are_discount_lines_and_odoo_agrees_to_the_cent(service_factory, settings, odoo_client,
                                                                odoo_standin):
    """A 99.90 plan in Ontario, a 9.94 coupon then 10 %: 99.90 − 9.94 = 89.96, − 9.00 (10 %, half-up) = 80.96,
    HST 13 % once on it: 10.52. Odoo's own rounding of the lines would give 12.99 − 1.29 − 1.17 = 10.53; the
    coupon lines carry the hub's difference, so Odoo says 80.96 + 10.52 = 91.48 as the hub does."""
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    billing = Billing(service_factory("nexacloud", "NexaCloud").service)
    mapping_make(service=billing.service)
    link = billing.customer()
    billing.subscribe("s1", billing.plan(amount_cents=9990), when=at(2026, 3, 1, 0, 0))
    coupon(billing, "welcome", amount_cents=994)
    apply(billing, link, "welcome")
    coupon(billing, "tenpc", percentage_rate="10")
    apply(billing, link, "tenpc")
    periods_close(as_of=at(2026, 4, 1, 2, 0))
    invoice = Invoice.objects.get()
    hub = (invoice.sub_total_excluding_taxes_amount_cents, invoice.taxes_amount_cents,
           invoice.sub_total_including_taxes_amount_cents)
    assert (invoice.coupons_amount_cents, *hub) == (994 + 900, 8096, 1052, 9148)

    for _ in range(3):
        ledger_post_pending_batch(client=odoo_client)
        LedgerPosting.objects.filter(status="pending").update(next_attempt_at=None)
    posting = LedgerPosting.objects.get(kind="invoice", invoice=invoice)
    assert posting.status == "posted", posting.last_error
    assert (posting.odoo_amount_untaxed_cents, posting.odoo_amount_tax_cents, posting.odoo_amount_total_cents) == hub
    lines = odoo_standin.search_read("account.move.line", [["move_id", "=", posting.odoo_move_id],
                                                           ["display_type", "=", "product"]],
                                     ["name", "price_subtotal", "price_total", "tax_ids"])
    assert [(line["name"], line["price_subtotal"]) for line in lines] == [
        ("NexaCloud · Pro", 99.9), ("Coupon welcome: NexaCloud · Pro", -9.94),
        ("Coupon tenpc: NexaCloud · Pro", -9.0)]
    assert len({tuple(line["tax_ids"]) for line in lines}) == 1 and lines[0]["tax_ids"]  # the fee's taxes on each
    assert round(sum(line["price_total"] - line["price_subtotal"] for line in lines), 2) == 10.52

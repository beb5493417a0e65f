"""An invoice with one fee per pricing group (Lago `pricing_group_keys`) posts to Odoo with one line per fee."""
from __future__ import annotations

import pytest

from apps.invoicing.close import periods_close
from apps.invoicing.models import Invoice
from apps.ledger.models import LedgerPosting
from apps.ledger.services import ledger_post_pending_batch, ledger_posting_create
from apps.usage.services import usage_events_ingest
from apps.usage.validation import EventIn
from tests.integration.invoicing.conftest import Billing, at
from tests.integration.ledger.builders import mapping_make
from tests.odoo_standin.fixtures import odoo_client, odoo_config, odoo_standin  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db


def test_each_group_fee_is_its_own_odoo_line(service_factory, settings, odoo_client, odoo_standin) -> None:
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    service = service_factory("cloud").service
    mapping_make(service=service)
    billing = Billing(service)
    metric = billing.metric()
    plan = billing.plan(amount_cents=0, charges=[(metric, "standard", {"amount": "1",
                                                                        "pricing_group_keys": ["region"]}, {})])
    billing.customer()
    billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    # Lago's guide, "Group keys": 10 GB in EU and 15 GB in US at $1 per GB.
    usage_events_ingest(service=service, now=at(2026, 3, 10), events=[
        EventIn(transaction_id=tid, external_subscription_id="s1", code="gb",
                timestamp=int(at(2026, 3, day).timestamp()), properties=props)
        for tid, day, props in [("t1", 2, {"gb": "10", "region": "EU"}), ("t2", 3, {"gb": "15", "region": "US"})]])
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    invoice = Invoice.objects.get()
    assert invoice.status == Invoice.Status.FINALIZED
    ledger_posting_create(invoice=invoice)  # already written at finalization: no second posting

    result = ledger_post_pending_batch(limit=10, client=odoo_client)

    assert result.posted == 1 and LedgerPosting.objects.filter(invoice=invoice).count() == 1
    posting = LedgerPosting.objects.get(invoice=invoice)
    assert (posting.odoo_amount_untaxed_cents, posting.odoo_amount_tax_cents) == (2500, 325)  # 13% HST per fee
    lines = odoo_standin.search_read("account.move.line", [["move_id", "=", posting.odoo_move_id],
                                                           ["display_type", "=", "product"]], ["name", "price_unit"])
    assert sorted(line["price_unit"] for line in lines) == [10.0, 15.0]
    assert sorted(line["name"].rsplit(" · ", 1)[1] for line in lines) == ["EU", "US"]

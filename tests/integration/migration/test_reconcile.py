"""Reconciliation of a dual run: a shadow close of November against Lago's invoices issued in 2026-12, zero
differences on identical data and each planted difference found and classified."""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone as dt_timezone
from io import StringIO

import pytest
from django.core.management import call_command

from apps.invoicing.close import periods_close
from apps.invoicing.models import Invoice
from apps.migration.models import ReconciliationDifference, ReconciliationRun
from apps.migration.reconcile import reconcile
from apps.migration.services import phase_switch
from apps.usage import validation
from apps.usage.services import usage_events_ingest
from tests.integration.invoicing.conftest import at
from tests.lago_standin import fixtures

pytestmark = pytest.mark.django_db


def _usage(service):
    moment = int(datetime(2026, 11, 15, 12, tzinfo=dt_timezone.utc).timestamp())
    events = [{"transaction_id": f"h{n}", "external_subscription_id": "sub-acme-1", "code": "compute_hours",
               "timestamp": moment, "properties": {"hours": "15", "region": "ca-east"}} for n in range(10)]
    events += [{"transaction_id": f"c{n}", "external_subscription_id": "sub-acme-1", "code": "api_calls",
                "timestamp": moment} for n in range(2100)]
    for start in range(0, len(events), 1000):
        usage_events_ingest(service=service,
                            events=validation.decode_events(json.dumps({"events": events[start:start + 1000]}).encode()))


def lago_copy(invoice: Invoice, *, key: str, number: str) -> dict:
    """Lago's invoice for the same customer-period, built fee by fee from the hub's (Lago's shapes, per-fee tax)."""
    acme = fixtures.acme_customer()
    fees = []
    for index, fee in enumerate(invoice.fees.select_related("subscription__plan", "charge__billable_metric")):
        kind = "subscription" if fee.fee_type == "subscription" else "charge"
        code = fee.subscription.plan.code if kind == "subscription" else fee.charge.billable_metric.code
        fees.append(fixtures.fee(
            invoice_key=key, index=index, kind=kind, code=code, name=fee.name, units=str(fee.units),
            amount_cents=fee.amount_cents, subscription_external_id="sub-acme-1", customer_external_id="acme",
            taxes=[fixtures.HST], from_date=fee.from_datetime.isoformat(), to_date=fee.to_datetime.isoformat()))
    return fixtures.invoice(key, number=number, customer_obj=acme, issuing_date=str(invoice.issuing_date), fees=fees,
                            billing_periods=[fixtures.billing_period("sub-acme-1", "cloud_pro", "2026-11-01T04:00:00Z",
                                                                     "2026-12-01T04:59:59Z")])


@pytest.fixture
def shadow(run_import, nexacloud, lago):
    """November closed in shadow for Acme, and Lago's identical invoice for it."""
    run_import()
    phase_switch(service=nexacloud, to_phase="dual_run", reason="pilot", actor="test")
    _usage(nexacloud)
    periods_close(as_of=at(2026, 12, 1, 1, 0))
    invoice = Invoice.objects.get(shadow__isnull=False)
    assert invoice.fees_amount_cents == 4900 + 1250 + 1000  # 150 h graduated, 2,100 calls in packages
    lago_invoice = lago_copy(invoice, key="acme-2026-11", number="NXC-001-011")
    lago.org["invoices"].append(lago_invoice)
    return invoice, lago_invoice


def differences(run):
    return sorted((d.kind, d.item) for d in ReconciliationDifference.objects.filter(line__run=run))


def test_identical_invoices_reconcile_with_zero_differences(shadow, nexacloud):
    run = reconcile(service=nexacloud, period="2026-12")
    assert run.summary == "NexaCloud, 2026-12: 1 customers, 1 match, 0 differ"
    assert run.differences_count == 0
    line = run.lines.get()
    assert (line.external_customer_id, line.hub_invoice, line.lago_number) == ("acme", shadow[0], "NXC-001-011")
    assert line.hub_side["total_amount_cents"] == line.lago_side["total_amount_cents"] == 8080


def test_units_price_and_tax_differences_are_each_found(shadow, nexacloud, lago):
    _, lago_invoice = shadow
    hours, calls = lago_invoice["fees"][1], lago_invoice["fees"][2]
    assert (hours["item"]["code"], calls["item"]["code"]) == ("compute_hours", "api_calls")
    hours["units"] = "151.0"  # Lago counted one more hour (and priced it)
    hours["amount_cents"] = 1255
    calls["amount_cents"] = 1001  # same calls, one cent dearer
    lago_invoice["applied_taxes"][0]["amount_cents"] += 1  # Lago rounded its invoice tax differently
    for total, delta in (("fees_amount_cents", 6), ("taxes_amount_cents", 1), ("total_amount_cents", 7)):
        lago_invoice[total] += delta  # Lago's totals add up its own lines
    run = reconcile(service=nexacloud, period="2026-12")
    assert differences(run) == [
        ("price_differ", "sub-acme-1/charge:api_calls"), ("tax_differ", "tax 13%"),
        ("total_differ", "fees_amount_cents"), ("total_differ", "taxes_amount_cents"),
        ("total_differ", "total_amount_cents"), ("units_differ", "sub-acme-1/charge:compute_hours")]
    assert run.summary.endswith("1 customers, 0 match, 1 differ")


def test_an_invoice_missing_on_either_side_is_found(shadow, nexacloud, lago):
    lago.org["invoices"].remove(shadow[1])
    lago.org["invoices"].append(fixtures.invoice(
        "globex-2026-11", number="NXC-002-009", customer_obj=lago.org["customers"][1], issuing_date="2026-12-10",
        fees=[], billing_periods=[]))
    run = reconcile(service=nexacloud, period="2026-12")
    assert differences(run) == [("missing_in_hub", "invoice"), ("missing_in_lago", "invoice")]
    assert run.summary.endswith("2 customers, 0 match, 2 differ")


def test_the_command_reruns_it_and_the_admin_exports_csv(shadow, nexacloud, lago, admin_client, tmp_path):
    lago.org["invoices"][-1]["fees"][2]["amount_cents"] += 2
    out, target = StringIO(), tmp_path / "diff.csv"
    with pytest.raises(SystemExit):
        call_command("reconcile", service="nexacloud", period="2026-12", csv=str(target), stdout=out)
    assert "1 differ" in out.getvalue() and "price_differ sub-acme-1/charge:api_calls" in out.getvalue()
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert [(row["customer"], row["kind"], row["delta_cents"]) for row in rows][0] == ("acme", "price_differ", "-2")
    run = ReconciliationRun.objects.get()
    response = admin_client.post("/admin/migration/reconciliationrun/", {
        "action": "export_csv", "_selected_action": [run.pk]})
    assert response["Content-Type"] == "text/csv" and b"price_differ" in response.content
    page = admin_client.get(f"/admin/migration/reconciliationrun/{run.pk}/change/")
    assert b"DIFFERS" in page.content
    line = run.lines.get()
    drill = admin_client.get(f"/admin/migration/reconciliationline/{line.pk}/change/")
    assert b"sub-acme-1/charge:api_calls" in drill.content and b"$80.80 CAD" in drill.content

"""lago_import: what one import writes, that a rerun changes nothing, that a crash and a rerun end like one clean
import, and that conflicts are reported, never overwritten."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import transaction

from apps.catalog.models import BillableMetric, Plan, Tax
from apps.customers.models import AccountLink
from apps.invoicing.models import Fee, Invoice, InvoiceSubscription
from apps.ledger.models import LedgerPosting
from apps.migration.models import ImportIssue, ImportRun, ServicePhase
from apps.payments.models import PaymentAttempt, StripeCustomer
from apps.subscriptions.models import Subscription
from apps.webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db

UTC = timezone.utc
CREATED_ALL = {
    "taxes": 4, "billable_metrics": 3, "plans": 3, "customers": 3, "subscriptions_active": 2,
    "subscriptions_pending": 2, "invoices": 3,
}


def snapshot(service) -> dict:
    """Everything an import writes, by natural keys (no ids, no timestamps of the writes themselves)."""
    subs = {sub.pk: f"{sub.external_id}/{sub.status}" for sub in Subscription.objects.filter(service=service)}
    charges = {charge.pk: f"{charge.plan.code}/{charge.code}" for plan in Plan.objects.filter(service=service)
               for charge in plan.charges.all()}

    def fee_key(key: str) -> str:
        key = re.sub(r"sub:(\d+)", lambda m: f"sub:{subs[int(m.group(1))]}", key)
        return re.sub(r"charge:(\d+)", lambda m: f"charge:{charges[int(m.group(1))]}", key)

    return {
        "taxes": sorted(Tax.objects.filter(service=service).values_list("code", "name", "rate")),
        "metrics": sorted((m.code, m.aggregation_type, m.field_name, str(m.filters))
                          for m in BillableMetric.objects.filter(service=service)),
        "plans": sorted((p.code, p.interval, p.amount_cents, p.pay_in_advance,
                         sorted((c.code, c.billable_metric.code, c.charge_model, str(c.properties)) for c in p.charges.all()))
                        for p in Plan.objects.filter(service=service)),
        "customers": sorted((link.external_id, link.customer.external_id, link.customer.state, link.customer.timezone,
                             link.customer.currency, link.customer.city, link.customer.address_line1,
                             getattr(getattr(link.customer, "stripe_account", None), "stripe_customer_id", None))
                            for link in AccountLink.objects.filter(service=service).select_related("customer")),
        "subscriptions": sorted((s.external_id, s.status, s.plan.code, s.billing_time, s.subscription_at, s.started_at,
                                 s.activates_at, s.previous_subscription.plan.code if s.previous_subscription else None,
                                 s.usage_billed_until)
                                for s in Subscription.objects.filter(service=service).select_related("plan")),
        "invoices": sorted((i.number, i.status, i.payment_status, i.issuing_date, i.fees_amount_cents,
                            i.taxes_amount_cents, i.total_amount_cents, i.total_paid_amount_cents,
                            sorted((fee_key(f.fee_key) if f.fee_key.startswith("sub:") else "lago", f.fee_type, f.units,
                                    f.amount_cents, f.taxes_amount_cents) for f in i.fees.all()),
                            sorted((p.subscription.external_id, p.from_datetime, p.to_datetime, p.charges_to_datetime)
                                   for p in i.billing_periods.select_related("subscription")),
                            sorted(i.applied_taxes.values_list("tax_code", "amount_cents")))
                           for i in Invoice.objects.filter(customer__account_links__service=service)),
    }


def test_one_import_writes_the_organisation_as_the_hub_keeps_it(run_import, nexacloud):
    run = run_import()
    assert run.status == ImportRun.Status.SUCCEEDED
    assert {resource: counts["created"] for resource, counts in run.counts.items()} == CREATED_ALL
    assert ServicePhase.objects.get(service=nexacloud).phase == "lago"

    acme = AccountLink.objects.get(service=nexacloud, external_id="acme").customer
    assert (acme.external_id, acme.state, acme.country, acme.timezone, acme.currency, acme.city) == (
        "nexacloud:acme", "ON", "CA", "America/Toronto", "CAD", "Toronto")
    assert acme.address_line1 == "1 Main Street" and acme.net_payment_term == 30
    assert StripeCustomer.objects.get(customer=acme).stripe_customer_id == "cus_AcmeLago001"
    initech = AccountLink.objects.get(service=nexacloud, external_id="initech").customer
    assert not StripeCustomer.objects.filter(customer=initech).exists()

    metric = BillableMetric.objects.get(service=nexacloud, code="compute_hours")
    assert (metric.aggregation_type, metric.field_name) == ("sum_agg", "hours")
    assert metric.filters == [{"key": "region", "values": ["ca-east", "ca-west"]}]
    pro = Plan.objects.get(service=nexacloud, code="cloud_pro")
    assert sorted(pro.charges.values_list("code", "charge_model")) == [("api_calls", "package"),
                                                                      ("compute_hours", "graduated")]

    active = Subscription.objects.get(service=nexacloud, external_id="sub-globex-1", status="active")
    assert (active.plan.code, active.billing_time) == ("cloud_pro", "anniversary")
    assert active.started_at == datetime(2026, 3, 10, 5, tzinfo=UTC)
    downgrade = Subscription.objects.get(service=nexacloud, external_id="sub-globex-1", status="pending")
    assert downgrade.plan.code == "cloud_basic" and downgrade.previous_subscription == active
    assert downgrade.subscription_at == active.subscription_at  # Lago keeps the anchor
    assert downgrade.activates_at == datetime(2026, 12, 10, 5, tzinfo=UTC)  # local midnight, Toronto (EST)
    future = Subscription.objects.get(service=nexacloud, external_id="sub-initech-1")
    assert (future.status, future.started_at, future.previous_subscription) == ("pending", None, None)

    october = Invoice.objects.get(number="NXC-001-010")
    assert (october.status, october.payment_status, october.total_amount_cents) == ("finalized", "succeeded", 8080)
    acme_sub = Subscription.objects.get(service=nexacloud, external_id="sub-acme-1")
    # The close's own keys: the hub never bills again a period Lago invoiced.
    charge = pro.charges.get(code="compute_hours")
    assert set(october.fees.values_list("fee_key", flat=True)) == {
        f"sub:{acme_sub.pk}:base:2026-10-01", f"sub:{acme_sub.pk}:charge:{charge.pk}:2026-10-01",
        f"sub:{acme_sub.pk}:charge:{pro.charges.get(code='api_calls').pk}:2026-10-01"}
    period = InvoiceSubscription.objects.get(invoice=october)
    assert period.to_datetime == period.charges_to_datetime == datetime(2026, 11, 1, 4, tzinfo=UTC)  # exclusive
    acme_sub.refresh_from_db()
    assert acme_sub.usage_billed_until == datetime(2026, 11, 1, 4, tzinfo=UTC)
    # History, not events: nothing is announced, posted or collected.
    assert not WebhookEvent.objects.exists()
    assert not LedgerPosting.objects.exists()
    assert not PaymentAttempt.objects.exists()


def test_a_second_import_changes_nothing_and_says_so(run_import, nexacloud):
    run_import()
    before = snapshot(nexacloud)
    out = StringIO()
    lago_url = ImportRun.objects.get().api_url
    call_command("lago_import", service="nexacloud", url=lago_url, api_key="lago-standin-key", stdout=out)
    second = ImportRun.objects.order_by("-pk").first()
    assert {resource: counts["unchanged"] for resource, counts in second.counts.items()} == CREATED_ALL
    assert all(counts.get("created", 0) == counts.get("updated", 0) == 0 for counts in second.counts.values())
    assert "Nothing changed: 20 objects read, none created or updated." in out.getvalue()
    assert snapshot(nexacloud) == before


def test_a_crash_after_a_page_and_a_rerun_end_like_one_clean_import(run_import, nexacloud, lago):
    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        run_import(per_page=1)
        clean = snapshot(nexacloud)
        raise Rollback

    class Crash(Exception):
        pass

    def crash_after_second_customer_page(resource: str, page: int) -> None:
        if (resource, page) == ("customers", 2):
            raise Crash("killed")

    with pytest.raises(Crash):
        run_import(per_page=1, on_page=crash_after_second_customer_page)
    crashed = ImportRun.objects.get()
    assert crashed.status == ImportRun.Status.FAILED
    assert crashed.checkpoints.get(resource="customers").page == 2
    lago.requests.clear()
    rerun = run_import(per_page=1)
    assert rerun.pk == crashed.pk and rerun.resumed_count == 1 and rerun.status == ImportRun.Status.SUCCEEDED
    # Resumed after the last committed page: the first customer pages are not read again.
    customer_pages = [path for method, path in lago.requests if path.startswith("/api/v1/customers?")]
    assert customer_pages and all("page=1&" not in path and "page=2&" not in path for path in customer_pages)
    assert {resource: counts["created"] for resource, counts in rerun.counts.items()} == CREATED_ALL
    assert snapshot(nexacloud) == clean


def test_a_metric_existing_with_another_aggregation_is_reported_not_overwritten(run_import, nexacloud):
    from apps.catalog.services import billable_metric_create

    billable_metric_create(service=nexacloud, values={"code": "compute_hours", "name": "Hours",
                                                      "aggregation_type": "count_agg"})
    run = run_import()
    assert run.counts["billable_metrics"]["conflict"] == 1
    issue = ImportIssue.objects.get(run=run, resource="billable_metrics", key="compute_hours")
    assert issue.outcome == "conflict"
    assert "aggregation_type 'count_agg' on the hub, 'sum_agg' on Lago" in issue.reason
    assert BillableMetric.objects.get(service=nexacloud, code="compute_hours").aggregation_type == "count_agg"
    # What prices with it is not imported either: the hub's metric would bill it differently.
    assert ImportIssue.objects.get(run=run, resource="plans", key="cloud_pro").outcome == "skipped"
    assert not Plan.objects.filter(service=nexacloud, code="cloud_pro").exists()
    assert not Subscription.objects.filter(service=nexacloud, plan__code="cloud_pro").exists()


def test_a_plan_whose_charges_differ_is_reported_not_overwritten(run_import, nexacloud, lago):
    run_import()
    charge = lago.org["plans"][0]["charges"][1]
    charge["properties"] = {**charge["properties"], "amount": "6"}
    second = run_import()
    issue = ImportIssue.objects.get(run=second, resource="plans", key="cloud_pro")
    assert issue.outcome == "conflict"
    assert "charge api_calls properties" in issue.reason and "'amount': '6'" in issue.reason
    assert Plan.objects.get(service=nexacloud, code="cloud_pro").charges.get(code="api_calls").properties["amount"] == "5"


def test_a_dry_run_reports_and_writes_nothing(run_import, nexacloud):
    run = run_import(dry_run=True)
    assert run.dry_run and {resource: counts["created"] for resource, counts in run.counts.items()} == CREATED_ALL
    assert not Plan.objects.filter(service=nexacloud).exists()
    assert not ServicePhase.objects.filter(service=nexacloud).exists()
    assert not Invoice.objects.exists()


def test_a_changed_customer_is_updated_and_its_payment_status_follows_lago(run_import, nexacloud, lago):
    run_import()
    lago.org["customers"][0]["city"] = "Ottawa"
    lago.org["invoices"][2]["payment_status"] = "succeeded"
    lago.org["invoices"][2]["total_paid_amount_cents"] = lago.org["invoices"][2]["total_amount_cents"]
    second = run_import()
    assert second.counts["customers"] == {"created": 0, "updated": 1, "unchanged": 2, "skipped": 0, "conflict": 0}
    assert second.counts["invoices"]["updated"] == 1
    assert AccountLink.objects.get(service=nexacloud, external_id="acme").customer.city == "Ottawa"
    assert Invoice.objects.get(number="NXC-002-008").payment_status == "succeeded"


def test_the_admin_action_imports_with_the_phase_rows_url_and_key(admin_client, lago, nexacloud):
    phase = ServicePhase.objects.create(service=nexacloud, lago_api_url=lago.url, lago_api_key=lago.api_key)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(transaction, "on_commit", lambda func, *args, **kwargs: func())
        response = admin_client.post("/admin/migration/servicephase/", {
            "action": "import_from_lago", "_selected_action": [phase.pk]}, follow=True)
    assert response.status_code == 200
    run = ImportRun.objects.get()
    assert run.status == "succeeded" and run.actor == "admin:admin"
    assert run.counts["invoices"]["created"] == 3
    page = admin_client.get(f"/admin/migration/importrun/{run.pk}/change/")
    assert b"subscriptions_pending" in page.content


def test_history_is_keyed_on_the_active_subscription_not_its_pending_downgrade(run_import, nexacloud):
    run_import()
    active = Subscription.objects.get(service=nexacloud, external_id="sub-globex-1", status="active")
    invoice = Invoice.objects.get(number="NXC-002-008")
    charges = dict(active.plan.charges.values_list("code", "pk"))
    # Lago billed the period with its base fee only (nothing used): the charges are marked billed too, at zero.
    assert dict(invoice.fees.values_list("fee_key", "amount_cents")) == {
        f"sub:{active.pk}:base:2026-10-10": 4900,
        f"sub:{active.pk}:charge:{charges['compute_hours']}:2026-10-10": 0,
        f"sub:{active.pk}:charge:{charges['api_calls']}:2026-10-10": 0}
    assert InvoiceSubscription.objects.get(invoice=invoice).subscription == active

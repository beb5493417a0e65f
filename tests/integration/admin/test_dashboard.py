"""The dashboard (/admin/): money billed per service, MRR, invoices by status and overdue, queues with links."""
from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse

from apps.invoicing.models import Invoice
from apps.ledger.models import LedgerPosting
from tests.integration.invoicing.conftest import at

pytestmark = pytest.mark.django_db


def test_the_dashboard_shows_billed_mrr_overdue_and_the_queues_with_links(admin_client, finalized):
    Invoice.objects.filter(pk=finalized.pk).update(payment_due_date=finalized.issuing_date - timedelta(days=1),
                                                   payment_status="failed")
    with time_machine.travel(at(2026, 4, 20), tick=False):
        page = admin_client.get(reverse("admin:index")).content.decode()
    assert 'id="nexa-dashboard"' in page
    assert "nexacloud" in page and "$100.00 CAD" in page  # billed this month (April), per service
    assert "MRR: $100.00 CAD" in page  # one active $100.00/month subscription
    assert "1 invoice(s), $113.00 CAD" in page  # overdue
    failing = reverse("admin:invoicing_invoice_changelist") + "?status__exact=finalized&amp;payment_status__exact=failed"
    assert f'href="{failing}"' in page
    assert "/static/unfold/js/chart/chart.js" in page and 'data-type="bar"' in page  # Chart.js, served locally
    assert page.count("data-options=") == 2 and "usage events accepted" in page  # both charts: titled axes
    assert "cdn" not in page.lower()


def test_queue_counts_are_the_rows_their_link_opens(admin_client, finalized):
    LedgerPosting.objects.filter(invoice=finalized).update(status="failed", last_error="Odoo said no")
    failed = LedgerPosting.objects.filter(status="failed").count()
    response = admin_client.get(reverse("admin:index"))
    queues = {q["key"]: q for q in response.context["queues"]}
    assert queues["postings_failed"]["count"] == failed
    listing = admin_client.get(queues["postings_failed"]["url"]).content.decode()
    assert listing.count('name="_selected_action"') == failed and "Odoo said no" in listing


def test_customer_360_shows_accounts_money_subscriptions_and_the_timeline(admin_client, finalized):
    page = admin_client.get(reverse("admin:customers_customer_overview", args=[finalized.customer_id]))
    assert page.status_code == 200
    text = page.content.decode()
    assert 'id="nexa-customer-360"' in text
    assert "nexacloud as <b>acme</b>" in text  # the customer's account with the service
    assert '<b id="nexa-owed">$113.00 CAD</b>' in text  # due on the finalized invoice
    assert finalized.number in text and "$113.00 CAD" in text and ">s1<" in text
    change = admin_client.get(reverse("admin:customers_customer_change", args=[finalized.customer_id])).content.decode()
    assert reverse("admin:customers_customer_overview", args=[finalized.customer_id]) in change


def test_accountants_export_invoices_fees_and_the_period_summary_per_service_and_tax(finalized, client):
    from io import StringIO

    from django.contrib.auth.models import Group, User
    from django.core.management import call_command

    call_command("staff_groups", stdout=StringIO())
    accountant = User.objects.create_user("acct", password="pw-acct-12345", is_staff=True)
    accountant.groups.add(Group.objects.get(name="Accountants"))
    client.force_login(accountant)
    url = reverse("admin:invoicing_invoice_exports")
    assert client.get(url).status_code == 200

    def download(kind):
        response = client.get(url, {"start": "2026-04-01", "end": "2026-04-30", "kind": kind})
        assert response.status_code == 200 and response["Content-Type"] == "text/csv"
        return b"".join(response.streaming_content).decode().splitlines()

    invoices = download("invoices")
    assert invoices[1].startswith(f"{finalized.number},2026-04-01,finalized,") and invoices[1].endswith(",113.00,0.00")
    fees = download("fees")
    assert len(fees) == 2 and ",nexacloud,subscription," in fees[1] and ",100.00,13.00," in fees[1]
    assert download("summary") == ["service,tax,rate,currency,base,tax_amount",
                                   "nexacloud,hst_sale_tax_13,13,CAD,100.00,13.00"]
    assert client.get(url, {"start": "2026-05-01", "end": "2026-05-31", "kind": "invoices"}).status_code == 200

    nobody = User.objects.create_user("nobody", password="pw-nobody-12345", is_staff=True)
    client.force_login(nobody)
    assert client.get(url, {"start": "2026-04-01", "end": "2026-04-30", "kind": "invoices"}).status_code == 403


def test_the_ingestion_figure_counts_folded_hours_and_rows_not_yet_folded_once(admin_client, billing, finalized):
    from decimal import Decimal

    from django.utils import timezone

    from apps.subscriptions.models import Subscription
    from apps.usage.models import UsageEvent
    from apps.usage.services import usage_rollup_advance

    metric, subscription = billing.metric("calls", "count_agg"), Subscription.objects.get(external_id="s1")

    def events(n, start):
        for i in range(n):
            UsageEvent.objects.create(service=billing.service, transaction_id=f"d-{start}-{i}", subscription=subscription,
                                      billable_metric=metric, timestamp=timezone.now(), value=Decimal(1))

    events(3, 0)
    usage_rollup_advance()
    events(2, 1)  # after the fold: counted from the raw rows
    assert admin_client.get(reverse("admin:index")).context["ingestion_24h"] == 5
    usage_rollup_advance()
    assert admin_client.get(reverse("admin:index")).context["ingestion_24h"] == 5


def test_collected_is_split_over_the_invoice_services_by_their_share_to_the_cent(admin_client, finalized, service_factory):
    from apps.invoicing.models import Fee
    from apps.payments.models import Payment, PaymentAttempt

    mail = service_factory("nexamail", "NexaMail").service
    # The invoice's fees: nexacloud 10000 + 1300 tax, nexamail 3333 + 433 tax (shares 11300 and 3766 of 15066).
    Fee.objects.create(invoice=finalized, fee_key="t:mail", fee_type="subscription", service=mail, name="Mail",
                       currency="CAD", amount_cents=3333, taxes_amount_cents=433)
    for number, (cents, paid_at) in enumerate([(10001, at(2026, 4, 10)), (500, at(2026, 3, 20))], start=1):
        attempt = PaymentAttempt.objects.create(invoice=finalized, attempt_number=number, kind="off_session",
                                                status="succeeded", amount_cents=cents, currency="CAD")
        Payment.objects.create(invoice=finalized, attempt=attempt, amount_cents=cents, currency="CAD",
                               stripe_payment_intent_id=f"pi_split_{number}", paid_at=paid_at)
    with time_machine.travel(at(2026, 4, 20), tick=False):
        response = admin_client.get(reverse("admin:index"))
    # April: 10001 × 11300 / 15066 = 7501 r 1234; × 3766 / 15066 = 2499 r 13832; the cent left goes to nexamail.
    # March: 500 → 375 r 250 and 124 r 14816: nexamail again.
    assert [(row["service"], row["values"]) for row in response.context["collected"]] == [
        ("nexacloud", ["$75.01 CAD", "$3.75 CAD"]), ("nexamail", ["$25.00 CAD", "$1.25 CAD"])]
    assert [row["values"] for row in response.context["collected_total"]] == [["$100.01 CAD", "$5.00 CAD"]]
    assert 'id="nexa-collected"' in response.content.decode()


def test_customer_360_prices_each_active_subscriptions_usage_so_far_as_the_api_does(admin_client, billing):
    """17 GB at $0.37 = $6.29, HST 13% = $0.82 (half-up per line), as GET /customers/{id}/current_usage answers."""
    import time_machine
    from rest_framework.test import APIClient

    from apps.usage.services import usage_events_ingest
    from apps.usage.validation import EventIn
    from tests.integration.invoicing.conftest import at

    metric = billing.metric("gb")
    plan = billing.plan("metered", amount_cents=0, charges=[(metric, "standard", {"amount": "0.37"}, {})])
    link = billing.customer("acme")
    billing.subscribe("s1", plan, customer="acme", when=at(2026, 5, 1, 0, 0))
    with time_machine.travel(at(2026, 5, 20, 12, 0), tick=False):
        usage_events_ingest(service=billing.service, events=[
            EventIn(transaction_id=f"t{i}", external_subscription_id="s1", code="gb", properties={"gb": gb},
                    timestamp=int(at(2026, 5, 10, 9, 0).timestamp())) for i, gb in enumerate(("10", "7"))])
        page = admin_client.get(reverse("admin:customers_customer_overview", args=[link.customer_id]))
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {billing.raw_key}")
        usage = api.get("/api/v1/customers/acme/current_usage", {"external_subscription_id": "s1"}).json()
    assert page.status_code == 200
    html = page.content.decode()
    table = html[html.index('id="nexa-usage-so-far"'):]
    table = table[:table.index("</table>")]
    assert "nexacloud s1" in table and "2026-05-01 to 2026-06-01" in table
    assert "$6.29 CAD" in table and "taxes $0.82 CAD" in table and "$7.11 CAD" in table
    answered = usage["customer_usage"]
    assert (answered["amount_cents"], answered["taxes_amount_cents"]) == (629, 82)


def test_customer_360_previews_the_next_invoice(admin_client, finalized):
    """The $100.00 plan's next period (April, in arrears) on May 1st: $100.00 + HST $13.00."""
    import time_machine

    from tests.integration.invoicing.conftest import at

    with time_machine.travel(at(2026, 4, 15, 12, 0), tick=False):
        page = admin_client.get(reverse("admin:customers_customer_overview", args=[finalized.customer_id]))
    html = page.content.decode()
    table = html[html.index('id="nexa-invoice-preview"'):]
    table = table[:table.index("</table>")]
    assert "Issued 2026-05-01 (CAD)" in table
    assert "Fees $100.00 CAD + taxes $13.00 CAD" in table and "$113.00 CAD" in table

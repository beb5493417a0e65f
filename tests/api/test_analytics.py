"""GET /analytics/* (issue 21): Lago's revenue reports from the hub's invoices and fees, per service.

One book of invoices, written directly (dates and amounts chosen, no close), read on 2026-04-15 by two services
created on 2026-01-10; every expected figure is worked out by hand in the comments.

NexaCloud (CAD), Lago's organization start: January 2026.
  I1 acme   finalized 2026-01-31 succeeded: monthly base 10000 + 1300 tax, hours usage 1250 + 163 tax = 12713
  I2 acme   finalized 2026-02-28 pending:   monthly base 3000 + 390, hours usage 2000 + 260 = 5650; a credit note
            refunded 1000; 650 paid; due 2026-03-10, overdue
  I3 globex finalized 2026-03-15 failed:    yearly base paid in advance 120000 + 15600 = 135600, 2026-03-15..2027-03-15
  I4 globex finalized 2026-03-31 pending:   quarterly base in arrears 30000 - 3000 coupon + 3510 = 30510,
            2026-01-01..2026-04-01; credit notes offset 510; due 2026-04-10, overdue
  I5 acme   draft 2026-04-10:               hours usage 700 - 100 coupon
NexaDesk: I6 initech finalized 2026-02-20 succeeded: monthly base 4000 + 520, tickets usage 800 + 104 = 5424
"""
from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine

from apps.catalog.models import Charge, Plan
from apps.customers.models import AccountLink, Service
from apps.invoicing.models import CreditNote, Fee, Invoice
from apps.subscriptions.models import Subscription

pytestmark = pytest.mark.django_db

TODAY = datetime(2026, 4, 15, 12, 0, tzinfo=UTC)


def at(year, month, day) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


def month(value: str) -> str:
    return f"{value}-01T00:00:00.000Z"


class Book:
    def __init__(self, client):
        self.client, self.service = client, client.service
        self.count = 0

    def customer(self, external_id):
        response = self.client.post("/api/v1/customers", {"customer": {
            "external_id": external_id, "name": external_id.title(), "country": "CA", "state": "ON",
            "currency": "CAD", "customer_type": "company"}}, format="json")
        assert response.status_code == 200, response.json()

    def metric(self, code):
        response = self.client.post("/api/v1/billable_metrics", {"billable_metric": {
            "name": code.title(), "code": code, "aggregation_type": "sum_agg", "field_name": "n"}}, format="json")
        assert response.status_code == 200, response.json()
        return response.json()["billable_metric"]["lago_id"]

    def plan(self, code, interval, *, metric_id=None, in_advance=False):
        body = {"code": code, "name": code.title(), "interval": interval, "amount_cents": 1000,
                "amount_currency": "CAD", "charges": []}
        if metric_id:
            body["charges"] = [{"billable_metric_id": metric_id, "charge_model": "standard",
                                "properties": {"amount": "1"}}]
        response = self.client.post("/api/v1/plans", {"plan": body}, format="json")
        assert response.status_code == 200, response.json()
        plan = Plan.objects.get(service=self.service, code=code)
        Plan.objects.filter(pk=plan.pk).update(pay_in_advance=in_advance)  # set after: no invoice at subscribing
        return plan

    def subscription(self, customer, plan, external_id):
        link = AccountLink.objects.get(service=self.service, external_id=customer)
        return Subscription.objects.create(service=self.service, account_link=link, customer=link.customer,
                                           plan=plan, external_id=external_id, subscription_at=at(2026, 1, 1),
                                           status=Subscription.Status.ACTIVE)

    def invoice(self, customer, issued: date, *, fees, status="finalized", payment_status="pending",
                due: date | None = None, overdue=False, paid=0, offset=0):
        self.count += 1
        link = AccountLink.objects.get(service=self.service, external_id=customer)
        total = sum(f["amount_cents"] - f.get("coupons_amount_cents", 0) + f.get("taxes_amount_cents", 0)
                    for f in fees)
        invoice = Invoice.objects.create(
            customer=link.customer, status=status, payment_status=payment_status, currency="CAD",
            series=f"T-{self.service.code}", number="" if status == "draft" else f"T-{self.service.code}-{self.count}",
            sequential_id=None if status == "draft" else self.count, issuing_date=issued, payment_due_date=due,
            total_amount_cents=total, total_paid_amount_cents=paid, offset_amount_cents=offset,
            payment_overdue=overdue)
        for index, spec in enumerate(fees):
            spec = dict(spec)
            created_at = spec.pop("created_at", datetime.combine(issued, datetime.min.time(), tzinfo=UTC))
            fee = Fee.objects.create(invoice=invoice, fee_key=f"t:{invoice.pk}:{index}", service=self.service,
                                     name="line", currency="CAD", **spec)
            Fee.objects.filter(pk=fee.pk).update(created_at=created_at)
        return invoice


@pytest.fixture
def book(cloud, desk):
    with time_machine.travel(at(2026, 1, 10), tick=False):
        cloud_book, desk_book = Book(cloud), Book(desk)
        for name in ("acme", "globex"):
            cloud_book.customer(name)
        desk_book.customer("initech")
        hours, tickets = cloud_book.metric("hours"), desk_book.metric("tickets")
        basic = cloud_book.plan("basic", "monthly", metric_id=hours)
        annual = cloud_book.plan("annual", "yearly", in_advance=True)
        quarter = cloud_book.plan("quarter", "quarterly")
        helpdesk = desk_book.plan("helpdesk", "monthly", metric_id=tickets)
    Service.objects.filter(pk__in=[cloud.service.pk, desk.service.pk]).update(created_at=at(2026, 1, 10))
    cloud.service.refresh_from_db()
    desk.service.refresh_from_db()
    s_basic = cloud_book.subscription("acme", basic, "acme-basic")
    s_annual = cloud_book.subscription("globex", annual, "globex-annual")
    s_quarter = cloud_book.subscription("globex", quarter, "globex-quarter")
    s_desk = desk_book.subscription("initech", helpdesk, "initech-desk")
    hours_charge = Charge.objects.get(plan=basic)
    tickets_charge = Charge.objects.get(plan=helpdesk)

    def base(subscription, amount, tax, start, end, coupons=0):
        return {"fee_type": "subscription", "subscription": subscription, "amount_cents": amount,
                "coupons_amount_cents": coupons, "taxes_amount_cents": tax, "from_datetime": start,
                "to_datetime": end}

    def usage(subscription, charge, amount, tax, units, start, end, coupons=0, **extra):
        return {"fee_type": "charge", "subscription": subscription, "charge": charge, "amount_cents": amount,
                "coupons_amount_cents": coupons, "taxes_amount_cents": tax, "units": Decimal(units),
                "from_datetime": start, "to_datetime": end, **extra}

    jan, feb, mar = (at(2026, 1, 1), at(2026, 2, 1)), (at(2026, 2, 1), at(2026, 3, 1)), (at(2026, 3, 1), at(2026, 4, 1))
    i1 = cloud_book.invoice("acme", date(2026, 1, 31), payment_status="succeeded", fees=[
        base(s_basic, 10000, 1300, *jan), usage(s_basic, hours_charge, 1250, 163, "12.5", *jan)])
    i2 = cloud_book.invoice("acme", date(2026, 2, 28), due=date(2026, 3, 10), overdue=True, paid=650, fees=[
        base(s_basic, 3000, 390, *feb), usage(s_basic, hours_charge, 2000, 260, "20", *feb)])
    CreditNote.objects.create(invoice=i2, customer=i2.customer, number="T-CN-1", sequential_id=1, issuing_date=date(2026, 3, 1),
                              reason="other", currency="CAD", total_amount_cents=1000, refund_amount_cents=1000)
    i3 = cloud_book.invoice("globex", date(2026, 3, 15), payment_status="failed", fees=[
        base(s_annual, 120000, 15600, at(2026, 3, 15), at(2027, 3, 15))])
    i4 = cloud_book.invoice("globex", date(2026, 3, 31), due=date(2026, 4, 10), overdue=True, offset=510, fees=[
        base(s_quarter, 30000, 3510, at(2026, 1, 1), at(2026, 4, 1), coupons=3000)])
    i5 = cloud_book.invoice("acme", date(2026, 4, 10), status="draft", fees=[
        usage(s_basic, hours_charge, 700, 78, "7", at(2026, 4, 1), at(2026, 5, 1), coupons=100,
              created_at=at(2026, 4, 10))])
    i6 = desk_book.invoice("initech", date(2026, 2, 20), payment_status="succeeded", fees=[
        base(s_desk, 4000, 520, *feb), usage(s_desk, tickets_charge, 800, 104, "8", *feb)])
    assert [i.total_amount_cents for i in (i1, i2, i3, i4, i6)] == [12713, 5650, 135600, 30510, 5424]
    with time_machine.travel(TODAY, tick=False):
        yield {"cloud": cloud, "desk": desk, "i2": i2, "i4": i4, "i5": i5}


def _get(client, path, **query):
    response = client.get(f"/api/v1/analytics/{path}", query)
    assert response.status_code == 200, response.json()
    return response.json()


def test_gross_revenue_is_finalized_invoices_less_refunds_per_issuing_month(book):
    cloud, desk = book["cloud"], book["desk"]
    # January: I1 12713. February: I2 5650 less its 1000 refund. March: I3 135600 + I4 30510. The draft I5 is not
    # revenue; April has no finalized invoice, so no row.
    assert _get(cloud, "gross_revenue") == {"gross_revenues": [
        {"month": month("2026-01"), "amount_cents": 12713, "currency": "CAD", "invoices_count": 1},
        {"month": month("2026-02"), "amount_cents": 4650, "currency": "CAD", "invoices_count": 1},
        {"month": month("2026-03"), "amount_cents": 166110, "currency": "CAD", "invoices_count": 2},
    ]}
    # months=2: March and April.
    assert [row["month"] for row in _get(cloud, "gross_revenue", months=2)["gross_revenues"]] == [month("2026-03")]
    assert [row["amount_cents"] for row in _get(cloud, "gross_revenue", external_customer_id="acme")[
        "gross_revenues"]] == [12713, 4650]
    assert _get(cloud, "gross_revenue", currency="usd") == {"gross_revenues": []}
    assert _get(cloud, "gross_revenue", currency="cad")["gross_revenues"][0]["amount_cents"] == 12713
    # NexaDesk sees its own invoice only; NexaCloud's customer is unknown to it.
    assert _get(desk, "gross_revenue") == {"gross_revenues": [
        {"month": month("2026-02"), "amount_cents": 5424, "currency": "CAD", "invoices_count": 1}]}
    assert _get(desk, "gross_revenue", external_customer_id="acme") == {"gross_revenues": []}


def test_invoice_collection_lists_every_month_by_payment_status(book):
    cloud, desk = book["cloud"], book["desk"]
    empty = {"payment_status": None, "invoices_count": 0, "amount_cents": 0, "currency": None}
    assert _get(cloud, "invoice_collection") == {"invoice_collections": [
        {"month": month("2026-01"), "payment_status": "succeeded", "invoices_count": 1, "amount_cents": 12713,
         "currency": "CAD"},
        {"month": month("2026-02"), "payment_status": "pending", "invoices_count": 1, "amount_cents": 5650,
         "currency": "CAD"},
        {"month": month("2026-03"), "payment_status": "failed", "invoices_count": 1, "amount_cents": 135600,
         "currency": "CAD"},
        {"month": month("2026-03"), "payment_status": "pending", "invoices_count": 1, "amount_cents": 30510,
         "currency": "CAD"},
        {"month": month("2026-04"), **empty},  # Lago lists a month without invoices too
    ]}
    # A currency leaves the empty months out, as Lago's WHERE does.
    assert [row["month"] for row in _get(cloud, "invoice_collection", currency="CAD", months=2)[
        "invoice_collections"]] == [month("2026-03"), month("2026-03")]
    assert _get(desk, "invoice_collection")["invoice_collections"] == [
        {"month": month("2026-01"), **empty},
        {"month": month("2026-02"), "payment_status": "succeeded", "invoices_count": 1, "amount_cents": 5424,
         "currency": "CAD"},
        {"month": month("2026-03"), **empty}, {"month": month("2026-04"), **empty}]


def test_overdue_balance_is_what_overdue_invoices_still_ask_per_due_month(book):
    cloud, desk = book["cloud"], book["desk"]
    i2, i4 = str(book["i2"].lago_id), str(book["i4"].lago_id)
    # I2: 5650 - 650 paid = 5000, due in March. I4: 30510 - 510 offset by credit notes = 30000, due in April.
    assert _get(cloud, "overdue_balance") == {"overdue_balances": [
        {"month": month("2026-03"), "amount_cents": 5000, "currency": "CAD", "lago_invoice_ids": [i2]},
        {"month": month("2026-04"), "amount_cents": 30000, "currency": "CAD", "lago_invoice_ids": [i4]},
    ]}
    assert [row["lago_invoice_ids"] for row in _get(cloud, "overdue_balance", external_customer_id="globex")[
        "overdue_balances"]] == [[i4]]
    assert [row["month"] for row in _get(cloud, "overdue_balance", months=1)["overdue_balances"]] == [month("2026-04")]
    assert _get(desk, "overdue_balance") == {"overdue_balances": []}


def test_mrr_spreads_quarterly_and_yearly_fees_as_lago_does(book):
    cloud, desk = book["cloud"], book["desk"]
    # Monthly fees count in their issuing month: I1 11300 (January), I2 3390 (February).
    # I4, quarterly in arrears, 30510 over (90 days - 1 minute) / 30.44 = 2.9566131917 months (3): March and
    # February get 30510 / 2.9566131917 = 10319.2396 each, January the rest, 30510 - 2 × 10319.2396 = 9871.5208.
    # I3, yearly in advance, 135600 over (365 days - 1 minute) / 30.44 = 11.9907787633 months (12): 11308.6900 a
    # month; issued 15 March, March gets the 17 days of 31 left of it, 11308.6900 × 17 / 31 = 6201.5397.
    # January 11300 + 9871.5208 = 21171.52; February 3390 + 10319.2396 = 13709.24; March 10319.2396 + 6201.5397
    # = 16520.78; April 11308.69.
    assert _get(cloud, "mrr") == {"mrrs": [
        {"month": month("2026-01"), "amount_cents": 21172, "currency": "CAD"},
        {"month": month("2026-02"), "amount_cents": 13709, "currency": "CAD"},
        {"month": month("2026-03"), "amount_cents": 16521, "currency": "CAD"},
        {"month": month("2026-04"), "amount_cents": 11309, "currency": "CAD"},
    ]}
    assert _get(cloud, "mrr", months=1) == {"mrrs": [{"month": month("2026-04"), "amount_cents": 11309,
                                                      "currency": "CAD"}]}
    # NexaDesk: its monthly 4000 + 520 in February; Lago lists the other months with neither currency nor amount.
    empty = {"amount_cents": None, "currency": None}
    assert _get(desk, "mrr") == {"mrrs": [
        {"month": month("2026-01"), **empty}, {"month": month("2026-02"), "amount_cents": 4520, "currency": "CAD"},
        {"month": month("2026-03"), **empty}, {"month": month("2026-04"), **empty}]}
    assert _get(desk, "mrr", currency="CAD") == {"mrrs": [
        {"month": month("2026-02"), "amount_cents": 4520, "currency": "CAD"}]}


def test_invoiced_usage_is_usage_fees_after_coupons_by_month_written(book):
    cloud, desk = book["cloud"], book["desk"]
    # Lago reads every invoice's usage fees, the draft's too: April 700 - 100 = 600; February 2000; January 1250.
    assert _get(cloud, "invoiced_usage") == {"invoiced_usages": [
        {"month": month("2026-04"), "code": "hours", "currency": "CAD", "amount_cents": 600},
        {"month": month("2026-02"), "code": "hours", "currency": "CAD", "amount_cents": 2000},
        {"month": month("2026-01"), "code": "hours", "currency": "CAD", "amount_cents": 1250},
    ]}
    assert len(_get(cloud, "invoiced_usage", months=3)["invoiced_usages"]) == 2
    assert _get(desk, "invoiced_usage") == {"invoiced_usages": [
        {"month": month("2026-02"), "code": "tickets", "currency": "CAD", "amount_cents": 800}]}


def test_usage_is_billed_units_and_amounts_per_period_and_metric(book):
    cloud, desk = book["cloud"], book["desk"]
    organization = str(cloud.service.lago_id)

    def row(start, end, amount, units, code="hours", org=organization):
        return {"organization_id": org, "start_of_period_dt": start, "end_of_period_dt": end,
                "amount_currency": "CAD", "amount_cents": amount, "billable_metric_code": code, "units": units,
                "is_billable_metric_deleted": False}

    # Finalized invoices only (the draft's April usage is not billed yet), dated by the period each fee prices.
    assert _get(cloud, "usage") == {"usages": [
        row("2026-01-01", "2026-01-01", 1250, "12.5"), row("2026-02-01", "2026-02-01", 2000, "20")]}
    assert _get(cloud, "usage", time_granularity="monthly")["usages"] == [
        row("2026-01-01", "2026-01-31", 1250, "12.5"), row("2026-02-01", "2026-02-28", 2000, "20")]
    # ISO weeks: Thursday 1 January is in the week of Monday 29 December; Sunday 1 February in that of 26 January.
    assert [(r["start_of_period_dt"], r["end_of_period_dt"]) for r in _get(
        cloud, "usage", time_granularity="weekly")["usages"]] == [("2025-12-29", "2026-01-04"), ("2026-01-26", "2026-02-01")]
    assert _get(cloud, "usage", from_date="2026-01-15", to_date="2026-02-01")["usages"] == [
        row("2026-02-01", "2026-02-01", 2000, "20")]
    assert _get(cloud, "usage", external_customer_id="globex")["usages"] == []
    assert len(_get(cloud, "usage", external_customer_id="acme", plan_code="basic", billable_metric_code="hours",
                    external_subscription_id="acme-basic", customer_type="company", customer_country="ca",
                    is_billable_metric_recurring="false", currency="CAD")["usages"]) == 2
    assert _get(cloud, "usage", is_billable_metric_recurring="true")["usages"] == []
    assert _get(desk, "usage")["usages"] == [
        row("2026-02-01", "2026-02-01", 800, "8", code="tickets", org=str(desk.service.lago_id))]


@pytest.mark.parametrize("path,query", [
    ("mrr", {"months": "twelve"}), ("usage", {"time_granularity": "hourly"}), ("usage", {"from_date": "2026-13-01"}),
    ("usage", {"is_billable_metric_recurring": "maybe"}), ("usage", {"customer_type": "robot"}),
])
def test_bad_filters_get_lagos_422(book, path, query):
    response = book["cloud"].get(f"/api/v1/analytics/{path}", query)
    assert response.status_code == 422
    assert response.json()["code"] == "validation_errors"
    assert set(response.json()["error_details"]) == set(query)


def test_analytics_need_a_key(client):
    assert client.get("/api/v1/analytics/gross_revenue").status_code == 401


@pytest.mark.django_db(transaction=True)
def test_the_lago_client_reads_every_report(book, live_server):
    from lago_python_client.client import Client

    cloud = book["cloud"]
    key = cloud._credentials["HTTP_AUTHORIZATION"].split()[1]
    lago = Client(api_key=key, api_url=live_server.url)
    revenue = lago.gross_revenues.find_all({"external_customer_id": "acme"})["gross_revenues"]
    assert [(row.month, row.amount_cents, row.invoices_count) for row in revenue] == [
        (month("2026-01"), 12713, 1), (month("2026-02"), 4650, 1)]
    assert [row.amount_cents for row in lago.mrrs.find_all({"months": 2})["mrrs"]] == [16521, 11309]
    assert [(row.payment_status, row.amount_cents) for row in lago.invoice_collections.find_all(
        {"currency": "CAD", "months": 2})["invoice_collections"]] == [("failed", 135600), ("pending", 30510)]
    overdue = lago.overdue_balances.find_all({"months": 1})["overdue_balances"]
    assert [(row.amount_cents, row.lago_invoice_ids) for row in overdue] == [(30000, [str(book["i4"].lago_id)])]
    assert [(row.code, row.amount_cents) for row in lago.invoiced_usages.find_all()["invoiced_usages"]] == [
        ("hours", 600), ("hours", 2000), ("hours", 1250)]
    usage = lago.usages.find_all({"time_granularity": "monthly"})["usages"]
    assert [(row.start_of_period_dt, row.units, row.amount_cents) for row in usage] == [
        ("2026-01-01", 12.5, 1250), ("2026-02-01", 20.0, 2000)]

"""POST /invoices/preview (issue 21): the next invoice by the close's own engine (apps/invoicing/close/preview.py),
with Lago's body and errors; the close then writes exactly what the preview showed. Nothing is written."""
from __future__ import annotations

import pytest
import time_machine
from lago_python_client.client import Client
from lago_python_client.models.invoice import InvoicePreview

from apps.invoicing.close import periods_close
from apps.invoicing.models import Fee, Invoice
from apps.usage.services import usage_events_ingest
from apps.usage.validation import EventIn
from tests.integration.invoicing.conftest import Billing, at

NOW = at(2026, 3, 20, 12)


def _world(service_factory, province="BC"):
    """An in-arrears $29 plan started mid-month (prorated) with a $0.37/GB charge and 17 GB, in British Columbia
    (GST 5 % + PST 7 % per line), as tests/integration/invoicing/test_invoice_preview.py."""
    issued = service_factory("nexacloud", "NexaCloud")
    billing = Billing(issued.service)
    metric = billing.metric()
    metered = billing.plan("metered", amount_cents=2900, charges=[(metric, "standard", {"amount": "0.37"}, {})])
    billing.customer(province=province, tz="America/Vancouver")
    billing.subscribe("s1", metered, when=at(2026, 3, 11, 0, 0))
    usage_events_ingest(service=billing.service, now=NOW, events=[
        EventIn(transaction_id=f"t{i}", external_subscription_id="s1", code="gb",
                timestamp=int(at(2026, 3, 15).timestamp()), properties={"gb": gb}) for i, gb in enumerate(("10", "7"))])
    return issued


def _preview(api, body):
    with time_machine.travel(NOW, tick=False):
        return api.post("/api/v1/invoices/preview", body, format="json")


def _counts():
    return Invoice.objects.count(), Fee.objects.count()


@pytest.mark.django_db
def test_the_preview_is_the_invoice_the_close_then_writes(service_factory, api_client_for, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    api = api_client_for(_world(service_factory).raw_key)
    before = _counts()
    response = _preview(api, {"customer": {"external_id": "acme"}, "subscriptions": {"external_ids": ["s1"]}})
    assert response.status_code == 200, response.json()
    assert _counts() == before  # nothing written
    preview = response.json()["invoice"]
    # $29 × 22/31 days, 17 GB × $0.37; GST and PST per line, half-up: 103 + 144, 31 + 44.
    assert (preview["issuing_date"], preview["currency"], preview["invoice_type"]) == ("2026-04-01", "CAD", "subscription")
    assert sorted(fee["amount_cents"] for fee in preview["fees"]) == [629, 2058]
    assert (preview["fees_amount_cents"], preview["taxes_amount_cents"], preview["total_amount_cents"]) == (2687, 322, 3009)
    assert sorted((t["tax_rate"], t["amount_cents"], t["fees_amount_cents"]) for t in preview["applied_taxes"]) == [
        (5.0, 134, 2687), (7.0, 188, 2687)]
    assert preview["customer"]["external_id"] == "acme"
    assert [p["external_subscription_id"] for p in preview["billing_periods"]] == ["s1"]

    periods_close(as_of=at(2026, 4, 1, 12, 0))
    invoice = Invoice.objects.get()
    written = api.get(f"/api/v1/invoices/{invoice.lago_id}").json()["invoice"]
    for key in ("issuing_date", "currency", "fees_amount_cents", "coupons_amount_cents", "taxes_amount_cents",
                "sub_total_excluding_taxes_amount_cents", "sub_total_including_taxes_amount_cents", "total_amount_cents",
                "payment_due_date"):
        assert preview[key] == written[key], key
    assert preview["applied_taxes"] and sorted((t["tax_code"], t["amount_cents"], t["fees_amount_cents"])
                                               for t in preview["applied_taxes"]) == sorted(
        (t["tax_code"], t["amount_cents"], t["fees_amount_cents"]) for t in written["applied_taxes"])
    fee_keys = ("amount_cents", "units", "precise_amount", "taxes_amount_cents", "from_date", "to_date", "external_subscription_id")
    assert sorted(tuple(f[k] for k in fee_keys) for f in preview["fees"]) == sorted(
        tuple(f[k] for k in fee_keys) for f in written["fees"])
    assert preview["billing_periods"][0] | {"invoicing_reason": None} == written["billing_periods"][0] | {"invoicing_reason": None}


@pytest.mark.django_db
def test_the_customer_s_coupon_comes_off_before_tax_as_finalization_takes_it(service_factory, api_client_for, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    api = api_client_for(_world(service_factory, province="ON").raw_key)
    api.post("/api/v1/coupons", {"coupon": {"name": "Ten", "code": "ten", "coupon_type": "fixed_amount", "amount_cents": 1000,
                                            "amount_currency": "CAD", "frequency": "once", "expiration": "no_expiration"}},
             format="json")
    assert api.post("/api/v1/applied_coupons", {"applied_coupon": {"external_customer_id": "acme", "coupon_code": "ten"}},
                    format="json").status_code == 200
    preview = _preview(api, {"customer": {"external_id": "acme"}}).json()["invoice"]
    # 2058 + 629 = 2687, less the $10 coupon = 1687, HST 13 % per line on what each fee has left.
    assert (preview["fees_amount_cents"], preview["coupons_amount_cents"], preview["sub_total_excluding_taxes_amount_cents"]) \
        == (2687, 1000, 1687)
    [credit] = preview["credits"]
    assert (credit["amount_cents"], credit["item"]["code"], credit["before_taxes"]) == (1000, "ten", True)
    periods_close(as_of=at(2026, 4, 1, 12, 0))
    written = api.get(f"/api/v1/invoices/{Invoice.objects.get().lago_id}").json()["invoice"]
    for key in ("coupons_amount_cents", "taxes_amount_cents", "total_amount_cents"):
        assert preview[key] == written[key], key


@pytest.mark.django_db
def test_a_customer_without_coupons_previews_the_request_s_coupons(service_factory, api_client_for):
    api = api_client_for(_world(service_factory, province="ON").raw_key)
    preview = _preview(api, {"customer": {"external_id": "acme"}, "coupons": [
        {"code": "half", "coupon_type": "percentage", "percentage_rate": "50"}]}).json()["invoice"]
    # 50 % of 2687 = 1343.5, rounded half-up: 1344 off
    assert (preview["coupons_amount_cents"], preview["sub_total_excluding_taxes_amount_cents"]) == (1344, 1343)
    assert preview["credits"][0]["item"]["code"] == "half"


@pytest.mark.django_db
def test_lagos_errors_and_isolation(service_factory, api_client_for):
    api = api_client_for(_world(service_factory).raw_key)
    assert _preview(api, {"customer": {"external_id": "nobody"}}).json()["code"] == "customer_not_found"
    unknown = _preview(api, {"customer": {"external_id": "acme"}, "subscriptions": {"external_ids": ["nope"]}})
    assert (unknown.status_code, unknown.json()["code"]) == (404, "subscription_not_found")
    new = _preview(api, {"customer": {"name": "Hooli"}, "subscriptions": {"external_ids": ["s1"]}})
    assert (new.status_code, new.json()["error_details"]) == (422, {"customer": ["must_be_persisted"]})
    proposal = _preview(api, {"customer": {"external_id": "acme"}, "plan_code": "metered"})
    assert (proposal.status_code, proposal.json()["error_details"]) == (422, {"plan_code": ["not_supported"]})
    entity = _preview(api, {"customer": {"external_id": "acme"}, "billing_entity_code": "other"})
    assert (entity.status_code, entity.json()["code"]) == (404, "billing_entity_not_found")
    assert _preview(api, {}).status_code == 422
    desk = api_client_for(service_factory("nexadesk", "NexaDesk").raw_key)
    assert _preview(desk, {"customer": {"external_id": "acme"}}).json()["code"] == "customer_not_found"


@pytest.mark.django_db(transaction=True)
def test_the_lago_client_previews_an_invoice(live_server, service_factory):
    issued = _world(service_factory)
    lago = Client(api_key=issued.raw_key, api_url=live_server.url)
    with time_machine.travel(NOW, tick=True):
        invoice = lago.invoices.preview(InvoicePreview(customer={"external_id": "acme"},
                                                       subscriptions={"external_ids": ["s1"]}))
    assert (invoice.fees_amount_cents, invoice.total_amount_cents) == (2687, 3009)
    assert invoice.customer.external_id == "acme"

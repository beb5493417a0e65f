"""Staff in a real browser (issue 18): each group logs in, sees the dashboard, creates a customer and a subscription
that is active and billed, voids with a reason, issues a credit note, reads the audit, and is refused what its group
may not do. Screenshots: var/artifacts/browser/."""
from __future__ import annotations

import pytest
import time_machine
from django.db.models import Q

from apps.customers.models import AccountLink
from apps.invoicing.close import periods_close
from apps.invoicing.models import CreditNote, Invoice
from apps.subscriptions.models import Subscription
from tests.integration.invoicing.conftest import Billing, at

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]


@pytest.fixture
def billing(service_factory):
    return Billing(service_factory("nexacloud", "NexaCloud").service)


@pytest.fixture
def finalized(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    billing.customer("acme", legal_name="Acme Robotics Inc.")
    billing.subscribe("s1", billing.plan("pro", amount_cents=10000), customer="acme", when=at(2026, 3, 1, 0, 0))
    with time_machine.travel(at(2026, 4, 1, 1, 0), tick=False):
        periods_close(as_of=at(2026, 4, 1, 1, 0))
    return Invoice.objects.get(status="finalized")


def test_each_group_logs_in_sees_the_dashboard_and_is_refused_what_it_may_not_do(staff_tab, finalized):
    for name in ("operator", "accountant", "billadmin"):
        tab = staff_tab(name)
        assert tab.page.locator("#nexa-dashboard").is_visible()
        assert tab.page.locator("#nexa-queues [data-queue=webhooks_failing]").is_visible()
        tab.shot("dashboard")

    accountant = staff_tab("accountant")
    assert accountant.open("/admin/subscriptions/subscription/add/").status == 403
    assert accountant.open(f"/admin/catalog/plan/{Subscription.objects.get(external_id='s1').plan_id}/change/").status == 200
    assert accountant.page.locator("button[name=_save]").count() == 0  # read-only for accountants
    accountant.open("/admin/invoicing/invoice/")
    assert accountant.page.locator("select[name=action] option[value=void]").count() == 0
    accountant.shot("invoices-read-only")

    operator = staff_tab("operator")
    operator.open(f"/admin/customers/customer/{finalized.customer_id}/overview/")
    assert operator.page.locator("#nexa-owed").inner_text() == "$113.00 CAD"
    assert finalized.number in operator.page.locator("#nexa-timeline").inner_text()
    operator.shot("customer-360")
    assert operator.open("/admin/auth/user/").status == 403
    assert operator.open("/admin/djstripe/customer/").status == 403
    operator.shot("refused")


def test_an_operator_creates_a_customer_and_a_subscription_that_is_active_and_billed(staff_tab, billing):
    plan = billing.plan("adv", amount_cents=3100, pay_in_advance=True)
    tab = staff_tab("operator")
    tab.open("/admin/customers/customer/add/")
    tab.page.select_option("select[name=service]", label="NexaCloud (nexacloud)")
    tab.page.fill("input[name=service_external_id]", "north-42")
    tab.page.fill("input[name=name]", "North Logistics")
    tab.page.fill("input[name=legal_name]", "North Logistics Inc.")
    tab.page.fill("input[name=country]", "CA")
    tab.page.fill("input[name=state]", "ON")
    tab.page.fill("input[name=currency]", "CAD")
    tab.shot("customer-form")
    tab.submit("button[name=_save]")
    link = AccountLink.objects.get(service=billing.service, external_id="north-42")

    tab.open("/admin/subscriptions/subscription/add/")
    tab.page.click("#select2-id_account_link-container")  # the account link's autocomplete
    tab.page.fill(".select2-search__field", "north-42")
    tab.page.click(".select2-results__option >> text=north-42")
    tab.page.select_option("select[name=plan]", value=str(plan.pk))
    tab.page.fill("input[name=external_id]", "north-sub-1")
    tab.shot("subscription-form")
    tab.submit("button[name=_save]")

    subscription = Subscription.objects.get(external_id="north-sub-1")
    assert subscription.status == "active" and subscription.customer_id == link.customer_id
    tab.open(f"/admin/subscriptions/subscription/{subscription.pk}/change/")
    assert "Active" in tab.page.content()
    tab.shot("subscription-active")
    [invoice] = Invoice.objects.filter(customer_id=link.customer_id)  # pay in advance: billed as it starts
    assert invoice.status == "finalized" and invoice.total_amount_cents > 0
    tab.open(f"/admin/invoicing/invoice/?customer__id__exact={link.customer_id}")
    assert invoice.number in tab.page.content()
    tab.shot("billed")


def test_an_operator_voids_with_a_reason_issues_a_credit_note_and_reads_the_audit(staff_tab, finalized, billing):
    billing.customer("beta")
    billing.subscribe("s2", billing.plan("basic", amount_cents=5000), customer="beta", when=at(2026, 3, 1, 0, 0))
    with time_machine.travel(at(2026, 5, 1, 1, 0), tick=False):
        periods_close(as_of=at(2026, 5, 1, 1, 0))
    other = Invoice.objects.filter(~Q(pk=finalized.pk), status="finalized").order_by("pk").first()
    tab = staff_tab("operator")

    tab.run_action("/admin/invoicing/invoice/", finalized.pk, "void")
    assert "Void these invoices?" in tab.page.content()
    tab.page.fill("textarea[name=reason]", "Billed twice: the customer paid NEXA-0 for March")
    tab.shot("void-reason")
    tab.submit("button[name=confirm]")
    finalized.refresh_from_db()
    assert finalized.status == "voided"

    tab.run_action("/admin/invoicing/invoice/", other.pk, "create_credit_note")
    tab.page.check("input[name=scope][value=remaining]")
    tab.page.fill("textarea[name=description]", "Goodwill credit after the outage of April 3")
    tab.shot("credit-note-form")
    tab.submit("button[name=confirm]")
    note = CreditNote.objects.get(invoice=other)
    assert note.total_amount_cents == other.total_amount_cents
    assert f"Credit note {note.number} created" in tab.page.content()

    tab.open(f"/admin/audit/auditevent/?obj=invoicing.Invoice:{finalized.pk}")
    page = tab.page.content()
    assert "Billed twice: the customer paid NEXA-0 for March" in page and "finalized → voided" in page
    assert "operator" in page
    tab.shot("audit-trail")
    tab.open("/admin/audit/auditevent/?by=staff")
    assert "Goodwill credit after the outage of April 3" in tab.page.content()
    tab.shot("audit-global")


def test_an_operator_runs_a_close_and_follows_its_progress(staff_tab, billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    billing.customer("acme")
    billing.subscribe("s1", billing.plan("pro", amount_cents=10000), customer="acme", when=at(2026, 3, 1, 0, 0))
    tab = staff_tab("operator")
    tab.open("/admin/invoicing/closerun/run/")
    tab.page.fill("input[name=as_of_0]", "2026-04-01")
    tab.page.fill("input[name=as_of_1]", "01:00")
    tab.page.fill("textarea[name=reason]", "April close run by hand after the scheduler was paused")
    tab.shot("run-close")
    tab.submit("button[name=confirm]")
    tab.page.wait_for_selector("#nexa-close-progress[data-running=false]", timeout=60_000)
    assert tab.page.locator("#nexa-close-status").inner_text() == "succeeded"
    assert "1 of 1 customer(s) closed" in tab.page.content()
    tab.shot("close-progress")
    assert Invoice.objects.filter(status="finalized").count() == 1

"""Phases per service: audited switches, the close leaving `lago` services alone, shadow closes in `dual_run`
(no Stripe charge, Odoo posting or webhook leaves the hub), and the guards on cutover and rollback."""
from __future__ import annotations

import pytest

from apps.core.exceptions import NotAllowed, ValidationFailed
from apps.invoicing.close import periods_close
from apps.invoicing.models import Invoice
from apps.ledger.models import LedgerPosting
from apps.migration.models import PhaseChange, RelayStream, ServicePhase, ShadowInvoice
from apps.migration.services import phase_switch
from apps.payments.models import PaymentAttempt
from apps.webhooks.models import WebhookDelivery, WebhookEvent
from apps.webhooks.services import webhook_endpoint_create
from tests.integration.invoicing.conftest import Billing, at
from tests.integration.paying import pay
from tests.integration.payments.stripe_fixtures import localstripe, ls_client, save_card, stripe_env  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def billing(nexacloud):
    return Billing(nexacloud)


def migrating(service, phase="lago", lago=None) -> ServicePhase:
    return ServicePhase.objects.create(service=service, phase=phase, lago_api_url=lago.url if lago else "",
                                       lago_api_key=lago.api_key if lago else "")


def test_a_switch_is_audited_and_needs_a_reason(nexacloud):
    migrating(nexacloud)
    with pytest.raises(ValidationFailed):
        phase_switch(service=nexacloud, to_phase="dual_run", reason="  ", actor="admin:ops")
    with pytest.raises(NotAllowed, match="not a migration step"):
        phase_switch(service=nexacloud, to_phase="hub", reason="skip the dual run", actor="admin:ops")
    change = phase_switch(service=nexacloud, to_phase="dual_run", reason="NexaCloud pilot starts", actor="admin:ops")
    assert (change.from_phase, change.to_phase, change.reason, change.actor) == (
        "lago", "dual_run", "NexaCloud pilot starts", "admin:ops")
    assert ServicePhase.objects.get(service=nexacloud).phase == "dual_run"
    assert RelayStream.objects.get(service=nexacloud).until_event_id is None
    phase_switch(service=nexacloud, to_phase="lago", reason="abort: Lago invoice mismatch", actor="admin:ops")
    assert list(PhaseChange.objects.order_by("changed_at", "id").values_list("from_phase", "to_phase")) == [
        ("lago", "dual_run"), ("dual_run", "lago")]
    assert RelayStream.objects.get(service=nexacloud).until_event_id is not None


def test_a_service_born_on_the_hub_has_no_migration_to_switch(nexacloud):
    with pytest.raises(NotAllowed, match="import it from Lago first"):
        phase_switch(service=nexacloud, to_phase="dual_run", reason="why not", actor="admin:ops")


def test_the_close_bills_nothing_for_a_service_lago_still_bills(billing, service_factory):
    other = Billing(service_factory("nexadesk", "NexaDesk").service)
    migrating(billing.service)
    billing.customer("acme")
    billing.subscribe("s1", billing.plan(amount_cents=10000), customer="acme", when=at(2026, 3, 1, 0, 0))
    other.customer("globex")
    other.subscribe("d1", other.plan(amount_cents=500), customer="globex", when=at(2026, 3, 1, 0, 0))
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    assert list(Invoice.objects.values_list("fees__service__code", flat=True)) == ["nexadesk"]


@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "batched"])
@pytest.mark.parametrize("phase", ["dual_run", "hub"])
def test_in_dual_run_no_charge_posting_or_webhook_leaves_the_hub(
        phase, batched, billing, settings, stripe_env, localstripe, django_capture_on_commit_callbacks):  # noqa: F811
    """`hub` is the control: the same close there charges the card, writes the posting and the deliveries. Both
    close paths: customer by customer, and batches (which insert their new invoices only once numbered)."""
    settings.INVOICE_CLOSE_BATCH_MIN = 1 if batched else 1000
    migrating(billing.service, phase=phase)
    link = billing.customer("acme")
    save_card(localstripe, link.customer)
    webhook_endpoint_create(service=billing.service, values={"webhook_url": "http://127.0.0.1:9/hooks",
                                                             "event_types": None})
    billing.subscribe("s1", billing.plan(amount_cents=10000), customer="acme", when=at(2026, 3, 1, 0, 0))
    WebhookDelivery.objects.all().delete()  # subscription.started, before the phase mattered here
    with django_capture_on_commit_callbacks(execute=True):
        periods_close(as_of=at(2026, 4, 1, 1, 0))
    invoice = Invoice.objects.get()
    assert (invoice.status, invoice.total_amount_cents) == ("finalized", 11300)  # computed and kept either way
    stripe_id = link.customer.stripe_account.stripe_customer_id
    intents = [intent for intent in ls_client(localstripe).v1.payment_intents.list(params={"limit": 100}).auto_paging_iter()
               if intent.customer == stripe_id]
    deliveries = WebhookDelivery.objects.filter(event__event_type="invoice.created")
    if phase == "hub":
        assert PaymentAttempt.objects.filter(invoice=invoice).exists() and len(intents) == 1
        assert LedgerPosting.objects.filter(invoice=invoice).exists()
        assert deliveries.exists()
        assert not ShadowInvoice.objects.exists()
    else:
        assert ShadowInvoice.objects.get().invoice == invoice
        assert not PaymentAttempt.objects.exists() and intents == []
        assert not LedgerPosting.objects.exists()
        assert not WebhookDelivery.objects.exists()
        assert WebhookEvent.objects.filter(event_type="invoice.created").exists()  # kept for the record


def test_entering_dual_run_is_refused_while_customers_share_invoices_with_an_authoritative_service(
        billing, service_factory):
    from tests.integration.wiring.conftest import share_customer

    desk = Billing(service_factory("nexadesk", "NexaDesk").service)
    migrating(billing.service)
    link = billing.customer("acme")
    billing.subscribe("s1", billing.plan(amount_cents=10000), customer="acme", when=at(2026, 3, 1, 0, 0))
    share_customer(link, desk.service, "acme-desk")
    desk.subscribe("d1", desk.plan(amount_cents=500), customer="acme-desk", when=at(2026, 3, 1, 0, 0))
    with pytest.raises(NotAllowed, match="1 customer"):
        phase_switch(service=billing.service, to_phase="dual_run", reason="pilot", actor="admin:ops")
    assert ServicePhase.objects.get(service=billing.service).phase == "lago"
    assert not RelayStream.objects.exists() and not PhaseChange.objects.exists()


def _dual_run_through_november(run_import, nexacloud):
    """Import (Lago billed Acme through October), dual-run, and close November in shadow on Dec 1."""
    run_import()
    phase_switch(service=nexacloud, to_phase="dual_run", reason="pilot", actor="admin:ops")
    periods_close(as_of=at(2026, 12, 1, 1, 0))


def test_the_shadow_close_starts_exactly_where_lagos_invoices_end(run_import, nexacloud):
    _dual_run_through_november(run_import, nexacloud)
    shadow = Invoice.objects.get(shadow__isnull=False, customer__account_links__external_id="acme")
    # October is Lago's (imported history, same fee keys): the hub bills November and nothing before it.
    assert {str(fee.from_datetime.date()) for fee in shadow.fees.all()} == {"2026-11-01"}
    assert shadow.fees_amount_cents == 4900 and shadow.issuing_date.isoformat() == "2026-12-01"


def test_cutover_is_refused_while_it_would_skip_a_period_and_allowed_once_both_agree(run_import, nexacloud, lago):
    from tests.lago_standin.fixtures import acme_invoice

    _dual_run_through_november(run_import, nexacloud)
    with pytest.raises(NotAllowed, match="sub-acme-1: would skip") as refused:
        phase_switch(service=nexacloud, to_phase="hub", reason="cutover", actor="admin:ops")
    assert {row["external_id"]: row["verdict"] for row in refused.value.details["guard"]} == {
        "sub-acme-1": "would skip", "sub-globex-1": "ok"}
    assert ServicePhase.objects.get(service=nexacloud).phase == "dual_run"

    lago.org["invoices"].append(acme_invoice("acme-2026-11", "NXC-001-011", "2026-12-01", "2026-11-01T05:00:00Z",
                                             "2026-12-01T04:59:59Z", "0.0", 0, "0.0", 0))
    change = phase_switch(service=nexacloud, to_phase="hub", reason="cutover", actor="admin:ops")
    assert {row["verdict"] for row in change.details["guard"]} == {"ok"}
    assert ServicePhase.objects.get(service=nexacloud).phase == "hub"


def test_cutover_is_refused_when_lago_invoiced_a_period_the_hub_would_bill_again(run_import, nexacloud, lago):
    from tests.lago_standin.fixtures import acme_invoice

    _dual_run_through_november(run_import, nexacloud)
    for key, number, issued, start, end in (
            ("acme-2026-11", "NXC-001-011", "2026-12-01", "2026-11-01T05:00:00Z", "2026-12-01T04:59:59Z"),
            ("acme-2026-12", "NXC-001-012", "2027-01-01", "2026-12-01T05:00:00Z", "2027-01-01T04:59:59Z")):
        lago.org["invoices"].append(acme_invoice(key, number, issued, start, end, "0.0", 0, "0.0", 0))
    with pytest.raises(NotAllowed, match="sub-acme-1: would bill twice"):
        phase_switch(service=nexacloud, to_phase="hub", reason="cutover", actor="admin:ops")


def test_a_rollback_after_cutover_is_refused_once_the_hub_billed_alone(run_import, nexacloud, lago):
    from tests.lago_standin.fixtures import acme_invoice

    _dual_run_through_november(run_import, nexacloud)
    lago.org["invoices"].append(acme_invoice("acme-2026-11", "NXC-001-011", "2026-12-01", "2026-11-01T05:00:00Z",
                                             "2026-12-01T04:59:59Z", "0.0", 0, "0.0", 0))
    phase_switch(service=nexacloud, to_phase="hub", reason="cutover", actor="admin:ops")
    phase_switch(service=nexacloud, to_phase="dual_run", reason="roll back: nothing billed yet", actor="admin:ops")
    phase_switch(service=nexacloud, to_phase="hub", reason="cutover again", actor="admin:ops")
    periods_close(as_of=at(2027, 1, 1, 1, 0))  # December, billed by the hub alone
    assert Invoice.objects.filter(shadow__isnull=True, issuing_date="2027-01-01").exists()
    with pytest.raises(NotAllowed, match="billed nexacloud on its own"):
        phase_switch(service=nexacloud, to_phase="dual_run", reason="roll back", actor="admin:ops")


@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "batched"])
def test_a_shadow_invoice_consumes_no_credit(billing, service_factory, settings, batched):
    from decimal import Decimal

    from apps.invoicing.models import CreditApplication, CreditNote
    from apps.invoicing.services import AddOnFee, CreditNoteItemIn, credit_note_create, invoice_create_one_off

    settings.INVOICE_CLOSE_BATCH_MIN = 1 if batched else 1000
    migrating(billing.service, phase="dual_run")
    customer = billing.customer("acme").customer
    billing.subscribe("s1", billing.plan(amount_cents=10000), customer="acme", when=at(2026, 3, 1, 0, 0))
    desk = service_factory("nexadesk", "NexaDesk").service  # the hub bills it: its credit is real
    paid = invoice_create_one_off(service=desk, customer=customer, currency="CAD",
                                  fees=[AddOnFee(add_on_code="setup", units=Decimal(1), unit_amount_cents=20000)])
    pay(paid)  # paid: its credit note is credit (on an invoice still due it would settle it)
    note = credit_note_create(invoice_id=paid.pk, items=[CreditNoteItemIn(fee_id=paid.fees.get().pk, amount_cents=4000)])
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    shadow = Invoice.objects.get(shadow__isnull=False)
    assert (shadow.total_amount_cents, shadow.credit_notes_amount_cents) == (11300, 0)
    assert not CreditApplication.objects.exists()
    note.refresh_from_db()
    assert (note.balance_amount_cents, note.credit_status) == (4520, CreditNote.CreditStatus.AVAILABLE)

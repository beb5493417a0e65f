"""A stateful property test of the whole hub (issue 15): customers, staff and time interleaved at random,
and the billing invariants I1-I6 (apps/integrity) checked after every step.

Hypothesis drives the hub through its API (a service's API key and the DRF test client), its Stripe webhook
view (signed payloads, localstripe behind it), its ledger sender (the Odoo stand-in) and the services the beat
schedule runs (the period close, draft finalization, subscription transitions, dunning), under a clock that only
moves forward (time_machine). After every step `check_all` must find nothing (with the Odoo receivable
comparison once postings were sent), and so must the rules below that the issue states but I1-I6 do not cover.

Bounded for CI (the `default` Hypothesis profile: a few dozen short runs, derandomized so CI replays the same
ones); `pytest --hypothesis-profile=long tests/integration/test_billing_state_machine.py` explores for longer
with the profile's own bounds (tests/conftest.py).

The test is transactional: the close runs its stages on threads, a rule closes from two threads at once, and
payment collection and refunds run on commit, none of which can happen inside one test transaction. Each run
(example) starts from empty billing tables: its teardown empties every table of the hub's apps and
dj-stripe's (`_database_empty`), and gives the Odoo stand-in an empty store, since invoice numbers and
thus Odoo refs start again at 1. localstripe keeps its objects; ids are never reused.

Events are dated inside a life of the subscription they go to: one dated outside every life is refused with 422
`outside_subscription_life` (issue 17; tests/api/test_bad_input.py), so it can never sit unbilled under I2.
"""
from __future__ import annotations

import datetime as dt
import threading
import urllib.error
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection, transaction
from django.db.models import Max
from django.test import Client
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from apps.integrity.invariants import check_all
from apps.invoicing.close import invoices_finalize_due, periods_close
from apps.invoicing.models import CreditApplication, CreditNote, CreditNoteItem, CustomerCredit, Fee, Invoice
from apps.invoicing.selectors import invoice_list
from apps.ledger.models import LedgerPosting
from apps.ledger.services import ledger_post_pending_batch
from apps.payments.models import PaymentAttempt, StripeCustomer
from apps.payments.services import payment_retry_due
from apps.subscriptions.models import Subscription
from apps.subscriptions.services import subscription_activate_due
from apps.usage.models import UsageEvent
from tests.integration.ledger.builders import mapping_make
from tests.integration.payments.stripe_fixtures import (  # noqa: F401 (fixtures)
    localstripe,
    ls_client,
    ls_post,
    post_signed,
    stripe_env,
    stripe_event,
)
from tests.odoo_standin.server import OdooStandIn
from tests.odoo_standin.store import Store

pytestmark = pytest.mark.django_db(transaction=True)

UTC = dt.timezone.utc
TORONTO = ZoneInfo("America/Toronto")
START = dt.datetime(2026, 3, 1, 0, 0, tzinfo=TORONTO)

# Yearly amounts order them (1000 < 2000 < 3100 < 5000): any change between two is an upgrade or a downgrade,
# between in-advance and arrears plans as well. Every plan prices the same metric, at an odd unit price.
PLANS = {
    "adv_s": {"amount_cents": 1000, "pay_in_advance": True, "unit": "0.37"},
    "arr_s": {"amount_cents": 2000, "pay_in_advance": False, "unit": "0.5"},
    "adv_l": {"amount_cents": 3100, "pay_in_advance": True, "unit": "0.13"},
    "arr_l": {"amount_cents": 5000, "pay_in_advance": False, "unit": "1.07"},
}
# c1 pays through Checkout links (no card), in Ontario (HST 13 %); c2 has a saved card charged off-session,
# in British Columbia (GST 5 % + PST 7 %: two rates per line) and on Vancouver time.
CUSTOMERS = {
    "c1": {"name": "Acme", "country": "CA", "state": "ON", "timezone": "America/Toronto"},
    "c2": {"name": "Globex", "country": "CA", "state": "BC", "timezone": "America/Vancouver"},
}
SUBSCRIPTIONS = {"s1": "c1", "s2": "c1", "s3": "c2"}
CARDS = {"good": "pm_card_visa", "declined": "pm_card_chargeCustomerFail"}

# What the machine finds on main that is not fixed yet (each reported on issue 15, each with a strict-xfail
# reproduction). The rules stay clear of these paths while a gap is listed here; delete its name once fixed,
# and the machine walks them again.
KNOWN_GAPS: set[str] = set()

HUB_TABLE_PREFIXES = (
    "customers_", "catalog_", "subscriptions_", "usage_", "invoicing_", "payments_", "ledger_", "webhooks_",
    "integrity_", "djstripe_",
)


def _hub_tables() -> list[str]:
    return sorted(name for name in connection.introspection.table_names() if name.startswith(HUB_TABLE_PREFIXES))


def _database_empty() -> None:
    """Delete every row the hub's apps and dj-stripe hold, but the taxes their migration seeds.

    DELETE, not TRUNCATE: a TRUNCATE of ~100 tables takes seconds (a new file per table), the few hundred rows
    a run writes go in milliseconds. Foreign keys and triggers are off for this transaction only
    (`session_replication_role`), so the order of the tables does not matter. The subscriptions change log
    (migration subscriptions 0003) is written by hand, as its trigger would have: ingest's cached subscription
    lookups must see that every subscription changed.
    """
    tables = [table for table in _hub_tables() if table != "catalog_tax"]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        for table in tables:
            cursor.execute(f"DELETE FROM {table}")
        cursor.execute("DELETE FROM catalog_tax WHERE service_id IS NOT NULL")
        cursor.execute("INSERT INTO subscriptions_subscriptionchange (xid, recorded_at) "
                       "VALUES (pg_current_xact_id()::text::bigint, now())")


def _violations_text(violations) -> str:
    return "\n".join(f"{v.code}/{v.rule}: {v.message} (customer {v.customer_id}, invoice {v.invoice_number or v.invoice_id})"
                     for v in violations)


class Context:
    """What the pytest fixtures give every run: localstripe's URL and a running Odoo stand-in."""

    def __init__(self, stripe_url: str, odoo: OdooStandIn, settings):
        self.stripe_url, self.odoo, self.settings = stripe_url, odoo, settings


class BillingMachine(RuleBasedStateMachine):
    context: Context  # set by the test

    def __init__(self):
        super().__init__()
        self.clock = time_machine.travel(START, tick=False)
        self.traveller = self.clock.start()
        self.now = START
        self.api = None
        self.webhooks = Client()
        self.sent: dict[str, dict] = {}  # transaction_id -> event body, for duplicates
        self.posted = False  # postings were sent to Odoo at least once: compare receivables
        self.events_sent = 0
        self.untold: list[dict] = []  # Stripe events not delivered yet
        self.paid_not_told: list[PaymentAttempt] = []  # their attempts
        self.links_tried: set[int] = set()  # superseded attempts whose link the customer tried to pay

    # ------------------------------------------------------------------ set-up

    @initialize(grace_days=st.sampled_from([0, 0, 1]),
                subscriptions=st.lists(st.tuples(st.sampled_from(sorted(SUBSCRIPTIONS)), st.sampled_from(sorted(PLANS)),
                                                 st.sampled_from(["calendar", "anniversary"]),
                                                 st.none() | st.integers(min_value=1, max_value=70)),
                                       min_size=1, max_size=3, unique_by=lambda item: item[0]))
    def world(self, grace_days, subscriptions):
        """A service with four plans and two customers, and one to three subscriptions starting now, some with an
        ending date (defect 9: `ending_at` was stored, never acted on; `subscribe` sets one only now and then)."""
        from djstripe.models import Account, WebhookEndpoint
        from rest_framework.test import APIClient

        from apps.customers.services import service_create

        self.context.settings.INVOICE_GRACE_PERIOD_DAYS = grace_days
        self.grace_days = grace_days
        self.context.odoo.store = Store(login=self.context.odoo.login, password=self.context.odoo.password,
                                        api_key=self.context.odoo.api_key)
        self.odoo_client = self._odoo_client()
        issued = service_create(code="nexacloud", name="NexaCloud")
        self.service = issued.service
        self.api = APIClient()
        self.api.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.raw_key}")
        mapping_make(service=self.service)
        account, _ = Account.objects.get_or_create(id="acct_localstripe", defaults={"livemode": False})
        self.endpoint = WebhookEndpoint.objects.create(
            id="we_state_machine", url="http://testserver/", secret="whsec_payments_test_secret", enabled_events=["*"],
            status="enabled", api_version="", livemode=False, djstripe_owner_account=account,
        )
        metric = self._ok(self.api.post("/api/v1/billable_metrics", {"billable_metric": {
            "name": "GB", "code": "gb", "aggregation_type": "sum_agg", "field_name": "gb"}}, format="json"))
        metric_id = metric.json()["billable_metric"]["lago_id"]
        for code, plan in PLANS.items():
            self._ok(self.api.post("/api/v1/plans", {"plan": {
                "code": code, "name": code, "interval": "monthly", "amount_cents": plan["amount_cents"],
                "amount_currency": "CAD", "pay_in_advance": plan["pay_in_advance"],
                "charges": [{"billable_metric_id": metric_id, "charge_model": "standard",
                             "properties": {"amount": plan["unit"]}}],
            }}, format="json"))
        for external_id, attributes in CUSTOMERS.items():
            self._ok(self.api.post("/api/v1/customers", {"customer": {"external_id": external_id, **attributes}},
                                   format="json"))
        self._card_set("c2", CARDS["good"])
        for external_id, plan, billing_time, ending_days in subscriptions:
            self.subscribe(external_id, plan, billing_time, ending_days)

    def _odoo_client(self):
        from apps.ledger.odoo_client import OdooConfig, get_odoo_client

        odoo = self.context.odoo
        return get_odoo_client(OdooConfig(url=odoo.url, database=odoo.database, username=odoo.login,
                                          api_key=odoo.api_key, transport="json2", timeout_seconds=5.0))

    def teardown(self):
        try:
            self.clock.stop()
        finally:
            _database_empty()

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _ok(response, *allowed: int):
        assert response.status_code in (200, *allowed), (response.status_code, response.content[:2000])
        return response

    def _move_to(self, when: dt.datetime) -> None:
        assert when >= self.now
        self.now = when
        self.traveller.move_to(when)

    def _customer(self, external_id: str):
        from apps.customers.models import Customer

        return Customer.objects.get(account_links__service=self.service, account_links__external_id=external_id)

    def _card_set(self, external_id: str, magic_pm: str) -> None:
        from apps.payments.services import stripe_customer_ensure

        account = stripe_customer_ensure(customer=self._customer(external_id))
        client = ls_client(self.context.stripe_url)
        pm = client.v1.payment_methods.attach(magic_pm, params={"customer": account.stripe_customer_id})
        client.v1.customers.update(account.stripe_customer_id,
                                   params={"invoice_settings": {"default_payment_method": pm.id}})
        StripeCustomer.objects.filter(pk=account.pk).update(default_payment_method_id=pm.id)

    @staticmethod
    def _pick(items: list, index: int):
        return items[index % len(items)] if items else None

    def _finalized(self) -> list[Invoice]:
        return list(Invoice.objects.filter(status=Invoice.Status.FINALIZED).order_by("pk"))

    def _close(self, as_of: dt.datetime) -> None:
        run = periods_close(as_of=as_of)
        assert run.failures_count == 0, list(run.outcomes.filter(outcome="failed").values_list("error", flat=True))

    # ------------------------------------------------------------------ subscriptions (API)

    @rule(external_id=st.sampled_from(sorted(SUBSCRIPTIONS)), plan=st.sampled_from(sorted(PLANS)),
          billing_time=st.sampled_from(["calendar", "anniversary"]),
          ending_days=st.none() | st.integers(min_value=1, max_value=70))
    def subscribe(self, external_id, plan, billing_time, ending_days):
        """Create a subscription, or change the plan of the active one (upgrade at once, downgrade at period end)."""
        body = {"external_customer_id": SUBSCRIPTIONS[external_id], "plan_code": plan, "external_id": external_id}
        if billing_time is not None:
            body["billing_time"] = billing_time
        if ending_days is not None:
            body["ending_at"] = (self.now + dt.timedelta(days=ending_days, hours=7)).isoformat()
        self._ok(self.api.post("/api/v1/subscriptions", {"subscription": body}, format="json"))

    @rule(external_id=st.sampled_from(sorted(SUBSCRIPTIONS)), cheaper=st.booleans(),
          minutes=st.integers(min_value=0, max_value=6 * 60), billing_time=st.sampled_from(["same", "other", "unsaid"]))
    def change_plan_then_period_ends(self, external_id, cheaper, minutes, billing_time="same"):
        """Change an active subscription to the next cheaper plan (a downgrade, pending until its period ends) or
        the next dearer one (an upgrade, at once); then its period ends and the close runs before the beat's
        transitions job (separate beat entries: either may run first). `subscribe` reaches these sequences only
        by chance (defect 3: the old in-advance plan billed for the new period, then the new plan too).
        The request names the current billing time, the other one, or none (Lago's default, calendar): the
        change keeps the current one whatever it says (defect 9)."""
        from apps.subscriptions.selectors import current_period_end

        current = (Subscription.objects.filter(service=self.service, external_id=external_id,
                                               status=Subscription.Status.ACTIVE).select_related("plan").first())
        if current is None:
            return
        ordered = sorted(PLANS, key=lambda code: PLANS[code]["amount_cents"])
        at = ordered.index(current.plan.code) + (-1 if cheaper else 1)
        if not 0 <= at < len(ordered):
            return
        asked = {"same": current.billing_time, "unsaid": None,
                 "other": "calendar" if current.billing_time == "anniversary" else "anniversary"}[billing_time]
        self.subscribe(external_id, ordered[at], asked, None)
        self._move_to(max(self.now, current_period_end(current, at=self.now) + dt.timedelta(minutes=minutes)))
        self._close(self.now)

    @rule(external_id=st.sampled_from(sorted(SUBSCRIPTIONS)),
          credit=st.sampled_from([None, "credit", "refund", "skip"]))
    def terminate(self, external_id, credit):
        query = f"?on_termination_credit_note={credit}" if credit else ""
        self._ok(self.api.delete(f"/api/v1/subscriptions/{external_id}{query}"), 404)

    # ------------------------------------------------------------------ usage (API)

    def _event(self, body: dict) -> None:
        before = UsageEvent.objects.count()
        response = self._ok(self.api.post("/api/v1/events", {"event": body}, format="json"), 422)
        if response.status_code == 422:
            assert UsageEvent.objects.count() == before  # refused: nothing written
        elif response.json()["event"]["duplicate"]:
            assert UsageEvent.objects.count() == before
        else:
            assert UsageEvent.objects.count() == before + 1
            self.sent.setdefault(body["transaction_id"], body)

    @rule(external_id=st.sampled_from(sorted(SUBSCRIPTIONS)), back_hours=st.integers(min_value=0, max_value=24 * 25),
          gb=st.integers(min_value=1, max_value=40), late=st.booleans())
    def send_event(self, external_id, back_hours, gb, late):
        """An event dated up to 25 days back, inside a life of the subscription (the hub refuses others: see the
        module docstring); `late`: dated before
        what the subscription's invoices already billed (its `usage_billed_until`), so it must come as an
        adjustment on a later invoice."""
        subscriptions = list(Subscription.objects.filter(service=self.service, external_id=external_id,
                                                         started_at__isnull=False).order_by("started_at"))
        when = self.now - dt.timedelta(hours=back_hours)
        billed = [s for s in subscriptions if s.usage_billed_until is not None]
        if late and billed:
            when = billed[-1].usage_billed_until - dt.timedelta(hours=back_hours + 1)
        lives = [(s.started_at, s.terminated_at or self.now) for s in subscriptions]
        if lives and not any(start <= when <= end for start, end in lives):
            # Into the life of a subscription: the next one to start, else the last one.
            when = next((start for start, _ in lives if start > when), lives[-1][0])
        self.events_sent += 1
        self._event({"transaction_id": f"t{self.events_sent}", "external_subscription_id": external_id, "code": "gb",
                     "timestamp": int(when.timestamp()), "properties": {"gb": str(gb)}})

    @rule(external_id=st.sampled_from(sorted(SUBSCRIPTIONS)), back_hours=st.integers(min_value=0, max_value=24 * 25),
          gb=st.integers(min_value=1, max_value=40), days=st.integers(min_value=0, max_value=12))
    def late_event_then_close(self, external_id, back_hours, gb, days):
        """Usage dated before what its subscription's invoices billed, then days pass and the close runs, mid-period
        or not: the late usage waits for its subscription's next period invoice and joins it (defect 8: it was
        billed on an invoice of its own, dated the day the close ran). `send_event` reaches this only by chance."""
        self.send_event(external_id, back_hours, gb, True)
        self._move_to(self.now + dt.timedelta(days=days))
        self._close(self.now)

    @precondition(lambda self: bool(self.sent))
    @rule(index=st.integers(min_value=0, max_value=50), gb=st.none() | st.integers(min_value=1, max_value=40))
    def resend_event(self, index, gb):
        """The same transaction_id again (a client retry, or another value under a reused id): stored once."""
        body = dict(self._pick(sorted(self.sent.items()), index)[1])
        if gb is not None:
            body["properties"] = {"gb": str(gb)}
        self._event(body)

    # ------------------------------------------------------------------ time, and what the beat schedule runs

    @rule(step=st.one_of(
        st.tuples(st.just("hours"), st.integers(min_value=1, max_value=36)),
        st.tuples(st.just("days"), st.integers(min_value=1, max_value=12)),
        st.tuples(st.just("month_start"), st.integers(min_value=0, max_value=6 * 60)),
    ), then_close=st.booleans())
    def advance(self, step, then_close):
        """Move the clock forward: hours, days, or to the next 1st of the month, 00:00 in Toronto (03:00 in
        Vancouver) plus some minutes. Then the close runs (the beat's 15 minutes are short), or not yet."""
        kind, amount = step
        if kind == "hours":
            when = self.now + dt.timedelta(hours=amount)
        elif kind == "days":
            when = self.now + dt.timedelta(days=amount)
        else:
            local = self.now.astimezone(TORONTO)
            first = dt.datetime(local.year + (local.month == 12), local.month % 12 + 1, 1, tzinfo=TORONTO)
            when = first + dt.timedelta(minutes=amount)
        self._move_to(when)
        if then_close:
            self._close(self.now)

    @rule(minutes=st.integers(min_value=0, max_value=6 * 60), months=st.sampled_from([1, 1, 2]))
    def a_month_later_all_late_usage_is_billed(self, minutes, months):
        """Forward 32 days (and the grace period) and close: every period running now has ended and been billed, so
        every late event has met its adjustment. (I2's late_stuck rule cannot say so here: it compares the
        database's own clock with event rows stamped by it, and the test's clock is not the database's.)
        `months`: 2, the close did not run for a second month and catches up, billing two periods of a subscription
        at once (with a grace period, refreshing the earlier draft lost its fees: issue 15's I2/unbilled and 404)."""
        self._move_to(self.now + dt.timedelta(days=32 * months, minutes=minutes))
        self._close(self.now)
        if self.grace_days:  # and the drafts it left are finalized once their grace period is over
            self._move_to(self.now + dt.timedelta(days=self.grace_days))
            invoices_finalize_due(now=self.now)
        waiting = list(UsageEvent.objects.filter(is_late=True, late_billed_at__isnull=True)
                       .values_list("transaction_id", "subscription_id", "timestamp"))
        assert not waiting, f"late usage still unbilled a month later: {waiting}"

    @rule(how=st.sampled_from(["once", "twice", "concurrently"]))
    def close(self, how):
        """The period close as the beat runs it; twice in a row (the second bills nothing more), or from two
        workers at the same instant, each on its own connection."""
        if how == "once":
            self._close(self.now)
        elif how == "twice":
            self._close(self.now)
            invoices, fees = Invoice.objects.count(), Fee.objects.count()
            self._close(self.now)
            assert (Invoice.objects.count(), Fee.objects.count()) == (invoices, fees)
        else:
            barrier, runs, errors = threading.Barrier(2), [], []

            def worker():
                try:
                    barrier.wait(timeout=30)
                    runs.append(periods_close(as_of=self.now))
                except BaseException as exc:  # surfaced below
                    errors.append(exc)
                finally:
                    connection.close()

            threads = [threading.Thread(target=worker) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=120)
            assert not errors, errors
            assert len(runs) == 2 and sum(run.failures_count for run in runs) == 0

    @rule(job=st.sampled_from(["transitions", "finalize_due", "dunning"]))
    def beat(self, job):
        """The other periodic jobs: subscription transitions (pending plan changes and future starts begin,
        ending_at terminates), drafts past their grace period finalized, failed payments retried."""
        if job == "transitions":
            subscription_activate_due(now=self.now)
        elif job == "finalize_due":
            invoices_finalize_due(now=self.now)
        else:
            payment_retry_due(now=self.now)

    # ------------------------------------------------------------------ staff: void, credit notes (API)

    @rule(index=st.integers(min_value=0, max_value=30))
    def void_invoice(self, index):
        """Staff void a finalized invoice (API); refused (405) once it is paid."""
        invoice = self._pick(self._finalized(), index)
        if invoice is not None:
            self._ok(self.api.post(f"/api/v1/invoices/{invoice.lago_id}/void"), 405)

    @rule(index=st.integers(min_value=0, max_value=30), fee_index=st.integers(min_value=0, max_value=10),
          part=st.sampled_from([1, 2, 3]), refund=st.booleans(), pieces=st.sampled_from([1, 1, 2, 3]))
    def credit_note(self, index, fee_index, part, refund, pieces):
        """Credit 1/part of what is left on one fee; refund what the estimate allows when asked, keep the rest.
        With `pieces` > 1, that many notes in a row on the fee, the last crediting all that is left: each note's
        tax is rounded, and together they must credit exactly the fee's tax (defect 6)."""
        invoice = self._pick(self._finalized(), index)
        if invoice is None:
            return
        credited: dict[int, int] = {}
        for item in CreditNoteItem.objects.filter(credit_note__invoice=invoice).exclude(
                credit_note__credit_status=CreditNote.CreditStatus.VOIDED):
            credited[item.fee_id] = credited.get(item.fee_id, 0) + item.amount_cents
        fees = [fee for fee in invoice.fees.order_by("pk") if fee.amount_cents - credited.get(fee.pk, 0) > 0]
        fee = self._pick(fees, fee_index)
        if fee is None:
            return
        left = fee.amount_cents - credited.get(fee.pk, 0)
        for piece in range(pieces):
            amount = left if pieces > 1 and piece == pieces - 1 else max(1, left // part)
            items = [{"fee_id": str(fee.lago_id), "amount_cents": amount}]
            estimate = self._ok(self.api.post("/api/v1/credit_notes/estimate", {"credit_note": {
                "invoice_id": str(invoice.lago_id), "items": items}}, format="json")).json()["estimated_credit_note"]
            total = estimate["max_creditable_amount_cents"]
            refunded = min(total, estimate["max_refundable_amount_cents"]) if refund else 0
            self._ok(self.api.post("/api/v1/credit_notes", {"credit_note": {
                "invoice_id": str(invoice.lago_id), "reason": "other", "items": items,
                "credit_amount_cents": total - refunded, "refund_amount_cents": refunded,
            }}, format="json"))
            left -= amount
            if left <= 0:
                break

    # ------------------------------------------------------------------ customers paying (Stripe webhooks)

    def _open_checkouts(self) -> list[PaymentAttempt]:
        """Attempts whose link the customer can still pay (not paid already, unknown to the hub yet)."""
        return list(PaymentAttempt.objects.filter(
            kind=PaymentAttempt.Kind.CHECKOUT, status=PaymentAttempt.Status.REQUIRES_ACTION,
            invoice__status=Invoice.Status.FINALIZED,
        ).exclude(stripe_checkout_session_id="").exclude(pk__in=[a.pk for a in self.paid_not_told]).order_by("pk"))

    @precondition(lambda self: self.api is not None and bool(self._open_checkouts()))
    @rule(index=st.integers(min_value=0, max_value=10),
          outcome=st.sampled_from(["paid", "paid_redelivered", "paid_told_later", "paid_while_voided",
                                   "paid_while_retried", "declined"]))
    def pay_checkout_link(self, index, outcome):
        """The customer pays an open Checkout link and Stripe sends checkout.session.completed (sometimes twice, or
        only later: meanwhile staff may retry the payment, which supersedes the link, or void the invoice; the
        `paid_while_*` outcomes do one of those before Stripe tells, which `paid_told_later` reaches only by
        chance: defect 2, a payment on a canceled attempt dropped), or the card is declined on the Checkout page
        (Stripe keeps the session open, nothing is paid)."""
        attempt = self._pick(self._open_checkouts(), index)
        path = f"/_config/checkout_sessions/{attempt.stripe_checkout_session_id}/complete"
        if outcome == "declined":
            with pytest.raises(urllib.error.HTTPError):
                ls_post(self.context.stripe_url, path, {"payment_method": "pm_card_chargeDeclined"})
            return
        event = stripe_event("checkout.session.completed", ls_post(self.context.stripe_url, path))
        if outcome == "paid_told_later":
            self.paid_not_told.append(attempt)
            self.untold.append(event)
            return
        if outcome in ("paid_while_voided", "paid_while_retried"):
            action = "void" if outcome == "paid_while_voided" else "retry_payment"
            self._ok(self.api.post(f"/api/v1/invoices/{attempt.invoice.lago_id}/{action}"), 405, 422)
        for _ in range(1 + (outcome == "paid_redelivered")):
            assert post_signed(self.webhooks, self.endpoint, event).status_code == 200

    def _superseded_checkouts(self) -> list[PaymentAttempt]:
        return list(PaymentAttempt.objects.filter(kind=PaymentAttempt.Kind.CHECKOUT,
                                                  status=PaymentAttempt.Status.CANCELED)
                    .exclude(stripe_checkout_session_id="").exclude(pk__in=self.links_tried).order_by("pk"))

    @precondition(lambda self: self.api is not None and bool(self._superseded_checkouts()))
    @rule(index=st.integers(min_value=0, max_value=10))
    def pay_superseded_link(self, index):
        """The customer pays a link the hub gave up on (a retry superseded it, or its invoice was voided or paid
        another way): Stripe refuses once the hub expired it; if it is still open, the payment must be recorded."""
        attempt = self._pick(self._superseded_checkouts(), index)
        self.links_tried.add(attempt.pk)
        try:
            session = ls_post(self.context.stripe_url,
                              f"/_config/checkout_sessions/{attempt.stripe_checkout_session_id}/complete")
        except urllib.error.HTTPError as exc:
            assert exc.code == 400  # expired (or paid already): the customer cannot pay it
            return
        assert post_signed(self.webhooks, self.endpoint, stripe_event("checkout.session.completed", session)
                           ).status_code == 200

    @precondition(lambda self: bool(self.untold))
    @rule()
    def stripe_tells_late(self):
        """Stripe delivers the webhooks it held back (in the order it sends them, oldest first)."""
        while self.untold:
            assert post_signed(self.webhooks, self.endpoint, self.untold.pop(0)).status_code == 200
        self.paid_not_told.clear()

    @rule(card=st.sampled_from(sorted(CARDS)))
    def card_change(self, card):
        """c2 changes its saved card (later off-session charges succeed or are declined)."""
        self._card_set("c2", CARDS[card])

    @rule(index=st.integers(min_value=0, max_value=30))
    def retry_payment(self, index):
        """Staff retry collection (API): a new off-session charge, or a new Checkout link superseding the open one."""
        unpaid = [invoice for invoice in self._finalized() if invoice.payment_status != "succeeded"]
        invoice = self._pick(unpaid, index)
        if invoice is not None:
            self._ok(self.api.post(f"/api/v1/invoices/{invoice.lago_id}/retry_payment"), 405, 422)

    @precondition(lambda self: self.api is not None
                  and PaymentAttempt.objects.exclude(stripe_payment_intent_id="").exists())
    @rule(index=st.integers(min_value=0, max_value=30), older_by=st.sampled_from([0, 0, 3600]))
    def payment_intent_webhook(self, index, older_by):
        """Stripe (re)delivers a payment_intent event of an off-session charge, possibly late and out of order."""
        attempt = self._pick(list(PaymentAttempt.objects.exclude(stripe_payment_intent_id="").order_by("pk")), index)
        data = ls_client(self.context.stripe_url).v1.payment_intents.retrieve(attempt.stripe_payment_intent_id).to_dict()
        kind = {"succeeded": "payment_intent.succeeded",
                "requires_payment_method": "payment_intent.payment_failed"}.get(data["status"])
        if kind is not None:
            event = stripe_event(kind, data, created=int(self.now.timestamp()) - older_by)
            assert post_signed(self.webhooks, self.endpoint, event).status_code == 200

    # ------------------------------------------------------------------ the ledger (Odoo stand-in)

    @rule()
    def post_to_odoo(self):
        """The ledger sender runs until nothing is due (a refund waits one round for its credit note's move)."""
        for _ in range(4):
            LedgerPosting.objects.filter(status=LedgerPosting.Status.PENDING).update(next_attempt_at=None)
            if ledger_post_pending_batch(client=self.odoo_client).claimed == 0:
                break
        self.posted = True
        stuck = list(LedgerPosting.objects.exclude(status__in=("posted", "skipped", "pending"))
                     .values_list("ref", "status", "last_error"))
        assert not stuck, stuck

    # ------------------------------------------------------------------ invariants

    @invariant()
    def money_is_exact(self):
        if self.api is None:
            return
        violations = check_all(odoo_client=self.odoo_client if self.posted else None)
        assert not violations, _violations_text(violations)

    @invariant()
    def lifecycle_rules_hold(self):
        """What issue 15 states beyond I1-I6, each a query."""
        if self.api is None:
            return
        now = self.now
        # The service reads every invoice of its customers (a refresh that emptied a draft, or lost its periods'
        # fees, left invoices with no fee of the service: the API answered 404 to their void).
        hidden = list(Invoice.objects.exclude(pk__in=invoice_list(service=self.service).values("pk"))
                      .values_list("pk", "status", "issuing_date"))
        assert not hidden, f"invoices the service cannot read: {hidden}"
        # The usage cut-off never covers time that has not happened (defect 7: it moved to the period end).
        ahead = list(Subscription.objects.filter(usage_billed_until__gt=now).values_list("pk", "usage_billed_until"))
        assert not ahead, f"usage cut-off after now ({now}): {ahead}"
        # A plan change keeps the anchor and billing time of the subscription it replaces (defect 9).
        moved = [
            (s.pk, s.subscription_at, s.previous_subscription.subscription_at)
            for s in Subscription.objects.filter(previous_subscription__isnull=False).select_related("previous_subscription")
            if (s.subscription_at, s.billing_time) != (s.previous_subscription.subscription_at,
                                                       s.previous_subscription.billing_time)
        ]
        assert not moved, f"plan change moved the anchor: {moved}"
        # No subscription fee billed, once a subscription has ended or passed its ending date, for a period that
        # starts then or later (defect 3: an activated downgrade's old plan billed in advance again; defect 9:
        # ending_at ignored). A fee billed in advance before the end is credited by the termination instead.
        after_end = []
        for fee in (Fee.objects.filter(fee_type=Fee.FeeType.SUBSCRIPTION, subscription__isnull=False)
                    .exclude(invoice__status=Invoice.Status.VOIDED).select_related("subscription")):
            ends = [moment for moment in (fee.subscription.terminated_at, fee.subscription.ending_at) if moment]
            if ends and fee.from_datetime is not None and fee.from_datetime >= min(ends) < fee.created_at:
                after_end.append((fee.fee_key, fee.from_datetime, min(ends), fee.created_at))
        assert not after_end, f"billed after the subscription ended: {after_end}"
        # Late usage of a running subscription rides on that subscription's next period invoice, never on an
        # invoice of its own (defect 8).
        alone = []
        for fee in (Fee.objects.filter(is_adjustment=True).exclude(invoice__status=Invoice.Status.VOIDED)
                    .select_related("subscription", "invoice")):
            ended = fee.subscription.terminated_at
            if ended is not None and ended <= fee.invoice.created_at:
                continue  # a terminated subscription's late usage goes on the next close's invoice
            if not fee.invoice.fees.filter(subscription=fee.subscription, is_adjustment=False).exists():
                alone.append((fee.fee_key, fee.invoice.issuing_date))
        assert not alone, f"late usage on an invoice without its subscription's period: {alone}"
        # Credit kept for the customer is consumed by the next invoices (defect 1): no invoice with something to
        # pay is finalized after credit of its customer and currency became available, while that credit is unused.
        unused = []
        returned = dict(CreditApplication.objects.filter(kind=CreditApplication.Kind.RETURNED)
                        .values("credit_note_id").annotate(at=Max("created_at")).values_list("credit_note_id", "at"))
        returned_credit = dict(CreditApplication.objects.filter(kind=CreditApplication.Kind.RETURNED)
                               .values("customer_credit_id").annotate(at=Max("created_at"))
                               .values_list("customer_credit_id", "at"))
        sources = [
            (note.customer_id, note.currency, max(note.created_at, returned.get(note.pk, note.created_at)), note.number)
            for note in CreditNote.objects.filter(credit_status=CreditNote.CreditStatus.AVAILABLE,
                                                  balance_amount_cents__gt=0)
        ] + [
            (credit.customer_id, credit.currency, max(credit.created_at, returned_credit.get(credit.pk, credit.created_at)),
             f"customer credit {credit.pk}")
            for credit in CustomerCredit.objects.filter(status=CustomerCredit.Status.AVAILABLE, balance_amount_cents__gt=0)
        ]
        for customer_id, currency, since, name in sources:
            charged = Invoice.objects.filter(customer_id=customer_id, currency=currency, status=Invoice.Status.FINALIZED,
                                             finalized_at__gt=since, total_amount_cents__gt=0)
            unused += [(name, since, number) for number in charged.values_list("number", flat=True)]
        assert not unused, f"invoices charged in full while older credit sat unused (source, since, invoice): {unused}"
        # Tax credited per fee and rate never exceeds the tax charged (defect 6).
        over = []
        credited: dict[tuple[int, str], int] = {}
        fee_tax: dict[tuple[int, str], int] = {}
        for item in CreditNoteItem.objects.exclude(credit_note__credit_status=CreditNote.CreditStatus.VOIDED
                                                   ).select_related("fee"):
            for tax in item.applied_taxes or []:
                key = (item.fee_id, tax["code"])
                credited[key] = credited.get(key, 0) + int(tax["amount_cents"])
            for tax in item.fee.applied_taxes or []:
                fee_tax[(item.fee_id, tax["code"])] = int(tax["amount_cents"])
        over = [(key, cents, fee_tax.get(key, 0)) for key, cents in credited.items() if cents > fee_tax.get(key, 0)]
        assert not over, f"credited more tax than charged (fee, code, credited, charged): {over}"


@pytest.fixture
def odoo_for_machine():
    standin = OdooStandIn().start()
    try:
        yield standin
    finally:
        standin.stop()


def _bounds() -> hypothesis_settings:
    """The run's bounds: short and reproducible under the default profile, the profile's own otherwise."""
    common = {"deadline": None, "suppress_health_check": list(HealthCheck), "database": None}
    if hypothesis_settings.get_current_profile_name() == "default":
        return hypothesis_settings(max_examples=25, stateful_step_count=30, derandomize=True,
                        phases=[Phase.explicit, Phase.generate, Phase.shrink], **common)
    return hypothesis_settings(hypothesis_settings.default, **common)


@pytest.mark.timeout(1800)  # a failure shrinks for minutes; the passing default run takes about a minute
def test_billing_state_machine(stripe_env, odoo_for_machine, settings):
    _database_empty()
    BillingMachine.context = Context(stripe_env, odoo_for_machine, settings)
    run_state_machine_as_test(BillingMachine, settings=_bounds())


def _replay(context: Context, steps: list[tuple[str, dict]]) -> None:
    """Run a sequence the machine found, checking every invariant after each step, as the machine does."""
    _database_empty()
    BillingMachine.context = context
    machine = BillingMachine()
    try:
        for name, arguments in steps:
            getattr(machine, name)(**arguments)
            machine.money_is_exact()
            machine.lifecycle_rules_hold()
    finally:
        machine.teardown()


def test_finding_late_usage_of_an_ended_plan_stays_off_the_draft_of_the_plan_it_replaced(
    stripe_env, odoo_for_machine, settings
):
    """Session 7's CI finding, shrunk: an in-advance plan upgraded the instant it started leaves its draft of the
    first day open (grace 1 day); the plan that replaced it is downgraded at its period end; late usage of that
    ended plan arrives, and the refresh of the first day's draft, which re-plans that day, took it there: an
    invoice issued while the plan still ran, with none of its periods."""
    _replay(Context(stripe_env, odoo_for_machine, settings), [
        ("world", {"grace_days": 1, "subscriptions": [("s1", "adv_l", "calendar", None)]}),
        ("change_plan_then_period_ends", {"cheaper": False, "external_id": "s1", "minutes": 132}),
        ("change_plan_then_period_ends", {"cheaper": True, "external_id": "s1", "minutes": 0}),
        ("late_event_then_close", {"back_hours": 0, "days": 0, "external_id": "s1", "gb": 1}),
    ])

"""Billing invariants: each a few set-based reads of the live database, returning the rows that break it.

Amounts are integer minor units of the row's currency. "Finalized" means status `finalized` (drafts and voided
invoices excluded) unless said otherwise. Each function takes an optional list of customer ids to look at
(None = everyone) and returns `Violation`s; `check_all` runs them all on one consistent snapshot.

Lago history imported by apps.migration (LagoObject kind "invoice") is left out of I1, I3, I4 and of I2's
fee_count and overlap (its windows still cover usage), and shadow invoices of a dual run (never charged or posted)
out of I1, with what is attached to them.

I1 balance, per customer and currency:
    flows  = Σ finalized invoices' sub_total_including_taxes (an invoice voided with credit notes, Lago's
             generate_credit_note, counts as finalized: its notes took it off, not a reversal)
           − Σ credit notes' total less the credit voided on them (lost by the customer, re-billed in the ledger),
             less what they offset on invoices voided since (that part settled an invoice no longer counted; the
             void reverses only the rest)
           − Σ payments (every Payment: a PaymentIntent Stripe reported succeeded, or one recorded by hand)
           + Σ succeeded refunds (of credit notes and of customer credit)
           − Σ wallet credits consumed by finalized invoices (a wallet top-up is an invoice of its own, paid like
             any other; the credits it bought then pay part of later invoices, like a discount after tax)
    owed   = Σ finalized invoices' amount due, max(total − total_paid − offset, 0) (offset: what credit notes
             issued on the invoice while it was due settled)
           − Σ unused credit-note credit (balance of notes whose credit is `available`)
           − Σ credit-note refunds owed (refund amount less the note's succeeded refund)
           − Σ customer credit kept from payments no invoice took (CustomerCredit balance, available or refunding)
    flows == owed. Credit applied to an invoice lowers its total (credit_notes_amount, prepaid_credit_amount) and
    its source's balance alike, so it cancels out; money received and kept nowhere breaks it.
    `odoo_receivables_compare` also checks `owed` against the customer's receivable in Odoo (Σ residual of the
    partner's posted receivable lines: invoices, credit notes, payment entries) once every posting of the
    customer is sent.
I2 usage billed exactly once (a subscription's usage before its `usage_billed_until` is closed):
    fee_count   a charge fee's events_count equals the on-time (not late) rows of its subscription and metric
                inside its window [from, to): a row committed unflagged after the close read its window breaks it;
    unbilled    every on-time row before the cut-off, of a metric an invoiceable charge of the plan prices, lies
                inside the window of a charge fee for that subscription and charge (on any invoice: usage on a
                voided invoice was billed, then voided by staff); counted per subscription and charge: rows
                before the cut-off == Σ rows inside its fees' windows (clipped to the cut-off);
    late_billed per subscription and charge, late rows marked billed == Σ events_count of its adjustment fees;
    late_stuck  a late row of a charged metric is billed within INTEGRITY_LATE_USAGE_GRACE_HOURS (default 24)
                of its arrival once it is due: its subscription's next period invoice was written after it arrived,
                or the subscription is no longer active (late usage waits for that invoice: one invoice per
                customer and billing day);
    overlap     charge fees of one subscription and charge on non-voided invoices have disjoint windows.
I3 no finalized invoice has total_amount_cents < 0 or sub_total_including_taxes_amount_cents < 0.
I4 every invoice (any status) is the per-line tax rule over its rounded lines, coupons off before tax:
    fee_tax     each fee's applied tax = round_half_up((amount_cents − coupons_amount_cents) × rate / 100), per rate;
    fee_taxes   a fee's taxes_amount_cents = Σ of its applied taxes;
    tax_rows    an InvoiceAppliedTax row per tax code with base = Σ (amount_cents − coupons_amount_cents) and
                tax = Σ applied taxes of the fees taxed at that code (no missing or extra row);
    totals      fees_amount = Σ fees' amount_cents; coupons_amount = Σ fees' coupon shares = Σ its CouponCredit
                rows; sub_total_excluding = fees_amount − coupons_amount; taxes_amount = Σ tax rows;
                sub_total_including = sub_total_excluding + taxes_amount; total = sub_total_including −
                credit_notes_amount_cents − prepaid_credit_amount_cents.
I5 invoice (and payment receipt) numbers are gapless per series (checked only for the whole database, never per
    customer):
    the sequential ids of finalized and voided invoices of a series are exactly 1..N, each once; its
    NumberSequence.last_value is N; every finalized or voided invoice has a number and a sequential id,
    and no draft holds one.
I6 every payment Stripe reports as succeeded is recorded: each succeeded PaymentIntent and each paid
    Checkout Session in dj-stripe's mirror that belongs to a hub customer (a payment attempt names it, by
    metadata, PaymentIntent or session id, or its Stripe customer is a hub customer's) has a Payment with its
    PaymentIntent id (or its session's attempt), for the amount Stripe received. Money kept as customer credit is
    still a Payment (CustomerCredit.payment), so it counts as recorded.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable

from django.conf import settings
from django.db import connection, transaction

from apps.usage.models import UsageArchive

CENTS = "cents"
ROWS = "rows"
NUMBERS = "numbers"
# Sub-checks listed in detail: missing sequential ids, duplicate numbers.
LIST_LIMIT = 20


@dataclass(frozen=True)
class Violation:
    code: str  # I1 .. I6
    rule: str  # which rule of the invariant (see the module docstring)
    message: str
    customer_id: int | None = None
    invoice_id: int | None = None
    invoice_number: str = ""
    currency: str = ""
    expected: int | None = None  # in `unit`
    actual: int | None = None
    unit: str = CENTS  # cents (minor units of `currency`), rows (usage rows) or numbers (invoice numbers)
    reference: str = ""  # what else it is about: fee, subscription, series, PaymentIntent

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _scope(column: str) -> str:
    return f"(%(everyone)s OR {column} = ANY(%(customers)s))"


def _params(customer_ids: Iterable[int] | None, **extra: Any) -> dict[str, Any]:
    customers = sorted({int(pk) for pk in customer_ids}) if customer_ids is not None else []
    return {"everyone": customer_ids is None, "customers": customers, **extra}


def _rows(sql: str, params: dict[str, Any]) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _imported(invoice_id: str) -> str:
    """SQL: the invoice is Lago's history imported by apps.migration. Its payments are not Payment rows, its fees
    count events that are not usage rows here, and Lago rounded its taxes per invoice: I1-I4 leave it out (its
    own gapless series still counts for I5)."""
    return f"EXISTS (SELECT 1 FROM migration_lagoobject lo WHERE lo.kind = 'invoice' AND lo.hub_id = {invoice_id})"


def _not_owed(invoice_id: str) -> str:
    """SQL: the invoice is no claim on the customer: imported history, or a shadow invoice of a dual run (computed
    to compare with Lago, never charged or posted)."""
    return (f"({_imported(invoice_id)} OR "
            f"EXISTS (SELECT 1 FROM migration_shadowinvoice sh WHERE sh.invoice_id = {invoice_id}))")


# --------------------------------------------------------------------------- I1


@dataclass(frozen=True)
class Balance:
    """One customer's money in one currency, as the hub's rows tell it (minor units)."""

    customer_id: int
    currency: str
    # Σ finalized invoices' sub_total_including_taxes; an invoice voided with credit notes (Lago's
    # generate_credit_note) counts as billed: its notes, not a reversal, took it off (docs/ledger.md).
    invoiced: int
    credited: int  # Σ credit notes' total (less their voided credit and their offsets of invoices voided since)
    paid: int  # Σ payments
    refunded: int  # Σ succeeded refunds
    due: int  # Σ finalized invoices' max(total − total_paid − offset, 0)
    credit_left: int  # Σ unused credit-note credit
    refund_owed: int  # Σ credit-note refund amounts not refunded yet
    customer_credit: int  # Σ credit kept from payments no invoice took, not consumed or refunded yet
    wallet_consumed: int  # Σ wallet credits consumed by finalized invoices (their prepaid credit from wallets)

    @property
    def flows(self) -> int:
        return self.invoiced - self.credited - self.paid + self.refunded - self.wallet_consumed

    @property
    def owed(self) -> int:
        """What the customer owes (negative: what the hub owes the customer)."""
        return self.due - self.credit_left - self.refund_owed - self.customer_credit


# One grouped query per kind of money, combined in Python: a join of these aggregates would rest on the
# planner's row estimates, and a nested loop over aggregates it guessed at one row recomputes them per row.
BALANCE_PARTS = {
    "invoiced": """
        SELECT customer_id, currency, sum(sub_total_including_taxes_amount_cents),
               sum(greatest(total_amount_cents - total_paid_amount_cents - offset_amount_cents, 0))
          FROM invoicing_invoice
         WHERE (status = 'finalized' OR (status = 'voided' AND voided_with_credit_notes))
           AND NOT """ + _not_owed("invoicing_invoice.id") + """ AND {scope}
         GROUP BY 1, 2""",
    "credited": """
        SELECT n.customer_id, n.currency,
               sum(n.total_amount_cents - n.voided_amount_cents
                   - CASE WHEN ci.status = 'voided' AND NOT ci.voided_with_credit_notes
                        THEN n.offset_amount_cents ELSE 0 END),
               coalesce(sum(n.balance_amount_cents) FILTER (WHERE n.credit_status = 'available'), 0),
               sum(n.refund_amount_cents - coalesce(r.amount_cents, 0))
          FROM invoicing_creditnote n
          JOIN invoicing_invoice ci ON ci.id = n.invoice_id
          LEFT JOIN payments_refund r ON r.credit_note_id = n.id AND r.status = 'succeeded'
         WHERE NOT """ + _not_owed("n.invoice_id") + """ AND {scope}
         GROUP BY 1, 2""",
    "paid": """
        SELECT i.customer_id, p.currency, sum(p.amount_cents)
          FROM payments_payment p JOIN invoicing_invoice i ON i.id = p.invoice_id
         WHERE NOT """ + _not_owed("p.invoice_id") + """ AND {scope}
         GROUP BY 1, 2""",
    "refunded": """
        SELECT coalesce(n.customer_id, c.customer_id), r.currency, sum(r.amount_cents)
          FROM payments_refund r
          LEFT JOIN invoicing_creditnote n ON n.id = r.credit_note_id
          LEFT JOIN invoicing_customercredit c ON c.id = r.customer_credit_id
         WHERE r.status = 'succeeded' AND (n.id IS NULL OR NOT """ + _not_owed("n.invoice_id") + """) AND {scope}
         GROUP BY 1, 2""",
    "customer_credit": """
        SELECT customer_id, currency, sum(balance_amount_cents)
          FROM invoicing_customercredit
         WHERE status IN ('available', 'refunding') AND {scope}
         GROUP BY 1, 2""",
    "wallet_consumed": """
        SELECT i.customer_id, i.currency, sum(t.amount_cents)
          FROM invoicing_wallettransaction t JOIN invoicing_invoice i ON i.id = t.invoice_id
         WHERE t.reason = 'consumption' AND i.status = 'finalized' AND NOT """ + _not_owed("i.id") + """ AND {scope}
         GROUP BY 1, 2""",
}
_BALANCE_SCOPES = {"invoiced": "customer_id", "credited": "n.customer_id", "paid": "i.customer_id",
                   "refunded": "coalesce(n.customer_id, c.customer_id)", "customer_credit": "customer_id",
                   "wallet_consumed": "i.customer_id"}
# Which Balance fields each part's columns after (customer, currency) fill.
_BALANCE_FIELDS = {"invoiced": ("invoiced", "due"), "credited": ("credited", "credit_left", "refund_owed"),
                   "paid": ("paid",), "refunded": ("refunded",), "customer_credit": ("customer_credit",),
                   "wallet_consumed": ("wallet_consumed",)}


def customer_balances(customer_ids: Iterable[int] | None = None) -> dict[tuple[int, str], Balance]:
    """Return each customer's Balance per currency (customers and currencies with any money row)."""
    params = _params(customer_ids)
    found: dict[tuple[int, str], dict[str, int]] = defaultdict(dict)
    for part, sql in BALANCE_PARTS.items():
        for customer_id, currency, *values in _rows(sql.format(scope=_scope(_BALANCE_SCOPES[part])), params):
            found[(customer_id, currency)].update(zip(_BALANCE_FIELDS[part], (int(v) for v in values)))
    empty = dict.fromkeys(field for fields in _BALANCE_FIELDS.values() for field in fields)
    return {
        key: Balance(key[0], key[1], **{field: values.get(field, 0) for field in empty})
        for key, values in sorted(found.items())
    }


def i1_balances(customer_ids: Iterable[int] | None = None) -> list[Violation]:
    violations = []
    for balance in customer_balances(customer_ids).values():
        if balance.flows == balance.owed:
            continue
        violations.append(Violation(
            code="I1", rule="balance", customer_id=balance.customer_id, currency=balance.currency,
            expected=balance.flows, actual=balance.owed,
            message=(
                f"owes {balance.owed} but the flows say {balance.flows}: invoiced {balance.invoiced} − credited "
                f"{balance.credited} − paid {balance.paid} + refunded {balance.refunded}; due {balance.due}, "
                f"unused credit {balance.credit_left}, refunds owed {balance.refund_owed}, customer credit "
                f"{balance.customer_credit}"
                + (f", wallet credits consumed {balance.wallet_consumed}" if balance.wallet_consumed else "")
            ),
        ))
    return violations


UNSENT_POSTINGS_SQL = """
SELECT coalesce(n.customer_id, i.customer_id) AS customer_id,
       bool_or(p.status IN ('pending', 'failed')) AS unsent
  FROM ledger_ledgerposting p
  LEFT JOIN invoicing_invoice i ON i.id = p.invoice_id
  LEFT JOIN invoicing_creditnote n ON n.id = p.credit_note_id
 GROUP BY 1
"""


def odoo_receivables_compare(*, client: Any, customer_ids: Iterable[int] | None = None) -> list[Violation]:
    """Compare what each customer owes in the hub (I1's `owed`) with its receivable in Odoo, per currency.

    Only customers with at least one posting and none pending or failed are compared: until every document
    is sent, Odoo is behind by design. `client` is an `apps.ledger.odoo_client.OdooClient`.
    """
    from apps.customers.models import Customer

    wanted = None if customer_ids is None else {int(pk) for pk in customer_ids}
    sent = {
        customer_id for customer_id, unsent in _rows(UNSENT_POSTINGS_SQL, {})
        if not unsent and customer_id is not None and (wanted is None or customer_id in wanted)
    }
    if not sent:
        return []
    refs = dict(Customer.objects.filter(pk__in=sent).values_list("pk", "external_id"))
    hub: dict[tuple[int, str], int] = defaultdict(int)
    for (customer_id, currency), balance in customer_balances(sorted(sent)).items():
        hub[(customer_id, currency)] = balance.owed
    ledger = client.partner_receivables(refs=sorted(refs.values()))
    customer_of = {ref: pk for pk, ref in refs.items()}
    odoo: dict[tuple[int, str], int] = defaultdict(int)
    for (ref, currency), cents in ledger.items():
        if ref in customer_of:
            odoo[(customer_of[ref], currency)] += cents
    violations = []
    for key in sorted(set(hub) | set(odoo)):
        expected, actual = hub.get(key, 0), odoo.get(key, 0)
        if expected != actual:
            violations.append(Violation(
                code="I1", rule="odoo_receivable", customer_id=key[0], currency=key[1], expected=expected,
                actual=actual, reference=refs[key[0]],
                message=f"owes {expected} in the hub but {actual} in Odoo (partner ref {refs[key[0]]!r})",
            ))
    return violations


# --------------------------------------------------------------------------- I2

# I2 reads three simple sets and compares them in Python: the usage rows per (subscription, metric), the charges
# per subscription, and every charge fee with the rows of its window counted through the (subscription, metric,
# timestamp) index (a LATERAL: once per fee, whatever the estimates). A NOT EXISTS per usage row probed every fee
# of the charge when the statistics were stale (13 minutes at 2M rows); a join of aggregates is as fragile.
CHARGES_SQL = """
SELECT s.id, s.customer_id, s.usage_billed_until, c.id, c.billable_metric_id, c.invoiceable, p.amount_currency
  FROM subscriptions_subscription s
  JOIN catalog_plan p ON p.id = s.plan_id
  JOIN catalog_charge c ON c.plan_id = s.plan_id
 WHERE s.usage_billed_until IS NOT NULL AND {scope}
"""

USAGE_SQL = """
SELECT e.subscription_id, e.billable_metric_id,
       count(*) FILTER (WHERE NOT e.is_late AND e.timestamp < s.usage_billed_until),
       count(*) FILTER (WHERE e.is_late AND e.late_billed_at IS NOT NULL)
  FROM usage_usageevent e
  JOIN subscriptions_subscription s ON s.id = e.subscription_id
 WHERE s.usage_billed_until IS NOT NULL AND {scope}
 GROUP BY 1, 2
"""

CHARGE_FEES_SQL = """
SELECT i.customer_id, f.invoice_id, i.number, f.currency, f.id, f.subscription_id, f.charge_id, f.is_adjustment,
       f.events_count, w.on_time, w.before_cutoff, """ + _imported("f.invoice_id") + """ AS imported,
       -- The window reaches into a month whose raw rows were archived (usage_archive): they cannot be counted.
       EXISTS (SELECT 1 FROM usage_usagearchive a
                WHERE a.status = 'archived' AND a.restored_at IS NULL AND f.from_datetime < (a.month + interval '1 month') AT TIME ZONE 'UTC'
                  AND f.to_datetime > a.month::timestamp AT TIME ZONE 'UTC') AS archived
  FROM invoicing_fee f
  JOIN invoicing_invoice i ON i.id = f.invoice_id
  JOIN catalog_charge c ON c.id = f.charge_id
  JOIN subscriptions_subscription s ON s.id = f.subscription_id
  LEFT JOIN LATERAL (
      SELECT count(*) AS on_time, count(*) FILTER (WHERE e.timestamp < s.usage_billed_until) AS before_cutoff
        FROM usage_usageevent e
       WHERE e.subscription_id = f.subscription_id AND e.billable_metric_id = c.billable_metric_id
         AND e.timestamp >= f.from_datetime AND e.timestamp < f.to_datetime AND NOT e.is_late
  ) w ON NOT f.is_adjustment AND f.from_datetime IS NOT NULL AND f.to_datetime IS NOT NULL
 WHERE f.fee_type = 'charge' AND {scope}
 ORDER BY i.customer_id, f.id
"""

LATE_STUCK_SQL = """
SELECT s.customer_id, s.id, e.billable_metric_id, count(*), min(e.created_at)
  FROM usage_usageevent e
  JOIN subscriptions_subscription s ON s.id = e.subscription_id
 WHERE e.is_late AND e.late_billed_at IS NULL AND e.created_at < now() - make_interval(hours => %(grace)s)
   AND EXISTS (SELECT 1 FROM catalog_charge c WHERE c.plan_id = s.plan_id AND c.billable_metric_id = e.billable_metric_id)
   -- Late usage joins its subscription's next period invoice (close/planning.py, `_late_billing_days`): it is
   -- stuck once such an invoice was written after it arrived, or once the subscription has no period to come.
   AND (s.status <> 'active' OR EXISTS (
        SELECT 1 FROM invoicing_fee f
         WHERE f.subscription_id = s.id AND NOT f.is_adjustment AND f.created_at > e.created_at))
   AND {scope}
 GROUP BY 1, 2, 3
 ORDER BY 1, 2, 3
"""

OVERLAP_SQL = """
SELECT customer_id, invoice_id, number, currency, id, subscription_id, charge_id, from_datetime, to_datetime, prev_to
  FROM (
    SELECT i.customer_id, f.invoice_id, i.number, f.currency, f.id, f.subscription_id, f.charge_id,
           f.from_datetime, f.to_datetime,
           max(f.to_datetime) OVER (PARTITION BY f.subscription_id, f.charge_id ORDER BY f.from_datetime, f.id
                                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_to
      FROM invoicing_fee f JOIN invoicing_invoice i ON i.id = f.invoice_id
     WHERE f.fee_type = 'charge' AND NOT f.is_adjustment AND i.status <> 'voided' AND f.subscription_id IS NOT NULL
       AND f.from_datetime IS NOT NULL AND NOT """ + _imported("f.invoice_id") + """ AND {scope}
  ) ordered
 WHERE prev_to > from_datetime
 ORDER BY customer_id, subscription_id, charge_id, from_datetime
"""


def i2_usage(customer_ids: Iterable[int] | None = None) -> list[Violation]:
    params = _params(customer_ids, grace=settings.INTEGRITY_LATE_USAGE_GRACE_HOURS)
    subscription_scope = _scope("s.customer_id")
    violations = []
    # (subscription, metric) -> [on-time rows before the cut-off, late rows marked billed]
    usage = {(sub, metric): (int(on_time), int(late)) for sub, metric, on_time, late in _rows(
        USAGE_SQL.format(scope=subscription_scope), params)}
    # Late rows of archived months were billed (archiving requires it) and are counted from the archive's record.
    for archived_late in UsageArchive.objects.filter(
            status=UsageArchive.Status.ARCHIVED, restored_at__isnull=True).values_list("late_billed", flat=True):
        for sub, metric, count in archived_late:
            on_time, late = usage.get((sub, metric), (0, 0))
            usage[(sub, metric)] = (on_time, late + count)
    covered: dict[tuple[int, int], int] = defaultdict(int)  # (subscription, charge) -> rows inside its fees
    adjusted: dict[tuple[int, int], tuple[int, int]] = {}  # (subscription, charge) -> (rows billed late, an invoice)
    for (customer_id, invoice_id, number, currency, fee_id, sub_id, charge_id, is_adjustment, counted, on_time,
         before_cutoff, imported, archived) in _rows(CHARGE_FEES_SQL.format(scope=_scope("i.customer_id")), params):
        if is_adjustment:
            billed, _ = adjusted.get((sub_id, charge_id), (0, None))
            adjusted[(sub_id, charge_id)] = (billed + counted, invoice_id)
            continue
        if on_time is None:  # a charge fee without a window: nothing to count it against
            continue
        covered[(sub_id, charge_id)] += before_cutoff  # imported history billed its window too (in Lago)
        # Lago's counts are of events this hub never stored; an archived month's rows are in its archive file.
        if counted != on_time and not imported and not archived:
            violations.append(Violation(
                code="I2", rule="fee_count", customer_id=customer_id, invoice_id=invoice_id, invoice_number=number,
                currency=currency, expected=on_time, actual=counted, unit=ROWS, reference=f"fee {fee_id}",
                message=(f"fee {fee_id} (subscription {sub_id}, charge {charge_id}) billed {counted} usage rows; "
                         f"its window holds {on_time} on-time rows"),
            ))
    for sub_id, customer_id, cutoff, charge_id, metric_id, invoiceable, currency in _rows(
        CHARGES_SQL.format(scope=subscription_scope), params
    ):
        due, late = usage.get((sub_id, metric_id), (0, 0))
        billed = covered.get((sub_id, charge_id), 0)
        # Overlapping windows count rows twice (reported as `overlap`), so only a shortfall is reported here.
        if invoiceable and due > billed:
            violations.append(Violation(
                code="I2", rule="unbilled", customer_id=customer_id, currency=currency, expected=due, actual=billed,
                unit=ROWS, reference=f"subscription {sub_id}",
                message=(f"{due - billed} of the {due} on-time usage rows of subscription {sub_id} before its "
                         f"cut-off {cutoff.isoformat()} are on no fee of charge {charge_id}"),
            ))
        adjusted_rows, invoice_id = adjusted.get((sub_id, charge_id), (0, None))
        if late != adjusted_rows:
            violations.append(Violation(
                code="I2", rule="late_billed", customer_id=customer_id, invoice_id=invoice_id, currency=currency,
                expected=late, actual=adjusted_rows, unit=ROWS, reference=f"subscription {sub_id}",
                message=(f"{late} late rows of subscription {sub_id} are marked billed, but the adjustment fees of "
                         f"charge {charge_id} bill {adjusted_rows}"),
            ))
    for customer_id, sub_id, metric_id, count, oldest in _rows(
        LATE_STUCK_SQL.format(scope=subscription_scope), params
    ):
        violations.append(Violation(
            code="I2", rule="late_stuck", customer_id=customer_id, expected=0, actual=count, unit=ROWS,
            reference=f"subscription {sub_id}",
            message=(f"{count} late rows of subscription {sub_id}, metric {metric_id}, still unbilled "
                     f"(oldest arrived {oldest.isoformat()})"),
        ))
    for customer_id, invoice_id, number, currency, fee_id, sub_id, charge_id, start, end, prev_to in _rows(
        OVERLAP_SQL.format(scope=_scope("i.customer_id")), params
    ):
        violations.append(Violation(
            code="I2", rule="overlap", customer_id=customer_id, invoice_id=invoice_id, invoice_number=number,
            currency=currency, unit=ROWS, reference=f"fee {fee_id}",
            message=(f"fee {fee_id} (subscription {sub_id}, charge {charge_id}) bills [{start.isoformat()}, "
                     f"{end.isoformat()}), which an earlier fee already billed up to {prev_to.isoformat()}"),
        ))
    return _ordered(violations)


def _ordered(violations: list[Violation]) -> list[Violation]:
    """Stable report order: by customer, then the order the rules were checked in."""
    return sorted(violations, key=lambda v: (v.customer_id is None, v.customer_id or 0))


# --------------------------------------------------------------------------- I3

NEGATIVE_SQL = """
SELECT customer_id, id, number, currency, total_amount_cents, sub_total_including_taxes_amount_cents
  FROM invoicing_invoice
 WHERE status = 'finalized' AND (total_amount_cents < 0 OR sub_total_including_taxes_amount_cents < 0)
   AND NOT """ + _imported("invoicing_invoice.id") + """ AND {scope}
 ORDER BY customer_id, id
"""


def i3_no_negative_invoice(customer_ids: Iterable[int] | None = None) -> list[Violation]:
    violations = []
    for customer_id, invoice_id, number, currency, total, sub_total in _rows(
        NEGATIVE_SQL.format(scope=_scope("customer_id")), _params(customer_ids)
    ):
        violations.append(Violation(
            code="I3", rule="negative_total", customer_id=customer_id, invoice_id=invoice_id, invoice_number=number,
            currency=currency, expected=0, actual=min(total, sub_total),
            message=f"finalized with total {total} and sub-total including taxes {sub_total}",
        ))
    return violations


# --------------------------------------------------------------------------- I4

_TAXES = "jsonb_array_elements(CASE jsonb_typeof(f.applied_taxes) WHEN 'array' THEN f.applied_taxes ELSE '[]' END)"

FEE_TAX_SQL = f"""
SELECT i.customer_id, f.invoice_id, i.number, f.currency, f.id, t ->> 'code', f.amount_cents - f.coupons_amount_cents,
       t ->> 'rate', (t ->> 'amount_cents')::bigint,
       round((f.amount_cents - f.coupons_amount_cents) * (t ->> 'rate')::numeric / 100)::bigint
  FROM invoicing_fee f
  JOIN invoicing_invoice i ON i.id = f.invoice_id
 CROSS JOIN LATERAL {_TAXES} AS t
 WHERE (t ->> 'amount_cents')::bigint <> round((f.amount_cents - f.coupons_amount_cents) * (t ->> 'rate')::numeric / 100)
   AND {{scope}}
 ORDER BY 1, 2, 5
"""

FEE_TAXES_SQL = f"""
SELECT * FROM (
    SELECT i.customer_id, f.invoice_id, i.number, f.currency, f.id, f.taxes_amount_cents,
           coalesce((SELECT sum((t ->> 'amount_cents')::bigint) FROM {_TAXES} AS t), 0) AS applied
      FROM invoicing_fee f JOIN invoicing_invoice i ON i.id = f.invoice_id
     WHERE {{scope}}
) summed
 WHERE taxes_amount_cents <> applied
 ORDER BY 1, 2, 5
"""

TAX_ROWS_SQL = f"""
WITH lines AS (
    SELECT f.invoice_id, t ->> 'code' AS code, sum(f.amount_cents - f.coupons_amount_cents) AS base,
           sum((t ->> 'amount_cents')::bigint) AS tax
      FROM invoicing_fee f
      JOIN invoicing_invoice i ON i.id = f.invoice_id
     CROSS JOIN LATERAL {_TAXES} AS t
     WHERE {{scope}}
     GROUP BY 1, 2
), summary AS (
    SELECT a.invoice_id, a.tax_code AS code, a.base_amount_cents AS base, a.amount_cents AS tax
      FROM invoicing_invoiceappliedtax a JOIN invoicing_invoice i ON i.id = a.invoice_id
     WHERE {{scope}}
)
SELECT i.customer_id, i.id, i.number, i.currency, coalesce(l.code, s.code), l.base, l.tax, s.base, s.tax
  FROM lines l
  FULL JOIN summary s ON s.invoice_id = l.invoice_id AND s.code = l.code
  JOIN invoicing_invoice i ON i.id = coalesce(l.invoice_id, s.invoice_id)
 WHERE l.base IS DISTINCT FROM s.base OR l.tax IS DISTINCT FROM s.tax
 ORDER BY 1, 2, 5
"""

TOTALS_SQL = """
SELECT * FROM (
    SELECT i.customer_id, i.id, i.number, i.currency, i.fees_amount_cents,
           coalesce((SELECT sum(f.amount_cents) FROM invoicing_fee f WHERE f.invoice_id = i.id), 0) AS fees,
           i.coupons_amount_cents,
           coalesce((SELECT sum(f.coupons_amount_cents) FROM invoicing_fee f WHERE f.invoice_id = i.id), 0)
               AS fee_coupons,
           coalesce((SELECT sum(c.amount_cents) FROM invoicing_couponcredit c WHERE c.invoice_id = i.id), 0)
               AS coupon_credits,
           i.sub_total_excluding_taxes_amount_cents, i.taxes_amount_cents,
           coalesce((SELECT sum(a.amount_cents) FROM invoicing_invoiceappliedtax a WHERE a.invoice_id = i.id), 0)
               AS taxes,
           i.sub_total_including_taxes_amount_cents,
           i.credit_notes_amount_cents + i.prepaid_credit_amount_cents AS credits, i.total_amount_cents
      FROM invoicing_invoice i
     WHERE {scope}
) summed
 WHERE fees_amount_cents <> fees OR coupons_amount_cents <> fee_coupons OR coupons_amount_cents <> coupon_credits
    OR sub_total_excluding_taxes_amount_cents <> fees_amount_cents - coupons_amount_cents
    OR taxes_amount_cents <> taxes
    OR sub_total_including_taxes_amount_cents <> sub_total_excluding_taxes_amount_cents + taxes_amount_cents
    OR total_amount_cents <> sub_total_including_taxes_amount_cents - credits
 ORDER BY 1, 2
"""


def i4_taxes(customer_ids: Iterable[int] | None = None) -> list[Violation]:
    params = _params(customer_ids)
    scope = f"{_scope('i.customer_id')} AND NOT {_imported('i.id')}"
    violations = []
    for customer_id, invoice_id, number, currency, fee_id, code, amount, rate, tax, rule in _rows(
        FEE_TAX_SQL.format(scope=scope), params
    ):
        violations.append(Violation(
            code="I4", rule="fee_tax", customer_id=customer_id, invoice_id=invoice_id, invoice_number=number,
            currency=currency, expected=int(rule), actual=int(tax), reference=f"fee {fee_id}",
            message=f"fee {fee_id}: {code} at {rate}% of {amount} is {rule} per line, the fee says {tax}",
        ))
    for customer_id, invoice_id, number, currency, fee_id, stored, applied in _rows(FEE_TAXES_SQL.format(scope=scope), params):
        violations.append(Violation(
            code="I4", rule="fee_taxes", customer_id=customer_id, invoice_id=invoice_id, invoice_number=number,
            currency=currency, expected=int(applied), actual=int(stored), reference=f"fee {fee_id}",
            message=f"fee {fee_id}: taxes_amount_cents {stored}, its applied taxes sum to {applied}",
        ))
    for customer_id, invoice_id, number, currency, code, base, tax, row_base, row_tax in _rows(
        TAX_ROWS_SQL.format(scope=scope), params
    ):
        if row_tax is None:
            what = f"no {code} row; its lines carry {tax} of tax on {base}"
        elif tax is None:
            what = f"a {code} row of {row_tax} on {row_base}, but no line is taxed at {code}"
        else:
            what = f"{code} row says {row_tax} on {row_base}; its lines carry {tax} on {base}"
        violations.append(Violation(
            code="I4", rule="tax_rows", customer_id=customer_id, invoice_id=invoice_id, invoice_number=number,
            currency=currency, expected=None if tax is None else int(tax),
            actual=None if row_tax is None else int(row_tax), reference=code, message=what,
        ))
    for row in _rows(TOTALS_SQL.format(scope=scope), params):
        customer_id, invoice_id, number, currency = row[:4]
        (fees_amount, fees, coupons, fee_coupons, coupon_credits, excluding, taxes_amount, taxes, including, credits,
         total) = (int(v) for v in row[4:])
        common = {"code": "I4", "customer_id": customer_id, "invoice_id": invoice_id, "invoice_number": number,
                  "currency": currency}
        checks = (
            ("fees_amount", fees, fees_amount, "fees_amount_cents {actual}, its fees sum to {expected}"),
            ("coupons", fee_coupons, coupons, "coupons_amount_cents {actual}, its fees' coupon shares sum to {expected}"),
            ("coupon_credits", coupon_credits, coupons,
             "coupons_amount_cents {actual}, its coupon credits sum to {expected}"),
            ("sub_total_excluding", fees_amount - coupons, excluding,
             "sub_total_excluding_taxes {actual}, fees_amount − coupons {expected}"),
            ("taxes_amount", taxes, taxes_amount, "taxes_amount_cents {actual}, its tax rows sum to {expected}"),
            ("sub_total_including", excluding + taxes_amount, including,
             "sub_total_including_taxes {actual}, sub-total excluding taxes + taxes = {expected}"),
            ("total", including - credits, total,
             "total {actual}, sub-total including taxes − credit applied = {expected}"),
        )
        for rule, expected, actual, text in checks:
            if expected != actual:
                violations.append(Violation(rule=rule, expected=expected, actual=actual,
                                            message=text.format(expected=expected, actual=actual), **common))
    return violations


# --------------------------------------------------------------------------- I5

# Numbers issued: finalized and voided invoices', and payment receipts' (their own series, NEXA-RCPT-2026, taken
# from the same counters).
ISSUED = """
    SELECT series, sequential_id, id AS invoice_id FROM invoicing_invoice
     WHERE status IN ('finalized', 'voided') AND sequential_id IS NOT NULL
    UNION ALL
    SELECT series, sequential_id, NULL FROM payments_paymentreceipt
"""

SERIES_SQL = """
WITH numbered AS (
    SELECT series, count(*) AS n, count(DISTINCT sequential_id) AS distinct_ids, max(sequential_id) AS top
      FROM (""" + ISSUED + """) issued
     GROUP BY series
)
SELECT coalesce(n.series, s.series), coalesce(n.n, 0), coalesce(n.distinct_ids, 0), coalesce(n.top, 0),
       s.last_value
  FROM numbered n FULL JOIN invoicing_numbersequence s ON s.series = n.series
 ORDER BY 1
"""

MISSING_SQL = """
SELECT gs FROM generate_series(1, %(top)s) AS gs
 WHERE NOT EXISTS (SELECT 1 FROM (""" + ISSUED + """) i WHERE i.series = %(series)s AND i.sequential_id = gs)
 ORDER BY gs LIMIT %(limit)s
"""

DUPLICATES_SQL = """
SELECT sequential_id, array_agg(invoice_id ORDER BY invoice_id) FROM (""" + ISSUED + """) i
 WHERE series = %(series)s
 GROUP BY 1 HAVING count(*) > 1 ORDER BY 1 LIMIT %(limit)s
"""

UNNUMBERED_SQL = """
SELECT customer_id, id, number, currency, status, series, sequential_id
  FROM invoicing_invoice
 WHERE (status IN ('finalized', 'voided') AND (sequential_id IS NULL OR number = ''))
    OR (status = 'draft' AND (sequential_id IS NOT NULL OR number <> ''))
 ORDER BY customer_id, id
"""


def i5_numbering(customer_ids: Iterable[int] | None = None) -> list[Violation]:
    """Gapless numbers per series. Series span customers: with a customer scope, nothing is checked."""
    if customer_ids is not None:
        return []
    violations = []
    for series, count, distinct_ids, top, last_value in _rows(SERIES_SQL, {}):
        if distinct_ids != count:
            for sequential_id, invoice_ids in _rows(DUPLICATES_SQL, {"series": series, "limit": LIST_LIMIT}):
                violations.append(Violation(
                    code="I5", rule="duplicate", invoice_id=invoice_ids[0], expected=1, actual=len(invoice_ids),
                    unit=NUMBERS, reference=series,
                    message=f"{series}: sequential id {sequential_id} is on invoices {invoice_ids}",
                ))
        if top != distinct_ids:
            missing = [row[0] for row in _rows(MISSING_SQL, {"series": series, "top": top, "limit": LIST_LIMIT})]
            violations.append(Violation(
                code="I5", rule="gap", expected=top, actual=distinct_ids, unit=NUMBERS, reference=series,
                message=f"{series}: {top - distinct_ids} of 1..{top} missing (first: {missing})",
            ))
        if last_value is None or last_value != top:
            violations.append(Violation(
                code="I5", rule="counter", expected=top, actual=last_value, unit=NUMBERS, reference=series,
                message=(f"{series}: the sequence counter is {last_value}, the highest number issued is {top}"
                         if last_value is not None else f"{series}: numbers up to {top} issued with no sequence row"),
            ))
    for customer_id, invoice_id, number, currency, status, series, sequential_id in _rows(UNNUMBERED_SQL, {}):
        violations.append(Violation(
            code="I5", rule="unnumbered" if status != "draft" else "draft_numbered", customer_id=customer_id,
            invoice_id=invoice_id, invoice_number=number, currency=currency, unit=NUMBERS, reference=series,
            message=f"{status} invoice {invoice_id} has number {number!r} and sequential id {sequential_id}",
        ))
    return violations


# --------------------------------------------------------------------------- I6

def _stripe_id(json: str) -> str:
    """SQL for a Stripe id that may come expanded (an object with an id) or as a plain string."""
    return f"CASE jsonb_typeof({json}) WHEN 'object' THEN {json} ->> 'id' ELSE {json} #>> '{{}}' END"


def _attempt_id(text: str) -> str:
    """SQL for a payment attempt id read from Stripe metadata (NULL unless it is a number)."""
    return f"CASE WHEN {text} ~ '^[0-9]{{1,18}}$' THEN ({text})::bigint END"


# Built by concatenation: the JSON path '{}' and the regex braces must not meet str.format.
STRIPE_PAID_SQL = """
WITH paid AS (
    SELECT 'payment_intent' AS kind, pi.id AS object_id, pi.id AS intent_id,
           """ + _attempt_id("pi.metadata ->> 'attempt_id'") + """ AS attempt_id,
           """ + _stripe_id("pi.stripe_data -> 'customer'") + """ AS stripe_customer,
           coalesce((pi.stripe_data ->> 'amount_received')::bigint, (pi.stripe_data ->> 'amount')::bigint) AS amount,
           upper(pi.stripe_data ->> 'currency') AS currency, NULL::text AS session_id
      FROM djstripe_paymentintent pi
     WHERE pi.stripe_data ->> 'status' = 'succeeded'
    UNION ALL
    SELECT 'checkout_session', cs.id,
           coalesce(""" + _stripe_id("cs.stripe_data -> 'payment_intent'") + """, cs.payment_intent_id),
           """ + _attempt_id("coalesce(cs.metadata ->> 'attempt_id', cs.stripe_data ->> 'client_reference_id')") + """,
           """ + _stripe_id("cs.stripe_data -> 'customer'") + """,
           (cs.stripe_data ->> 'amount_total')::bigint, upper(cs.stripe_data ->> 'currency'), cs.id
      FROM djstripe_session cs
     WHERE cs.stripe_data ->> 'mode' = 'payment' AND cs.stripe_data ->> 'payment_status' = 'paid'
), owned AS (
    SELECT paid.*, a.invoice_id, coalesce(ai.customer_id, sc.customer_id) AS customer_id
      FROM paid
      -- The attempt: named in the metadata, else found by the PaymentIntent or the session it opened.
      LEFT JOIN payments_paymentattempt a ON a.id = coalesce(
          paid.attempt_id,
          (SELECT x.id FROM payments_paymentattempt x WHERE x.stripe_payment_intent_id = paid.intent_id LIMIT 1),
          (SELECT x.id FROM payments_paymentattempt x
            WHERE paid.session_id IS NOT NULL AND x.stripe_checkout_session_id = paid.session_id LIMIT 1))
      LEFT JOIN invoicing_invoice ai ON ai.id = a.invoice_id
      LEFT JOIN payments_stripecustomer sc ON sc.stripe_customer_id = paid.stripe_customer
), recorded AS (
    -- Two index lookups per Stripe object (by PaymentIntent, by the attempt that opened the session), not an OR join.
    SELECT o.*, p.id AS payment_id, p.amount_cents
      FROM owned o
      LEFT JOIN LATERAL (
          SELECT x.id, x.amount_cents FROM payments_payment x WHERE x.stripe_payment_intent_id = o.intent_id
          UNION
          SELECT x.id, x.amount_cents FROM payments_payment x
            JOIN payments_paymentattempt a ON a.id = x.attempt_id
           WHERE o.session_id IS NOT NULL AND a.stripe_checkout_session_id = o.session_id
      ) p ON true
)
SELECT kind, object_id, intent_id, customer_id, currency, amount, invoice_id,
       coalesce(sum(amount_cents), 0), count(payment_id)
  FROM recorded
 WHERE customer_id IS NOT NULL AND __SCOPE__
 GROUP BY kind, object_id, intent_id, customer_id, currency, amount, invoice_id
 ORDER BY customer_id, intent_id, invoice_id IS NULL, kind DESC
"""


def i6_stripe_payments_recorded(customer_ids: Iterable[int] | None = None) -> list[Violation]:
    violations = []
    reported: set[str] = set()  # a paid session and its PaymentIntent are one payment: report it once
    for kind, object_id, intent_id, customer_id, currency, amount, invoice_id, recorded, payments in _rows(
        STRIPE_PAID_SQL.replace("__SCOPE__", _scope("customer_id")), _params(customer_ids)
    ):
        key = intent_id or object_id
        if key in reported:
            continue
        label = f"{'Checkout Session' if kind == 'checkout_session' else 'PaymentIntent'} {object_id}"
        if not payments:
            reported.add(key)
            violations.append(Violation(
                code="I6", rule="unrecorded", customer_id=customer_id, invoice_id=invoice_id, currency=currency or "",
                expected=amount, actual=0, reference=key,
                message=f"Stripe {label} succeeded for {amount}, but no payment or credit records it",
            ))
        elif amount is not None and int(recorded) != int(amount):
            reported.add(key)
            violations.append(Violation(
                code="I6", rule="amount", customer_id=customer_id, invoice_id=invoice_id, currency=currency or "",
                expected=int(amount), actual=int(recorded), reference=key,
                message=f"Stripe {label} received {amount}, the hub recorded {recorded}",
            ))
        else:
            reported.add(key)
    return violations


# --------------------------------------------------------------------------- all

INVARIANTS: dict[str, Callable[..., list[Violation]]] = {
    "I1": i1_balances,
    "I2": i2_usage,
    "I3": i3_no_negative_invoice,
    "I4": i4_taxes,
    "I5": i5_numbering,
    "I6": i6_stripe_payments_recorded,
}


def check_all(
    *, customer_ids: Iterable[int] | None = None, only: Iterable[str] | None = None, odoo_client: Any = None
) -> list[Violation]:
    """Run the invariants (all, or the codes in `only`) and return their violations, in code order.

    Outside a transaction the reads share one REPEATABLE READ, read-only snapshot, so a close or a payment
    committing meanwhile cannot make two queries disagree. With `odoo_client`, I1 also compares with Odoo.
    """
    customer_ids = None if customer_ids is None else list(customer_ids)
    codes = [code for code in INVARIANTS if only is None or code in set(only)]
    outermost = not connection.in_atomic_block
    violations: list[Violation] = []
    with transaction.atomic():
        if outermost:  # SET TRANSACTION must come first in a transaction; a savepoint keeps its caller's
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        for code in codes:
            violations.extend(INVARIANTS[code](customer_ids))
    if "I1" in codes and odoo_client is not None:
        # After the snapshot: no database transaction stays open across calls to Odoo.
        at = next((index for index, v in enumerate(violations) if v.code > "I1"), len(violations))
        violations[at:at] = odoo_receivables_compare(client=odoo_client, customer_ids=customer_ids)
    return violations

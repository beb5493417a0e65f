"""Ledger posting benchmark: 1,000 finalized invoices to the Odoo stand-in, batched and one by one.

    python bench/post.py                     # 1,000 invoices, JSON-2
    python bench/post.py --transport xmlrpc  # the legacy transport
    python bench/post.py --json              # same; the figures as one JSON object on the last line
    python bench/post.py --invoices 200      # quick development run

Steps: (1) recreate the bench database (`--db-name`, default nexabilling_bench_ledger) and migrate
the ledger and its dependencies, (2) one service with its Odoo mapping, --invoices customers across
the provinces, one finalized invoice each with three taxed fees (rows written directly),
(3) batched: `ledger_post_pending_batch(limit=--batch)` until nothing is due, against a fresh
stand-in, (4) one by one: the same postings reset to pending, `ledger_posting_send` per row (what
the on-commit task does), against another fresh stand-in. Round trips are the HTTP requests the
stand-in received (every XML-RPC `authenticate` included). Every posting is checked: posted, one
move per ref, totals equal to the hub's.

The stand-in answers in microseconds and runs in this process: invoices/s measures the hub's side
(PostgreSQL, serialization, HTTP on loopback), not Odoo's; round trips per invoice is the figure
that carries over to a real Odoo, where each round trip costs 50-500 ms (research/odoo.md §6).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SERVER_DB = "postgres://postgres@127.0.0.1:5432"
PROVINCES = ("ON", "QC", "BC", "AB", "NB", "NS", "MB", "SK")
HUB_TAX_TO_STANDIN = {  # the stand-in seeds no NS 14 %, SK PST or MB RST: map them to seeded taxes
    "gst_sale_tax_5": "account.1_gst_sale_tax_5", "hst_sale_tax_13": "account.1_hst_sale_tax_13",
    "hst_sale_tax_15": "account.1_hst_sale_tax_15", "qst_sale_tax_9975": "account.1_qst_sale_tax_9975",
    "pst_sale_tax_7_bc": "account.1_pst_sale_tax_7_bc",
}
MAPPED_PROVINCES = ("ON", "QC", "BC", "AB", "NB")


def log(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


def psql(url: str, sql: str) -> str:
    return subprocess.run(["psql", url, "-tAq", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True,
                          capture_output=True, text=True).stdout.strip()


def setup_database(db_name: str) -> None:
    psql(f"{SERVER_DB}/postgres", f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")
    psql(f"{SERVER_DB}/postgres", f"CREATE DATABASE {db_name}")
    db_url = f"{SERVER_DB}/{db_name}"
    env = {**os.environ, "DATABASE_URL": db_url, "DEBUG": "true"}
    for app in ("customers", "catalog", "subscriptions", "invoicing", "ledger"):  # not djstripe: a minute of CPU
        subprocess.run([sys.executable, "manage.py", "migrate", app, "-v", "0"], cwd=ROOT, env=env, check=True)
    os.environ.update({"DATABASE_URL": db_url, "DEBUG": "true", "LEDGER_ENABLED": "false"})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nexabilling.settings")
    import django

    django.setup()


def seed(n_invoices: int) -> None:
    from apps.customers.models import Customer
    from apps.customers.services import service_create
    from apps.invoicing.models import Fee, Invoice
    from apps.invoicing.fees import customer_tax_rates
    from apps.ledger.models import OdooJournalMapping, OdooProductMapping, OdooTaxMapping
    from apps.ledger.services import ledger_posting_create

    service = service_create(code="bench", name="Bench").service
    OdooProductMapping.objects.create(service=service, odoo_product="PLATFORM", odoo_income_account="400000")
    OdooJournalMapping.objects.create(purpose="sales", odoo_journal="account.1_sale")
    OdooJournalMapping.objects.create(purpose="stripe_receipts", odoo_journal="STRIP")
    OdooTaxMapping.objects.bulk_create(OdooTaxMapping(tax_code=c, odoo_tax=r) for c, r in HUB_TAX_TO_STANDIN.items())
    customers = Customer.objects.bulk_create(
        Customer(external_id=f"bench-{n:05d}", name=f"Bench customer {n}", email=f"b{n}@example.com", country="CA",
                 state=MAPPED_PROVINCES[n % len(MAPPED_PROVINCES)], currency="CAD") for n in range(n_invoices))
    for n, customer in enumerate(customers):
        rates = customer_tax_rates(customer, on=date(2026, 10, 31))
        invoice = Invoice.objects.create(customer=customer, status="finalized", currency="CAD", series="NEXA-2026",
                                         number=f"NEXA-2026-{n + 1:06d}", sequential_id=n + 1,
                                         issuing_date=date(2026, 10, 31))
        untaxed = taxes = 0
        fees = []
        for i, cents in enumerate((4999, 1234 + n, 7 * (n % 13) + 1)):
            applied = [{"code": r.code, "name": r.name, "rate": str(r.rate),
                        "amount_cents": int((Decimal(cents) * r.rate / 100).quantize(Decimal(1), ROUND_HALF_UP))}
                       for r in rates]
            line_tax = sum(a["amount_cents"] for a in applied)
            fees.append(Fee(invoice=invoice, fee_key=f"bench-{n}-{i}", fee_type="add_on", service=service,
                            name=f"Line {i}", currency="CAD", amount_cents=cents, taxes_amount_cents=line_tax,
                            applied_taxes=applied))
            untaxed, taxes = untaxed + cents, taxes + line_tax
        Fee.objects.bulk_create(fees)
        Invoice.objects.filter(pk=invoice.pk).update(
            sub_total_excluding_taxes_amount_cents=untaxed, taxes_amount_cents=taxes,
            sub_total_including_taxes_amount_cents=untaxed + taxes, total_amount_cents=untaxed + taxes)
        ledger_posting_create(invoice=invoice)


def reset_postings() -> None:
    from apps.ledger.models import LedgerPosting

    LedgerPosting.objects.update(status="pending", odoo_move_id=None, odoo_name="", attempts=0, next_attempt_at=None,
                                 claimed_until=None, last_error="", posted_at=None)


def check(standin, n_invoices: int) -> None:
    from django.db.models import Count

    from apps.ledger.models import LedgerPosting

    statuses = dict(LedgerPosting.objects.values_list("status").annotate(n=Count("id")))
    if statuses != {"posted": n_invoices}:
        raise SystemExit(f"not every invoice posted with matching totals: {statuses}")
    refs = [m["ref"] for m in standin.search_read("account.move", [], ["ref"])]
    if len(refs) != n_invoices or len(set(refs)) != n_invoices:
        raise SystemExit(f"expected {n_invoices} moves, one per ref; Odoo has {len(refs)} ({len(set(refs))} refs)")


def run(mode: str, args: argparse.Namespace) -> dict:
    from apps.ledger.models import LedgerPosting
    from apps.ledger.odoo_client import OdooConfig, get_odoo_client
    from apps.ledger.services import ledger_post_pending_batch, ledger_posting_send
    from tests.odoo_standin.server import OdooStandIn

    reset_postings()
    with OdooStandIn() as standin:
        config = OdooConfig(url=standin.url, database=standin.database, username=standin.login,
                            api_key=standin.api_key, transport=args.transport, timeout_seconds=30)
        ids = list(LedgerPosting.objects.order_by("id").values_list("pk", flat=True))
        started = time.perf_counter()
        if mode == "batched":
            for _ in range(len(ids) // args.batch + 2):  # bounded
                if ledger_post_pending_batch(limit=args.batch, client=get_odoo_client(config)).claimed == 0:
                    break
        else:
            for pk in ids:
                ledger_posting_send(posting_id=pk, client=get_odoo_client(config))  # a fresh client per task
        elapsed = time.perf_counter() - started
        round_trips = standin.call_count()
        creates = standin.call_count("account.move", "create")
        check(standin, len(ids))
    result = {"invoices": len(ids), "seconds": round(elapsed, 3), "invoices_per_s": round(len(ids) / elapsed, 1),
              "round_trips": round_trips, "round_trips_per_invoice": round(round_trips / len(ids), 4),
              "move_create_calls": creates}
    log(f"{mode:>10}: {len(ids)} invoices in {elapsed:.2f} s = {result['invoices_per_s']} invoices/s; "
        f"{round_trips} round trips = {result['round_trips_per_invoice']} per invoice ({creates} create calls)")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invoices", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=500, help="postings per ledger_post_pending_batch call")
    parser.add_argument("--transport", choices=("json2", "xmlrpc"), default="json2")
    parser.add_argument("--db-name", default="nexabilling_bench_ledger")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON on the last line")
    args = parser.parse_args()
    setup_database(args.db_name)
    seed(args.invoices)
    from apps.ledger.odoo_client import OdooConfig

    defaults = OdooConfig(url="", database="", username="", api_key="")
    results = {"transport": args.transport, "batch_size": args.batch,
               "create_batch_size": defaults.create_batch_size, "post_batch_size": defaults.post_batch_size,
               "batched": run("batched", args), "one_by_one": run("one_by_one", args)}
    results["goal_met"] = results["batched"]["round_trips_per_invoice"] < 0.1
    if args.json:
        print(json.dumps(results))
    else:
        for mode in ("batched", "one_by_one"):
            r = results[mode]
            print(f"{mode}: {r['invoices_per_s']} invoices/s, {r['round_trips_per_invoice']} round trips per invoice")
        print(f"goal (< 0.1 round trips per invoice batched): {'met' if results['goal_met'] else 'NOT met'}")


if __name__ == "__main__":
    main()

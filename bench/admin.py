"""Admin pages at volume: load customers, invoices and usage into a separate database, then time each listed page.

    python bench/admin.py                 # 20,000 customers, 240,000 invoices, 5,000,000 usage events (issue 18)
    python bench/admin.py --json          # same; the figures as one JSON object on the last line
    python bench/admin.py --customers 500 --invoices 6000 --events 100000   # quick development run

Steps: (1) create/migrate the bench database (`--db-name`, reused unless `--fresh`); (2) fill it: 3 services with
a plan each, one subscription per customer (ORM bulk inserts), finalized invoices with one taxed fee each over
2025-2026 (bulk inserts, batches of 5,000), a payment for each invoice paid (a third), usage events over the last
30 days (INSERT ... SELECT generate_series), then ANALYZE; (3) fold the usage rollups, as production's minutely
task keeps them; (4) GET each page with Django's test client as a superuser (production settings: DEBUG off),
warm, best of --repeat. A page passes under 1 s.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SERVER_DB = "postgres://postgres@127.0.0.1:5432"
LIMIT_SECONDS = 1.0


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def psql(url: str, sql: str) -> str:
    return subprocess.run(["psql", url, "-tAq", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True,
                          capture_output=True, text=True).stdout.strip()


def setup(args) -> None:
    db_url = f"{SERVER_DB}/{args.db_name}"
    exists = psql(f"{SERVER_DB}/postgres", f"SELECT 1 FROM pg_database WHERE datname = '{args.db_name}'")
    if exists and args.fresh:
        psql(f"{SERVER_DB}/postgres", f"DROP DATABASE {args.db_name} WITH (FORCE)")
        exists = ""
    if not exists:
        psql(f"{SERVER_DB}/postgres", f"CREATE DATABASE {args.db_name}")
    production = {"DEBUG": "false", "SECRET_KEY": "bench-only-secret", "SECURE_SSL_REDIRECT": "false",
                  "ALLOWED_HOSTS": "testserver,127.0.0.1"}
    env = {**os.environ, "DATABASE_URL": db_url, **production}
    log("migrating", args.db_name)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    os.environ.update({"DATABASE_URL": db_url, **production})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nexabilling.settings")
    import django

    django.setup()


def fill(args) -> None:
    from datetime import date, datetime, timedelta
    from zoneinfo import ZoneInfo

    from django.db import connection, transaction

    from apps.catalog.models import BillableMetric, Plan
    from apps.customers.models import AccountLink, Customer, Service
    from apps.customers.services import service_create
    from apps.invoicing.models import Fee, Invoice
    from apps.subscriptions.models import Subscription

    if Service.objects.filter(code="benchadmin0").exists():
        if Customer.objects.count() >= args.customers:
            log("reusing the earlier fill")
            return
        raise SystemExit("bench database holds another fill; rerun with --fresh")
    started = time.perf_counter()
    services = [service_create(code=f"benchadmin{i}", name=f"Bench {i}").service for i in range(3)]
    plans = [Plan.objects.create(service=s, code="plan", name=f"Plan {i}", interval="monthly", amount_cents=4900,
                                 amount_currency="CAD") for i, s in enumerate(services)]
    metrics = [BillableMetric.objects.create(service=s, code="calls", name="Calls", aggregation_type="count_agg")
               for s in services]
    start = datetime(2025, 1, 1, tzinfo=ZoneInfo("America/Toronto"))
    names = ("Acme", "Maple", "Boreal", "Laurentian", "North")
    batch = 5000
    with transaction.atomic():
        customers = Customer.objects.bulk_create(
            [Customer(external_id=f"bench:{i}", name=f"Customer {i}", legal_name=f"{names[i % 5]} {i} Inc.",
                      email=f"ap{i}@example.com", country="CA", state="ON", currency="CAD")
             for i in range(args.customers)], batch_size=batch)
        links = AccountLink.objects.bulk_create(
            [AccountLink(service=services[i % 3], customer=c, external_id=f"c{i}") for i, c in enumerate(customers)],
            batch_size=batch)
        Subscription.objects.bulk_create(
            [Subscription(service=link.service, account_link=link, customer=link.customer, plan=plans[i % 3],
                          external_id=f"s{i}", status="active", subscription_at=start, started_at=start)
             for i, link in enumerate(links)], batch_size=batch)
    log(f"  {args.customers:,} customers, links, subscriptions in {time.perf_counter() - started:.1f}s")
    step = time.perf_counter()
    statuses = ("pending", "succeeded", "failed")
    for offset in range(0, args.invoices, batch):
        with transaction.atomic():
            invoices = Invoice.objects.bulk_create([
                Invoice(customer=customers[g % args.customers], status="finalized", payment_status=statuses[g % 3],
                        currency="CAD", series="NEXA-B", number=f"NEXA-B-{g:07d}", sequential_id=g,
                        issuing_date=date(2025, 1, 1) + timedelta(days=g % 700),
                        payment_due_date=date(2025, 1, 1) + timedelta(days=g % 700), fees_amount_cents=4900,
                        sub_total_excluding_taxes_amount_cents=4900, taxes_amount_cents=637,
                        sub_total_including_taxes_amount_cents=5537, total_amount_cents=5537,
                        total_paid_amount_cents=5537 if g % 3 == 1 else 0, finalized_at=start)
                for g in range(offset, min(offset + batch, args.invoices))])
            Fee.objects.bulk_create([
                Fee(invoice=invoice, fee_key=f"bench:{invoice.pk}", fee_type="subscription",
                    service=services[invoice.customer_id % 3], name="Plan", currency="CAD", units=1,
                    precise_amount=49, amount_cents=4900, taxes_amount_cents=637, taxes_rate=13,
                    applied_taxes=[{"code": "hst_sale_tax_13", "name": "HST", "rate": "13", "amount_cents": 637}])
                for invoice in invoices])
    log(f"  {args.invoices:,} invoices and fees in {time.perf_counter() - step:.1f}s")
    step = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("""CREATE TEMP TABLE bench_subs AS SELECT row_number() OVER (ORDER BY s.id) - 1 AS k, s.id,
                                 s.service_id, m.id AS metric_id
                            FROM subscriptions_subscription s
                            JOIN catalog_billablemetric m ON m.service_id = s.service_id""")
        cursor.execute("""INSERT INTO usage_usageevent (service_id, transaction_id, subscription_id, billable_metric_id,
                                 timestamp, value, properties, source, is_late)
                          SELECT s.service_id, 'b' || g, s.id, s.metric_id,
                                 now() - ((g %% 2592000) * interval '1 second'), 1, '{}'::jsonb, 1, g %% 1000 = 0
                            FROM generate_series(0, %s - 1) AS g JOIN bench_subs s ON s.k = g %% %s""",
                       [args.events, args.customers])
        cursor.execute("ANALYZE")
    log(f"  {args.events:,} usage events in {time.perf_counter() - step:.1f}s; filled in "
        f"{time.perf_counter() - started:.1f}s")


def fill_payments(args) -> None:
    """One succeeded payment per invoice whose payment succeeded (a third of them), paid 3 days after issue (never
    in the future): the dashboard's collected figure and the payment lists read them. Added to an earlier fill."""
    from datetime import datetime, time as day_time, timedelta
    from zoneinfo import ZoneInfo

    from django.db import transaction
    from django.utils import timezone

    from apps.invoicing.models import Invoice
    from apps.payments.models import Payment, PaymentAttempt

    if Payment.objects.filter(stripe_payment_intent_id__startswith="pi_bench_").exists():
        return
    started, now, toronto = time.perf_counter(), timezone.now(), ZoneInfo("America/Toronto")
    paid = (Invoice.objects.filter(series="NEXA-B", payment_status="succeeded")
            .values_list("pk", "issuing_date", "total_amount_cents").order_by("pk"))
    count, batch = 0, 5000
    rows = list(paid)
    for offset in range(0, len(rows), batch):
        chunk = rows[offset:offset + batch]
        with transaction.atomic():
            attempts = PaymentAttempt.objects.bulk_create([
                PaymentAttempt(invoice_id=pk, attempt_number=1, kind="off_session", status="succeeded",
                               amount_cents=cents, currency="CAD", stripe_payment_intent_id=f"pi_bench_{pk}",
                               completed_at=now) for pk, _, cents in chunk])
            Payment.objects.bulk_create([
                Payment(invoice_id=pk, attempt=attempt, amount_cents=cents, currency="CAD",
                        stripe_payment_intent_id=f"pi_bench_{pk}", stripe_charge_id=f"ch_bench_{pk}",
                        paid_at=min(datetime.combine(day + timedelta(days=3), day_time(12), toronto), now))
                for (pk, day, cents), attempt in zip(chunk, attempts)])
        count += len(chunk)
    log(f"  {count:,} payments in {time.perf_counter() - started:.1f}s")


def fold(args) -> None:
    """Fold the usage rows into the rollups, as production's minutely task (`usage_rollup_advance_task`) keeps
    them: the dashboard reads the hours it has folded and counts only the rows after its watermark."""
    from apps.usage.services import usage_rollup_advance

    started = time.perf_counter()
    watermark = usage_rollup_advance(chunk=500_000)
    log(f"  rollups folded up to usage row {watermark:,} in {time.perf_counter() - started:.1f}s")


def pages() -> list[tuple[str, str]]:
    from apps.customers.models import Customer
    from apps.subscriptions.models import Subscription

    customer = Customer.objects.filter(external_id="bench:7").values_list("pk", flat=True).first()
    subscription = Subscription.objects.filter(customer_id=customer).values_list("pk", flat=True).first()
    return [
        ("dashboard", "/admin/"),
        ("invoices", "/admin/invoicing/invoice/"),
        ("invoices by customer name", "/admin/invoicing/invoice/?q=Boreal+7"),
        ("invoices by total", "/admin/invoicing/invoice/?o=7"),
        ("invoices failed payment", "/admin/invoicing/invoice/?status__exact=finalized&payment_status__exact=failed"),
        ("customers", "/admin/customers/customer/"),
        ("customers search", "/admin/customers/customer/?q=Maple"),
        ("customer 360", f"/admin/customers/customer/{customer}/overview/"),
        ("subscriptions", "/admin/subscriptions/subscription/"),
        ("usage events", "/admin/usage/usageevent/"),
        # Columns count from 0 and this list has no action checkbox: 3 is the event time (4 was `value`).
        ("usage events by time", "/admin/usage/usageevent/?o=3"),
        ("usage events newest first by time", "/admin/usage/usageevent/?o=-3"),
        ("usage events late", "/admin/usage/usageevent/?is_late__exact=1"),
        ("usage summary", "/admin/usage/usageevent/summary/"),
        ("usage chart", f"/admin/usage/usageevent/chart/{subscription}/"),
        ("payment attempts", "/admin/payments/paymentattempt/"),
        ("payments", "/admin/payments/payment/"),
        ("ledger postings", "/admin/ledger/ledgerposting/"),
        ("webhook deliveries failing", "/admin/webhooks/webhookdelivery/?failing=yes"),
        ("audit", "/admin/audit/auditevent/"),
        ("close runs", "/admin/invoicing/closerun/"),
    ]


def time_pages(args) -> dict[str, float]:
    from django.contrib.auth import get_user_model
    from django.test import Client

    User = get_user_model()
    user = User.objects.filter(username="bench").first() or User.objects.create_superuser("bench", "b@x.io", "x")
    client = Client()
    client.force_login(user)
    results = {}
    for name, url in pages():
        best = None
        for _ in range(args.repeat):
            started = time.perf_counter()
            response = client.get(url)
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise SystemExit(f"{name}: {url} answered {response.status_code}")
            best = elapsed if best is None else min(best, elapsed)
        results[name] = round(best, 3)
        log(f"{best:7.3f}s  {'ok ' if best < LIMIT_SECONDS else 'SLOW'}  {name}  {url}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--invoices", type=int, default=240_000)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--db-name", default="nb_bench_admin")
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    setup(args)
    fill(args)
    fill_payments(args)
    fold(args)
    results = time_pages(args)
    summary = {"customers": args.customers, "invoices": args.invoices, "events": args.events,
               "limit_seconds": LIMIT_SECONDS, "pages": results,
               "slow": sorted(name for name, seconds in results.items() if seconds >= LIMIT_SECONDS)}
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()

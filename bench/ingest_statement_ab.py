"""The ingest statement alone, three layouts in rotation on one connection (docs/performance.md "Partitions").

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/nb_dev python bench/ingest_statement_ab.py [--batches 200]

- old:   the statement before issue 22 (`INSERT … ON CONFLICT (service_id, transaction_id)`) into an unpartitioned
         table with the old unique index;
- plain: this branch's statement (`apps.usage.services.INSERT_SQL`: keys first, rows whose key went in) into an
         unpartitioned table without the unique index, plus a key table: the key table's price alone;
- part:  the same statement into a partitioned copy of the usage table (current month + DEFAULT) plus a key table.

Every table is a scratch copy (`ab_*`, created from the migrated usage table's columns and dropped at the end): the
hub's own rows are never touched. 1,000-row batches sorted by key with 10% of ids re-sent, each batch committed;
the layouts take turns in a rotating order so background load falls on all three alike. Prints medians per batch.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

OLD_SQL = """
INSERT INTO ab_old
    (service_id, transaction_id, subscription_id, billable_metric_id, timestamp, value, properties, source, is_late)
SELECT %(service)s, e->>0, (e->>1)::bigint, (e->>2)::bigint,
       TIMESTAMPTZ 'epoch' + (e->>3)::bigint * INTERVAL '1 microsecond', (e->>4)::numeric,
       e->5, %(source)s, (e->>6)::boolean
  FROM jsonb_array_elements(%(batch)s::jsonb) AS e
ON CONFLICT (service_id, transaction_id) DO NOTHING
RETURNING transaction_id
"""
INDEXES = ["(subscription_id, billable_metric_id, timestamp)", "(timestamp)",
           "(subscription_id) WHERE is_late AND late_billed_at IS NULL", "(id) WHERE is_late"]


def statement_for(events: str, keys: str) -> str:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nexabilling.settings")
    os.environ.setdefault("DEBUG", "true")
    import django

    django.setup()
    from apps.usage.services import INSERT_SQL

    return (INSERT_SQL.replace("usage_usageeventkey", keys)
            .replace("INSERT INTO usage_usageevent\n", f"INSERT INTO {events}\n"))


def make_batch(rng: random.Random, base_us: int, pool: list[str]) -> str:
    rows, seen = [], set()
    for _ in range(1000):
        tid = rng.choice(pool) if pool and rng.random() < 0.1 else uuid.uuid4().hex
        if tid in seen:
            continue
        seen.add(tid)
        pool.append(tid)
        rows.append((tid, rng.randrange(1, 10_001), rng.randrange(1, 6), base_us + rng.randrange(0, 86_400 * 10**6),
                     str(rng.randrange(0, 100)), {"gb": rng.randrange(0, 100), "region": "ca-central"}, False))
    rows.sort(key=lambda row: row[0])  # conflict-key order, as the service sends them
    return json.dumps(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=200, help="batches per layout")
    args = parser.parse_args()
    url = os.environ["DATABASE_URL"]
    now = datetime.now(timezone.utc)
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    upper = month.replace(year=month.year + month.month // 12, month=month.month % 12 + 1)
    statements = {"old": OLD_SQL, "plain": statement_for("ab_plain", "ab_plain_keys"),
                  "part": statement_for("ab_part", "ab_part_keys")}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS ab_old, ab_plain, ab_plain_keys, ab_part, ab_part_keys")
        for name in ("ab_old", "ab_plain"):
            conn.execute(f"CREATE TABLE {name} (LIKE usage_usageevent INCLUDING DEFAULTS)")
            conn.execute(f"ALTER TABLE {name} ADD PRIMARY KEY (id)")
        conn.execute("ALTER TABLE ab_old ADD UNIQUE (service_id, transaction_id)")
        conn.execute("CREATE TABLE ab_part (LIKE usage_usageevent INCLUDING DEFAULTS) PARTITION BY RANGE (timestamp)")
        conn.execute(f"CREATE TABLE ab_part_m PARTITION OF ab_part FOR VALUES FROM ('{month.isoformat()}') "
                     f"TO ('{upper.isoformat()}')")
        conn.execute("CREATE TABLE ab_part_default PARTITION OF ab_part DEFAULT")
        conn.execute("ALTER TABLE ab_part ADD PRIMARY KEY (id, timestamp)")
        for name in ("ab_old", "ab_plain", "ab_part"):
            for index in INDEXES:
                conn.execute(f"CREATE INDEX ON {name} {index}")
        for name in ("ab_plain_keys", "ab_part_keys"):
            conn.execute(f"CREATE TABLE {name} (LIKE usage_usageeventkey INCLUDING ALL)")
        rng = random.Random(7)
        base_us = int(month.timestamp()) * 10**6 + 86_400 * 10**6
        pools = {name: [] for name in statements}
        times = {name: [] for name in statements}
        order = list(statements.items())
        try:
            for k in range(args.batches):
                for name, sql in order[k % 3:] + order[:k % 3]:
                    payload = make_batch(rng, base_us, pools[name])
                    with conn.transaction(), conn.cursor() as cur:
                        started = time.perf_counter()
                        cur.execute(sql, {"service": 1, "source": 1, "batch": payload}, prepare=True)
                        cur.fetchall()
                    times[name].append((time.perf_counter() - started) * 1000)
            old = statistics.median(times["old"][10:])
            for name, measured in times.items():
                median = statistics.median(measured[10:])  # the first 10 warm the plans and caches
                print(f"{name:6} median {median:6.2f} ms per 1,000-row batch  (×{median / old:.3f} of old)")
        finally:
            conn.execute("DROP TABLE IF EXISTS ab_old, ab_plain, ab_plain_keys, ab_part, ab_part_keys")


if __name__ == "__main__":
    main()

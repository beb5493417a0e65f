"""The hub behind a real PgBouncer in transaction mode (docs/deployment.md, `DATABASE_BEHIND_PGBOUNCER`).

Debian's pgbouncer (`.ci/run` installs it when missing) listens on 127.0.0.1 in front of the test database with
fewer server connections than the close opens clients, so consecutive transactions of one client land on different
server connections. A separate process, configured only by environment as a deployment is, ingests a batch of events
through the API (the second batch overlapping the first: deduplication; on another server connection), streams them back as the admin's exports do, and runs the period close on its billing threads;
the invoice it writes is the exact one the usage makes.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection

from apps.invoicing.models import Invoice
from apps.usage.models import UsageEvent
from tests.integration.invoicing.conftest import Billing, at

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[3]
PGBOUNCER = "/usr/sbin/pgbouncer"
BOUND = 120  # seconds for each wait on a loaded machine; never reached when all is well

CLIENT = r"""
import json, os, sys
import django
django.setup()
from django.test import Client
from apps.invoicing.close import periods_close
from apps.invoicing.models import Invoice
from tests.integration.invoicing.conftest import at

client = Client(HTTP_AUTHORIZATION="Bearer " + os.environ["HUB_KEY"])
events = [{"transaction_id": f"t{i}", "external_subscription_id": "s1", "code": "gb",
           "timestamp": int(at(2026, 3, 2 + i % 20, 12).timestamp()), "properties": {"gb": "1.25"}} for i in range(400)]
first = client.post("/api/v1/events/batch", {"events": events[:200]}, content_type="application/json")
# Another client holds the server connection the first batch ran on (PgBouncer hands out the one released last),
# so the next batch runs on another: a statement prepared on the first would not exist there.
import psycopg
holder = psycopg.connect(os.environ["DATABASE_URL"], autocommit=False)
holder.execute("SELECT 1")
second = client.post("/api/v1/events/batch", {"events": events}, content_type="application/json")
holder.rollback()
holder.close()
from apps.usage.models import UsageEvent
streamed = sum(1 for _ in UsageEvent.objects.iterator(chunk_size=50))  # the admin's exports stream this way
run = periods_close(as_of=at(2026, 4, 1, 1, 0))
invoice = Invoice.objects.get()
print(json.dumps({"first": first.status_code, "second": second.status_code, "second_body": second.json(), "streamed": streamed,
                  "invoices": run.invoices_count, "failures": run.failures_count, "total": invoice.total_amount_cents}))
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def pgbouncer():
    assert Path(PGBOUNCER).exists(), "Debian's pgbouncer is missing: apt-get install -y pgbouncer (.ci/run does)"
    primary = urllib.parse.urlsplit(os.environ["DATABASE_URL"])
    port = _free_port()
    # Its own folder outside pytest's (which only root may enter): as root, PgBouncer runs as postgres.
    folder = Path(tempfile.mkdtemp(prefix="nb-pgbouncer-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    name = connection.settings_dict["NAME"]
    (folder / "pgbouncer.ini").write_text(
        f"[databases]\n{name} = host={primary.hostname or '127.0.0.1'} port={primary.port or 5432} dbname={name} "
        f"user={primary.username or 'postgres'}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        "auth_type = any\npool_mode = transaction\ndefault_pool_size = 2\nmax_client_conn = 50\n"
        f"logfile = {folder}/pgbouncer.log\npidfile = {folder}/pgbouncer.pid\n"
    )
    # PgBouncer refuses to run as root: as root (CI), it drops to the postgres user.
    command = [PGBOUNCER] + (["-u", "postgres"] if os.geteuid() == 0 else []) + [str(folder / "pgbouncer.ini")]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + BOUND
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                log = folder / "pgbouncer.log"
                assert process.poll() is None, log.read_text(errors="replace") if log.exists() else "pgbouncer exited"
                assert time.monotonic() < deadline, "pgbouncer did not listen"
                time.sleep(0.1)
        yield urllib.parse.urlunsplit(primary._replace(netloc=f"{primary.username or 'postgres'}@127.0.0.1:{port}",
                                                       path="/" + urllib.parse.quote(name)))
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


def test_ingest_streamed_reads_and_the_threaded_close_through_pgbouncer_in_transaction_mode(service_factory, pgbouncer,
                                                                                              settings):
    issued = service_factory("nexacloud", "NexaCloud")
    billing = Billing(issued.service)
    gb = billing.metric()
    plan = billing.plan(amount_cents=10000, charges=[(gb, "standard", {"amount": "0.10"}, {})])
    billing.customer("acme")
    billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))

    env = {**os.environ, "DATABASE_URL": pgbouncer, "DATABASE_BEHIND_PGBOUNCER": "true", "DEBUG": "true",
           "HUB_KEY": issued.raw_key, "INVOICE_GRACE_PERIOD_DAYS": "0", "INVOICE_CLOSE_WORKERS": "3",
           "INVOICE_CLOSE_BATCH_MIN": "1", "DJANGO_SETTINGS_MODULE": "nexabilling.settings"}
    env.pop("NEXA_TEST_DB_NAME", None)
    done = subprocess.run([sys.executable, "-c", CLIENT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=BOUND * 2)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])

    # 400 events of 1.25 GB at $0.10: $50.00, plus the $100.00 plan, plus 13 % HST: $169.50.
    duplicates = [event["duplicate"] for event in result.pop("second_body")["events"]]
    assert duplicates == [True] * 200 + [False] * 200  # the first 200 were stored by the first batch
    assert result == {"first": 200, "second": 200, "streamed": 400, "invoices": 1, "failures": 0, "total": 16950}
    assert UsageEvent.objects.count() == 400
    invoice = Invoice.objects.get()
    assert invoice.status == "finalized" and invoice.total_amount_cents == 16950
    assert sum(Decimal(fee.amount_cents) for fee in invoice.fees.all()) == Decimal(15000)

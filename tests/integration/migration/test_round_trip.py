"""The round trip: a hub seeded with seed_demo is the Lago source (its API is Lago-shaped); NexaCloud is imported
from it into a new service, dual-run for a period with its usage relayed to the source (which bills it, as Lago
would), and the shadow invoices reconcile with the source's with zero differences."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
import time_machine
from django.core.management import call_command

from apps.customers.models import Service
from apps.customers.services import service_create, service_rotate_key
from apps.invoicing.close import periods_close
from apps.invoicing.models import Invoice
from apps.migration.importer import lago_import
from apps.migration.models import ImportIssue, RelayStream
from apps.migration.reconcile import reconcile
from apps.migration.services import phase_switch, relay_deliver
from apps.usage import validation
from apps.usage.services import usage_events_ingest
from tests.lago_standin.hub_source import HubAsLago

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

UTC = dt_timezone.utc
SEEDED = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)  # 01:00 in Toronto: October closed, no November usage yet


def test_a_seeded_hub_imported_dual_run_and_reconciled_has_zero_differences(live_server):
    with time_machine.travel(SEEDED, tick=False):
        call_command("seed_demo", stdout=open("/dev/null", "w"))
    source = Service.objects.get(code="nexacloud")
    source_key = service_rotate_key(service_id=source.pk).raw_key
    pilot = service_create(code="cloudpilot", name="NexaCloud pilot").service
    with HubAsLago(upstream=live_server.url, upstream_key=source_key) as lago:
        with time_machine.travel(SEEDED + timedelta(minutes=5), tick=False):
            run = lago_import(service=pilot, api_url=lago.url, api_key=lago.api_key)
            assert not ImportIssue.objects.filter(run=run, outcome__in=("skipped", "conflict")).exists(), \
                list(ImportIssue.objects.filter(run=run).values_list("resource", "key", "reason"))
            assert run.counts["subscriptions_active"]["created"] == 2
            assert run.counts["invoices"]["created"] == Invoice.objects.filter(fees__service=source).distinct().count()
            phase_switch(service=pilot, to_phase="dual_run", reason="round trip", actor="test")

        # November: the app sends its usage to the hub (pilot), which relays it to the source.
        events = []
        for day in range(1, 31):
            moment = int(datetime(2026, 11, day, 15, tzinfo=UTC).timestamp())
            events += [
                {"transaction_id": f"nov-{day}-h", "external_subscription_id": "acme-cloud-main",
                 "code": "compute_hours", "timestamp": moment, "properties": {"hours": str(30 + day)}},
                {"transaction_id": f"nov-{day}-gb", "external_subscription_id": "boreal-cloud",
                 "code": "storage_gb", "timestamp": moment, "properties": {"gb": str(100 + day)}},
            ] + [{"transaction_id": f"nov-{day}-c{n}", "external_subscription_id": "acme-cloud-main",
                  "code": "api_calls", "timestamp": moment} for n in range(100)]
        with time_machine.travel(datetime(2026, 11, 30, 23, tzinfo=UTC), tick=False):
            for start in range(0, len(events), 1000):
                usage_events_ingest(service=pilot, events=validation.decode_events(
                    json.dumps({"events": events[start:start + 1000]}).encode()))
            stream = RelayStream.objects.get(service=pilot)
            result = relay_deliver(stream_id=stream.pk)  # 100 batches per call at most: all of it here
        assert result.delivered == len(events) and not result.error
        assert sorted(lago.event_ids()) == sorted(event["transaction_id"] for event in events)

        # December 1st: one close bills the source for real and the pilot in shadow.
        with time_machine.travel(datetime(2026, 12, 1, 7, tzinfo=UTC), tick=False):
            periods_close()
            shadow = Invoice.objects.filter(shadow__isnull=False, issuing_date="2026-12-01")
            assert shadow.count() == 1 and shadow.get().fees.filter(amount_cents__gt=0, fee_type="charge").exists()
            run = reconcile(service=pilot, period="2026-12")  # Lago's URL and key from the import
    assert run.summary == "NexaCloud pilot, 2026-12: 1 customers, 1 match, 0 differ", [
        (d.kind, d.item, d.hub_value, d.lago_value) for line in run.lines.all() for d in line.differences.all()]

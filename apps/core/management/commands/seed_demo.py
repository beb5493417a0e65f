"""Realistic demo data for the quickstart. Idempotent: a rerun creates nothing twice."""
from __future__ import annotations

import os
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from apps.catalog.models import BillableMetric, Plan
from apps.catalog.services import billable_metric_create, plan_create
from apps.customers.models import AccountLink, Customer, Service
from apps.customers.services import account_link_create, customer_upsert, service_create
from apps.subscriptions.models import Subscription
from apps.subscriptions.services import SubscriptionRequest, subscription_create

SERVICES = [("nexacloud", "NexaCloud"), ("nexadesk", "NexaDesk"), ("nexamaps", "NexaMaps")]

METRICS = {
    "nexacloud": [
        {"code": "compute_hours", "name": "Compute hours", "aggregation_type": "sum_agg", "field_name": "hours"},
        {"code": "storage_gb", "name": "Storage (GB, peak)", "aggregation_type": "max_agg", "field_name": "gb"},
        {"code": "api_calls", "name": "API calls", "aggregation_type": "count_agg", "field_name": ""},
    ],
    "nexadesk": [
        {"code": "agents", "name": "Active agents", "aggregation_type": "unique_count_agg", "field_name": "agent_id"},
    ],
    "nexamaps": [
        {"code": "map_loads", "name": "Map loads", "aggregation_type": "count_agg", "field_name": ""},
    ],
}

PLANS = {
    "nexacloud": {
        "values": {"code": "cloud_pro", "name": "NexaCloud Pro", "interval": "monthly", "amount_cents": 4900,
                   "amount_currency": "CAD", "pay_in_advance": True, "trial_period": 0},
        "charges": [
            {"metric": "compute_hours", "charge_model": "graduated", "properties": {"graduated_ranges": [
                {"from_value": 0, "to_value": 100, "per_unit_amount": "0.12", "flat_amount": "0"},
                {"from_value": 101, "to_value": 1000, "per_unit_amount": "0.09", "flat_amount": "0"},
                {"from_value": 1001, "to_value": None, "per_unit_amount": "0.06", "flat_amount": "0"}]}},
            {"metric": "storage_gb", "charge_model": "standard", "properties": {"amount": "0.25"}},
            {"metric": "api_calls", "charge_model": "package",
             "properties": {"amount": "2.50", "package_size": 10000, "free_units": 5000}},
        ],
    },
    "nexadesk": {
        "values": {"code": "desk_team", "name": "NexaDesk Team", "interval": "monthly", "amount_cents": 0,
                   "amount_currency": "CAD", "pay_in_advance": False, "trial_period": 14},
        "charges": [{"metric": "agents", "charge_model": "standard", "properties": {"amount": "29"}}],
    },
    "nexamaps": {
        "values": {"code": "maps_business", "name": "NexaMaps Business", "interval": "yearly", "amount_cents": 120000,
                   "amount_currency": "CAD", "pay_in_advance": True, "trial_period": 0},
        "charges": [{"metric": "map_loads", "charge_model": "volume", "properties": {"volume_ranges": [
            {"from_value": 0, "to_value": 100000, "per_unit_amount": "0.005", "flat_amount": "0"},
            {"from_value": 100001, "to_value": 1000000, "per_unit_amount": "0.004", "flat_amount": "0"},
            {"from_value": 1000001, "to_value": None, "per_unit_amount": "0.003", "flat_amount": "0"}]}}],
    },
}

CUSTOMERS = [
    # (service, external id, attributes)
    ("nexacloud", "acme-robotics", {"name": "Acme Robotics", "legal_name": "Acme Robotics Inc.",
     "email": "ap@acme-robotics.example", "address_line1": "200 Bay St", "city": "Toronto", "zipcode": "M5J 2J2",
     "state": "ON", "country": "CA", "currency": "CAD", "timezone": "America/Toronto",
     "tax_identification_number": "812345678RT0001"}),
    ("nexacloud", "boreal-foods", {"name": "Boreal Foods", "legal_name": "Aliments Boréal inc.",
     "email": "comptes@boreal.example", "address_line1": "1000 rue De La Gauchetière O", "city": "Montréal",
     "zipcode": "H3B 4W5", "state": "QC", "country": "CA", "currency": "CAD", "timezone": "America/Toronto"}),
    ("nexadesk", "desk-7781", {"name": "Maple Health", "legal_name": "Maple Health Clinics Ltd.",
     "email": "billing@maplehealth.example", "address_line1": "55 Metcalfe St", "city": "Ottawa",
     "zipcode": "K1P 6L5", "state": "ON", "country": "CA", "currency": "CAD", "timezone": "America/Toronto"}),
    ("nexamaps", "maps-cust-42", {"name": "Laurentian Logistics", "legal_name": "Logistique Laurentienne inc.",
     "email": "factures@laurentienne.example", "address_line1": "2 Place Laval", "city": "Laval",
     "zipcode": "H7N 5N1", "state": "QC", "country": "CA", "currency": "CAD", "timezone": "America/Toronto"}),
]

SUBSCRIPTIONS = [
    # (service, external customer id, subscription external id, plan code, billing_time, days ago)
    ("nexacloud", "acme-robotics", "acme-cloud-main", "cloud_pro", "calendar", 40),
    ("nexacloud", "boreal-foods", "boreal-cloud", "cloud_pro", "anniversary", 20),
    ("nexadesk", "desk-7781", "maple-desk", "desk_team", "calendar", 10),
    ("nexadesk", "acme-helpdesk", "acme-desk", "desk_team", "anniversary", 5),
    ("nexamaps", "maps-cust-42", "laurentian-maps", "maps_business", "anniversary", 90),
]


class Command(BaseCommand):
    help = "Create demo services, catalog, customers and subscriptions (idempotent); print new keys once."

    def handle(self, *args, **options):
        with transaction.atomic():
            new_keys = self._services()
            services = {s.code: s for s in Service.objects.filter(code__in=[c for c, _ in SERVICES])}
            self._catalog(services)
            self._customers(services)
            self._subscriptions(services)
            self._usage(services)
        # Bill every period that has ended, so the admin shows invoices; a rerun bills nothing more.
        call_command("close_periods", stdout=self.stdout)
        call_command("staff_groups", stdout=self.stdout)
        password = os.environ.get("DEMO_ADMIN_PASSWORD", "nexa-demo")
        User = get_user_model()
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "admin@nexa.example", password)
            admin_line = f"admin / {password}"
        else:
            admin_line = "admin (existing user; password unchanged)"
        for code, key in new_keys:
            self.stdout.write(f"API key for {code} (shown once): {key}")
        if not new_keys:
            self.stdout.write("Demo services already exist; their keys were shown when created "
                              "(new ones: manage.py rotate_service_key CODE).")
        self.stdout.write("")
        self.stdout.write("NexaBilling demo is ready.")
        self.stdout.write(f"  Admin:    {settings.PUBLIC_BASE_URL}/admin/")
        self.stdout.write(f"  Login:    {admin_line}")
        self.stdout.write(f"  API docs: {settings.PUBLIC_BASE_URL}/api/docs/")

    def _services(self) -> list[tuple[str, str]]:
        created = []
        for code, name in SERVICES:
            if not Service.objects.filter(code=code).exists():
                created.append((code, service_create(code=code, name=name).raw_key))
        return created

    def _catalog(self, services) -> None:
        for code, metrics in METRICS.items():
            for values in metrics:
                if not BillableMetric.objects.filter(service=services[code], code=values["code"], deleted_at__isnull=True).exists():
                    billable_metric_create(service=services[code], values=dict(values))
        for code, spec in PLANS.items():
            service = services[code]
            if Plan.objects.filter(service=service, code=spec["values"]["code"], deleted_at__isnull=True).exists():
                continue
            metric_ids = {m.code: str(m.lago_id) for m in BillableMetric.objects.filter(service=service)}
            charges = [
                {"billable_metric_id": metric_ids[c["metric"]], "charge_model": c["charge_model"],
                 "properties": c["properties"], "code": c["metric"]}
                for c in spec["charges"]
            ]
            plan_create(service=service, values=dict(spec["values"]), charges=charges)

    def _customers(self, services) -> None:
        for code, external_id, attributes in CUSTOMERS:
            customer_upsert(service=services[code], external_id=external_id, attributes=dict(attributes))
        # Acme also uses NexaDesk: one billing customer, two services, each with its own id.
        acme = Customer.objects.get(account_links__service=services["nexacloud"], account_links__external_id="acme-robotics")
        if not AccountLink.objects.filter(service=services["nexadesk"], external_id="acme-helpdesk", deleted_at__isnull=True).exists():
            account_link_create(service=services["nexadesk"], customer=acme, external_id="acme-helpdesk")

    def _usage(self, services) -> None:
        """A few weeks of plausible usage; deterministic transaction ids keep reruns idempotent."""
        from apps.usage.services import usage_events_ingest
        from apps.usage.validation import EventIn

        today = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)
        plan = {
            "nexacloud": [("acme-cloud-main", "compute_hours", "hours", 18), ("acme-cloud-main", "api_calls", None, 40),
                          ("boreal-cloud", "compute_hours", "hours", 7), ("boreal-cloud", "storage_gb", "gb", 120)],
            "nexadesk": [("maple-desk", "agents", "agent_id", 6), ("acme-desk", "agents", "agent_id", 3)],
            "nexamaps": [("laurentian-maps", "map_loads", None, 25)],
        }
        for code, rows in plan.items():
            events = []
            for subscription_id, metric, field, size in rows:
                started = Subscription.objects.get(service=services[code], external_id=subscription_id).started_at
                for day in range(45, 0, -1):
                    moment = today - timedelta(days=day)
                    if started is None or moment <= started:
                        continue
                    value = {"hours": str(size + day % 5), "gb": str(size + day), "agent_id": f"agent-{day % size}"}.get(field or "", None)
                    events.append(EventIn(
                        transaction_id=f"demo-{subscription_id}-{metric}-{day}",
                        external_subscription_id=subscription_id,
                        code=metric,
                        timestamp=int(moment.timestamp()),
                        properties={field: value} if field else {},
                    ))
            if events:
                usage_events_ingest(service=services[code], events=events)

    def _subscriptions(self, services) -> None:
        now = timezone.now()
        for code, customer_id, external_id, plan_code, billing_time, days_ago in SUBSCRIPTIONS:
            service = services[code]
            if Subscription.objects.filter(service=service, external_id=external_id).exists():
                continue
            subscription_create(
                service=service,
                request=SubscriptionRequest(
                    external_id=external_id,
                    external_customer_id=customer_id,
                    plan=Plan.objects.get(service=service, code=plan_code, deleted_at__isnull=True),
                    billing_time=billing_time,
                    subscription_at=now - timedelta(days=days_ago),
                ),
            )

"""Create (or bring up to date) the staff groups and their permissions. Idempotent: run after every migrate.

- Billing operators run billing day to day: customers, subscriptions, invoice actions (finalize, void, credit
  notes), retries of payments, refunds, postings and webhooks, customer-credit alerts. They read everything else
  and change no catalog, tax, key, mapping, migration or staff account.
- Accountants read everything (and export); they change nothing.
- Billing admins may do all of the hub's work, staff accounts and the schedule included. dj-stripe's mirror stays
  superusers' (apps/core/admin_site.py).
"""
from __future__ import annotations

from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand
from django.db import transaction

OPERATORS, ACCOUNTANTS, ADMINS = "Billing operators", "Accountants", "Billing admins"

HUB_APPS = ("customers", "catalog", "subscriptions", "usage", "invoicing", "payments", "ledger", "webhooks",
            "integrity", "migration", "audit")
ADMIN_EXTRA_APPS = ("auth", "django_celery_beat")
# model (app_label.model) -> the write permissions operators hold on it.
OPERATOR_WRITES = {
    "customers.customer": ("add", "change"),
    "customers.accountlink": ("add",),
    "subscriptions.subscription": ("add", "change"),
    "invoicing.invoice": ("change",),
    "invoicing.creditnote": ("change",),  # the "Void credit…" action (pages stay read-only)
    "invoicing.customercredit": ("change",),
    "payments.paymentattempt": ("change",),
    "payments.refund": ("change",),
    "ledger.ledgerposting": ("change",),
    "webhooks.webhookdelivery": ("change",),
}


def _permissions(apps: tuple[str, ...], *, actions: tuple[str, ...] | None = None):
    query = Permission.objects.filter(content_type__app_label__in=apps)
    if actions is not None:
        query = query.filter(codename__regex=rf"^({'|'.join(actions)})_")
    return query


@transaction.atomic
def staff_groups_sync() -> dict[str, int]:
    """Set each group's permissions to exactly the list above; return the count per group."""
    views = list(_permissions(HUB_APPS, actions=("view",)))
    writes = [
        permission
        for label, actions in OPERATOR_WRITES.items()
        for permission in Permission.objects.filter(
            content_type__app_label=label.split(".")[0], content_type__model=label.split(".")[1],
            codename__in=[f"{action}_{label.split('.')[1]}" for action in actions])
    ]
    wanted = {
        ACCOUNTANTS: views,
        OPERATORS: views + writes,
        ADMINS: list(_permissions(HUB_APPS + ADMIN_EXTRA_APPS)),
    }
    counts = {}
    for name, permissions in wanted.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set(permissions)
        counts[name] = len(set(permissions))
    return counts


class Command(BaseCommand):
    help = "Create or update the staff groups (billing operators, accountants, billing admins) and their permissions."

    def handle(self, *args, **options):
        for name, count in staff_groups_sync().items():
            self.stdout.write(f"{name}: {count} permissions")

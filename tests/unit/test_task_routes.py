"""Every task of the hub goes to the queue its kind of work has (settings.CELERY_TASK_ROUTES, docs/deployment.md)."""
from __future__ import annotations

import importlib

from nexabilling.celery import app

QUEUES = {
    "apps.audit": "default", "apps.integrity": "default", "apps.migration": "default", "apps.invoicing": "close", "apps.ledger": "ledger",
    "apps.payments": "payments", "apps.subscriptions": "usage", "apps.usage": "usage", "apps.webhooks": "webhooks",
}

# Tasks whose work is long enough to hold up the rest of their app's queue.
OWN_QUEUE = {"apps.usage.tasks.usage_months_archive_due_task": "usage-maintenance"}


def test_every_task_goes_to_its_kind_of_work():
    for package in QUEUES:
        importlib.import_module(f"{package}.tasks")
    tasks = sorted(name for name in app.tasks if name.startswith("apps."))
    assert len(tasks) >= 20
    routed = {name: app.amqp.router.route({}, name)["queue"].name for name in tasks}
    expected = {name: OWN_QUEUE.get(name) or QUEUES[".".join(name.split(".")[:2])] for name in tasks}
    assert routed == expected

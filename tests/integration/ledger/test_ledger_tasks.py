"""Task wiring: the on-commit send task and the sweeper go through get_odoo_client() and settings."""
from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from django.db import transaction

from apps.ledger.models import LedgerPosting
from apps.ledger.services import ledger_posting_create
from apps.ledger.tasks import ledger_sweep_task
from tests.integration.ledger.builders import customer_make, invoice_make, mapping_make
from tests.odoo_standin.fixtures import odoo_config, odoo_standin  # noqa: F401 (fixtures)


@pytest.fixture
def enabled(settings, odoo_config):
    settings.LEDGER_ENABLED = True
    settings.ODOO_URL, settings.ODOO_DATABASE = odoo_config.url, odoo_config.database
    settings.ODOO_USERNAME, settings.ODOO_API_KEY = odoo_config.username, odoo_config.api_key
    settings.ODOO_TRANSPORT, settings.ODOO_TIMEOUT_SECONDS = odoo_config.transport, 2
    return settings


def test_sweeper_is_scheduled() -> None:
    entry = django_settings.CELERY_BEAT_SCHEDULE["ledger-sweep"]
    assert entry["task"] == ledger_sweep_task.name


@pytest.mark.django_db(transaction=True)
def test_commit_enqueues_the_send_task_which_posts_to_odoo(service_factory, enabled, odoo_standin) -> None:
    service = service_factory("cloud").service
    mapping_make(service=service)
    with transaction.atomic():  # eager Celery: the task runs at commit
        posting = ledger_posting_create(invoice=invoice_make(service=service, customer=customer_make(),
                                                             fees_cents=[2500]))
        assert odoo_standin.search_read("account.move", [], ["id"]) == []
    posting.refresh_from_db()
    assert (posting.status, posting.odoo_name) == ("posted", "INV/2026/00001")


@pytest.mark.django_db
def test_sweeper_posts_the_backlog_written_while_disabled(service_factory, settings, enabled, odoo_standin) -> None:
    service = service_factory("cloud").service
    mapping_make(service=service)
    settings.LEDGER_ENABLED = False
    for n in range(3):
        ledger_posting_create(invoice=invoice_make(service=service, customer=customer_make(), fees_cents=[100 + n]))
    ledger_sweep_task()
    assert set(LedgerPosting.objects.values_list("status", flat=True)) == {"pending"}
    settings.LEDGER_ENABLED = True
    ledger_sweep_task()
    assert set(LedgerPosting.objects.values_list("status", flat=True)) == {"posted"}
    assert len(odoo_standin.search_read("account.move", [["state", "=", "posted"]], ["id"])) == 3

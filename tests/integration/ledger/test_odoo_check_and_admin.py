"""`manage.py odoo_check`, the reconciliation report and admin actions, against the stand-in."""
from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from apps.ledger.models import LedgerPosting, OdooProductMapping, OdooTaxMapping
from apps.ledger.odoo_client import OdooConfig
from apps.ledger.selectors import ledger_reconciliation
from apps.ledger.services import ledger_post_pending_batch, ledger_posting_create
from tests.integration.ledger.builders import customer_make, invoice_make, mapping_make
from tests.odoo_standin.fixtures import odoo_client, odoo_config, odoo_standin  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db

# Hub tax codes builders.mapping_make leaves unmapped (the stand-in has their ca_2023 taxes too).
UNMAPPED = ("hst_sale_tax_14", "pst_sale_tax_6", "pst_sale_tax_7_mb")


@pytest.fixture
def odoo_settings(settings, odoo_config: OdooConfig):
    settings.ODOO_URL, settings.ODOO_DATABASE = odoo_config.url, odoo_config.database
    settings.ODOO_USERNAME, settings.ODOO_API_KEY = odoo_config.username, odoo_config.api_key
    settings.ODOO_TRANSPORT, settings.ODOO_TIMEOUT_SECONDS = odoo_config.transport, 2
    return settings


def _check() -> tuple[str, str]:
    out = StringIO()
    try:
        call_command("odoo_check", stdout=out)
    except CommandError as exc:
        return out.getvalue(), str(exc)
    return out.getvalue(), ""


def test_odoo_check_reports_missing_tax_and_account_mappings_by_name(service_factory, odoo_settings) -> None:
    service = service_factory("cloud").service
    mapping_make(service=service, account="999999")
    OdooTaxMapping.objects.filter(tax_code="qst_sale_tax_9975").delete()
    # The pre-2023 template's xml id (odoo.md §5.1): a database migrated from Odoo 16 might have it, this one not.
    OdooTaxMapping.objects.create(tax_code="hst_sale_tax_14", odoo_tax="account.1_hst14_sale_en")

    out, error = _check()

    assert "Odoo 19.0 (uid 2)" in out
    assert "MISSING tax qst_sale_tax_9975: no Odoo tax mapped" in out
    assert "MISSING tax hst_sale_tax_14 -> account.1_hst14_sale_en: not found in Odoo (account.tax)" in out
    assert "MISSING income account for service cloud -> 999999: not found in Odoo (account.account)" in out
    assert "hst_sale_tax_13" not in out and "product for service cloud" not in out  # these exist
    assert "mapping problem(s)" in error


def test_odoo_check_passes_when_everything_is_mapped(service_factory, odoo_settings) -> None:
    mapping_make(service=service_factory("cloud").service)
    OdooTaxMapping.objects.bulk_create(OdooTaxMapping(tax_code=code, odoo_tax="13% HST") for code in UNMAPPED)
    out, error = _check()
    assert (error, out.splitlines()[-1]) == ("", "mapping OK")


def test_odoo_check_reports_bad_credentials(odoo_settings) -> None:
    odoo_settings.ODOO_API_KEY = "wrong"
    with pytest.raises(CommandError, match="cannot reach Odoo"):
        call_command("odoo_check", stdout=StringIO())


def test_reconciliation_report_lists_mismatches_and_failures(service_factory, odoo_client, admin_client) -> None:
    service = service_factory("cloud").service
    mapping_make(service=service)
    ok = ledger_posting_create(invoice=invoice_make(service=service, customer=customer_make(), fees_cents=[1000]))
    skewed = ledger_posting_create(invoice=invoice_make(service=service, customer=customer_make(), fees_cents=[1001],
                                                        skew_tax_cents=1))
    other = service_factory("other").service  # no product mapped
    failed = ledger_posting_create(invoice=invoice_make(service=other, customer=customer_make(), fees_cents=[50]))
    ledger_post_pending_batch(limit=10, client=odoo_client)

    report = ledger_reconciliation()
    assert report.counts == {"posted": 1, "mismatch": 1, "failed": 1}
    assert [row.pk for row in report.rows] == [skewed.pk, failed.pk]
    page = admin_client.get(reverse("admin:ledger_ledgerposting_reconciliation")).content.decode()
    assert skewed.ref in page and failed.ref in page and ok.ref not in page
    assert "product for service other (line &#x27;Line 0&#x27;): no Odoo product mapped" in page

    OdooProductMapping.objects.create(service=other, odoo_product="SEAT")
    response = admin_client.post(reverse("admin:ledger_ledgerposting_changelist"),
                                 {"action": "retry", "_selected_action": [failed.pk], "apply": "1",
                                  "reason": "product mapping fixed"})
    assert response.status_code == 302
    ledger_post_pending_batch(limit=10, client=odoo_client)
    assert LedgerPosting.objects.get(pk=failed.pk).status == "posted"


def test_admin_check_action_lists_problems(service_factory, odoo_settings, admin_client) -> None:
    mapping_make(service=service_factory("cloud").service, product="NOPE")
    response = admin_client.post(reverse("admin:ledger_odootaxmapping_changelist"),
                                 {"action": "check_odoo", "_selected_action": [OdooTaxMapping.objects.first().pk]},
                                 follow=True)
    text = response.content.decode()
    assert "Missing: product for service cloud -&gt; NOPE: not found in Odoo (product.product)" in text


def test_odoo_check_names_the_unmapped_prepaid_discount_account(service_factory, odoo_settings) -> None:
    from apps.ledger.models import OdooAccountMapping

    mapping_make(service=service_factory("cloud").service)
    OdooTaxMapping.objects.bulk_create(OdooTaxMapping(tax_code=code, odoo_tax="13% HST") for code in UNMAPPED)
    OdooAccountMapping.objects.filter(purpose="prepaid_discount").delete()  # no default: the company's choice
    OdooAccountMapping.objects.create(purpose="prepayment", odoo_account="299999")  # overrides the default
    out, error = _check()
    assert "MISSING account prepaid_discount: no Odoo account mapped" in out
    assert "MISSING account prepayment -> 299999: not found in Odoo (account.account)" in out
    assert "mapping problem(s)" in error

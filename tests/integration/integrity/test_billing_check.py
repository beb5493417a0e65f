"""`manage.py billing_check`, the recorded daily run (task, beat entry) and the staff pages."""
from __future__ import annotations

import json
from io import StringIO

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command

from apps.integrity.models import CheckRun, CheckViolation
from apps.integrity.services import billing_check_run
from apps.integrity.tasks import billing_check_run_task
from apps.invoicing.close import periods_close
from apps.invoicing.models import Invoice

from .conftest import sql

pytestmark = pytest.mark.django_db


def _run(*args: str) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("billing_check", *args, stdout=out, stderr=StringIO())
    except CommandError as exc:
        return exc.returncode, out.getvalue()
    return 0, out.getvalue()


def test_billing_check_exits_0_after_seed_demo_and_a_close():
    # Failed before ae654c7 (defect 7): the demo's in-advance invoices moved the usage cut-off to the period end.
    call_command("seed_demo", stdout=StringIO())
    periods_close()
    assert Invoice.objects.filter(status="finalized").count() >= 2  # not vacuous
    code, out = _run()
    assert code == 0, out


def test_billing_check_exits_0_and_says_ok_per_invariant_on_a_consistent_world(world):
    code, out = _run()
    assert code == 0
    assert out.splitlines() == [
        "I1 balances (invoiced − credited − paid + refunded = owed): OK",
        "I2 usage billed exactly once: OK",
        "I3 no negative finalized invoice: OK",
        "I4 taxes per line and invoice totals: OK",
        "I5 gapless invoice numbers: OK",
        "I6 Stripe payments recorded: OK",
    ]


def test_billing_check_prints_each_violation_and_exits_1(world):
    sql("UPDATE invoicing_invoice SET total_amount_cents = total_amount_cents + 7 WHERE id = %s", [world.march.pk])
    total = world.march.total_amount_cents

    code, out = _run()

    assert code == 1
    lines = out.splitlines()
    assert lines[:2] == [
        f"I1 balance | customer {world.customer.pk} ({world.customer.external_id}) | expected 3617 actual 3624 CAD "
        f"minor units: owes 3624 but the flows say 3617: invoiced 3617 − credited 0 − paid 0 + refunded 0; due 3624, "
        f"unused credit 0, refunds owed 0, customer credit 0",
        f"I4 total | customer {world.customer.pk} ({world.customer.external_id}) | invoice {world.march.number} "
        f"(id {world.march.pk}) | expected {total} actual {total + 7} CAD minor units: total {total + 7}, sub-total "
        f"including taxes − credit applied = {total}",
    ]
    assert "I1 balances (invoiced − credited − paid + refunded = owed): 1 violation(s)" in lines
    assert "I3 no negative finalized invoice: OK" in lines


def test_billing_check_json_and_customer_filter(world, service_factory):
    sql("UPDATE invoicing_invoice SET total_amount_cents = total_amount_cents + 7 WHERE id = %s", [world.march.pk])

    code, out = _run("--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    assert report["summary"] == {"I1": 1, "I2": 0, "I3": 0, "I4": 1, "I5": 0, "I6": 0}
    assert [(v["code"], v["rule"], v["invoice_id"]) for v in report["violations"]] == [
        ("I1", "balance", None), ("I4", "total", world.march.pk)]

    other = world.billing.customer("someone-else").customer
    assert _run("--customer", str(other.pk))[0] == 0
    assert _run("--customer", world.customer.external_id)[0] == 1
    with pytest.raises(CommandError, match="no such customer"):
        call_command("billing_check", "--customer", "nobody", stdout=StringIO())


def test_billing_check_record_stores_the_run_for_staff(world):
    sql("UPDATE invoicing_numbersequence SET last_value = last_value + 1")
    assert _run("--record")[0] == 1
    run = CheckRun.objects.get()
    assert (run.violations_count, run.counts["I5"]) == (1, 1)
    assert list(run.violations.values_list("code", "rule", "expected", "actual")) == [("I5", "counter", 2, 3)]
    assert CheckRun.objects.count() == 1 and _run()[0] == 1 and CheckRun.objects.count() == 1  # default: not stored


def test_the_daily_task_records_a_run(world):
    sql("UPDATE invoicing_invoice SET total_amount_cents = total_amount_cents + 7 WHERE id = %s", [world.march.pk])
    run = CheckRun.objects.get(pk=billing_check_run_task())
    assert run.violations_count == 2 and run.finished_at >= run.started_at
    assert set(run.violations.values_list("code", flat=True)) == {"I1", "I4"}


def test_the_billing_check_is_scheduled_daily() -> None:
    entry = django_settings.CELERY_BEAT_SCHEDULE["integrity-billing-check"]
    assert entry["task"] == billing_check_run_task.name
    schedule = entry["schedule"]
    assert (schedule.hour, schedule.minute, schedule.day_of_week) == ({5}, {40}, set(range(7)))


def test_staff_see_the_latest_runs_violations_first(world, admin_client):
    sql("UPDATE invoicing_invoice SET total_amount_cents = total_amount_cents + 7 WHERE id = %s", [world.march.pk])
    older = billing_check_run().run
    sql("UPDATE invoicing_invoice SET total_amount_cents = total_amount_cents - 7 WHERE id = %s", [world.march.pk])
    sql("UPDATE invoicing_numbersequence SET last_value = last_value + 1")
    latest = billing_check_run().run

    response = admin_client.get("/admin/integrity/checkviolation/")
    assert response.status_code == 302 and response["Location"].endswith(f"?run__id__exact={latest.pk}")
    page = admin_client.get(response["Location"]).content.decode()
    assert "the sequence counter is 3" in page and "credit applied" not in page
    assert admin_client.get(f"/admin/integrity/checkviolation/?run__id__exact={older.pk}").content.decode().count(
        "$36.24 CAD") == 1  # the I1 owed amount, as money
    violation = CheckViolation.objects.filter(run=older).first()
    detail = admin_client.get(f"/admin/integrity/checkviolation/{violation.pk}/change/")
    assert detail.status_code == 200
    assert admin_client.get("/admin/integrity/checkrun/").status_code == 200
    assert admin_client.get("/admin/integrity/checkviolation/add/").status_code == 403

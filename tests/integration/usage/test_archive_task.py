"""The beat's usage archiver (issue 22): billed months past USAGE_ARCHIVE_AFTER_MONTHS archived once, however often
or concurrently it runs; the file checked before the partition is dropped; a crash in between finishes next run."""
from __future__ import annotations

import gzip
import hashlib
import json
import threading
from datetime import date, datetime, timezone

import pytest
import time_machine
from django.db import connection

from apps.usage.archive_storage import DirectoryStorage
from apps.usage.models import UsageArchive, UsageEvent
from apps.usage.partitions import (
    UsageArchiveBusy, _archive_claim, usage_month_archive, usage_months_archive_due, usage_partitions_ensure,
    usage_partitions_list,
)
from apps.usage.services import usage_events_ingest, usage_ingest_fence, usage_rollup_advance
from apps.usage.validation import EventIn

UTC = timezone.utc
JAN, FEB, MAR = date(2021, 1, 1), date(2021, 2, 1), date(2021, 3, 1)
NOW = datetime(2021, 4, 15, tzinfo=UTC)  # with USAGE_ARCHIVE_AFTER_MONTHS=1: January and February are due, not March


def ev(tx: str, when: datetime, *, sub="sub-1", gb="1") -> EventIn:
    return EventIn(transaction_id=tx, external_subscription_id=sub, code="storage", timestamp=int(when.timestamp()),
                   properties={"gb": gb})


@pytest.fixture
def archiving(settings, tmp_path):
    settings.USAGE_RAW_RETENTION_MONTHS = 0
    settings.USAGE_ARCHIVE_AFTER_MONTHS = 1
    settings.USAGE_ARCHIVE_DIR = tmp_path
    return tmp_path


def three_months(world, *, billed_until=datetime(2021, 3, 1, tzinfo=UTC)):
    """Rows in January, February and March 2021 of sub-1, billed up to `billed_until`, all in the rollup."""
    sub = world.subscription("sub-1", at=datetime(2021, 1, 1, tzinfo=UTC))
    usage_partitions_ensure(now=datetime(2021, 1, 1, tzinfo=UTC), months_ahead=2)
    usage_events_ingest(service=world.service, events=[
        ev("j1", datetime(2021, 1, 5, tzinfo=UTC), gb="2"), ev("j2", datetime(2021, 1, 20, tzinfo=UTC), gb="3"),
        ev("f1", datetime(2021, 2, 7, tzinfo=UTC), gb="4"), ev("m1", datetime(2021, 3, 3, tzinfo=UTC), gb="5")])
    sub.usage_billed_until = billed_until
    sub.save(update_fields=["usage_billed_until"])
    usage_ingest_fence()
    usage_rollup_advance()
    return sub


def sha256_of(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.django_db
def test_the_archiver_archives_billed_months_past_the_setting_and_skips_an_unbilled_one(world, archiving):
    three_months(world, billed_until=datetime(2021, 2, 1, tzinfo=UTC))  # February's period is not closed

    run = usage_months_archive_due(now=NOW)

    assert [(done.month, done.rows) for done in run.archived] == [(JAN, 2)]
    assert run.skipped == {FEB: "2021-02 still holds 1 rows in a period not yet invoiced"}
    assert JAN not in usage_partitions_list() and {FEB, MAR} <= set(usage_partitions_list())
    january = UsageArchive.objects.get(month=JAN)
    file = archiving / "usage_usageevent_p2021_01.csv.gz"
    assert (january.status, january.rows, january.path, january.sha256) == ("archived", 2, str(file), sha256_of(file))
    manifest = json.loads((archiving / "usage_usageevent_p2021_01.csv.gz.manifest.json").read_text())
    assert (manifest["rows"], manifest["sha256"], manifest["month"]) == (2, sha256_of(file), "2021-01")
    with gzip.open(file, "rt") as rows:
        assert [line.split(",")[0] for line in rows.read().splitlines()][0] == "id"
    february = UsageArchive.objects.get(month=FEB)
    assert (february.status, february.last_error) == ("skipped", "2021-02 still holds 1 rows in a period not yet invoiced")
    assert not UsageArchive.objects.filter(month=MAR).exists()  # too recent: not even tried
    assert UsageEvent.objects.filter(transaction_id__in=["f1", "m1"]).count() == 2

    # Running again archives nothing twice; once February is billed, it goes too.
    again = usage_months_archive_due(now=NOW)
    assert again.archived == [] and list(again.skipped) == [FEB]
    assert UsageArchive.objects.get(month=JAN).attempts == 1 and sha256_of(file) == january.sha256
    sub = world.service.subscriptions.get()
    sub.usage_billed_until = datetime(2021, 3, 1, tzinfo=UTC)
    sub.save(update_fields=["usage_billed_until"])
    assert [done.month for done in usage_months_archive_due(now=NOW).archived] == [FEB]
    assert UsageArchive.objects.get(month=FEB).status == "archived" and MAR in usage_partitions_list()


@pytest.mark.django_db
def test_zero_months_never_archives(world, archiving, settings):
    three_months(world)
    settings.USAGE_ARCHIVE_AFTER_MONTHS = 0

    assert usage_months_archive_due(now=datetime(2030, 1, 1, tzinfo=UTC)).archived == []
    assert {JAN, FEB, MAR} <= set(usage_partitions_list()) and not UsageArchive.objects.exists()


@pytest.mark.django_db
def test_never_sooner_than_the_raw_retention(world, archiving, settings):
    three_months(world)
    settings.USAGE_RAW_RETENTION_MONTHS = 2  # January ended 2 months before April: due; February is not

    assert [done.month for done in usage_months_archive_due(now=NOW).archived] == [JAN]
    assert FEB in usage_partitions_list() and not UsageArchive.objects.filter(month=FEB).exists()


class CorruptingStorage(DirectoryStorage):
    """A disk that loses a byte of what it is given (bit rot, a bad mount): the read-back check must catch it."""

    def reader(self, name):
        if name.endswith(".csv.gz"):
            path = self.root / name
            data = bytearray(path.read_bytes())
            data[len(data) // 2] ^= 0xFF
            path.write_bytes(bytes(data))
        return super().reader(name)


@pytest.mark.django_db
def test_a_file_that_does_not_read_back_keeps_the_partition(world, archiving):
    three_months(world)

    run = usage_months_archive_due(now=NOW, storage=CorruptingStorage(archiving))

    assert run.archived == [] and "reads back with SHA-256" in run.skipped[JAN]
    assert {JAN, FEB} <= set(usage_partitions_list()) and UsageEvent.objects.count() == 4
    january = UsageArchive.objects.get(month=JAN)
    assert january.status == "skipped" and "reads back with SHA-256" in january.last_error
    assert january.claim_token is None  # released: the next run tries again
    assert [done.month for done in usage_months_archive_due(now=NOW).archived] == [JAN, FEB]


@pytest.mark.django_db
def test_a_crash_between_the_file_and_the_drop_leaves_the_rows_and_the_next_run_finishes(world, archiving, monkeypatch):
    from apps.usage import partitions

    three_months(world)
    original = partitions._archive_drop

    def crash(*args, **kwargs):
        raise SystemExit("worker killed")  # as a killed worker: nothing after the file is written happens

    monkeypatch.setattr(partitions, "_archive_drop", crash)
    with pytest.raises(SystemExit):
        usage_month_archive(month=JAN, now=NOW)
    january = UsageArchive.objects.get(month=JAN)
    assert january.status == "exported" and (archiving / "usage_usageevent_p2021_01.csv.gz").exists()
    assert JAN in usage_partitions_list() and UsageEvent.objects.filter(transaction_id__in=["j1", "j2"]).count() == 2
    # A killed worker does not release its claim: the month waits for the claim to run out.
    UsageArchive.objects.filter(month=JAN).update(claim_token="00000000-0000-0000-0000-000000000001",
                                                  claimed_until=datetime(2099, 1, 1, tzinfo=UTC))
    monkeypatch.setattr(partitions, "_archive_drop", original)
    held = usage_months_archive_due(now=NOW)
    assert held.busy == [JAN] and [done.month for done in held.archived] == [FEB]
    assert JAN in usage_partitions_list()
    UsageArchive.objects.filter(month=JAN).update(claimed_until=datetime(2021, 1, 1, tzinfo=UTC))  # ran out

    run = usage_months_archive_due(now=NOW)

    assert [(done.month, done.rows) for done in run.archived] == [(JAN, 2)]
    january = UsageArchive.objects.get(month=JAN)
    assert (january.status, january.rows, january.attempts) == ("archived", 2, 2)
    assert JAN not in usage_partitions_list()


@pytest.mark.django_db
def test_a_month_another_run_holds_is_left_to_it(world, archiving):
    three_months(world)
    _archive_claim(JAN)

    with pytest.raises(UsageArchiveBusy):
        usage_month_archive(month=JAN, now=NOW)
    assert JAN in usage_partitions_list()


@pytest.mark.django_db(transaction=True)
def test_two_archivers_at_once_archive_each_month_once(world, archiving):
    three_months(world)
    barrier, results, errors = threading.Barrier(2), [], []

    def run():
        try:
            barrier.wait(timeout=10)
            results.append(usage_months_archive_due(now=NOW))
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert errors == []
        assert sorted(done.month for result in results for done in result.archived) == [JAN, FEB]
        assert [result.skipped for result in results] == [{}, {}] and [result.failed for result in results] == [{}, {}]
        assert list(UsageArchive.objects.order_by("month").values_list("month", "status", "rows")) == [
            (JAN, "archived", 2), (FEB, "archived", 1)]
        assert UsageEvent.objects.count() == 1 and MAR in usage_partitions_list()
        for month in (JAN, FEB):
            record = UsageArchive.objects.get(month=month)
            assert record.sha256 == sha256_of(archiving / f"usage_usageevent_p{month:%Y_%m}.csv.gz")
    finally:  # DDL outlives a transactional test's flush: leave the schema as the migration made it
        with connection.cursor() as cursor:
            for month in (JAN, FEB, MAR):
                cursor.execute(f"DROP TABLE IF EXISTS usage_usageevent_p{month:%Y_%m}")


@pytest.mark.django_db
def test_the_command_runs_the_same_archiver_and_restore_refuses_a_file_its_manifest_disowns(world, archiving):
    from django.core.management import CommandError, call_command

    from apps.usage.partitions import UsageArchiveRefused, usage_month_restore

    three_months(world, billed_until=datetime(2021, 2, 1, tzinfo=UTC))
    with time_machine.travel(NOW, tick=False):
        call_command("usage_archive", "--due")
    assert JAN not in usage_partitions_list() and UsageArchive.objects.get(month=FEB).status == "skipped"
    with pytest.raises(CommandError, match="--out names one month's file"):
        call_command("usage_archive", "--due", "--out", str(archiving / "x.csv.gz"))
    file = archiving / "usage_usageevent_p2021_01.csv.gz"
    good = file.read_bytes()
    file.write_bytes(gzip.compress(gzip.decompress(good), mtime=1))  # same rows, other bytes: not the archived file

    with pytest.raises(UsageArchiveRefused, match="does not match its manifest"):
        usage_month_restore(path=file)
    assert JAN not in usage_partitions_list()
    file.write_bytes(good)
    assert usage_month_restore(path=file).rows == 2 and JAN in usage_partitions_list()

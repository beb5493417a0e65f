"""Raw usage: one row per accepted event or pre-aggregated counter (see README "Usage ingestion")."""
from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models.functions import Now


class UsageEvent(models.Model):
    """One accepted event (`POST /events`) or counter (`POST /usage`); immutable once written.

    The table is partitioned by month of `timestamp` (migration 0007, docs/usage.md "Partitions"):
    PostgreSQL requires the partition key in every unique key, so the database's primary key is
    (id, timestamp), while Django keeps `id` as the model's pk: ids come from one sequence and are
    unique across partitions, which is all the ORM needs (`.get(pk=…)`, the admin). Idempotency
    lives in `UsageEventKey`, and partitions are managed by `apps.usage.partitions`, never by
    makemigrations: schema changes to this model need hand-written SQL on the partitioned parent.

    Written only by `apps.usage.services` in one set-based INSERT per batch. The foreign keys
    carry no database constraint on purpose: an FK check per row costs ingest throughput, and
    subscriptions and metrics are never deleted (PROTECT / soft delete). No single-column FK
    indexes either: every btree costs each insert, and the composite indexes below lead with
    service and subscription.
    """

    class Source(models.IntegerChoices):
        EVENT = 1
        COUNTER = 2

    id = models.BigAutoField(primary_key=True)
    service = models.ForeignKey(
        "customers.Service", on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    # Idempotency key: Lago transaction_id, or the counter's idempotency_key (one namespace per service).
    transaction_id = models.CharField(max_length=255)
    subscription = models.ForeignKey(
        "subscriptions.Subscription", on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    billable_metric = models.ForeignKey(
        "catalog.BillableMetric", on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    timestamp = models.DateTimeField()  # when the usage happened (the client's clock)
    # Metric units contributed: properties[field_name] for sum/max/latest/weighted_sum, 1 per event
    # for count (a counter's quantity), +1 / -1 (add / remove) for unique_count.
    value = models.DecimalField(max_digits=30, decimal_places=12)
    properties = models.JSONField(default=dict, blank=True)
    # The event's own price as the app sent it (Lago's precise_total_amount_cents): minor units of the plan's
    # currency, unrounded; what a `dynamic` charge bills. Null when not sent.
    precise_total_amount_cents = models.DecimalField(max_digits=40, decimal_places=12, null=True, blank=True)
    source = models.SmallIntegerField(choices=Source.choices, default=Source.EVENT)
    # The timestamp fell before the subscription's usage_billed_until when it arrived: the period
    # was already invoiced, so the row is billed as an adjustment on the next invoice instead.
    is_late = models.BooleanField(default=False)
    late_billed_at = models.DateTimeField(null=True, blank=True)  # set once the adjustment is billed
    created_at = models.DateTimeField(db_default=Now())  # when the hub accepted it

    class Meta:
        # Indexes declared here are partitioned indexes on the parent: every partition has its own.
        indexes = [
            # Period reads per (subscription, metric) range: the close's partial edge days and
            # unrolled tail, unique counts, per-event values, the admin. No INCLUDE columns: every
            # one of those reads also needs `id` or `properties`, so it visits the heap anyway,
            # and the payload made the index 2.5x larger (1.2 GB vs 475 MB at 17M rows) and every
            # insert's WAL record longer.
            models.Index(fields=("subscription", "billable_metric", "timestamp"), name="usage_event_sub_metric_ts_idx"),
            models.Index(
                fields=("subscription",),
                condition=models.Q(is_late=True, late_billed_at__isnull=True),
                name="usage_event_late_unbilled_idx",
            ),
            # The admin's list sorted by event time (either way; ties by id come from an incremental sort):
            # without it, a top-100 sort read every row (5.7 s at 5M rows, bench/admin.py). Events arrive
            # roughly in time order, so inserts land on the index's right edge: the cheapest btree to maintain.
            models.Index(fields=("timestamp",), name="usage_event_ts_idx"),
            # Late rows only (~0.1%): the admin's "late" filter, newest first, and its count.
            models.Index(fields=("id",), condition=models.Q(is_late=True), name="usage_event_late_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.transaction_id} @ {self.timestamp:%Y-%m-%d %H:%M:%S}"


class UsageEventKey(models.Model):
    """The idempotency key of every usage row ever accepted: (service, transaction_id), unique across all time.

    A unique key on the partitioned usage table would have to include `timestamp`, so the same
    transaction_id sent with another timestamp would be stored twice. The ingest statement inserts
    the keys first (ON CONFLICT DO NOTHING) and stores only the rows whose key it inserted, in one
    statement and transaction. Keys of archived months stay here: an old id re-sent is still refused.
    """

    pk = models.CompositePrimaryKey("service", "transaction_id")
    service = models.ForeignKey(
        "customers.Service", on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    transaction_id = models.CharField(max_length=255)  # UsageEvent.transaction_id
    timestamp = models.DateTimeField()  # the stored row's timestamp: which partition holds (or held) it


class UsageDaily(models.Model):
    """Rollup of usage rows per (subscription, metric, UTC day), kept current by `usage_rollup_advance`.

    Holds every UsageEvent with id <= UsageRollupState.last_event_id. Period close reads whole
    days here and only the partial edge days and the not-yet-rolled tail from the raw table.
    """

    subscription = models.ForeignKey(
        "subscriptions.Subscription", on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    billable_metric = models.ForeignKey(
        "catalog.BillableMetric", on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    day = models.DateField()  # UTC
    # Non-late rows only (late rows are billed as adjustments):
    events_count = models.BigIntegerField(default=0)
    value_sum = models.DecimalField(max_digits=40, decimal_places=12, default=0)  # Σ value, metric units
    value_max = models.DecimalField(max_digits=30, decimal_places=12, null=True)  # metric units
    # [epoch seconds, row id, value] of the most recent row: greatest() merges two rollups.
    latest_key = ArrayField(models.DecimalField(max_digits=40, decimal_places=12), null=True)
    moment_sum = models.DecimalField(max_digits=60, decimal_places=12, default=0)  # Σ value × epoch µs
    # Every row, late ones included: the running level recurring metrics carry.
    total_sum = models.DecimalField(max_digits=40, decimal_places=12, default=0)  # metric units

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=("subscription", "billable_metric", "day"), name="uniq_usage_daily"),
        ]


class UsageIngestHourly(models.Model):
    """Usage rows accepted per service and UTC hour of `created_at`, folded by `usage_rollup_advance` with the
    daily rollup: the dashboard's ingestion rate reads these instead of counting millions of raw rows."""

    hour = models.DateTimeField()  # start of the UTC hour
    service = models.ForeignKey(
        "customers.Service", on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    events_count = models.BigIntegerField(default=0)  # rows stored (duplicates refused at ingest are not rows)

    class Meta:
        constraints = [models.UniqueConstraint(fields=("hour", "service"), name="uniq_usage_ingest_hourly")]


class UsageRollupState(models.Model):
    """Singleton (id=1): the highest UsageEvent id folded into UsageDaily."""

    last_event_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)


class UsageArchive(models.Model):
    """A month of raw usage rows exported and dropped (`usage_archive`, or the beat's `usage-archive`), or a month
    the archiver tried and could not archive yet (docs/usage.md "Partitions"): one row per month.

    Only `archived` rows describe a dropped partition; the integrity check (I2) reads those alone.
    """

    class Status(models.TextChoices):
        PENDING = "pending"  # a run has started (or died before writing the file)
        SKIPPED = "skipped"  # refused: `last_error` says why (unbilled usage, too recent, a busy table)
        EXPORTED = "exported"  # the file is written and checked; the partition is not yet dropped (the next run drops it)
        ARCHIVED = "archived"  # the file is written and checked and the partition dropped

    month = models.DateField(unique=True)  # first day of the UTC month
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    path = models.CharField(max_length=1024, blank=True)  # where the gzip CSV was written (the storage's location)
    rows = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)  # of the gzip file's bytes, also in the manifest beside it
    # [[subscription_id, billable_metric_id, rows], …] of late rows billed as adjustments: the integrity check (I2)
    # compares adjustment fees with late rows, and these are no longer in the table.
    late_billed = models.JSONField(default=list, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    restored_at = models.DateTimeField(null=True, blank=True)  # set by `usage_restore`; archiving again clears it
    last_error = models.TextField(blank=True)  # why the last attempt did not archive the month
    attempts = models.PositiveIntegerField(default=0)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    # A run's claim on the month (conditional UPDATE): two runs at once archive it once. A run that dies keeps it
    # until `claimed_until`, then the next run takes the month over and finishes it.
    claim_token = models.UUIDField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"usage of {self.month:%Y-%m} ({self.status}, {self.rows} rows)"


class UsageCheck(models.Model):
    """A subscription with usage to check against its thresholds and alerts: one row however many events arrive.

    Ingest inserts it (ON CONFLICT DO NOTHING) for subscriptions something watches and, when it inserted one, sends
    the check task a little later; the task claims rows by deleting them (apps/invoicing/progressive.py), a sweep
    takes any a lost message left.
    """

    subscription = models.OneToOneField(
        "subscriptions.Subscription", on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    requested_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"usage check of subscription {self.subscription_id}"

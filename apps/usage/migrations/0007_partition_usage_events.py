"""Usage rows partitioned by month of `timestamp`; idempotency keys in their own table (docs/usage.md "Partitions").

The existing table is converted in place, in this migration's transaction: a partitioned parent of the same
columns (LIKE) is created with one partition per month that holds rows, the current month and the next three,
and a DEFAULT partition; the rows are copied with their ids (the rollup watermark counts ids), the indexes built
on the parent (so each partition has them and every future partition gets them), the old table dropped. The id
sequence carries on from the old one. The keys of every stored row fill `usage_usageeventkey`.

Copying takes about as long as the bench's pre-fill for the same row count (tens of seconds per 10M rows, with
ingest stopped meanwhile: the old table is locked throughout). PostgreSQL 15 has no identity columns on
partitioned tables, hence a plain sequence as the id's default.
"""
import django.db.models.deletion
from django.db import migrations, models

PARENT = "usage_usageevent"

CONVERT = r"""
LOCK TABLE usage_usageevent IN ACCESS EXCLUSIVE MODE;
ALTER TABLE usage_usageevent RENAME TO usage_usageevent_unpartitioned;
ALTER TABLE usage_usageevent_unpartitioned DROP CONSTRAINT uniq_usage_event_transaction;
DROP INDEX usage_event_sub_metric_ts_idx, usage_event_ts_idx, usage_event_late_unbilled_idx, usage_event_late_idx;
ALTER INDEX usage_usageevent_pkey RENAME TO usage_usageevent_unpartitioned_pkey;

CREATE TABLE usage_usageevent (LIKE usage_usageevent_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE ("timestamp");
CREATE SEQUENCE usage_usageevent_id_seq_new AS bigint;
DO $$
DECLARE
    old_seq text := pg_get_serial_sequence('usage_usageevent_unpartitioned', 'id');
    next_id bigint := 1;
    month timestamptz;
BEGIN
    IF old_seq IS NOT NULL THEN
        EXECUTE format('SELECT nextval(%L)', old_seq) INTO next_id;
    END IF;
    next_id := greatest(next_id, (SELECT coalesce(max(id), 0) + 1 FROM usage_usageevent_unpartitioned));
    PERFORM setval('usage_usageevent_id_seq_new', next_id, false);
    FOR month IN
        SELECT DISTINCT date_trunc('month', "timestamp", 'UTC') FROM usage_usageevent_unpartitioned
        UNION
        SELECT date_trunc('month', now(), 'UTC') + make_interval(months => n) FROM generate_series(0, 3) AS n
    LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF usage_usageevent FOR VALUES FROM (%L) TO (%L)',
            'usage_usageevent_p' || to_char(month AT TIME ZONE 'UTC', 'YYYY_MM'),
            month, month + interval '1 month'
        );
    END LOOP;
END
$$;
CREATE TABLE usage_usageevent_default PARTITION OF usage_usageevent DEFAULT;
ALTER TABLE usage_usageevent ALTER COLUMN id SET DEFAULT nextval('usage_usageevent_id_seq_new');

INSERT INTO usage_usageevent SELECT * FROM usage_usageevent_unpartitioned;
INSERT INTO usage_usageeventkey (service_id, transaction_id, "timestamp")
SELECT service_id, transaction_id, "timestamp" FROM usage_usageevent_unpartitioned;

ALTER TABLE usage_usageevent ADD CONSTRAINT usage_usageevent_pkey PRIMARY KEY (id, "timestamp");
CREATE INDEX usage_event_sub_metric_ts_idx ON usage_usageevent (subscription_id, billable_metric_id, "timestamp");
CREATE INDEX usage_event_ts_idx ON usage_usageevent ("timestamp");
CREATE INDEX usage_event_late_unbilled_idx ON usage_usageevent (subscription_id) WHERE is_late AND late_billed_at IS NULL;
CREATE INDEX usage_event_late_idx ON usage_usageevent (id) WHERE is_late;

DROP TABLE usage_usageevent_unpartitioned;
ALTER SEQUENCE usage_usageevent_id_seq_new RENAME TO usage_usageevent_id_seq;
ALTER SEQUENCE usage_usageevent_id_seq OWNED BY usage_usageevent.id;
ANALYZE usage_usageevent;
"""

# Back to one plain table (ids kept; the keys table is dropped by the CreateModel's reverse). Archived months
# must be restored first, or their rows are gone from the result as they are from the partitions.
REVERT = r"""
LOCK TABLE usage_usageevent IN ACCESS EXCLUSIVE MODE;
CREATE TABLE usage_usageevent_plain (LIKE usage_usageevent INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
INSERT INTO usage_usageevent_plain SELECT * FROM usage_usageevent;
ALTER TABLE usage_usageevent_plain ALTER COLUMN id DROP DEFAULT;
ALTER SEQUENCE usage_usageevent_id_seq OWNED BY NONE;
DROP TABLE usage_usageevent;
ALTER TABLE usage_usageevent_plain RENAME TO usage_usageevent;
ALTER TABLE usage_usageevent ALTER COLUMN id SET DEFAULT nextval('usage_usageevent_id_seq');
ALTER SEQUENCE usage_usageevent_id_seq OWNED BY usage_usageevent.id;
ALTER TABLE usage_usageevent ADD CONSTRAINT usage_usageevent_pkey PRIMARY KEY (id);
ALTER TABLE usage_usageevent ADD CONSTRAINT uniq_usage_event_transaction UNIQUE (service_id, transaction_id);
CREATE INDEX usage_event_sub_metric_ts_idx ON usage_usageevent (subscription_id, billable_metric_id, "timestamp");
CREATE INDEX usage_event_ts_idx ON usage_usageevent ("timestamp");
CREATE INDEX usage_event_late_unbilled_idx ON usage_usageevent (subscription_id) WHERE is_late AND late_billed_at IS NULL;
CREATE INDEX usage_event_late_idx ON usage_usageevent (id) WHERE is_late;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0002_customer_reference_fits_service_code"),
        ("usage", "0006_admin_list_indexes"),
    ]

    operations = [
        migrations.CreateModel(
            name="UsageEventKey",
            fields=[
                ("pk", models.CompositePrimaryKey("service", "transaction_id", blank=True, editable=False,
                                                  primary_key=True, serialize=False)),
                ("transaction_id", models.CharField(max_length=255)),
                ("timestamp", models.DateTimeField()),
                ("service", models.ForeignKey(db_constraint=False, db_index=False,
                                              on_delete=django.db.models.deletion.DO_NOTHING, related_name="+",
                                              to="customers.service")),
            ],
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveConstraint(model_name="usageevent", name="uniq_usage_event_transaction"),
            ],
            database_operations=[migrations.RunSQL(CONVERT, REVERT)],
        ),
    ]

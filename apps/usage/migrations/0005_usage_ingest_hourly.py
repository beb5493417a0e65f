import django.db.models.deletion
from django.db import migrations, models

# Rows the rollup already folded get their hours counted once here, under the rollup state's lock (an advancer
# waits, then folds only rows after the watermark): the last 25 h suffice, the dashboard reads 24.
BACKFILL = """
INSERT INTO usage_usagerollupstate (id, last_event_id, updated_at) VALUES (1, 0, now()) ON CONFLICT (id) DO NOTHING;
SELECT 1 FROM usage_usagerollupstate WHERE id = 1 FOR UPDATE;
INSERT INTO usage_usageingesthourly (hour, service_id, events_count)
SELECT date_trunc('hour', e.created_at, 'UTC'), e.service_id, count(*)
  FROM usage_usageevent e
 WHERE e.id <= (SELECT last_event_id FROM usage_usagerollupstate WHERE id = 1)
   AND e.created_at >= now() - interval '25 hours'
 GROUP BY 1, 2;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0002_customer_reference_fits_service_code"),
        ("usage", "0004_period_index_without_include"),
    ]

    operations = [
        migrations.CreateModel(
            name="UsageIngestHourly",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("hour", models.DateTimeField()),
                ("events_count", models.BigIntegerField(default=0)),
                ("service", models.ForeignKey(db_constraint=False, db_index=False,
                                              on_delete=django.db.models.deletion.DO_NOTHING, related_name="+",
                                              to="customers.service")),
            ],
            options={"constraints": [models.UniqueConstraint(fields=("hour", "service"),
                                                             name="uniq_usage_ingest_hourly")]},
        ),
        migrations.RunSQL(BACKFILL, migrations.RunSQL.noop),
    ]

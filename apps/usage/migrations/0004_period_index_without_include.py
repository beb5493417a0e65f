from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    """Replace the period index by one without INCLUDE (value, is_late); see UsageEvent.Meta.

    Concurrently, so ingest keeps writing while the new index builds on a large table.
    """

    atomic = False

    dependencies = [
        ("usage", "0003_daily_rollup"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="usageevent",
            index=models.Index(fields=["subscription", "billable_metric", "timestamp"], name="usage_event_sub_metric_ts_idx"),
        ),
        RemoveIndexConcurrently(model_name="usageevent", name="usage_event_period_idx"),
    ]

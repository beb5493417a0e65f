from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    """The admin list's indexes (see UsageEvent.Meta), built concurrently: ingest keeps writing meanwhile."""

    atomic = False

    dependencies = [
        ("usage", "0005_usage_ingest_hourly"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="usageevent",
            index=models.Index(fields=["timestamp"], name="usage_event_ts_idx"),
        ),
        AddIndexConcurrently(
            model_name="usageevent",
            index=models.Index(condition=models.Q(("is_late", True)), fields=["id"], name="usage_event_late_idx"),
        ),
    ]

from django.db import migrations, models


class Migration(migrations.Migration):
    """Pending plan changes keep their predecessor's anchor; their start moves to `activates_at`."""

    dependencies = [("subscriptions", "0003_change_log")]

    operations = [
        migrations.AddField(
            model_name="subscription", name="activates_at", field=models.DateTimeField(blank=True, null=True)
        ),
        migrations.RunSQL(
            """
            UPDATE subscriptions_subscription s
               SET activates_at = s.subscription_at, subscription_at = p.subscription_at, billing_time = p.billing_time
              FROM subscriptions_subscription p
             WHERE s.previous_subscription_id = p.id AND s.status = 'pending'
            """,
            migrations.RunSQL.noop,
        ),
    ]

"""UsageArchive becomes one row per month the archiver touched: a status (rows written by `usage_archive` before
this are `archived`), the file's checksum, the last refusal, and a run's claim on the month (issue 22)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('usage', '0010_event_precise_total_amount'),
    ]

    operations = [
        migrations.AddField(
            model_name='usagearchive',
            name='status',
            field=models.CharField(default='archived', max_length=16, choices=[
                ('pending', 'Pending'), ('skipped', 'Skipped'), ('exported', 'Exported'), ('archived', 'Archived')]),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name='usagearchive',
            name='status',
            field=models.CharField(default='pending', max_length=16, choices=[
                ('pending', 'Pending'), ('skipped', 'Skipped'), ('exported', 'Exported'), ('archived', 'Archived')]),
        ),
        migrations.AlterField(model_name='usagearchive', name='path', field=models.CharField(blank=True, max_length=1024)),
        migrations.AlterField(model_name='usagearchive', name='rows', field=models.BigIntegerField(default=0)),
        migrations.AlterField(model_name='usagearchive', name='archived_at',
                              field=models.DateTimeField(blank=True, null=True)),
        migrations.AddField(model_name='usagearchive', name='sha256', field=models.CharField(blank=True, max_length=64)),
        migrations.AddField(model_name='usagearchive', name='last_error', field=models.TextField(blank=True)),
        migrations.AddField(model_name='usagearchive', name='attempts', field=models.PositiveIntegerField(default=0)),
        migrations.AddField(model_name='usagearchive', name='last_attempt_at',
                            field=models.DateTimeField(blank=True, null=True)),
        migrations.AddField(model_name='usagearchive', name='claim_token', field=models.UUIDField(blank=True, null=True)),
        migrations.AddField(model_name='usagearchive', name='claimed_until',
                            field=models.DateTimeField(blank=True, null=True)),
    ]

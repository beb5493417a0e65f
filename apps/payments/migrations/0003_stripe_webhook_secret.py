"""dj-stripe's webhook endpoint secrets move to an encrypted copy; triggers that failed validation are dropped."""

import django.db.models.deletion
import encrypted_fields.fields
import uuid
from django.db import migrations, models


def seal_existing(apps, schema_editor):
    WebhookEndpoint = apps.get_model("djstripe", "WebhookEndpoint")
    StripeWebhookSecret = apps.get_model("payments", "StripeWebhookSecret")
    for endpoint in WebhookEndpoint.objects.exclude(secret="").only("pk", "secret").iterator():
        StripeWebhookSecret.objects.update_or_create(endpoint_id=endpoint.pk, defaults={"secret": endpoint.secret})
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(secret="")
    # Requests that failed verification (anyone may post a Stripe-Signature header): not kept from now on.
    apps.get_model("djstripe", "WebhookEventTrigger").objects.filter(valid=False).delete()


def unseal(apps, schema_editor):
    WebhookEndpoint = apps.get_model("djstripe", "WebhookEndpoint")
    StripeWebhookSecret = apps.get_model("payments", "StripeWebhookSecret")
    for row in StripeWebhookSecret.objects.all():
        WebhookEndpoint.objects.filter(pk=row.endpoint_id).update(secret=row.secret)


class Migration(migrations.Migration):

    dependencies = [
        # __latest__: the suite builds dj-stripe's tables from one squashed migration (tests/conftest.py).
        ('djstripe', '__latest__'),
        ('payments', '0002_customer_credits'),
    ]

    operations = [
        migrations.CreateModel(
            name='StripeWebhookSecret',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('lago_id', models.UUIDField(default=uuid.uuid4, editable=False, unique=True)),
                ('created_at', models.DateTimeField(auto_now_add=True, db_index=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('secret', encrypted_fields.fields.EncryptedCharField(max_length=256)),
                ('endpoint', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='djstripe.webhookendpoint')),
            ],
            options={
                'abstract': False,
            },
        ),
        migrations.RunPython(seal_existing, unseal),
    ]

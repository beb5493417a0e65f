"""Webhook signing keys encrypted at rest: the column becomes Fernet text and existing keys are encrypted in place."""
import encrypted_fields.fields
from django.db import migrations

import apps.webhooks.models


def encrypt_existing(apps, schema_editor):
    WebhookEndpoint = apps.get_model("webhooks", "WebhookEndpoint")
    # A plaintext key fails Fernet's check and reads back as itself (the field's fallback); saving encrypts it.
    # An already encrypted key decrypts and is encrypted again, so a rerun is harmless.
    for endpoint in WebhookEndpoint.objects.only("pk", "signing_secret").iterator():
        endpoint.save(update_fields=["signing_secret"])


def decrypt_existing(apps, schema_editor):
    WebhookEndpoint = apps.get_model("webhooks", "WebhookEndpoint")
    table = WebhookEndpoint._meta.db_table
    with schema_editor.connection.cursor() as cursor:
        for pk, secret in WebhookEndpoint.objects.values_list("pk", "signing_secret").iterator():
            # Raw SQL: the encrypted field would encrypt the plaintext again on an ORM update.
            cursor.execute(f"UPDATE {table} SET signing_secret = %s WHERE id = %s", [secret, pk])


class Migration(migrations.Migration):

    dependencies = [
        ('webhooks', '0002_endpoint_deleted_at'),
    ]

    operations = [
        migrations.AlterField(
            model_name='webhookendpoint',
            name='signing_secret',
            field=encrypted_fields.fields.EncryptedCharField(default=apps.webhooks.models.new_signing_secret, max_length=128),
        ),
        migrations.RunPython(encrypt_existing, decrypt_existing),
    ]

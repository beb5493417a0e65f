"""Encrypt every secret at rest again with the current key, after SECRET_KEY or FIELD_ENCRYPTION_SALT changed.

Rotation: put the new key in SECRET_KEY and the old one in SECRET_KEY_FALLBACKS, restart, run this, then drop the
fallback. Values are read with any of the keys and written with the first.
"""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from apps.payments.models import StripeWebhookSecret
from apps.webhooks.models import WebhookEndpoint

FERNET_PREFIX = "gAAAAA"  # every Fernet token starts so (version byte and timestamp); no secret the hub issues does

ENCRYPTED = ((WebhookEndpoint, "signing_secret"), (StripeWebhookSecret, "secret"))


class Command(BaseCommand):
    help = "Encrypt webhook signing keys and Stripe endpoint secrets again with the current SECRET_KEY."

    def handle(self, *args, **options) -> None:
        with transaction.atomic():
            for model, field in ENCRYPTED:
                rows = list(model.objects.select_for_update().only("pk", field))
                # The field hands back the stored token when no key opens it: saving that would encrypt the token.
                unreadable = [row.pk for row in rows if (getattr(row, field) or "").startswith(FERNET_PREFIX)]
                if unreadable:
                    raise CommandError(
                        f"{model._meta.label} {unreadable}: no key in SECRET_KEY / SECRET_KEY_FALLBACKS opens these; "
                        "nothing was changed"
                    )
                for row in rows:
                    row.save(update_fields=[field])
                self.stdout.write(f"{model._meta.label}.{field}: {len(rows)} re-encrypted")

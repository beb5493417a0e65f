from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    """The admin list's indexes (see Invoice.Meta), built concurrently: closes keep writing meanwhile."""

    atomic = False

    dependencies = [
        ("invoicing", "0013_wallet_paid_credit"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="invoice",
            index=models.Index(fields=["issuing_date", "id"], name="invoice_issuing_date_idx"),
        ),
        AddIndexConcurrently(
            model_name="invoice",
            index=models.Index(fields=["total_amount_cents", "id"], name="invoice_total_idx"),
        ),
    ]

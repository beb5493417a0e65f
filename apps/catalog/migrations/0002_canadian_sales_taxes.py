"""Hub-wide Canadian sales taxes. Codes match apps/catalog/taxes.py (and Odoo l10n_ca's tax xml ids).

Values are copied, not imported: a migration must keep meaning what it meant when written.
"""
from decimal import Decimal

from django.db import migrations

TAXES = [
    ("gst_sale_tax_5", "5% GST", "5", ["AB", "BC", "MB", "NT", "NU", "QC", "SK", "YT"]),
    ("hst_sale_tax_13", "13% HST", "13", ["ON"]),
    ("hst_sale_tax_14", "14% HST (NS)", "14", ["NS"]),
    ("hst_sale_tax_15", "15% HST", "15", ["NB", "NL", "PE"]),
    ("pst_sale_tax_6", "6% PST SK", "6", ["SK"]),
    ("pst_sale_tax_7_bc", "7% PST BC", "7", ["BC"]),
    ("pst_sale_tax_7_mb", "7% RST MB", "7", ["MB"]),
    ("qst_sale_tax_9975", "9.975% QST", "9.975", ["QC"]),
]


def create_taxes(apps, schema_editor):
    Tax = apps.get_model("catalog", "Tax")
    for code, name, rate, provinces in TAXES:
        Tax.objects.get_or_create(
            code=code, defaults={"name": name, "rate": Decimal(rate), "country": "CA", "provinces": provinces}
        )


def remove_taxes(apps, schema_editor):
    Tax = apps.get_model("catalog", "Tax")
    Tax.objects.filter(code__in=[code for code, *_ in TAXES], service__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]
    operations = [migrations.RunPython(create_taxes, remove_taxes)]

"""Taxes become dated data: a component (GST/HST/PST/QST) and a valid_from per hub-wide row.

Nova Scotia's HST was 15% until 2025-03-31 and 14% from 2025-04-01: both rows list NS, the 14% one from that
date. Values are written out, not imported: a migration must keep meaning what it meant when written.
"""
import datetime

from django.db import migrations, models

COMPONENTS = {
    "gst_sale_tax_5": "gst",
    "hst_sale_tax_13": "hst",
    "hst_sale_tax_14": "hst",
    "hst_sale_tax_15": "hst",
    "pst_sale_tax_6": "pst",
    "pst_sale_tax_7_bc": "pst",
    "pst_sale_tax_7_mb": "pst",
    "qst_sale_tax_9975": "qst",
}


def date_taxes(apps, schema_editor):
    Tax = apps.get_model("catalog", "Tax")
    for code, component in COMPONENTS.items():
        Tax.objects.filter(code=code, service__isnull=True).update(component=component)
    hst_15 = Tax.objects.filter(code="hst_sale_tax_15", service__isnull=True).first()
    if hst_15 is not None and "NS" not in hst_15.provinces:
        hst_15.provinces = [*hst_15.provinces, "NS"]
        hst_15.save(update_fields=["provinces"])
    Tax.objects.filter(code="hst_sale_tax_14", service__isnull=True).update(valid_from=datetime.date(2025, 4, 1))


def undate_taxes(apps, schema_editor):
    Tax = apps.get_model("catalog", "Tax")
    hst_15 = Tax.objects.filter(code="hst_sale_tax_15", service__isnull=True).first()
    if hst_15 is not None:
        hst_15.provinces = [province for province in hst_15.provinces if province != "NS"]
        hst_15.save(update_fields=["provinces"])


class Migration(migrations.Migration):
    dependencies = [("catalog", "0002_canadian_sales_taxes")]

    operations = [
        migrations.AddField(
            model_name="tax",
            name="component",
            field=models.CharField(
                blank=True, choices=[("gst", "GST"), ("hst", "HST"), ("pst", "PST"), ("qst", "QST")],
                help_text="GST, HST, PST or QST: one of each is in force per province on a date", max_length=8,
            ),
        ),
        migrations.AddField(
            model_name="tax",
            name="valid_from",
            field=models.DateField(blank=True, help_text="first issuing date it applies to; empty = always", null=True),
        ),
        migrations.RunPython(date_taxes, undate_taxes),
    ]

"""Canada's sales taxes as the catalog migrations seed them (0002, 0003), for pure tests that cannot read the
database (unit tests, hypothesis strategies built at import). `test_taxes` checks this equals the seeded rows."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

from apps.catalog.taxes import ScheduledTax, TaxRate, TaxSchedule

GST_5 = TaxRate("gst_sale_tax_5", "5% GST", Decimal("5"))
HST_13 = TaxRate("hst_sale_tax_13", "13% HST", Decimal("13"))
HST_14 = TaxRate("hst_sale_tax_14", "14% HST (NS)", Decimal("14"))
HST_15 = TaxRate("hst_sale_tax_15", "15% HST", Decimal("15"))
PST_6_SK = TaxRate("pst_sale_tax_6", "6% PST SK", Decimal("6"))
PST_7_BC = TaxRate("pst_sale_tax_7_bc", "7% PST BC", Decimal("7"))
PST_7_MB = TaxRate("pst_sale_tax_7_mb", "7% RST MB", Decimal("7"))
QST_9975 = TaxRate("qst_sale_tax_9975", "9.975% QST", Decimal("9.975"))

CANADA = TaxSchedule([
    ScheduledTax(GST_5, "gst", "CA", ("AB", "BC", "MB", "NT", "NU", "QC", "SK", "YT"), None),
    ScheduledTax(HST_13, "hst", "CA", ("ON",), None),
    ScheduledTax(HST_14, "hst", "CA", ("NS",), date(2025, 4, 1)),
    ScheduledTax(HST_15, "hst", "CA", ("NB", "NL", "PE", "NS"), None),
    ScheduledTax(PST_6_SK, "pst", "CA", ("SK",), None),
    ScheduledTax(PST_7_BC, "pst", "CA", ("BC",), None),
    ScheduledTax(PST_7_MB, "pst", "CA", ("MB",), None),
    ScheduledTax(QST_9975, "qst", "CA", ("QC",), None),
])
PROVINCES = CANADA.provinces("CA")
TODAY = date(2026, 12, 1)


def rates(province: str, on: date = TODAY) -> list[TaxRate]:
    return CANADA.rates_for("CA", province, on=on)


PROVINCE_TAXES = {province: rates(province) for province in PROVINCES}

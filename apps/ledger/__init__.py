"""Ledger: posting invoices, refunds and payments to Odoo."""

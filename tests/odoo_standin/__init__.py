"""Odoo 19 stand-in server for tests (see server.py)."""

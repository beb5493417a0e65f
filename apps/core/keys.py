"""Deterministic key formats that more than one app reads, kept in the lowest layer so that reading one never makes
an app import the app that writes it (tests/unit/test_layers.py)."""

# A wallet top-up's fee (apps/invoicing/wallets.py): the wallet transaction's lago_id follows. The ledger posts such
# a fee to the prepayment account instead of revenue (apps/ledger/services.py).
WALLET_FEE_PREFIX = "wallet_transaction:"

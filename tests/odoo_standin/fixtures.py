"""Pytest fixtures for the Odoo stand-in; import them into a test module or list this module in pytest_plugins."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from apps.ledger.odoo_client import OdooClient, OdooConfig, get_odoo_client
from tests.odoo_standin.server import OdooStandIn


@pytest.fixture
def odoo_standin() -> Iterator[OdooStandIn]:
    """A fresh stand-in on 127.0.0.1 (free port), stopped after the test."""
    standin = OdooStandIn().start()
    try:
        yield standin
    finally:
        standin.stop()


@pytest.fixture(params=["json2", "xmlrpc"])
def odoo_config(request: pytest.FixtureRequest, odoo_standin: OdooStandIn) -> OdooConfig:
    """Config for the stand-in, once per transport."""
    return OdooConfig(url=odoo_standin.url, database=odoo_standin.database, username=odoo_standin.login,
                      api_key=odoo_standin.api_key, transport=request.param, timeout_seconds=2.0)


@pytest.fixture
def odoo_client(odoo_config: OdooConfig) -> OdooClient:
    return get_odoo_client(odoo_config)

"""The migration tests' Lago: the stand-in on 127.0.0.1, serving the NexaCloud fixture organisation."""
from __future__ import annotations

import pytest

from tests.lago_standin import LagoStandIn
from tests.lago_standin.fixtures import nexacloud_org


@pytest.fixture
def lago():
    with LagoStandIn(org=nexacloud_org()) as standin:
        yield standin


@pytest.fixture
def nexacloud(service_factory):
    return service_factory("nexacloud", "NexaCloud").service


@pytest.fixture
def run_import(lago, nexacloud):
    from apps.migration.importer import lago_import

    def run(**options):
        options.setdefault("per_page", 100)
        return lago_import(service=nexacloud, api_url=lago.url, api_key=lago.api_key, **options)

    return run

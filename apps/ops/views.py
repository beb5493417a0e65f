"""Liveness, readiness and metrics for load balancers, orchestrators and Prometheus (docs/deployment.md).

Plain Django views, outside the Lago API: no API key, no Lago error bodies. `/healthz` says the process answers;
`/readyz` that it can do its work (database reachable and migrated, broker reachable when one is configured);
`/metrics` needs `METRICS_TOKEN` as a bearer token (404 without it: not advertised)."""
from __future__ import annotations

import hmac
import os

from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from .metrics import HubCollector

_migrated = False  # once true, stays true for the process: migrations only ever get applied


def _database_ready() -> str | None:
    global _migrated
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        if not _migrated:
            executor = MigrationExecutor(connection)
            if executor.migration_plan(executor.loader.graph.leaf_nodes()):
                return "database has unapplied migrations"
            _migrated = True
    except Exception as exc:  # any failure to reach or read the database means not ready
        return f"database: {exc.__class__.__name__}"
    return None


def _broker_ready() -> str | None:
    if not settings.CELERY_BROKER_URL:
        return None  # tasks run in-process
    from nexabilling.celery import app

    try:
        with app.connection_for_write() as broker:
            broker.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:  # kombu raises per transport
        return f"broker: {exc.__class__.__name__}"
    return None


@never_cache
@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> HttpResponse:
    problems = [problem for problem in (_database_ready(), _broker_ready()) if problem]
    if problems:
        return JsonResponse({"status": "unavailable", "problems": problems}, status=503)
    return JsonResponse({"status": "ok"})


_hub_registry = CollectorRegistry(auto_describe=False)
_hub_registry.register(HubCollector())


def _process_registry():
    """This process's request metrics, or every gunicorn worker's when prometheus_client's multiprocess mode is
    on (PROMETHEUS_MULTIPROC_DIR: each worker writes its own files, any worker sums them)."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not token or not hmac.compare_digest(given.encode(), token.encode()):
        return HttpResponse(status=404)
    body = generate_latest(_process_registry()) + generate_latest(_hub_registry)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)

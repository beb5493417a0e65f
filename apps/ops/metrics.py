"""The hub's Prometheus figures (`/metrics`), next to django-prometheus' request and process metrics.

A collector, not counters kept in memory: the figures are the database's (`selectors.ops_figures`), read when
Prometheus scrapes, so N gunicorn processes and the workers that change them need no shared state."""
from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from apps.usage.models import UsageArchive

from .selectors import Backlog, ops_figures


def _backlog_families(name: str, what: str, backlog: Backlog):
    rows = GaugeMetricFamily(f"nexabilling_{name}", f"{what} by status", labels=["status"])
    for status, count in sorted(backlog.by_status.items()):
        rows.add_metric([status], count)
    yield rows
    yield GaugeMetricFamily(f"nexabilling_{name}_lag_seconds",
                            f"How long the oldest {what.lower()} due now has waited (0: none due)",
                            value=backlog.oldest_due_seconds)


class HubCollector(Collector):
    def collect(self):
        figures = ops_figures()
        yield GaugeMetricFamily("nexabilling_beat_leaders", "Celery beats holding the beat lock (1: scheduling; "
                                "0: no beat runs the periodic jobs)", value=figures.beat_leaders)
        yield CounterMetricFamily("nexabilling_usage_rows_inserted", "Usage rows written (PostgreSQL's table "
                                  "statistics; rate() gives the ingestion rate)", value=figures.usage_rows_inserted)
        yield from _backlog_families("webhook_deliveries", "Webhook deliveries", figures.webhooks)
        yield from _backlog_families("ledger_postings", "Ledger postings", figures.postings)
        attempts = GaugeMetricFamily("nexabilling_payment_attempts", "Payment attempts by status", labels=["status"])
        for status, count in sorted(figures.payment_attempts.items()):
            attempts.add_metric([status], count)
        yield attempts
        archives = GaugeMetricFamily("nexabilling_usage_archive_months", "Months of raw usage by archive status "
                                     "(archived; skipped: unbilled usage or a refusal, see the admin)", labels=["status"])
        for status in UsageArchive.Status.values:  # every status, 0 included, so an alert has a series to read
            archives.add_metric([status], figures.usage_archive_months.get(status, 0))
        yield archives
        close = figures.close
        yield GaugeMetricFamily("nexabilling_close_running", "1 while a period close runs", value=int(close.running))
        yield GaugeMetricFamily("nexabilling_close_running_seconds", "How long the running close has run",
                                value=close.running_seconds)
        yield GaugeMetricFamily("nexabilling_close_customers", "Customers examined by the latest close",
                                value=close.customers)
        yield GaugeMetricFamily("nexabilling_close_invoices", "Invoices written by the latest close",
                                value=close.invoices)
        yield GaugeMetricFamily("nexabilling_close_failures", "Customers the latest close failed to bill",
                                value=close.failures)
        yield GaugeMetricFamily("nexabilling_close_last_finished_timestamp_seconds",
                                "When the last close finished (Unix time; 0: never)",
                                value=close.last_finished_at.timestamp() if close.last_finished_at else 0)

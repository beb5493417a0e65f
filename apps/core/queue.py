"""Hand a Celery task its arguments by the task's name, now or once the caller's transaction commits.

A service enqueues its app's task and that task calls the service back (STYLE §5), so importing the task into
the service would make the two modules import each other. Celery sends a task by name on the wire anyway; these
helpers look the task up by that name when they send. Each app whose services enqueue imports its tasks module in
`AppConfig.ready`, so every name is registered in web processes and tests (eager) as in workers, and
tests/unit/test_layers.py checks each name used names a task.
"""
from __future__ import annotations

from celery import current_app
from django.db import transaction


def task_send(name: str, *args) -> None:
    """Send the task registered as `name` (e.g. "apps.ledger.tasks.ledger_posting_send_task") with `args`."""
    current_app.tasks[name].delay(*args)


def task_send_on_commit(name: str, *args, robust: bool = False) -> None:
    """`task_send` once the current transaction commits (never if it rolls back; at once outside a transaction).

    `robust`: a failure to send is logged, not raised to a caller whose change is already committed (for rows a
    sweeper re-sends anyway).
    """
    transaction.on_commit(lambda: task_send(name, *args), robust=robust)

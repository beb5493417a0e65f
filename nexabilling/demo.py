"""`make demo`: the hub with demo data on the embedded PostgreSQL, and everything stopped together.

    python -m nexabilling.demo          # PORT (default 8000); PUBLIC_BASE_URL follows it unless set;
                                        # DEMO_SERVE_ONLY=true skips migrate and seed_demo (a database set up before)
    python -m nexabilling.demo stop     # what `make demo-stop` runs: stop a running demo and its PostgreSQL

This process owns the embedded server (started here; the steps below inherit DATABASE_URL and never start their
own). It runs migrate, seed_demo and runserver one after the other and, however it ends (Ctrl-C, SIGTERM to it, to
make or to the server, the server exiting), stops the server and the PostgreSQL. make does not pass SIGTERM on to
its children, so this process also watches its parent and stops when make is gone.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from nexabilling import embedded_db

BASE_DIR = Path(__file__).resolve().parent.parent
PID_FILE = BASE_DIR / "var" / "demo.pid"
POLL_SECONDS = 0.5
SERVER_GRACE_SECONDS = 10


class _Stop(Exception):
    def __init__(self, signum: int, reason: str = ""):
        self.signum, self.reason = signum, reason or signal.Signals(signum).name


def _say(message: str) -> None:
    print(f"demo: {message}", flush=True)


def _raise_stop(signum, frame) -> None:
    raise _Stop(signum)


def _port() -> int:
    raw = os.environ.get("PORT", "8000")
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        sys.exit(f"demo: PORT must be a TCP port number (1-65535), got {raw!r}")
    return int(raw)


def _step(argv: list[str]) -> subprocess.Popen:
    """Start a child in its own process group (a Ctrl-C reaches it through us, in order)."""
    return subprocess.Popen(argv, cwd=BASE_DIR, start_new_session=True)


def _wait(child: subprocess.Popen, parent: int) -> int:
    """Wait for `child`; raise _Stop if the process that started us (make) has gone."""
    while True:
        try:
            return child.wait(timeout=POLL_SECONDS)
        except subprocess.TimeoutExpired:
            if os.getppid() != parent:
                raise _Stop(signal.SIGHUP, "the process that started the demo has gone") from None


def _terminate(child: subprocess.Popen | None) -> None:
    if child is None or child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(timeout=SERVER_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _postgres_stop() -> None:
    others = embedded_db.embedded_holders()
    if others:
        _say(f"PostgreSQL left running: processes {others} still use it (`make demo-stop` stops it anyway)")
    elif embedded_db.embedded_stop():
        _say("PostgreSQL stopped")


def run() -> int:
    port = _port()
    os.environ["PORT"] = str(port)
    os.environ.setdefault("PUBLIC_BASE_URL", f"http://127.0.0.1:{port}")
    os.environ.setdefault("DEBUG", "true")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nexabilling.settings")
    parent = os.getppid()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_stop)

    uses_embedded = not os.environ.get("DATABASE_URL", "").strip()
    child: subprocess.Popen | None = None
    PID_FILE.parent.mkdir(parents=True, exist_ok=True)
    PID_FILE.write_text(str(os.getpid()))
    try:
        fresh = uses_embedded and not (embedded_db.EMBEDDED_DATA_DIR / "PG_VERSION").exists()
        if uses_embedded:
            where = embedded_db.EMBEDDED_DATA_DIR
            where = where.relative_to(BASE_DIR) if where.is_relative_to(BASE_DIR) else where
            _say(f"starting the embedded PostgreSQL in {where}" + (" (first run: creating it, ~10 s)" if fresh else ""))
            embedded_db.ensure_database_url()
        manage = [sys.executable, "manage.py"]
        steps = [
            ("applying database migrations" + (" (first run: a minute or two, dj-stripe has many)" if fresh else ""),
             manage + ["migrate", "--no-input"]),
            ("loading the demo data and billing the periods that have ended", manage + ["seed_demo"]),
        ]
        if os.environ.get("DEMO_SERVE_ONLY", "").lower() in ("1", "true", "yes"):
            steps = []
        for message, argv in steps:
            _say(message)
            child = _step(argv)
            code = _wait(child, parent)
            child = None
            if code != 0:
                _say(f"step failed (exit {code}); stopping")
                return code
        _say(f"serving on {os.environ['PUBLIC_BASE_URL']} (Ctrl-C or `make demo-stop` stops the hub and PostgreSQL)")
        child = _step(manage + ["runserver", "--noreload", f"127.0.0.1:{port}"])
        code = _wait(child, parent)
        child = None
        _say(f"the server exited ({code})")
        return 128 - code if code < 0 else code  # killed by a signal: the shell's convention
    except _Stop as stop:
        _say(f"stopping ({stop.reason})")
        return 128 + stop.signum
    finally:
        # Signals now would interrupt the clean-up itself; it is short and bounded.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        _terminate(child)
        if uses_embedded:
            _postgres_stop()
        PID_FILE.unlink(missing_ok=True)


def stop() -> int:
    """Stop a running demo (SIGTERM; it stops its PostgreSQL), then any embedded PostgreSQL still running."""
    try:
        pid = int(PID_FILE.read_text())
    except (OSError, ValueError):
        pid = None
    if pid is not None:
        try:
            os.kill(pid, signal.SIGTERM)
            _say(f"stopping the demo (pid {pid})")
            deadline = time.monotonic() + SERVER_GRACE_SECONDS + 35
            while time.monotonic() < deadline:
                os.kill(pid, 0)
                time.sleep(0.2)
        except ProcessLookupError:
            pass
        PID_FILE.unlink(missing_ok=True)
    if embedded_db.embedded_stop():
        _say("PostgreSQL stopped")
    elif pid is None:
        _say("no demo running")
    return 0


if __name__ == "__main__":
    sys.exit(stop() if sys.argv[1:] == ["stop"] else run())

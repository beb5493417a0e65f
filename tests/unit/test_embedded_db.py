"""What `make demo` and `make demo-stop` rely on to stop the embedded PostgreSQL and nothing else."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from nexabilling import embedded_db


@pytest.fixture
def pgdata(tmp_path, monkeypatch):
    monkeypatch.setattr(embedded_db, "EMBEDDED_DATA_DIR", tmp_path)
    return tmp_path


def test_a_postmaster_pid_naming_another_program_is_not_stopped(pgdata):
    # A crash leaves postmaster.pid behind; its pid may now belong to anything (here: this test's python).
    (pgdata / "postmaster.pid").write_text(f"{os.getpid()}\n{pgdata}\n")
    assert embedded_db.embedded_pid() is None
    assert embedded_db.embedded_stop() is False  # and nothing was signalled: this process is still here


def test_no_server_when_there_is_no_postmaster_pid(pgdata):
    assert embedded_db.embedded_pid() is None
    assert embedded_db.embedded_stop() is False


def test_holders_are_the_live_processes_other_than_this_one(pgdata):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a process killed before its exit hook ran stays listed
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (pgdata / ".handle_pids.json").write_text(json.dumps([gone.pid, os.getpid(), alive.pid]))
        assert embedded_db.embedded_holders() == [alive.pid]
    finally:
        alive.kill()
        alive.wait()

"""However many `celery beat` processes run, one schedules (apps/core/beat.py, issue 22).

Real beat processes against the test database: a probe entry due every second, sent to an in-memory broker (the
message goes nowhere; what counts is the beat's own "Sending due task" log line). A second beat started beside a
running one sends nothing; once the first is killed (SIGKILL: no clean-up, as a crashed machine), the second takes
over. Without the guard (`django_celery_beat`'s own scheduler), both beats send every probe: the control at the end.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.parse
from datetime import datetime
from pathlib import Path

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[3]
BOUND = 90  # seconds allowed for each wait on a loaded machine; never reached when all is well
PROBE = "Sending due task beat-probe"


def _test_database_url() -> str:
    parts = urllib.parse.urlsplit(os.environ["DATABASE_URL"])
    return urllib.parse.urlunsplit(parts._replace(path="/" + urllib.parse.quote(connection.settings_dict["NAME"])))


class Beat:
    def __init__(self, tmp_path: Path, name: str, scheduler: str):
        self.log = tmp_path / f"{name}.log"
        env = {**os.environ, "DATABASE_URL": _test_database_url(), "CELERY_BROKER_URL": "memory://",
               "BEAT_STANDBY_SECONDS": "1", "DEBUG": "true"}
        env.pop("NEXA_TEST_DB_NAME", None)
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "nexabilling", "beat", "-l", "info", "--max-interval", "1",
                 "-S", scheduler, "--pidfile=", "-s", str(tmp_path / f"{name}-schedule")],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def sent(self) -> int:
        return self.text().count(PROBE)

    def sent_at(self) -> list[datetime]:
        # "[2026-12-05 02:25:31,869: INFO/MainProcess] Scheduler: Sending due task beat-probe ..."
        return [datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f") for line in self.text().splitlines()
                if PROBE in line]

    def wait_for(self, condition, what: str) -> None:
        deadline = time.monotonic() + BOUND
        while not condition():
            assert self.process.poll() is None, f"beat exited while waiting for {what}:\n{self.text()[-3000:]}"
            assert time.monotonic() < deadline, f"no {what} within {BOUND}s:\n{self.text()[-3000:]}"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)


@pytest.fixture
def beats(tmp_path):
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    every_second = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="beat-probe", task="tests.beat_probe", interval=every_second)
    started: list[Beat] = []

    def start(name: str, scheduler: str = "apps.core.beat:GuardedScheduler") -> Beat:
        beat = Beat(tmp_path, name, scheduler)
        started.append(beat)
        return beat

    yield start
    for beat in started:
        beat.stop()


def test_a_second_beat_stands_by_and_takes_over_when_the_first_dies(beats):
    first = beats("first")
    first.wait_for(lambda: first.sent() >= 2, "probe sent by the first beat")
    second = beats("second")
    second.wait_for(lambda: "standing by" in second.text(), "standby of the second beat")
    sent_before = first.sent()
    first.wait_for(lambda: first.sent() >= sent_before + 3, "probes while the second stands by")
    assert second.sent() == 0, second.text()[-3000:]

    first.stop()
    second.wait_for(lambda: second.sent() >= 2, "probes sent by the second beat after the first died")
    assert "holding the beat lock" in second.text()
    # Never twice for one due time, the takeover included: the probe is due every second.
    sends = sorted(first.sent_at() + second.sent_at())
    doubles = [(a, b) for a, b in zip(sends, sends[1:]) if (b - a).total_seconds() < 0.5]
    assert not doubles, doubles


def test_control_without_the_guard_both_beats_send(beats):
    """What the guard prevents: django-celery-beat's own scheduler in two processes sends every probe twice."""
    first = beats("first", "django_celery_beat.schedulers:DatabaseScheduler")
    first.wait_for(lambda: first.sent() >= 1, "probe sent by the first beat")
    second = beats("second", "django_celery_beat.schedulers:DatabaseScheduler")
    second.wait_for(lambda: second.sent() >= 2, "probes sent by the second beat beside the first")
    assert first.process.poll() is None

"""A bad setting fails at start with a message naming the variable."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _start(env_overrides: dict) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_overrides}
    code = "import django; django.setup()"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "variable,value",
    [
        ("DEBUG", "maybe"),
        ("INVOICE_GRACE_PERIOD_DAYS", "three"),
        ("ODOO_TRANSPORT", "soap"),
        ("DATABASE_URL", "mysql://u@h/db"),
        ("PAYMENT_RETRY_DAYS", "1,x"),
    ],
)
def test_bad_value_names_the_variable(variable, value):
    result = _start({variable: value, "DJANGO_SETTINGS_MODULE": "nexabilling.settings"})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert variable in result.stderr


def test_missing_secret_key_fails_outside_debug():
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    env["DEBUG"] = "false"
    result = subprocess.run([sys.executable, "-c", "import django; django.setup()"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_behind_pgbouncer_turns_off_server_side_prepared_statements_and_cursors():
    code = ("import django; django.setup(); from django.db import connection; "
            "print(connection.get_connection_params().get('prepare_threshold', 'absent'), "
            "connection.settings_dict.get('DISABLE_SERVER_SIDE_CURSORS', False))")
    # Django's psycopg 3 backend prepares nothing unless asked (prepare_threshold None); the flag keeps it so.
    for flag, expected in (("true", "None True"), ("false", "None False")):
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "nexabilling.settings", "DATABASE_BEHIND_PGBOUNCER": flag}
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().splitlines()[-1] == expected

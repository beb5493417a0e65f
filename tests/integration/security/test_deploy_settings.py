"""Production settings come from the environment, and Django's deploy checks pass with production values."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "k7Qm2vX9pL4sR8tW1yB6nC3fH5jD0gZ-aE7uI2oP9qT4wS6xV1bN8mK3lJ5hG0fD",
    "ALLOWED_HOSTS": "billing.nexa.example",
    "PUBLIC_BASE_URL": "https://billing.nexa.example",
    "CSRF_TRUSTED_ORIGINS": "https://ops.nexa.example",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "SECURE_HSTS_PRELOAD": "true",
    "TRUST_X_FORWARDED_PROTO": "true",
}
# The suite turns these off for its plain-HTTP servers (tests/bootstrap.py), and the browser tests allow Django's
# ORM under Playwright's event loop (tests/browser/conftest.py); production leaves them all unset.
UNSET = (
    "SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_HSTS_SECONDS",
    "DJANGO_ALLOW_ASYNC_UNSAFE",
)


def _env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    return {**env, **PRODUCTION, **overrides}


def _deploy_check(env: dict[str, str]) -> subprocess.CompletedProcess:
    # Every check, not only the `security` tag: the OpenAPI document's warnings count too (issue 17).
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def test_check_deploy_is_clean_with_production_values():
    result = _deploy_check(_env())
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_names_what_an_insecure_environment_lacks():
    result = _deploy_check(_env(SECURE_SSL_REDIRECT="false", SESSION_COOKIE_SECURE="false",
                                CSRF_COOKIE_SECURE="false", SECURE_HSTS_SECONDS="0"))
    assert result.returncode != 0
    for check_id in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert check_id in result.stderr, check_id


def test_production_values_are_read_from_the_environment():
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; print(json.dumps({"
        "'ssl': s.SECURE_SSL_REDIRECT, 'hsts': s.SECURE_HSTS_SECONDS, 'sub': s.SECURE_HSTS_INCLUDE_SUBDOMAINS,"
        "'preload': s.SECURE_HSTS_PRELOAD, 'session': s.SESSION_COOKIE_SECURE, 'csrf': s.CSRF_COOKIE_SECURE,"
        "'origins': s.CSRF_TRUSTED_ORIGINS, 'proxy': list(s.SECURE_PROXY_SSL_HEADER)}))"
    )
    env = _env(DJANGO_SETTINGS_MODULE="nexabilling.settings")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "ssl": True, "hsts": 31_536_000, "sub": True, "preload": True, "session": True, "csrf": True,
        "origins": ["https://ops.nexa.example", "https://billing.nexa.example"],
        "proxy": ["HTTP_X_FORWARDED_PROTO", "https"],
    }

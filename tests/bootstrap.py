"""Loaded as a pytest plugin (-p tests.bootstrap) before pytest-django reads the settings.

It sets the test environment and, when DATABASE_URL is unset, starts the embedded
PostgreSQL so that the suite passes on a laptop with nothing installed.
"""
from __future__ import annotations

import os
import warnings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nexabilling.settings")
os.environ.setdefault("SECRET_KEY", "test-secret-key")
# The suite speaks plain HTTP to servers on 127.0.0.1, so the HTTPS-only defaults of a DEBUG-off hub are off here;
# tests/integration/security/test_deploy_settings.py checks the production values.
for name in ("SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE"):
    os.environ.setdefault(name, "false")
# Test receivers listen on 127.0.0.1, which webhooks refuse unless allowed (apps/webhooks/destinations.py);
# tests/integration/webhooks/test_destinations.py checks the refusal with an empty allow-list.
os.environ.setdefault("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1")
os.environ.pop("CELERY_BROKER_URL", None)  # tests run tasks in-process unless a test says otherwise
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from nexabilling.embedded_db import ensure_database_url

    ensure_database_url()

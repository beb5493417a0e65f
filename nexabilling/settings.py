"""NexaBilling settings: everything from the environment, validated at start.

A bad value fails at start with ImproperlyConfigured naming the variable. No I/O here:
the embedded database is started by manage.py / wsgi / the test conftest before Django
reads DATABASE_URL (nexabilling/embedded_db.py).
"""
from __future__ import annotations

import json
import os
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name)
    if value is None or value == "":
        if default is None:
            raise ImproperlyConfigured(f"{name} must be set")
        return default
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, got {value}")
    return value


def env_decimal(name: str, default: str) -> Decimal:
    raw = os.environ.get(name) or default
    try:
        return Decimal(raw)
    except InvalidOperation:
        raise ImproperlyConfigured(f"{name} must be a decimal number, got {raw!r}") from None


def env_int_list(name: str, default: str) -> list[int]:
    raw = os.environ.get(name) or default
    try:
        values = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be comma-separated integers, got {raw!r}") from None
    if any(value < 0 for value in values):
        raise ImproperlyConfigured(f"{name} must not contain negative values, got {raw!r}")
    return values


def env_json(name: str, default: dict) -> dict:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = json.loads(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a JSON object, got {raw!r}") from None
    if not isinstance(value, dict):
        raise ImproperlyConfigured(f"{name} must be a JSON object, got {raw!r}")
    return value


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default)
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", "insecure-dev-key-only-for-debug" if DEBUG else None)
# Former SECRET_KEYs, newest first, while a rotation completes: sessions signed and secrets encrypted with them still
# open (re-encrypt with `manage.py secrets_reencrypt`).
SECRET_KEY_FALLBACKS = [k.strip() for k in os.environ.get("SECRET_KEY_FALLBACKS", "").split(",") if k.strip()]
# Encrypted model fields (django-fernet-encrypted-fields: webhook signing keys, Stripe endpoint secrets) derive their
# Fernet key from SECRET_KEY with this salt (PBKDF2). The salt need not be secret; a list rotates it like the key.
SALT_KEY = [s.strip() for s in env_str("FIELD_ENCRYPTION_SALT", "nexabilling-fields-v1").split(",") if s.strip()]
ALLOWED_HOSTS = [h.strip() for h in env_str("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",") if h.strip()]
# Public base URL of the hub: links in webhooks, PDFs and Stripe redirects.
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
# Origins whose POSTs the admin accepts (scheme://host[:port]); the public base URL is always one of them.
CSRF_TRUSTED_ORIGINS = list(dict.fromkeys(
    [o.strip() for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()] + [PUBLIC_BASE_URL]
))

# HTTPS. Secure by default outside DEBUG: a production hub is reached over TLS only. Behind a proxy that terminates
# TLS, set TRUST_X_FORWARDED_PROTO=true (the proxy must overwrite X-Forwarded-Proto), or every request redirects.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
if env_bool("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    # django-unfold's templates and widgets first (they override the admin's); the site is the hub's own.
    "unfold.apps.BasicAppConfig",
    "unfold.contrib.filters",
    "unfold.contrib.forms",
    "apps.core.admin_config.NexaAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served by the hub (no CDN)
    "django_celery_beat",
    "apps.core.admin_config.StripeMirrorConfig",
    "axes",
    "apps.core",
    "apps.customers",
    "apps.catalog",
    "apps.subscriptions",
    "apps.usage",
    "apps.invoicing",
    "apps.payments",
    "apps.ledger",
    "apps.webhooks",
    "apps.integrity",
    "apps.migration",
    "apps.audit",
    "apps.dashboard",
    "apps.ops",
    "django_prometheus",
    "apps.api",
    # The money audit (apps/audit): triggers installed by migrate, context (user, URL, reason) per request.
    "pgtrigger",
    "pghistory",
]

MIDDLEWARE = [
    # First and last: django-prometheus times every request and counts responses by view and status (/metrics).
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Oversized bodies (413), NUL bytes and lone surrogates (422) refused for every /api/ endpoint at once.
    "apps.api.middleware.ApiInputGuard",
    # Each service's write requests, recorded for GET /api_logs after the response (apps/api/request_log.py).
    "apps.api.request_log.ApiRequestLog",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # After the session (an admin caller is known by its cookie), before anything that reads (auth, axes).
    "apps.core.replica.ReplicaReadsMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "pghistory.middleware.HistoryMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: it answers a locked-out login with 429 before the view runs.
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]
# /metrics answers only with this bearer token (404 otherwise, or when unset): Prometheus' scrape config holds it.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")

ROOT_URLCONF = "nexabilling.urls"
WSGI_APPLICATION = "nexabilling.wsgi.application"
# Largest request body the API reads (413 above it). A 1,000-event batch with a dozen realistic properties
# per event is ~0.6 MB (tests/api/test_bad_input.py builds one); 4 MiB leaves room for longer values.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("API_MAX_BODY_BYTES", 4 * 1024 * 1024, minimum=1024)
# Lago's paths have no trailing slash; a redirect would break POST clients.
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]


def _database_from_env(variable: str = "DATABASE_URL") -> dict:
    url = env_str(variable, "")
    if not url:
        raise ImproperlyConfigured(
            "DATABASE_URL must be set (manage.py and the test suite start an embedded PostgreSQL when it is unset)"
        )
    try:
        config = environ.Env.db_url_config(url)
    except Exception as exc:  # django-environ raises several types for a malformed URL
        raise ImproperlyConfigured(f"{variable} is not a valid database URL: {exc}") from None
    if config.get("ENGINE") != "django.db.backends.postgresql":
        raise ImproperlyConfigured(f"{variable} must point at PostgreSQL (postgres://...); other engines are unsupported")
    config["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0)
    config["CONN_HEALTH_CHECKS"] = True
    if env_bool("DATABASE_BEHIND_PGBOUNCER", False):
        # PgBouncer in transaction mode hands each transaction any server connection: server-side cursors (and
        # prepared statements, which Django's psycopg 3 backend leaves off unless OPTIONS ask) would name objects
        # another server connection does not have (docs/deployment.md).
        config.setdefault("OPTIONS", {})["prepare_threshold"] = None
        config["DISABLE_SERVER_SIDE_CURSORS"] = True
    # Parallel test runs on one server (developers' helpers, CI) need distinct test database names.
    test_name = os.environ.get("NEXA_TEST_DB_NAME")
    if test_name:
        config["TEST"] = {"NAME": test_name}
    return config


DATABASES = {"default": _database_from_env()}
# Optional read replica (apps/core/replica.py): safe API and admin requests read from it, except a caller's own
# recent writes (sticky for DATABASE_REPLICA_STICKY_SECONDS). Its sessions are read-only, so a misrouted write fails.
if env_str("DATABASE_REPLICA_URL", ""):
    DATABASES["replica"] = _database_from_env("DATABASE_REPLICA_URL")
    DATABASES["replica"]["TEST"] = {"MIRROR": "default"}  # a test run reads its own test database through it
    _replica_options = DATABASES["replica"].setdefault("OPTIONS", {})
    _replica_options["options"] = (_replica_options.get("options", "") + " -c default_transaction_read_only=on").strip()
DATABASE_ROUTERS = ["apps.core.replica.ReplicaRouter"]
DATABASE_REPLICA_STICKY_SECONDS = env_int("DATABASE_REPLICA_STICKY_SECONDS", 10, minimum=0)
# Django's cache holds only short-lived routing hints (replica stickiness): per process unless CACHE_URL names a
# shared Redis, which several web processes behind a replica need (docs/deployment.md).
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": env_str("CACHE_URL", "")}
    if env_str("CACHE_URL", "")
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Admin login (django-axes): after ADMIN_LOGIN_FAILURE_LIMIT wrong passwords for one username from one address,
# that pair is refused (429), right password included, until ADMIN_LOGIN_COOLOFF_MINUTES pass without an attempt
# (each attempt while locked starts the cool-off again: no guessing through a lock). Username and address together:
# a username alone would let anyone lock staff out, an address alone would lock out a whole office behind one NAT.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("ADMIN_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("ADMIN_LOGIN_COOLOFF_MINUTES", 30, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = True
# Its start-up banner goes to stdout on every manage.py command: noise in the output of scripts and `--json` benches.
AXES_VERBOSE = False

LANGUAGE_CODE = "en-ca"
TIME_ZONE = "America/Toronto"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["apps.api.auth.ServiceKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["apps.api.auth.IsService"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "apps.api.errors.lago_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "COERCE_DECIMAL_TO_STRING": True,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "NexaBilling API",
    "DESCRIPTION": "Lago-compatible billing API for Nexa services. Authenticate with `Authorization: Bearer <service key>`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Lago's error bodies on every operation and the response components (apps/api/openapi.py, schemas.yaml).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums", "apps.api.openapi.add_error_responses"],
    # pending/succeeded/failed: an invoice's payment status and a credit note's refund status are one choice set.
    "ENUM_NAME_OVERRIDES": {"CurrencyEnum": "apps.core.money.SUPPORTED_CURRENCIES",
                            "SettlementStatusEnum": "apps.api.serializers.invoices.SETTLEMENT_STATUSES"},
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Celery: unset broker = tasks run in-process (quickstart). The beat schedule lives in the database
# (django-celery-beat); CELERY_BEAT_SCHEDULE below is its source, synced on beat start.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
# The transport's own options as JSON, e.g. Redis' {"visibility_timeout": 3600}, or kombu's filesystem
# transport's folders (the test suite's workers share messages through a directory, no broker to install).
CELERY_BROKER_TRANSPORT_OPTIONS = env_json("CELERY_BROKER_TRANSPORT_OPTIONS", {})
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# django-celery-beat's scheduler behind a PostgreSQL advisory lock: however many beats run, one schedules
# (apps/core/beat.py). A session lock needs a direct connection: set BEAT_LOCK_DATABASE_URL behind PgBouncer.
CELERY_BEAT_SCHEDULER = "apps.core.beat:GuardedScheduler"
BEAT_LOCK_DATABASE_URL = os.environ.get("BEAT_LOCK_DATABASE_URL", "")
BEAT_STANDBY_SECONDS = env_int("BEAT_STANDBY_SECONDS", 5, minimum=1)
# Each sent entry's last run is saved at once, not every 3 minutes: a standby that takes over reads it and does
# not send again what the old leader just sent.
CELERY_BEAT_SYNC_EVERY = 1
CELERY_TIMEZONE = TIME_ZONE
# Named queues, so each kind of work gets its own workers (docs/deployment.md): a slow Odoo or a webhook receiver
# timing out never holds up the close or payment collection. Tasks of other apps go to the default queue.
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "apps.invoicing.tasks.*": {"queue": "close"},
    "apps.subscriptions.tasks.*": {"queue": "usage"},  # the change log that ingest's cached lookups read
    "apps.webhooks.tasks.*": {"queue": "webhooks"},
    "apps.ledger.tasks.*": {"queue": "ledger"},
    "apps.payments.tasks.*": {"queue": "payments"},
    # Archiving a month exports it for minutes: on its own queue, so the rollup and the change-log prune never wait.
    "apps.usage.tasks.usage_months_archive_due_task": {"queue": "usage-maintenance"},
    "apps.usage.tasks.*": {"queue": "usage"},
}
# Seconds ingest waits before checking a subscription's usage against its thresholds: one check for many batches.
USAGE_CHECK_DELAY_SECONDS = env_int("USAGE_CHECK_DELAY_SECONDS", 30, minimum=0)
CELERY_BEAT_SCHEDULE: dict = {}
# Invoicing (apps/invoicing/tasks.py): all three are idempotent, so a frequent schedule is safe.
CELERY_BEAT_SCHEDULE["invoicing-activate-due-subscriptions"] = {
    "task": "apps.invoicing.tasks.subscriptions_activate_due_task", "schedule": 300.0}
CELERY_BEAT_SCHEDULE["invoicing-close-periods"] = {"task": "apps.invoicing.tasks.periods_close_task", "schedule": 900.0}
CELERY_BEAT_SCHEDULE["invoicing-close-ranges-sweep"] = {
    "task": "apps.invoicing.tasks.close_ranges_sweep_task", "schedule": 60.0}
CELERY_BEAT_SCHEDULE["invoicing-finalize-due-drafts"] = {
    "task": "apps.invoicing.tasks.invoices_finalize_due_task", "schedule": 900.0}
# Usage checks (progressive billing) ingest asked for and a lost message left.
CELERY_BEAT_SCHEDULE["invoicing-usage-checks-sweep"] = {
    "task": "apps.invoicing.tasks.usage_checks_run_task", "schedule": 300.0}
# Wallets past their expiration_at are terminated (their balance is no longer consumed either way).
CELERY_BEAT_SCHEDULE["invoicing-expire-wallets"] = {"task": "apps.invoicing.tasks.wallets_expire_task", "schedule": 300.0}
# Recurring top-ups: interval rules once per local day, threshold rules as usage lowers the ongoing balance.
CELERY_BEAT_SCHEDULE["invoicing-wallet-top-ups"] = {
    "task": "apps.invoicing.tasks.wallets_recurring_top_up_task", "schedule": 300.0}
CELERY_BEAT_SCHEDULE["webhooks-sweep"] = {"task": "apps.webhooks.tasks.webhook_delivery_sweep_task", "schedule": 30.0}
# Payments (apps/payments/tasks.py): re-read open Stripe attempts (missed webhooks); dunning retries when due.
CELERY_BEAT_SCHEDULE["payments-pending-sweep"] = {"task": "apps.payments.tasks.payment_pending_sweep_task", "schedule": 600.0}
CELERY_BEAT_SCHEDULE["payments-retry-due"] = {"task": "apps.payments.tasks.payment_retry_due_task", "schedule": 900.0}
# Ledger (apps/ledger/tasks.py): post due postings in batches (lost messages, backoff retries, backlog).
CELERY_BEAT_SCHEDULE["ledger-sweep"] = {"task": "apps.ledger.tasks.ledger_sweep_task", "schedule": 60.0}
# Usage (apps/usage/tasks.py): fold new usage rows into the daily rollup that period close reads.
CELERY_BEAT_SCHEDULE["usage-rollup"] = {"task": "apps.usage.tasks.usage_rollup_advance_task", "schedule": 60.0}
# Monthly usage partitions for the next USAGE_PARTITIONS_AHEAD_MONTHS (idempotent; a missed day changes nothing).
CELERY_BEAT_SCHEDULE["usage-partitions-ahead"] = {
    "task": "apps.usage.tasks.usage_partitions_ensure_task", "schedule": crontab(hour=3, minute=10)}
# Billed months older than USAGE_ARCHIVE_AFTER_MONTHS: exported, checked, dropped (idempotent; an unbilled month waits).
CELERY_BEAT_SCHEDULE["usage-archive"] = {
    "task": "apps.usage.tasks.usage_months_archive_due_task", "schedule": crontab(hour=3, minute=40)}
# Subscriptions (apps/subscriptions/tasks.py): trim the change log that ingest's cached lookups check.
# Migration (apps/migration/tasks.py): relay the usage accepted during a dual run to Lago (idle otherwise).
CELERY_BEAT_SCHEDULE["migration-relay"] = {"task": "apps.migration.tasks.relay_due_task", "schedule": 15.0}
CELERY_BEAT_SCHEDULE["migration-reconcile"] = {
    "task": "apps.migration.tasks.reconcile_dual_runs_task", "schedule": 21600.0}  # 4 a day, each rerun complete
CELERY_BEAT_SCHEDULE["subscriptions-changes-prune"] = {
    "task": "apps.subscriptions.tasks.subscription_changes_prune_task", "schedule": 600.0}
# Integrity (apps/integrity/tasks.py): the billing invariants, recorded for staff once a day, at a quiet hour
# (a close in flight can show usage as unbilled for a moment). Hours of late usage allowed before it is stuck.
CELERY_BEAT_SCHEDULE["integrity-billing-check"] = {
    "task": "apps.integrity.tasks.billing_check_run_task", "schedule": crontab(hour=5, minute=40)}
INTEGRITY_LATE_USAGE_GRACE_HOURS = env_int("INTEGRITY_LATE_USAGE_GRACE_HOURS", 24, minimum=1)
# API logs (apps/audit, GET /api_logs): each service's write requests, kept this many days, pruned hourly; bodies
# past the size are stored as {"truncated": true, "bytes": n}, so a 1 MB import does not sit in the table for weeks.
# The services whose API key may change the organization (PUT /organizations, PUT /billing_entities/{code}):
# comma-separated codes; none by default, staff change it in the admin. It is every service's: what all invoices say.
ORGANIZATION_API_SERVICES = [code.strip() for code in os.environ.get("ORGANIZATION_API_SERVICES", "").split(",")
                             if code.strip()]
# Webhooks signed as Lago's `jwt` endpoints are: the RSA private key, PEM then base64 (Lago's LAGO_RSA_PRIVATE_KEY,
# e.g. `openssl genrsa 2048 | base64 -w0`); its public half is served at GET /webhooks/json_public_key. Unset: only
# hmac endpoints can be created. The JWT's `iss` is PUBLIC_BASE_URL (Lago: LAGO_API_URL).
WEBHOOK_JWT_PRIVATE_KEY = os.environ.get("WEBHOOK_JWT_PRIVATE_KEY", "")
API_LOG_RETENTION_DAYS = env_int("API_LOG_RETENTION_DAYS", 30, minimum=1)
API_LOG_MAX_BODY_BYTES = env_int("API_LOG_MAX_BODY_BYTES", 65536, minimum=0)
CELERY_BEAT_SCHEDULE["audit-api-logs-prune"] = {"task": "apps.audit.tasks.api_logs_prune_task", "schedule": 3600.0}

# Billing
NEXA_LEGAL_NAME = env_str("NEXA_LEGAL_NAME", "Nexa Systems Inc.")
NEXA_ADDRESS = env_str("NEXA_ADDRESS", "100 King Street West, Toronto, ON M5X 1A9, Canada")
NEXA_HST_NUMBER = env_str("NEXA_HST_NUMBER", "123456789 RT0001")
BILLING_ENTITY_CODE = env_str("BILLING_ENTITY_CODE", "nexa_systems")  # Lago's billing_entity_code: the hub bills as one entity
INVOICE_NUMBER_PREFIX = env_str("INVOICE_NUMBER_PREFIX", "NEXA")
INVOICE_GRACE_PERIOD_DAYS = env_int("INVOICE_GRACE_PERIOD_DAYS", 0, minimum=0)
# How long a customer portal link (GET /customers/{id}/portal_url) opens the portal, in seconds.
CUSTOMER_PORTAL_MAX_AGE_SECONDS = env_int("CUSTOMER_PORTAL_MAX_AGE_SECONDS", 86400, minimum=60)
# Period close: customers per batch transaction, and threads running batches (apps/invoicing/close.py).
INVOICE_CLOSE_BATCH_SIZE = env_int("INVOICE_CLOSE_BATCH_SIZE", 250, minimum=1)
INVOICE_CLOSE_WORKERS = env_int("INVOICE_CLOSE_WORKERS", 2, minimum=1)
# A close split over the `close` queue's workers (apps/invoicing/close/distributed.py): ranges of customers per
# run (1: one worker bills the whole close), and how long a worker's claim on a range lasts before the sweep hands
# it out again (a dead worker's range is billed by another after this; longer than a range takes).
INVOICE_CLOSE_RANGES = env_int("INVOICE_CLOSE_RANGES", 1, minimum=1)
INVOICE_CLOSE_RANGE_LEASE_SECONDS = env_int("INVOICE_CLOSE_RANGE_LEASE_SECONDS", 1800, minimum=1)
DEFAULT_CURRENCY = env_str("DEFAULT_CURRENCY", "CAD")
# Events may not be dated further in the future than this (clock skew allowance).
USAGE_MAX_FUTURE_SECONDS = env_int("USAGE_MAX_FUTURE_SECONDS", 86400, minimum=0)
# ... nor further back than this (and never before 1970): older usage no open period can bill is a unit mistake.
USAGE_MAX_PAST_DAYS = env_int("USAGE_MAX_PAST_DAYS", 3650, minimum=1)
# PostgreSQL work_mem for the period aggregate's transaction (apps/usage/aggregation.py).
USAGE_AGGREGATE_WORK_MEM_MB = env_int("USAGE_AGGREGATE_WORK_MEM_MB", 64, minimum=1)
# Monthly partitions of the usage table (apps/usage/partitions.py): months created ahead of the current one, and
# months of raw rows kept after a month ends before `usage_archive` may detach it (rollups and invoices stay).
USAGE_PARTITIONS_AHEAD_MONTHS = env_int("USAGE_PARTITIONS_AHEAD_MONTHS", 3, minimum=1)
USAGE_RAW_RETENTION_MONTHS = env_int("USAGE_RAW_RETENTION_MONTHS", 12, minimum=0)
USAGE_ARCHIVE_DIR = Path(env_str("USAGE_ARCHIVE_DIR", str(BASE_DIR / "var" / "usage-archive")))
# The beat's archiver (`usage-archive`) archives each fully billed month once it ended this many months ago (never
# sooner than USAGE_RAW_RETENTION_MONTHS); 0 turns it off. Its files go to USAGE_ARCHIVE_DIR: durable storage.
USAGE_ARCHIVE_AFTER_MONTHS = env_int("USAGE_ARCHIVE_AFTER_MONTHS", 13, minimum=0)
# How long partition DDL waits for its locks before giving up until the next run (ingest queues behind it meanwhile).
USAGE_PARTITION_LOCK_TIMEOUT_MS = env_int("USAGE_PARTITION_LOCK_TIMEOUT_MS", 5000, minimum=1)

# Stripe (dj-stripe). Test keys by default; live mode only when STRIPE_LIVE_MODE=true.
STRIPE_LIVE_MODE = env_bool("STRIPE_LIVE_MODE", False)
STRIPE_TEST_SECRET_KEY = env_str("STRIPE_TEST_SECRET_KEY", "sk_test_" + "0" * 24)
STRIPE_LIVE_SECRET_KEY = os.environ.get("STRIPE_LIVE_SECRET_KEY", "")
if STRIPE_LIVE_MODE and not STRIPE_LIVE_SECRET_KEY:
    raise ImproperlyConfigured("STRIPE_LIVE_SECRET_KEY must be set when STRIPE_LIVE_MODE=true")
# Pinned so that a stripe-python upgrade cannot silently change the API version.
STRIPE_API_VERSION = env_str("STRIPE_API_VERSION", "2026-08-26.dahlia")
STRIPE_API_BASE = env_str("STRIPE_API_BASE", "https://api.stripe.com").rstrip("/")
DJSTRIPE_FOREIGN_KEY_TO_FIELD = "id"
DJSTRIPE_WEBHOOK_VALIDATION = "verify_signature"
PAYMENT_RETRY_DAYS = env_int_list("PAYMENT_RETRY_DAYS", "1,3,7")
# What happens to money Stripe collected that no invoice takes (paid on an invoice already paid or voided, or more
# than due): kept as customer credit for the next invoices ("credit"), or paid back through Stripe ("refund").
# Either way a CustomerCredit row alerts staff in the admin.
PAYMENTS_OVERPAYMENT_HANDLING = env_choice("PAYMENTS_OVERPAYMENT_HANDLING", "credit", ("credit", "refund"))

# Odoo ledger
LEDGER_ENABLED = env_bool("LEDGER_ENABLED", False)
ODOO_URL = os.environ.get("ODOO_URL", "").rstrip("/")
ODOO_DATABASE = os.environ.get("ODOO_DATABASE", "")
ODOO_USERNAME = os.environ.get("ODOO_USERNAME", "")
ODOO_API_KEY = os.environ.get("ODOO_API_KEY", "")
ODOO_TRANSPORT = env_choice("ODOO_TRANSPORT", "json2", ("json2", "xmlrpc"))
ODOO_TIMEOUT_SECONDS = env_int("ODOO_TIMEOUT_SECONDS", 30, minimum=1)
# How the hub rounds sales tax (apps/catalog/taxes.py: once per line and rate, half-up). Odoo's company setting
# tax_calculation_rounding_method must be the same, or its totals differ from the hub's by cents (research/odoo.md
# §5.5): odoo_check verifies it and posting refuses to run otherwise. Only round_per_line is implemented.
ODOO_TAX_ROUNDING_METHOD = env_choice("ODOO_TAX_ROUNDING_METHOD", "round_per_line", ("round_per_line",))
if LEDGER_ENABLED and not (ODOO_URL and ODOO_DATABASE and ODOO_API_KEY):
    raise ImproperlyConfigured("ODOO_URL, ODOO_DATABASE and ODOO_API_KEY must be set when LEDGER_ENABLED=true")

# Outbound webhooks
WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 8, minimum=1)
WEBHOOK_TIMEOUT_SECONDS = env_int("WEBHOOK_TIMEOUT_SECONDS", 10, minimum=1)
# Host names (comma-separated) that may receive webhooks although they resolve to loopback, private or the hub's own
# addresses (apps/webhooks/destinations.py): receivers on a developer's machine. Empty in production.
WEBHOOK_ALLOWED_HOSTS = [h.strip().lower() for h in os.environ.get("WEBHOOK_ALLOWED_HOSTS", "").split(",") if h.strip()]

# The audit's triggers and pghistory's context function are (re)installed by every `migrate` (post_migrate), not
# written into each audited app's migrations: the audit stays one app (apps/audit), and a flushed test database
# gets them back.
PGTRIGGER_MIGRATIONS = False
PGTRIGGER_INSTALL_ON_MIGRATE = True
PGHISTORY_INSTALL_CONTEXT_FUNC_ON_MIGRATE = True
PGHISTORY_APPEND_ONLY = True

# The admin (django-unfold): Nexa's name and colour, the sidebar grouped for staff (apps/core/admin_site.py).
UNFOLD = {
    "SITE_TITLE": "Nexa Billing",
    "SITE_HEADER": "Nexa Billing",
    "SITE_SUBHEADER": "Billing hub",
    "SITE_SYMBOL": "payments",
    "SITE_URL": "/admin/",
    "SHOW_VIEW_ON_SITE": False,
    "ENVIRONMENT": "apps.core.admin_site.environment_badge",
    "DASHBOARD_CALLBACK": "apps.dashboard.admin.dashboard_callback",
    "COLORS": {
        # Nexa teal (oklch), 50 lightest to 950 darkest.
        "primary": {
            "50": "oklch(98.4% .014 180.72)", "100": "oklch(95.3% .051 180.801)", "200": "oklch(91% .096 180.426)",
            "300": "oklch(85.5% .138 181.071)", "400": "oklch(77.7% .152 181.912)", "500": "oklch(70.4% .14 182.503)",
            "600": "oklch(60% .118 184.704)", "700": "oklch(51.1% .096 186.391)", "800": "oklch(43.7% .078 188.216)",
            "900": "oklch(38.6% .063 188.416)", "950": "oklch(27.7% .046 192.524)",
        },
    },
    "SIDEBAR": {
        "show_search": True,
        "show_all_applications": False,
        "navigation": "apps.core.admin_site.sidebar_navigation",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

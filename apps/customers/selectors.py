"""Reads for services and customers, always scoped by the calling service."""
from __future__ import annotations

import psycopg
from django.db import connection
from django.db.models import QuerySet

from apps.core.exceptions import NotFound

from .models import AccountLink, Organization, Service
from .services import api_key_hash, organization_defaults, organization_settings  # noqa: F401 (reads beside their writer)


_SERVICE_FIELDS = [field.attname for field in Service._meta.concrete_fields]
_SERVICE_BY_KEY_SQL = (
    f"SELECT {', '.join(_SERVICE_FIELDS)} FROM {Service._meta.db_table} WHERE api_key_hash = %s AND active"
)


def service_for_api_key(*, raw_key: str) -> Service | None:
    """Return the active service owning this key, or None. Checked against the database on every call.

    Every API request runs this, so it skips the ORM: `Service.objects.filter(...).first()` cost
    ~740 µs of worker CPU and ~190 µs of PostgreSQL CPU per call, this ~60 µs and ~30 µs
    (measured on the bench cluster, README "Performance"): one raw statement on Django's connection
    (same transaction, if any), unprepared unless the database OPTIONS set a `prepare_threshold`
    (Django leaves prepared statements off; see apps/usage/services.py `_hot_cursor`).
    """
    if not raw_key:
        return None
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(_SERVICE_BY_KEY_SQL, [api_key_hash(raw_key)], prepare=True)
        row = cursor.fetchone()
    return None if row is None else Service.from_db(connection.alias, _SERVICE_FIELDS, row)


def account_link_list(*, service: Service) -> QuerySet[AccountLink]:
    return (
        AccountLink.objects.filter(service=service, deleted_at__isnull=True)
        .select_related("customer")
        .order_by("-created_at", "-id")
    )


def account_link_get(*, service: Service, external_id: str) -> AccountLink:
    """Return the service's live link for `external_id`; 404 `customer_not_found` otherwise."""
    link = account_link_list(service=service).filter(external_id=external_id).first()
    if link is None:
        raise NotFound("customer")
    return link


def customers_matching(*, text: str) -> QuerySet:
    """Return the customers whose external id, name or legal name contains every word of `text` (any case).

    A scan of the customers table (tens of thousands of rows), which staff searches of bigger tables (invoices)
    do first, then read the matches' rows through their customer index.
    """
    from django.db.models import Q

    from .models import Customer

    match = Q()
    for word in text.split():
        match &= Q(external_id__icontains=word) | Q(name__icontains=word) | Q(legal_name__icontains=word)
    return Customer.objects.filter(match)


def organization_get() -> Organization:
    """The one organization row: seeded by migration customers 0003, and seeded again from settings if it is ever
    gone (a test database flushed between transactional tests): every invoice PDF and body reads it."""
    organization = Organization.objects.filter(pk=1).first()
    if organization is None:
        organization, _ = Organization.objects.get_or_create(pk=1, defaults=organization_defaults())
    return organization


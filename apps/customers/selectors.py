"""Reads for services and customers, always scoped by the calling service."""
from __future__ import annotations

from django.db.models import QuerySet

from apps.core.exceptions import NotFound

from .models import AccountLink, Service
from .services import api_key_hash


def service_for_api_key(*, raw_key: str) -> Service | None:
    """Return the active service owning this key, or None."""
    if not raw_key:
        return None
    return Service.objects.filter(api_key_hash=api_key_hash(raw_key), active=True).first()


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

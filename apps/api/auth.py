"""Bearer API keys, one per service, looked up by SHA-256 digest."""
from __future__ import annotations

from dataclasses import dataclass

from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission

from apps.core.audit import audit_context_add
from apps.customers.models import Service
from apps.customers.selectors import service_for_api_key

from .request_log import SERVICE_ATTRIBUTE


@dataclass(frozen=True)
class ServicePrincipal:
    """The caller of an API request: a service, not a staff user."""

    service: Service
    is_authenticated: bool = True


class ServiceKeyAuthentication(BaseAuthentication):
    def authenticate(self, request):
        header = request.headers.get("Authorization", "")
        parts = header.split()
        # Like Lago, take the second token and do not insist on the scheme word.
        if len(parts) != 2:
            return None
        service = service_for_api_key(raw_key=parts[1])
        if service is None:
            return None
        # Every audited change this request makes names its caller: the service and which of its keys (the
        # key's public prefix; rotation changes it). pghistory's middleware opened the request's context.
        audit_context_add(actor=f"API: {service.code} (key {service.api_key_prefix}…)", service=service.code,
                          service_id=service.pk, api_key=service.api_key_prefix)
        # For the request log (apps/api/request_log.py), which sees Django's request, not DRF's.
        setattr(request._request, SERVICE_ATTRIBUTE, service)
        principal = ServicePrincipal(service=service)
        return principal, principal

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


class IsService(BasePermission):
    def has_permission(self, request, view) -> bool:
        return isinstance(request.auth, ServicePrincipal)

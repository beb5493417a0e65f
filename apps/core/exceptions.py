"""Business errors. The API renders them as Lago's error body (apps/api/errors.py)."""
from __future__ import annotations


class BillingError(Exception):
    """A business rule refused the operation; the message is safe to show."""

    code = "billing_error"
    http_status = 422

    def __init__(self, message: str = "", *, code: str | None = None, details: dict | None = None):
        super().__init__(message or self.code)
        if code is not None:
            self.code = code
        self.details = details or {}


class ValidationFailed(BillingError):
    """Input failed validation; `details` maps field -> list of Lago error codes."""

    code, http_status = "validation_errors", 422


class NotFound(BillingError):
    """The object does not exist for the caller (unknown, or another service's)."""

    http_status = 404

    def __init__(self, resource: str):
        super().__init__(f"{resource} not found", code=f"{resource}_not_found")
        self.resource = resource


class NotAllowed(BillingError):
    """The action is illegal in the object's current state (Lago answers 405)."""

    code, http_status = "not_allowed", 405


class Forbidden(BillingError):
    code, http_status = "forbidden", 403

"""Routes and views for this resource (owned by its domain issue)."""
from __future__ import annotations

from django.urls import path  # noqa: F401  (routes are added below as the resource grows)

urlpatterns: list = []

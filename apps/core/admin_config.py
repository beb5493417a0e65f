"""The admin app with the hub's own site (apps/core/admin_site.py) as `admin.site`.

Kept apart from the site module: Django imports AppConfig modules before models are ready, and the site's module
imports unfold's forms (auth models).
"""
from __future__ import annotations

from django.contrib.admin.apps import AdminConfig
from djstripe.apps import DjstripeAppConfig


class NexaAdminConfig(AdminConfig):
    default_site = "apps.core.admin_site.NexaAdminSite"


class StripeMirrorConfig(DjstripeAppConfig):
    """dj-stripe, named for what it is to staff: a read-through mirror of Stripe (superusers only in the admin)."""

    verbose_name = "Stripe mirror"

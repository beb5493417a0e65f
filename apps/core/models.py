from __future__ import annotations

import uuid

from django.db import models


class TimeStampedModel(models.Model):
    """Base for every hub row: creation/update times and the public UUID that the API calls `lago_id`."""

    lago_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True

from __future__ import annotations

import os
import uuid

from django.db import models


class TimeStampedModel(models.Model):
    """Base for every hub row: creation/update times and the public UUID that the API calls `lago_id`."""

    lago_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


def uuid4_many(count: int) -> list[uuid.UUID]:
    """`count` random (version 4) UUIDs, as `uuid.uuid4()` makes them, from one read of the OS's random source.

    `uuid4()` reads 16 bytes per id through `os.urandom`, which releases the GIL around the system call; with
    other threads busy, taking the GIL back costs a handoff each time. For the close's tens of thousands of
    rows that was 1.8 s of thread time in a 10,000-customer close on two threads (py-spy, bench/close.py).
    """
    pool = os.urandom(16 * count)
    return [uuid.UUID(bytes=pool[start : start + 16], version=4) for start in range(0, 16 * count, 16)]

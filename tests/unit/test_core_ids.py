"""apps.core.models.uuid4_many: the ids the close draws in bulk are real version-4 UUIDs."""
import uuid

from apps.core.models import uuid4_many


def test_uuid4_many_gives_distinct_version_4_ids():
    ids = uuid4_many(1000)
    assert len(set(ids)) == 1000 and uuid4_many(0) == []
    assert all(isinstance(value, uuid.UUID) and value.version == 4 and value.variant == uuid.RFC_4122 for value in ids)

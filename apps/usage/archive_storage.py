"""Where archived usage months are kept: a directory today (USAGE_ARCHIVE_DIR), behind a small interface so that an
object store (S3) can be added as a second implementation without touching the archiver (apps/usage/partitions.py).

Names are flat file names (`usage_usageevent_p2026_03.csv.gz`); a write is all or nothing: readers never see a
half-written file, so a crash mid-write leaves the previous copy (or none).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import BinaryIO, Protocol

from django.conf import settings


class ArchiveStorage(Protocol):
    def writer(self, name: str) -> AbstractContextManager[BinaryIO]: ...  # committed on a clean exit, discarded on error
    def reader(self, name: str) -> AbstractContextManager[BinaryIO]: ...
    def location(self, name: str) -> str: ...  # what the archive's record shows staff (a path, later a URL)



class DirectoryStorage:
    """Files in one local (or mounted) directory, written to `<name>.partial`, fsynced, then renamed."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def location(self, name: str) -> str:
        return str(self.root / name)

    @contextmanager
    def writer(self, name: str) -> Iterator[BinaryIO]:
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / name
        partial = final.with_name(final.name + ".partial")
        try:
            with open(partial, "wb") as out:
                yield out
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, final)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        # The rename is durable once the directory entry is: without this a power cut could lose a file whose
        # partition is dropped a moment later.
        directory = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    @contextmanager
    def reader(self, name: str) -> Iterator[BinaryIO]:
        with open(self.root / name, "rb") as source:
            yield source


def get_archive_storage(*, root: Path | str | None = None) -> ArchiveStorage:
    """Return the configured archive storage (USAGE_ARCHIVE_DIR, read at call time), or a directory `root`."""
    return DirectoryStorage(root if root is not None else settings.USAGE_ARCHIVE_DIR)

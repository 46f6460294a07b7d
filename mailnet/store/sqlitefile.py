"""The file side of the store's per-account SQLite indexes (threads, changes, list)."""

from __future__ import annotations

import os


def dropSidecars(path):
    """Remove a database's ``-wal`` and ``-shm`` files (they must not be taken for a new file's)."""
    for suffix in ("-wal", "-shm"):
        try:
            os.unlink(path + suffix)
        except FileNotFoundError:
            pass


def setAside(path):
    """A corrupt database: its sidecars removed, the file kept as ``<name>.corrupt`` for a look."""
    dropSidecars(path)
    try:
        os.replace(path, path + ".corrupt")
    except FileNotFoundError:
        pass

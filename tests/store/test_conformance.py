"""
The store conformance suite (:mod:`mailnet.store.conformance`, the same
one a third-party backend runs) against each builtin backend.

Deferreds are driven without a reactor: see :mod:`mailnet.store.testing`.
"""

from __future__ import annotations

from mailnet.store.conformance import StoreConformance
from mailnet.store.maildir import MaildirStore
from mailnet.store.memory import MemoryStore
from mailnet.store.testing import syncRunner


class TestMemoryStore(StoreConformance):
    def makeStore(self, tmp_path, limits=None):
        return MemoryStore(limits)


class TestMaildirStore(StoreConformance):
    def makeStore(self, tmp_path, limits=None):
        return MaildirStore(str(tmp_path / "mail"), runner=syncRunner, limits=limits)

    def restartStore(self, tmp_path, store):
        return MaildirStore(str(tmp_path / "mail"), runner=syncRunner)

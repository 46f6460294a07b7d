"""
Every store conformance suite (mailnet.store.conformance*, the ones the
builtin backends run) against the PostgreSQL backend, on a real PostgreSQL
server the tests start (tests/store/postgres_fixture.py), one fresh
database per test.

Deferreds are driven without a reactor: the store's database and its
toolkit indexes take mailnet.store.testing.syncRunner.
"""

from __future__ import annotations

import pytest

from mailnet.store.conformance import StoreConformance
from mailnet.store.conformance_changes import ChangesConformance
from mailnet.store.conformance_quota import QuotaConformance
from mailnet.store.conformance_summaries import SummaryConformance
from mailnet.store.postgres import PostgresStore
from mailnet.store.postgres.db import Database
from mailnet.store.testing import syncRunner
from tests.store import postgres_fixture

# The fixtures, for pytest to find in this module.
pgServer = postgres_fixture.pgServer
pgDatabase = postgres_fixture.pgDatabase
_current = {}


def pgStore(limits=None, kept=None, dbname=None):
    server, name = _current["server"], dbname or _current["db"]
    kw = {"changesKept": kept} if kept else {}
    return PostgresStore(Database(server.settings(name), runner=syncRunner), limits, runner=syncRunner, **kw)


@pytest.fixture(autouse=True)
def _database(pgServer, pgDatabase):
    _current.update(server=pgServer, db=pgDatabase)
    yield
    _current.clear()


class TestPostgresStore(StoreConformance):
    def makeStore(self, tmp_path, limits=None):
        return pgStore(limits)

    def restartStore(self, tmp_path, store):
        return pgStore()


class TestPostgresChanges(ChangesConformance):
    def makeStore(self, tmp_path, limits=None):
        return pgStore(limits)

    def makeStoreKeeping(self, tmp_path, kept):
        return pgStore(kept=kept, dbname=_current["server"].newDatabase())

    def restartStore(self, tmp_path, store):
        return pgStore()


class TestPostgresSummaries(SummaryConformance):
    def makeStore(self, tmp_path):
        return pgStore()

    def restartStore(self, tmp_path, store):
        return pgStore()

    def dropListIndex(self, store, account):
        # The list fields of every body (listindex.py): made again from the bodies when listed.
        with _current["server"].connect(_current["db"]) as conn:
            conn.execute("DELETE FROM body_summaries")
        return True


class TestPostgresQuota(QuotaConformance):
    def makeStore(self, tmp_path):
        return pgStore()

    def restartStore(self, tmp_path, store):
        return pgStore()

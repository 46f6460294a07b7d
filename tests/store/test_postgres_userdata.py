"""
A user's JMAP documents in PostgreSQL (mailnet/store/postgres/userdata.py,
schema version 9), against the real test server: two instances on one
database (two nodes) see each other's update; concurrent updates from two
nodes of one document both land (the row lock); PushSubscriptions are
shared too and each update is told by NOTIFY; an outage is a temporary error, and
Identity/get answers serverUnavailable on it.
"""

from __future__ import annotations

import threading
import time

import pytest

from mailnet.http.userdata import JSONUserData, RoutedUserData
from mailnet.jmap.identity import MemoryUserData
from mailnet.store.interfaces import TemporaryStoreError
from mailnet.store.postgres.db import Database, Settings
from mailnet.store.postgres.userdata import PostgresUserData
from mailnet.store.testing import failure, result, syncRunner
from tests.store import postgres_fixture

pgServer = postgres_fixture.pgServer
pgDatabase = postgres_fixture.pgDatabase

USER = "alice@example.test"


@pytest.fixture
def nodes(pgServer, pgDatabase):
    made = [Database(pgServer.settings(pgDatabase), runner=syncRunner) for _ in range(2)]
    yield [PostgresUserData(db) for db in made]
    for db in made:
        db.close()


def test_two_nodes_see_each_others_update(nodes):
    a, b = nodes
    assert result(b.load(USER, "identities")) is None
    new = result(a.update(USER, "identities", lambda old: {"version": 1, "seen": old}))
    assert new == {"version": 1, "seen": None}
    assert result(b.load(USER, "identities")) == new
    assert result(b.load("Alice@Example.TEST", "identities")) == new  # one user, however spelled
    result(b.update(USER, "webmail", lambda old: {"plainText": True}))
    assert result(a.load(USER, "webmail")) == {"plainText": True}
    assert result(a.load(USER, "identities")) == new  # one document per name
    assert result(a.load("bob@example.test", "webmail")) is None


def test_a_change_that_raises_changes_nothing(nodes):
    a, b = nodes
    result(a.update(USER, "webmail", lambda old: {"plainText": False}))

    def refuse(old):
        raise ValueError("no")

    assert isinstance(failure(b.update(USER, "webmail", refuse)), ValueError)
    assert result(a.load(USER, "webmail")) == {"plainText": False}
    with pytest.raises(ValueError):
        a.load(USER, "nothing")


def test_concurrent_updates_from_two_nodes_both_land(nodes):
    n = 15
    errors = []

    def work(userData, tag):
        def change(old):
            doc = old or {"items": []}
            time.sleep(0.005)  # a wide window between the read and the write: without the lock, one is lost
            return {"items": doc["items"] + [tag]}
        try:
            for i in range(n):
                result(userData.update(USER, "identities", change))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(userData, tag)) for userData, tag in zip(nodes, "ab")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    items = result(nodes[1].load(USER, "identities"))["items"]
    assert sorted(items) == ["a"] * n + ["b"] * n


def test_push_subscriptions_are_shared_and_their_updates_notified(nodes, pgServer, pgDatabase, tmp_path):
    # The wiring's routing (mailnet/http/server.py): PushSubscriptions in the table with the identities.
    from mailnet.http import server

    files = JSONUserData(str(tmp_path / "jmap"), runInThread=lambda f, *a: _now(f, *a))
    routed = RoutedUserData(nodes[0], files, server.SHARED_DOCUMENTS)
    doc = {"version": 1, "username": USER, "subscriptions": {}}
    with pgServer.connect(pgDatabase) as listener:
        listener.execute("LISTEN mailnet_documents")
        result(routed.update(USER, "pushsubscriptions", lambda old: doc))
        # Another node hears of the update (document, sender's name, user) at the commit.
        [note] = list(listener.notifies(timeout=10, stop_after=1))
    assert note.payload == f"pushsubscriptions {nodes[0].db.applicationName} {USER}"
    assert result(files.load(USER, "pushsubscriptions")) is None
    assert result(nodes[1].load(USER, "pushsubscriptions")) == doc
    assert result(nodes[1].loadAll("pushsubscriptions")) == [(USER, doc)]


def _now(f, *args):
    from twisted.internet import defer

    return defer.maybeDeferred(f, *args)


def test_an_outage_is_a_temporary_error_and_identity_get_answers_server_unavailable(tmp_path):
    down = Database(Settings(host=str(tmp_path), port=5999, dbname="none", user="mailnet", connect_timeout=1),
                    runner=syncRunner)
    userData = PostgresUserData(down)
    assert isinstance(failure(userData.load(USER, "identities")), TemporaryStoreError)
    assert isinstance(failure(userData.update(USER, "identities", lambda old: {})), TemporaryStoreError)
    down.close()

    from tests.jmap import test_submission

    s = test_submission.session(tmp_path)
    s.services["userData"] = RoutedUserData(userData, MemoryUserData(), ("identities",))
    [[name, answer, _]] = test_submission.request(s, ("Identity/get", {"ids": None}))
    assert (name, answer) == ("error", {"type": "serverUnavailable"})
    [[name, answer, _]] = test_submission.request(s, ("Identity/set", {"update": {"x": {"name": "A"}}}))
    assert (name, answer) == ("error", {"type": "serverUnavailable"})


def test_webmail_settings_on_an_outage_are_a_503(tmp_path):
    from tests.http.inprocess import HTTP

    down = Database(Settings(host=str(tmp_path), port=5999, dbname="none", user="mailnet", connect_timeout=1),
                    runner=syncRunner)
    http = HTTP(tmp_path)
    http.service.webmail.userData = PostgresUserData(down)
    r = http.request(b"GET", b"/webmail/settings")
    assert r.status == 503 and "try again" in r.json()["detail"]
    r = http.request(b"PUT", b"/webmail/settings", b'{"plainText": true}', {b"content-type": b"application/json"})
    assert r.status == 503
    down.close()

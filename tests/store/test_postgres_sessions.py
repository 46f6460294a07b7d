"""
The webmail's cookie sessions in PostgreSQL (mailnet/store/postgres/sessions.py,
schema version 11), against the real test server: two instances on one
database (two nodes) share a session and its logout; only the SHA-256 of
the id is stored; idle and absolute timeouts with the "last seen" write
batched; the per-user and total bounds; the sweep; and an outage, which
the http side answers with 503 (login, /webmail/session, the cookie on
JMAP), never with a logout.
"""

from __future__ import annotations

import hashlib
import itertools
import json

import pytest

from mailnet.http.session import Session
from mailnet.store.interfaces import TemporaryStoreError
from mailnet.store.postgres.db import Database, Settings
from mailnet.store.postgres.sessions import PostgresSessionStore
from mailnet.store.testing import failure, result, syncRunner
from tests.store import postgres_fixture

pgServer = postgres_fixture.pgServer
pgDatabase = postgres_fixture.pgDatabase

ALICE = "alice@example.test"


class Clock:
    def __init__(self, now=1_000_000.0):
        self.now = now

    def seconds(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def nodes(pgServer, pgDatabase, clock):
    made = [Database(pgServer.settings(pgDatabase), runner=syncRunner) for _ in range(2)]
    yield lambda **kw: [PostgresSessionStore(db, clock, **kw) for db in made]
    for db in made:
        db.close()


def rows(pgServer, pgDatabase):
    with pgServer.connect(pgDatabase) as conn:
        return conn.execute("SELECT id_hash, username, csrf, created, last_seen FROM webmail_sessions"
                            " ORDER BY created").fetchall()


def test_a_session_made_on_one_node_is_found_and_ended_on_the_other(nodes):
    a, b = nodes()
    sessionId, session = result(a.create(ALICE))
    found = result(b.find(sessionId))
    assert isinstance(found, Session)
    assert (found.username, found.csrf, found.created) == (ALICE, session.csrf, session.created)
    assert found.csrfMatches(session.csrf) and not found.csrfMatches("other")
    assert result(b.find(sessionId + "x")) is None and result(b.find("")) is None and result(b.find(None)) is None
    assert result(b.delete(sessionId)) is True
    assert result(a.find(sessionId)) is None
    assert result(a.delete(sessionId)) is False


def test_only_the_hash_of_the_id_is_stored(nodes, pgServer, pgDatabase):
    a, _ = nodes()
    sessionId, session = result(a.create(ALICE))
    [(key, username, csrf, created, lastSeen)] = rows(pgServer, pgDatabase)
    assert bytes(key) == hashlib.sha256(sessionId.encode()).digest()
    assert (username, csrf, created, lastSeen) == (ALICE, session.csrf, session.created, session.created)
    with pgServer.connect(pgDatabase) as conn:
        dump = repr(conn.execute("SELECT * FROM webmail_sessions").fetchall())
    assert sessionId not in dump


def test_idle_timeout_with_the_last_seen_write_batched(nodes, clock, pgServer, pgDatabase):
    a, b = nodes(idle=1000, maximum=100_000)  # touch: a tenth of idle, 100 s
    sessionId, session = result(a.create(ALICE))
    clock.now += 50
    assert result(b.find(sessionId)).lastSeen == clock.now
    assert rows(pgServer, pgDatabase)[0][4] == session.created  # under the touch interval: not written
    clock.now += 60
    assert result(b.find(sessionId)) is not None
    assert rows(pgServer, pgDatabase)[0][4] == clock.now  # 110 s since the last write: written
    clock.now += 999
    assert result(a.find(sessionId)) is not None  # idle time restarted by B's request
    clock.now += 1001
    assert result(a.find(sessionId)) is None
    assert rows(pgServer, pgDatabase) == []  # an expired session found is removed


def test_absolute_timeout(nodes, clock):
    a, b = nodes(idle=1000, maximum=3000)
    sessionId, _ = result(a.create(ALICE))
    for _ in range(3):
        clock.now += 900
        assert result(b.find(sessionId)) is not None
    clock.now += 400
    assert result(b.find(sessionId)) is None


def test_per_user_bound_ends_the_oldest(nodes, clock):
    a, b = nodes(perUser=3)
    made = []
    for node in itertools.islice(itertools.cycle([a, b]), 4):
        clock.now += 1
        made.append(result(node.create(ALICE))[0])
    other, _ = result(a.create("bob@example.test"))
    assert result(a.find(made[0])) is None
    assert all(result(b.find(s)) is not None for s in made[1:])
    assert result(b.find(other)) is not None
    assert result(a.count()) == 4


def test_total_bound_ends_the_least_recently_seen(nodes, clock):
    a, b = nodes(maxSessions=3, idle=100_000)
    made = []
    for i in range(3):
        clock.now += 100
        made.append(result(a.create(f"user{i}@example.test"))[0])
    clock.now += 100_000 / 10 + 1
    result(b.find(made[0]))  # seen again: the least recently seen is now made[1]
    newest, _ = result(b.create("late@example.test"))
    assert result(a.count()) == 3
    assert result(a.find(made[1])) is None
    assert all(result(a.find(s)) is not None for s in (made[0], made[2], newest))


def test_sweep_removes_the_expired_sessions(nodes, clock):
    a, b = nodes(idle=1000, maximum=5000)
    old, _ = result(a.create(ALICE))
    clock.now += 800
    recent, _ = result(b.create(ALICE))
    clock.now += 300
    assert result(b.sweep()) == 1
    assert result(a.count()) == 1 and result(a.find(recent)) is not None


def _down(tmp_path):
    return Database(Settings(host=str(tmp_path), port=5999, dbname="none", user="mailnet", connect_timeout=1),
                    runner=syncRunner)


def test_an_outage_is_a_temporary_error(tmp_path, clock):
    down = _down(tmp_path)
    sessions = PostgresSessionStore(down, clock)
    for d in (sessions.create(ALICE), sessions.find("x"), sessions.delete("x"), sessions.sweep()):
        assert isinstance(failure(d), TemporaryStoreError)
    down.close()


def test_an_outage_is_a_503_on_the_http_side_not_a_logout(tmp_path):
    from tests.http.inprocess import HTTP
    from tests.http.test_webmail_inprocess import ECHO, JSON, loggedIn, login

    http = HTTP(tmp_path)
    cookie, csrf = loggedIn(http)  # a session in memory first: the cookie the browser holds
    down = _down(tmp_path)
    sessions = PostgresSessionStore(down, http.clock)
    service = http.service
    service.sessions = service.webmail.sessions = service.authenticator.sessions = sessions
    [scheme] = [s for s in service.authenticator.schemes if s.name == "cookie"]
    scheme.sessions = sessions
    headers = {**JSON, b"cookie": cookie, b"x-csrf-token": csrf}
    r = http.request(b"POST", b"/jmap/api/", ECHO, headers, auth=False)
    assert r.status == 503 and "try again" in r.json()["detail"], r.body
    r = http.request(b"GET", b"/webmail/session", b"", {b"cookie": cookie}, auth=False)
    assert r.status == 503 and r.header("set-cookie") is None
    r = http.request(b"POST", b"/webmail/logout", b"", {b"cookie": cookie, b"x-csrf-token": csrf}, auth=False)
    assert r.status == 503 and r.header("set-cookie") is None
    r = login(http)
    assert r.status == 503 and r.header("set-cookie") is None
    assert json.loads(r.body)["error"] == "Cannot log in now; try again later."
    down.close()

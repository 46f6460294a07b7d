"""
Cluster-wide state on PostgreSQL in process (two "nodes" are two objects
on one database): the login failure throttle's shared counts
(mailnet/store/postgres/throttle.py), users, aliases and app passwords in tables
(mailnet/store/postgres/directory.py).  The real servers:
tests/test_postgres_nodes.py.
"""

from __future__ import annotations

import hashlib

import pytest
from twisted.internet import task

from mailnet.login import AuthThrottle
from mailnet.store.postgres.db import Database
from mailnet.store.postgres.throttle import PostgresFailures
from mailnet.store.testing import failure, result, syncRunner
from tests.store import postgres_fixture

pgServer = postgres_fixture.pgServer
pgDatabase = postgres_fixture.pgDatabase

IP, OTHER_IP, USER = "192.0.2.1", "192.0.2.9", "alice@example.test"


def throttles(pgServer, dbname, clock):
    """Two nodes' throttles on one database, one clock."""
    made = []
    for _ in range(2):
        db = Database(pgServer.settings(dbname), runner=syncRunner)
        made.append(AuthThrottle(clock, baseDelay=1.0, shared=PostgresFailures(db)))
    return made


def rows(pgServer, dbname):
    with pgServer.connect(dbname) as conn:
        return {(k, key): c for k, key, c in conn.execute("SELECT kind, key, count FROM login_failures")}


def test_failures_on_one_node_hold_back_the_next_check_on_another(pgServer, pgDatabase):
    clock = task.Clock()
    clock.advance(1000)
    a, b = throttles(pgServer, pgDatabase, clock)
    assert result(a.recordFailure(IP, USER)) == 1.0
    assert result(a.recordFailure(IP, USER)) == 2.0
    assert b.wait(IP, USER) == 0  # b has not looked yet
    result(b.catchUp(IP, USER))
    assert b.wait(IP, USER) == 2.0  # a's two failures, 2 s after the last
    # Another address guessing the same account is held back by the account's count.
    result(b.catchUp(OTHER_IP, USER))
    assert b.wait(OTHER_IP, USER) == 2.0
    # b's own failure counts on top of a's: 3 in the table.
    assert result(b.recordFailure(IP, USER)) == 4.0
    assert rows(pgServer, pgDatabase)[("account", USER)] == 3
    assert rows(pgServer, pgDatabase)[("ip", IP)] == 3


def test_a_success_on_one_node_clears_the_account_on_every_node(pgServer, pgDatabase):
    clock = task.Clock()
    clock.advance(1000)
    a, b = throttles(pgServer, pgDatabase, clock)
    result(a.recordFailure(IP, USER))
    result(a.recordFailure(OTHER_IP, "bob@example.test"))  # this address's failure on another account stays
    result(b.catchUp(IP, USER))
    b.recordSuccess(IP, USER)
    table = rows(pgServer, pgDatabase)
    assert ("account", USER) not in table and ("ip", IP) not in table
    assert table[("trusted", f"{IP} {USER}")] == 0 and table[("account", "bob@example.test")] == 1
    result(a.catchUp(IP, USER))
    assert a.wait(IP, USER) == 0  # a forgets what it counted itself: the table is the truth
    # The address b trusted is not held back on a by others' failures on the account.
    result(b.recordFailure(OTHER_IP, USER))
    result(a.catchUp(IP, USER))
    assert a.wait(IP, USER) == 0
    result(a.catchUp(OTHER_IP, USER))
    assert a.wait(OTHER_IP, USER) > 0


def test_old_failures_start_again_and_are_pruned(pgServer, pgDatabase):
    clock = task.Clock()
    clock.advance(1000)
    a, b = throttles(pgServer, pgDatabase, clock)
    result(a.recordFailure(IP, USER))
    result(a.recordFailure(IP, USER))
    result(a.recordFailure(OTHER_IP, "bob@example.test"))
    clock.advance(a.window + 1)
    assert result(b.recordFailure(IP, USER)) == 1.0  # the window passed: one failure, not three
    table = rows(pgServer, pgDatabase)
    assert table[("account", USER)] == 1
    assert ("ip", OTHER_IP) not in table and ("account", "bob@example.test") not in table  # pruned


def test_the_table_down_counts_on_this_node(pgServer, pgDatabase):
    clock = task.Clock()
    clock.advance(1000)
    a, _ = throttles(pgServer, pgDatabase, clock)  # (not connected yet)
    with pgServer.connect() as conn:
        conn.execute(f"ALTER DATABASE {pgDatabase} RENAME TO {pgDatabase}_away")
    try:
        assert result(a.recordFailure(IP, USER)) == 1.0  # counted here, no error
        result(a.catchUp(IP, USER))
        assert a.wait(IP, USER) == 1.0
    finally:
        with pgServer.connect() as conn:
            conn.execute(f"ALTER DATABASE {pgDatabase}_away RENAME TO {pgDatabase}")


# Users and aliases in tables (mailnet/store/postgres/directory.py)


def directory(pgServer, dbname, clock):
    from types import SimpleNamespace

    from mailnet.store.postgres.directory import makeDirectory

    config = SimpleNamespace(auth=SimpleNamespace(directory_refresh=5.0, hash="argon2id", cache_seconds=300))
    db = Database(pgServer.settings(dbname), runner=syncRunner)
    return makeDirectory(db, config, clock=clock, background=False)


def test_users_and_aliases_of_one_node_reach_another(pgServer, pgDatabase):
    clock = task.Clock()
    usersA, aliasesA = directory(pgServer, pgDatabase, clock)
    usersB, aliasesB = directory(pgServer, pgDatabase, clock)
    usersB.runInThread = syncRunner
    usersA.add(USER, "pw")
    assert usersA.canonical(USER) == USER and usersB.canonical(USER) is None  # b: its snapshot
    assert result(usersB.authenticate(USER, "pw")) == USER  # a login of an unknown user reads the table
    assert usersB.canonical(USER) == USER and usersB.list() == [USER]
    aliasesA.add("sales@example.test", [USER])
    assert aliasesB.get("sales@example.test") is None
    clock.advance(5)
    result(usersB.snapshot.update())  # what the background look does
    assert aliasesB.get("sales@example.test") == [USER]
    usersA.setPassword(USER, "new")
    clock.advance(5)  # b's snapshot is stale: the next login reads the table first
    assert result(usersB.authenticate(USER, "new")) == USER
    usersA.remove(USER)
    aliasesA.remove("sales@example.test")
    clock.advance(5)
    result(usersB.snapshot.update())
    assert usersB.canonical(USER) is None and aliasesB.get("sales@example.test") is None
    with pytest.raises(ValueError):
        usersA.add("not a user", "pw")
    with pytest.raises(KeyError):
        usersA.remove(USER)


def test_app_passwords_of_one_node_reach_another(pgServer, pgDatabase):
    from twisted.cred.error import UnauthorizedLogin

    clock = task.Clock()
    usersA, _ = directory(pgServer, pgDatabase, clock)
    usersB, _ = directory(pgServer, pgDatabase, clock)
    usersA.runInThread = usersB.runInThread = syncRunner
    usersA.add(USER, "pw")
    result(usersB.authenticate(USER, "pw"))  # b knows the user now (a fresh snapshot)
    token = usersA.tokens.add(USER, "phone")
    # b's snapshot is fresh but the password looks like a token: b reads the table first.
    assert result(usersB.authenticate(USER, token)) == USER
    assert usersB.tokens.owner(token) == USER and [n for n, _ in usersB.tokens.list(USER)] == ["phone"]
    with pytest.raises(ValueError):
        usersB.tokens.add(USER, "phone")  # one name once, wherever it was made
    with pytest.raises(KeyError):
        usersB.tokens.add("nobody@example.test")
    usersB.tokens.revoke(USER, "phone")
    assert isinstance(failure(usersA.authenticate(USER, token)), UnauthorizedLogin)  # at once on a
    with pytest.raises(KeyError):
        usersA.tokens.revoke(USER, "phone")
    # At rest: the SHA-256 only; a user's tokens go with the user.
    other = usersA.tokens.add(USER, "laptop")
    with pgServer.connect(pgDatabase) as conn:
        stored = conn.execute("SELECT digest FROM tokens").fetchall()
    assert stored == [(hashlib.sha256(other.encode()).hexdigest(),)] and other not in str(stored)
    usersB.remove(USER)
    with pgServer.connect(pgDatabase) as conn:
        assert conn.execute("SELECT count(*) FROM tokens").fetchall() == [(0,)]

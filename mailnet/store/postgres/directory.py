"""
Users and aliases in the database (``[auth] directory = "postgres"``,
schema version 6), shared by every node; the users and aliases files stay
the single-node default.

* ``users``: ``username`` (normalised, as the users file's first field),
  ``hash`` (a password hash in the users file's form, argon2id by default:
  never a password), ``extra`` (Dovecot's extra fields, as the users file's
  seventh field: ``userdb_quota_rule=*:storage=2G``).
* ``aliases``: ``address`` (or ``@domain``) and its ``targets``.
* ``tokens`` (schema version 8): app passwords (``mailnet token``): the
  token's SHA-256 (hex), its user (the row goes with the user), its name
  and when it was made; never the token itself (mailnet/tokens.py).
* ``directory_serial``: one number, bumped by every change in the same
  transaction.

:class:`TableUsers` and :class:`TableAliases` are the users file's and the
aliases file's classes (:class:`mailnet.auth.UserDB`,
:class:`mailnet.auth.AliasDB`) with the table underneath: the same checks
and answers, the same CLI.  ``canonical`` and alias lookups are answered
from a snapshot in memory (RCPT asks synchronously), which a node reads
again when the serial changed: it looks every ``[auth] directory_refresh``
seconds in the background, and before a login whose user the snapshot
does not know or whose snapshot is older than that.  So a user added on
node A logs in on node B at once; a removed user or a changed password
is seen by every node within that many seconds (the password cache of
``[auth] cache_seconds`` is emptied when the snapshot changes).

:class:`TableTokens` is :class:`mailnet.tokens.TokenDB` over the tokens
table, from the same snapshot.  A login whose password looks like a token
(IMAP, POP3, SMTP AUTH, HTTP Basic) reads the serial first (one small
query), so a token made or revoked on any node counts at once there; a
Bearer token on the http listener is checked from memory (each request,
no query), so a revoke reaches it within ``[auth] directory_refresh``.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.logger import Logger

import secrets
import time

from mailnet import auth, passwords, tokens

log = Logger()


def _bump(conn):
    conn.execute("UPDATE directory_serial SET serial = serial + 1")


def _deleteOne(conn, query, args, missing):
    """``DELETE ... RETURNING``: KeyError(``missing``) when no row went, else the serial bumped."""
    if conn.execute(query, args).fetchone() is None:
        raise KeyError(missing)
    _bump(conn)


def _load(conn, known):
    """(serial, users, aliases, tokens rows), or (serial, None, None, None) when the serial is ``known``."""
    serial = conn.execute("SELECT serial FROM directory_serial").fetchone()[0]
    if serial == known:
        return serial, None, None, None
    users = conn.execute("SELECT username, hash, extra FROM users").fetchall()
    aliases = conn.execute("SELECT address, targets FROM aliases").fetchall()
    found = conn.execute("SELECT digest, username, name, created FROM tokens").fetchall()
    return serial, users, aliases, found


class _Snapshot:
    """The rows both classes are made from, read once per serial for both."""

    def __init__(self, db, clock=None, refresh=5.0):
        self.db = db
        self.clock = clock
        self.refresh = refresh
        self.serial = None
        self.users = []
        self.aliases = []
        self.tokens = []
        self.readAt = None
        self.watchers = []
        self._waiters = []
        self._timer = None
        self._down = False

    def _take(self, loaded):
        serial, users, aliases, found = loaded
        if self.clock is not None:
            self.readAt = self.clock.seconds()
        if users is not None:
            self.serial, self.users, self.aliases, self.tokens = serial, users, aliases, found
            for watcher in self.watchers:
                watcher()

    def loadNow(self):
        """(Blocking.)  Read the tables: at start and in the CLI."""
        self._take(self.db.call(_load, self.serial))

    def change(self, write):
        """(Blocking: the CLI.)  ``write(conn)`` in one transaction, then the tables read again."""
        self.db.call(write)
        self.loadNow()

    def stale(self):
        return self.readAt is None or self.clock is None or self.clock.seconds() - self.readAt >= self.refresh

    def update(self):
        """Deferred: the snapshot read again if the serial changed (one query in a worker thread)."""
        d = defer.Deferred()
        self._waiters.append(d)
        if len(self._waiters) == 1:  # else a read is on its way: wait for it too
            self.db.run(_load, self.serial).addCallbacks(self._loaded, self._failed)
        return d

    def _loaded(self, loaded):
        waiters, self._waiters = self._waiters, []
        try:
            self._take(loaded)
        finally:
            for d in waiters:
                d.callback(None)

    def _failed(self, failure):
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.errback(failure)

    def start(self):
        """Look every ``refresh`` seconds on the reactor (the server; not the CLI)."""
        if self.clock is not None and self.refresh > 0 and self._timer is None:
            self._timer = self.clock.callLater(self.refresh, self._tick)

    def _tick(self):
        self._timer = None

        def read(_):
            if self._down:
                self._down = False
                log.info("users table: read again")

        def failed(failure):
            if not self._down:  # once per outage, not every look
                self._down = True
                log.warn("users table: cannot read it ({why}); answering from what was read before",
                         why=failure.getErrorMessage())

        self.update().addCallbacks(read, failed).addBoth(lambda _: self.start())

    def stop(self):
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()


class TableUsers(auth.UserDB):
    """:class:`mailnet.auth.UserDB` over the ``users`` table (see the module docstring)."""

    def __init__(self, snapshot, scheme="argon2id", cacheSeconds=300, clock=None, runInThread=None, tokens=None):
        super().__init__(None, scheme, cacheSeconds, clock, runInThread, tokens)
        self.snapshot = snapshot
        self._data = {}
        snapshot.watchers.append(self._reparse)
        self._reparse()

    def _reparse(self):
        users, rules = {}, {}
        for number, (name, stored, extra) in enumerate(self.snapshot.users, 1):
            users[auth.normalize(name)] = stored
            if extra and extra.strip():
                self._extraFields(auth.normalize(name), extra, number, rules)
        self._quotaRules = rules
        self._data = users
        self.changed()

    def current(self):
        return self._data

    def checkPassword(self, username, password):
        try:
            key = auth.normalize(username.decode("utf-8") if isinstance(username, bytes) else username)
        except UnicodeDecodeError:
            key = None
        if key is not None and (key not in self._data or self.snapshot.stale() or _isToken(password)):
            # A user added (or a password changed, a token made or revoked)
            # on another node: read the table first.
            d = self.snapshot.update()
            d.addErrback(lambda failure: log.warn("users table: cannot read it ({why}); "
                                                  "checking against what was read before",
                                                  why=failure.getErrorMessage()))
            return d.addCallback(lambda _: auth.UserDB.checkPassword(self, username, password))
        return super().checkPassword(username, password)

    # Changes (the CLI; blocking): one transaction each, the serial bumped in it.

    def add(self, username, password):
        if not auth.validUsername(username):
            raise ValueError(f"{username!r} is not a valid user name (want user@domain)")
        key = auth.normalize(username)
        stored = passwords.make(password, self.scheme)

        def insert(conn):
            if conn.execute("INSERT INTO users (username, hash) VALUES (%s, %s) ON CONFLICT DO NOTHING"
                            " RETURNING username", (key, stored)).fetchone() is None:
                raise ValueError(f"user {key} exists already")
            _bump(conn)

        self.snapshot.change(insert)

    def setPassword(self, username, password):
        key = auth.normalize(username)
        stored = passwords.make(password, self.scheme)

        def change(conn):
            if conn.execute("UPDATE users SET hash = %s, changed = now() WHERE username = %s RETURNING username",
                            (stored, key)).fetchone() is None:
                raise KeyError(f"no user {key}")
            _bump(conn)

        self.snapshot.change(change)

    def remove(self, username):
        key = auth.normalize(username)

        def delete(conn):
            _deleteOne(conn, "DELETE FROM users WHERE username = %s RETURNING username", (key,), f"no user {key}")

        self.snapshot.change(delete)


def _isToken(password):
    if isinstance(password, bytes):
        password = password.decode("ascii", "replace")
    return tokens.looksLikeToken(password)


class TableTokens(tokens.TokenDB):
    """:class:`mailnet.tokens.TokenDB` over the ``tokens`` table (see the module docstring)."""

    def __init__(self, snapshot):
        super().__init__(None)
        self.snapshot = snapshot
        self._data = {}
        snapshot.watchers.append(self._reparse)
        self._reparse()

    def _reparse(self):
        self._data = {digest: (auth.normalize(user), name, str(created))
                      for digest, user, name, created in self.snapshot.tokens}

    def current(self):
        return self._data

    # Changes (the CLI; blocking): one transaction each, the serial bumped in it.

    def add(self, username, name=None, clock=time.time):
        key = auth.normalize(username)
        if name is None:
            name = "token-" + secrets.token_hex(3)
        if not tokens.NAME_RE.fullmatch(name):
            raise ValueError(f"{name!r}: a token name is 1-64 letters, digits, '.', '_' or '-'")
        token = tokens.makeToken()

        def insert(conn):
            if conn.execute("SELECT 1 FROM users WHERE username = %s", (key,)).fetchone() is None:
                raise KeyError(f"no user {key}")
            if conn.execute("INSERT INTO tokens (digest, username, name, created) VALUES (%s, %s, %s, %s) "
                            "ON CONFLICT (username, name) DO NOTHING RETURNING digest",
                            (tokens.digest(token), key, name, int(clock()))).fetchone() is None:
                raise ValueError(f"{key} has a token named {name} already")
            _bump(conn)

        self.snapshot.change(insert)
        return token

    def revoke(self, username, name):
        key = auth.normalize(username)

        def delete(conn):
            _deleteOne(conn, "DELETE FROM tokens WHERE username = %s AND name = %s RETURNING digest", (key, name),
                       f"{key} has no token named {name}")

        self.snapshot.change(delete)

    def removeUser(self, username):
        key = auth.normalize(username)

        def delete(conn):
            if conn.execute("DELETE FROM tokens WHERE username = %s RETURNING digest", (key,)).fetchall():
                _bump(conn)

        self.snapshot.change(delete)


class TableAliases(auth.AliasDB):
    """:class:`mailnet.auth.AliasDB` over the ``aliases`` table (see the module docstring)."""

    def __init__(self, snapshot):
        super().__init__(None)
        self.snapshot = snapshot
        self._data = {}
        snapshot.watchers.append(self._reparse)
        self._reparse()

    def _reparse(self):
        self._data = {auth.normalize(address): list(targets) for address, targets in self.snapshot.aliases}

    def current(self):
        return self._data

    def add(self, address, targets):
        key = self._checked(address, targets)

        def upsert(conn):
            conn.execute("INSERT INTO aliases (address, targets) VALUES (%s, %s)"
                         " ON CONFLICT (address) DO UPDATE SET targets = EXCLUDED.targets", (key, list(targets)))
            _bump(conn)

        self.snapshot.change(upsert)

    def remove(self, address):
        key = auth.normalize(address)

        def delete(conn):
            _deleteOne(conn, "DELETE FROM aliases WHERE address = %s RETURNING address", (key,), f"no alias {key}")

        self.snapshot.change(delete)


def makeDirectory(db, config, clock=None, background=False):
    """
    (users, aliases) over the tables, the users' app passwords
    (``users.tokens``) over the tokens table, read once now (blocking; a
    :class:`~mailnet.config.ConfigError` of one line when the database or
    the tables are not there).  ``background`` (the server): look for
    changes every ``[auth] directory_refresh`` seconds on ``clock``, and
    remember verified passwords for ``[auth] cache_seconds``.
    """
    from mailnet.config import ConfigError
    from mailnet.store.interfaces import TemporaryStoreError
    from mailnet.store.postgres.db import _describe, _psycopg

    where = '[auth] directory = "postgres"'
    snapshot = _Snapshot(db, clock, config.auth.directory_refresh)
    try:
        snapshot.loadNow()
    except TemporaryStoreError:
        raise ConfigError(f"{where}: the database cannot be reached; check [postgres] and that the server runs") from None
    except OSError as e:
        raise ConfigError(f"[postgres] password_file: {e.strerror}") from None
    except _psycopg().errors.UndefinedTable:
        raise ConfigError(f"{where}: the database has no users or tokens table (schema older than version 8): "
                          "run `mailnet db upgrade` (or `mailnet db init`)") from None
    except _psycopg().Error as e:
        raise ConfigError(f"{where}: the database cannot be used: {_describe(e)}") from None
    finally:
        db._drop()  # this thread's connection: the pool's threads have their own
    users = TableUsers(snapshot, config.auth.hash, config.auth.cache_seconds if background else 0, clock=clock,
                       tokens=TableTokens(snapshot))
    aliases = TableAliases(snapshot)
    if background:
        snapshot.start()
    return users, aliases

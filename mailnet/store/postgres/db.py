"""
The PostgreSQL connection side of the store: one psycopg 3 connection per
worker thread, a bounded pool of such threads, timeouts, and the mapping
of a database outage to the store contract's temporary error.

Nothing here runs on the reactor thread except :meth:`Database.call` made
from :meth:`~mailnet.store.postgres.store.PostgresDelivery.addRecipient`
(one indexed query, only for a delivery to a folder other than INBOX; it
fails at once for a few seconds after any call found the database down, so
an outage does not make the reactor wait for a connect timeout per message).
Every other query runs in a worker thread through ``run`` (a
``runner(f, *args) -> Deferred``: by default :meth:`Database.poolRunner`,
in tests a synchronous runner).

Failures:

* The server cannot be reached, the connection broke, the server is
  shutting down, a statement ran past ``statement_timeout``: the thread's
  connection is dropped (the next call connects again) and the caller
  gets :class:`~mailnet.store.interfaces.TemporaryStoreError` (SMTP 451,
  IMAP ``NO``, POP3 ``-ERR``), with no connection string or password in
  the message.
* A serialization failure or a deadlock (two nodes racing for the same
  rows): the transaction is run again, up to three times.
* A full disk on the server (``disk_full``): :class:`StorageFull`.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time

from twisted.logger import Logger

from mailnet.store.interfaces import StorageFull, TemporaryStoreError

log = Logger()

RETRIES = 3
# After a failure, calls made on the reactor thread (failFast) fail at once
# for this many seconds instead of waiting for a connect timeout each.
FAIL_FAST = 5.0


@dataclasses.dataclass(frozen=True)
class Settings:
    """What ``[postgres]`` says (see mailnet/config.py)."""

    dsn: str = ""
    host: str = ""
    port: int = 5432
    dbname: str = "mailnet"
    user: str = "mailnet"
    password_file: str = ""
    pool_size: int = 8
    connect_timeout: float = 5.0
    statement_timeout: float = 30.0

    @classmethod
    def fromConfig(cls, config):
        pg = config.postgres
        return cls(pg.dsn, pg.host, pg.port, pg.dbname, pg.user, pg.password_file, pg.pool_size,
                   pg.connect_timeout, pg.statement_timeout)

    def connectArgs(self):
        """Keyword arguments for ``psycopg.connect`` (the password read from its file now)."""
        kw = {}
        if self.dsn:
            kw["conninfo"] = self.dsn
        else:
            kw["conninfo"] = ""
            if self.host:
                kw["host"] = self.host
            kw["port"] = self.port
            kw["dbname"] = self.dbname
            kw["user"] = self.user
        if self.password_file:
            with open(self.password_file, encoding="utf-8") as f:
                kw["password"] = f.read().strip()
        kw["connect_timeout"] = max(1, int(round(self.connect_timeout)))
        # Durability: a 250 or an OK only after the commit is on the server's disk.
        kw["options"] = "-c synchronous_commit=on -c statement_timeout=%d" % int(self.statement_timeout * 1000)
        kw["application_name"] = "mailnet"
        kw["autocommit"] = True  # transactions are explicit (Database.call)
        return kw


def _psycopg():
    import psycopg

    return psycopg


def isTemporary(e):
    """A psycopg error that says "the database is not there right now"."""
    psycopg = _psycopg()
    errors = psycopg.errors
    return isinstance(e, (psycopg.OperationalError, psycopg.InterfaceError, errors.QueryCanceled,
                          errors.AdminShutdown, errors.CannotConnectNow))


class Database:
    """
    Connections by thread.  ``call(f, *args)`` runs ``f(conn, *args)`` in
    one transaction on the calling thread's connection and commits;
    ``run(f, *args)`` does that in the pool and returns a Deferred.
    """

    def __init__(self, settings: Settings, runner=None, reactor=None, connect=None, objects=None):
        self.settings = settings
        # Where bodies go: None = body_chunks; an objects.ObjectStore = S3.
        self.objects = objects
        self._local = threading.local()
        self._all = set()
        self._allLock = threading.Lock()
        self._connect = connect
        self._pool = None
        self._reactor = reactor
        self._trigger = None
        self.runner = runner or self.poolRunner
        self.closed = False
        # Names this store's connections (and its NOTIFYs: listen.py ignores its own).
        self.applicationName = "mailnet-" + secrets.token_hex(4)
        self.downUntil = 0.0

    # Connections

    def connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is not None and not conn.closed:
            return conn
        psycopg = _psycopg()
        if self._connect is not None:
            conn = self._connect()
        else:
            conn = psycopg.connect(**dict(self.settings.connectArgs(), application_name=self.applicationName))
        with self._allLock:
            self._all.add(conn)
        self._local.conn = conn
        return conn

    def _drop(self):
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._allLock:
                self._all.discard(conn)
            try:
                conn.close()
            except Exception:
                pass

    def call(self, f, *args, failFast=False, transaction=True):
        """
        ``f(conn, *args)`` in one committed transaction (blocking).
        ``failFast`` (a call on the reactor thread): while the database was
        found down in the last :data:`FAIL_FAST` seconds, fail at once.
        ``transaction`` false: each statement of ``f`` on its own
        (autocommit; no BEGIN and COMMIT round trips), for reads whose
        statements need no common snapshot (reader.py's body reads).
        """
        if failFast and time.monotonic() < self.downUntil:
            raise TemporaryStoreError("the database is unavailable; try again later")
        psycopg = _psycopg()
        errors = psycopg.errors
        for attempt in range(RETRIES):
            try:
                conn = self.connection()
                if not transaction:
                    return f(conn, *args)
                with conn.transaction():
                    return f(conn, *args)
            except (errors.SerializationFailure, errors.DeadlockDetected, errors.ForeignKeyViolation) as e:
                # Two writers raced (a body garbage-collected under a new
                # reference: ForeignKeyViolation): run the transaction again.
                if attempt == RETRIES - 1:
                    raise TemporaryStoreError("the database is busy (%s); try again" % type(e).__name__) from None
            except errors.DiskFull:
                raise StorageFull("the database server's disk is full") from None
            except psycopg.Error as e:
                if isTemporary(e):
                    self._drop()
                    self.downUntil = time.monotonic() + FAIL_FAST
                    log.warn("postgres: {what}; answering temporary errors until it is back",
                             what=_describe(e))
                    raise TemporaryStoreError("the database is unavailable; try again later") from None
                raise

    def run(self, f, *args):
        """Deferred: :meth:`call` in a worker thread (or the test's runner)."""
        return self.runner(self.call, f, *args)

    def read(self, f, *args):
        """Deferred: :meth:`call` without a transaction in a worker thread (or the test's runner)."""
        return self.runner(self._callRead, f, *args)

    def _callRead(self, f, *args):
        return self.call(f, *args, transaction=False)

    # The thread pool

    def poolRunner(self, f, *args):
        from twisted.internet import threads

        if self._pool is None:
            from twisted.python.threadpool import ThreadPool

            if self._reactor is None:
                from twisted.internet import reactor

                self._reactor = reactor
            self._pool = ThreadPool(0, self.settings.pool_size, name="mailnet-postgres")
            self._pool.start()
            self._trigger = self._reactor.addSystemEventTrigger("during", "shutdown", self._stopPool)
        return threads.deferToThreadPool(self._reactor, self._pool, f, *args)

    def _stopPool(self):
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()
        self._closeAll()

    def _closeAll(self):
        with self._allLock:
            conns, self._all = self._all, set()
        for conn in conns:
            try:
                conn.close()
            except Exception:
                pass

    def close(self):
        self.closed = True
        if self._pool is not None:
            if self._trigger is not None:
                self._reactor.removeSystemEventTrigger(self._trigger)
                self._trigger = None
            self._stopPool()
        else:
            self._closeAll()


def openChecked(config, **kwargs) -> Database:
    """
    A :class:`Database` for ``config`` whose schema is the code's (the
    wiring's factories: the store, the shared queue); every refusal is a
    :class:`~mailnet.config.ConfigError` of one line.  ``kwargs`` go to
    :class:`Database` (``objects``, ``reactor``).
    """
    from mailnet.config import ConfigError
    from mailnet.store.postgres.schema import SchemaError, checkVersion

    db = Database(Settings.fromConfig(config), **kwargs)
    try:
        db.call(checkVersion)
    except SchemaError as e:
        db.close()
        raise ConfigError(f"[postgres] {e}") from None
    except TemporaryStoreError:
        db.close()
        raise ConfigError("[postgres] the database cannot be reached; check [postgres] and that the server runs") from None
    except OSError as e:
        db.close()
        raise ConfigError(f"[postgres] password_file: {e.strerror}") from None
    db._closeAll()  # the connection made on this thread is not reused by the pool
    return db


def _describe(e):
    """A psycopg error without the connection string (no host names or passwords in the log)."""
    return "%s (%s)" % (type(e).__name__, getattr(getattr(e, "diag", None), "sqlstate", None) or "no sqlstate")

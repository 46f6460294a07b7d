"""
Shared by the benchmarks: the SMTP load loop (``sessions`` smtplib clients
in threads, each sending its share of ``messages`` over one connection, the
time until the last 250) and the 4 KB messages it sends, threads timed
together, a mailnet node for one round (on Maildir, or on a fresh database
of a PostgreSQL server), and the load average to print beside the numbers.

A benchmark imports it with bench/ on sys.path (``import benchlib``), as
it does smtp_bench and imap_bench.
"""

from __future__ import annotations

import contextlib
import copy
import shutil
import smtplib
import threading
import time

BODY = (b"x" * 70 + b"\r\n") * 56  # about 4 KB


def loadMessage(i, to=b"alice@example.test", word=None):
    """Message ``i`` of a load: a unique Subject and Message-ID; ``word``
    (for SEARCH TEXT) on a line of its own before the 4 KB ``BODY``."""
    head = (b"From: Load <load@remote.test>\r\nTo: %s\r\nSubject: bench %d\r\n"
            b"Message-ID: <bench.%d@remote.test>\r\n\r\n" % (to, i, i))
    return head + (word + b"\r\n" if word is not None else b"") + BODY


def inThreads(work, count):
    """Run ``work(k)`` for k in 0..count-1, one thread each, all started
    together; the seconds until the last one ended.  ``work`` reports its
    own errors (an exception would end only its thread)."""
    threads = [threading.Thread(target=work, args=(k,)) for k in range(count)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def smtpLoad(ports, rcpt, messages, sessions, message, sender="load@remote.test", timeout=120):
    """
    ``sessions`` SMTP sessions at once, each sending ``messages //
    sessions`` messages (``message(i)``, i unique over the run) from
    ``sender`` to ``rcpt`` over one connection.  ``ports``: one port, or a
    list of them (session k talks to ``ports[k % len(ports)]``, for several
    nodes).  Returns (messages sent, seconds until the last 250); raises
    RuntimeError with the first client's error once all have ended.
    """
    ports = [ports] if isinstance(ports, int) else list(ports)
    per = messages // sessions
    errors = []

    def client(k):
        try:
            with smtplib.SMTP("127.0.0.1", ports[k % len(ports)], timeout=timeout) as s:
                for i in range(per):
                    s.sendmail(sender, [rcpt], message(k * per + i))
        except Exception as e:  # reported below
            errors.append(e)

    elapsed = inThreads(client, sessions)
    if errors:
        raise RuntimeError(f"SMTP clients failed: {errors[0]!r}")
    return per * sessions, elapsed


@contextlib.contextmanager
def mailnetNode(directory, config, pg=None, postgres=None, user=None, remove=False, env=None):
    """
    A mailnet server (tests/harness.py) in ``directory`` with ``config``;
    with ``pg`` (tests/store/postgres_fixture.py) on a new database of it,
    ``[store] backend = "postgres"`` and ``postgres`` added to its
    ``[postgres]`` settings.  ``user``: (name, password) added first.  On
    exit the server stops, the database is dropped and, with ``remove``, the
    directory is removed.  ``env``: extra environment of the server (e.g.
    ``PYTHONPATH`` of an older checkout).
    """
    from tests.harness import MailServer

    config = copy.deepcopy(config)
    dbname = None
    if pg is not None:
        dbname = pg.newDatabase()
        config.update({"store": {"backend": "postgres"},
                       "postgres": {"host": pg.dir, "port": pg.port, "dbname": dbname, **(postgres or {})}})
    server = MailServer(directory, config=config, env=env)
    server.start()
    try:
        if user is not None:
            server.addUser(*user)
        yield server
    finally:
        server.stop()
        if dbname:
            pg.dropDatabase(dbname)
        if remove:
            shutil.rmtree(directory, ignore_errors=True)


def loadavg():
    """The 1, 5 and 15 minute load averages, as /proc/loadavg has them."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def withRoot(root, f, *args):
    """Run ``f`` with the harness's code root at ``root`` (an older checkout's servers and commands)."""
    import tests.harness as harness

    saved, harness.ROOT = harness.ROOT, root
    try:
        return f(*args)
    finally:
        harness.ROOT = saved


@contextlib.contextmanager
def postgresNode(pg, directory, config, old=None, user=None):
    """
    A mailnet node on a new database of ``pg`` (tests/store/postgres_fixture.py),
    ``[store] backend = "postgres"`` and the database added to ``config``'s
    ``[postgres]``; with ``old`` (a checkout of older code, e.g. ``git archive
    main``) the node runs that code, which makes its own schema (``mailnet db
    init``); ``server.dbname`` is its database.  ``user``: (name, password)
    added first.  On exit the server stops and the database is dropped.
    """
    import os

    from tests.harness import ROOT, MailServer

    dbname = pg.newDatabase(schema=old is None)
    config = dict(config, store={"backend": "postgres"},
                  postgres=dict(config.get("postgres", {}), host=pg.dir, port=pg.port, dbname=dbname))
    root = os.path.abspath(old) if old else ROOT
    server = MailServer(directory, config=config)
    server.dbname = dbname
    if old:
        withRoot(root, server.mailnet, "db", "init")
    withRoot(root, server.start)
    try:
        if user is not None:
            server.addUser(*user)
        yield server
    finally:
        server.stop()
        pg.dropDatabase(dbname)

"""
A real PostgreSQL server for the tests: ``initdb`` in a temporary directory,
``pg_ctl start`` listening on a Unix socket only, one server per test
session (per xdist worker), a fresh database per test made from a template
that has the mailnet schema (``CREATE DATABASE ... TEMPLATE``).

Run as root (initdb refuses root), the server runs as the ``postgres`` user
the Debian package makes (``runuser``).  fsync is off for the TEST server's
speed only; mailnet's own durability setting (synchronous_commit) is on.

A test module names the fixtures for pytest to find::

    from tests.store import postgres_fixture

    pgServer = postgres_fixture.pgServer
    pgDatabase = postgres_fixture.pgDatabase
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile

import pytest

TEMPLATE = "mailnet_template"
_counter = itertools.count(1)


def binDir():
    """The directory of initdb and pg_ctl, or None."""
    for path in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(path, "initdb")):
            return path
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return out if os.path.exists(os.path.join(out, "initdb")) else None


class PostgresServer:
    """One test server (see the module docstring)."""

    def __init__(self, bindir, fsync=False):
        self.bindir = bindir
        self.fsync = fsync  # off for tests; the benchmark turns it on
        self.dir = tempfile.mkdtemp(prefix="mailnet-pg-")
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "server.log")
        self.port = 5432
        self.prefix = []
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root and there is no postgres user for initdb") from None
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            os.chmod(self.dir, 0o755)
            self.prefix = ["runuser", "-u", "postgres", "--"]

    def _run(self, *argv, check=True):
        return subprocess.run(self.prefix + [os.path.join(self.bindir, argv[0]), *argv[1:]],
                              capture_output=True, text=True, check=check, timeout=120)

    def init(self):
        self._run("initdb", "-D", self.data, "-U", "mailnet", "--auth=trust", "-E", "UTF8", "--no-sync")
        self.start()

    def start(self):
        opts = f"-k {self.dir} -c listen_addresses='' -p {self.port} -c max_connections=200"
        if not self.fsync:
            opts += " -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "start", "-w", "-t", "60", "-D", self.data, "-l", self.log, "-o", opts)

    def stop(self, mode="fast"):
        self._run("pg_ctl", "stop", "-w", "-D", self.data, "-m", mode, check=False)

    def settings(self, dbname):
        from mailnet.store.postgres.db import Settings

        return Settings(host=self.dir, port=self.port, dbname=dbname, user="mailnet",
                        connect_timeout=3, statement_timeout=20)

    def connect(self, dbname="postgres"):
        import psycopg

        return psycopg.connect(host=self.dir, port=self.port, dbname=dbname, user="mailnet", autocommit=True)

    def makeTemplate(self):
        from mailnet.store.postgres.schema import upgrade

        with self.connect() as conn:
            conn.execute(f"CREATE DATABASE {TEMPLATE}")
        with self.connect(TEMPLATE) as conn:
            upgrade(conn)

    def newDatabase(self, schema=True):
        name = f"t{os.getpid()}_{next(_counter)}"
        with self.connect() as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE if schema else 'template0'}")
        return name

    def dropDatabase(self, name):
        with self.connect() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def destroy(self):
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pgServer():
    """The test session's PostgreSQL server (started once per worker)."""
    bindir = binDir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not installed (Debian: apt-get install postgresql)")
    server = PostgresServer(bindir)
    try:
        server.init()
        server.makeTemplate()
    except subprocess.CalledProcessError as e:
        server.destroy()
        raise RuntimeError(f"starting the test PostgreSQL failed: {e.stderr or e.stdout}") from None
    yield server
    server.destroy()


@pytest.fixture
def pgDatabase(pgServer):
    """A fresh database with the mailnet schema, dropped after the test: its name."""
    name = pgServer.newDatabase()
    yield name
    try:
        pgServer.start()  # a test may have stopped the server
    except subprocess.CalledProcessError:
        pass
    pgServer.dropDatabase(name)

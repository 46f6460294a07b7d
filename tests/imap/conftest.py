"""
Fixtures for the IMAP tests that run the real server.

``imap_server``: one mailnet process for the module (Maildir store when it
is part of the build, else the memory store), with alice and bob, and plain
logins allowed so that imaplib can log in without STARTTLS where a test is
not about TLS.  ``strict_server``: the production default (no plaintext
passwords).
"""

import importlib.util
import ssl

import pytest

from tests.harness import MailServer

USERS = {"alice@example.test": "alice-pw", "bob@example.test": "bob-pw"}
BACKEND = "maildir" if importlib.util.find_spec("mailnet.store.maildir") else "memory"


def _server(directory, **config):
    sections = {"store": {"backend": BACKEND}, "auth": {"failure_delay": 0.05, "allow_plaintext": True},
                "limits": {"imap_idle_poll": 0.5}}
    for section, values in config.items():
        sections.setdefault(section, {}).update(values)
    s = MailServer(directory, config=sections)
    s.start()
    for name, password in USERS.items():
        s.addUser(name, password)
    return s


@pytest.fixture(scope="module")
def imap_server(tmp_path_factory):
    s = _server(tmp_path_factory.mktemp("imap"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory):
    s = _server(tmp_path_factory.mktemp("imapstrict"), auth={"allow_plaintext": False})
    yield s
    s.stop()


@pytest.fixture
def make_imap_server(tmp_path):
    made = []

    def make(**config):
        s = _server(tmp_path / ("s%d" % len(made)), **config)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


def tls_context(server):
    return ssl.create_default_context(cafile=server.certFile)

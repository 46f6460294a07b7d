"""
bench/smtpshapes.py, the benchmarks' SMTP clients, against the real server:
each traffic shape opens the connections, TLS handshakes and logins it
claims to (counted by the server's /metrics), and every message arrives.
"""

from __future__ import annotations

import os
import sys

import pytest

from tests.harness import ROOT, MailServer
from tests.ops.test_metrics_e2e import moved, scrape

pytestmark = pytest.mark.slow

sys.path.insert(0, os.path.join(ROOT, "bench"))  # bench/ is scripts, not a package; the clients' pickled by name
import smtpshapes  # noqa: E402

DATA = b"From: carol@remote.test\r\nTo: bob@example.test\r\nSubject: shape\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = MailServer(tmp_path_factory.mktemp("smtpshapes"), config={"auth": {"allow_plaintext": True}})
    server.start()
    server.addUser("alice@example.test", "alice-pw")
    server.addUser("bob@example.test", "bob-pw")
    yield server
    server.stop()


# shape, login: connections, TLS handshakes, logins for 2 clients x 3 messages
CASES = [
    ("persistent", False, 2, 0, 0),
    ("connection", False, 6, 0, 0),
    ("starttls", False, 6, 6, 0),
    ("persistent", True, 2, 0, 2),
    ("connection", True, 6, 0, 6),
    ("starttls", True, 6, 6, 6),
]


@pytest.mark.parametrize("shape, login, connections, handshakes, logins", CASES)
def test_shape_opens_what_it_says(server, shape, login, connections, handshakes, logins):
    listener = "submission" if login else "smtp"
    stored = len(server.messageFiles("bob@example.test"))
    before = scrape(server)
    sender, credentials = ("alice@example.test", ("alice@example.test", "alice-pw")) if login else ("carol@remote.test", None)
    sent = smtpshapes.load(server.port(listener), 6, 2, login=credentials, sender=sender, rcpt="bob@example.test",
                           data=DATA, shape=shape)
    after = scrape(server)
    assert sent == 6
    assert len(server.messageFiles("bob@example.test")) == stored + 6
    assert moved(before, after, "mailnet_connections_opened_total", listener=listener) == connections
    assert sum(moved(before, after, "mailnet_tls_handshakes_total", version=v) for v in ("TLSv1.2", "TLSv1.3")) \
        == handshakes
    assert moved(before, after, "mailnet_auth_attempts_total", protocol="smtp", outcome="success") == logins


def test_unknown_shape_refused():
    with pytest.raises(ValueError):
        smtpshapes.send("127.0.0.1", 9, 1, "pipelined", None, "a@example.test", "b@example.test", DATA)

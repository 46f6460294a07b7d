"""
Slowloris against the real server over raw sockets: with small configured
deadlines, a client that dribbles one byte every half second (each byte
would restart an idle timeout of minutes), or keeps sending whole commands
without ever logging in, is cut off with the protocol's final reply, while
an honest client on another connection is served meanwhile.

The in-process tests (tests/*/test_deadlines.py) check the arithmetic with
task.Clock; these check the whole stack.  Timings are generous: the
deadlines are 3 s, a dribbler gives up after 60 s.
"""

from __future__ import annotations

import imaplib
import poplib
import select
import smtplib
import socket
import ssl
import threading
import time

import pytest

from tests.harness import MailServer

DEADLINE = 3
GIVE_UP = 60.0
USERS = {"alice@example.test": "alice-pw", "bob@example.test": "bob-pw"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = MailServer(tmp_path_factory.mktemp("deadlines"), config={
        "limits": {"command_deadline": DEADLINE, "login_deadline": DEADLINE, "smtp_data_deadline": DEADLINE,
                   "min_data_rate": 500},
        # IMAP LOGIN and POP3 USER/PASS on the plaintext ports (127.0.0.1 only)
        "auth": {"allow_plaintext": True},
    })
    s.start()
    for name, password in USERS.items():
        s.addUser(name, password)
    yield s
    s.stop()


class Dribbler(threading.Thread):
    """
    One connection: send ``setup`` (whole lines, each after the previous
    reply), then ``payload`` one byte every ``every`` seconds (or, with
    ``whole``, one line of it at a time), until the server closes.
    """

    def __init__(self, port, setup, payload, every=0.5, whole=False, tls=False):
        super().__init__(daemon=True)
        self.port, self.setup, self.payload, self.every, self.whole, self.tls = port, setup, payload, every, whole, tls
        self.received = b""
        self.startedAt = self.closedAt = None
        self.ready = threading.Event()

    def _read(self, sock, timeout):
        r, _, _ = select.select([sock], [], [], timeout)
        if not r and not (self.tls and sock.pending()):
            return True
        data = sock.recv(65536)
        self.received += data
        return bool(data)

    def run(self):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=GIVE_UP)
        if self.tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            sock = ctx.wrap_socket(sock)
        try:
            self._read(sock, 10)  # greeting
            for line in self.setup:
                sock.sendall(line)
                self._read(sock, 10)
            self.startedAt = time.monotonic()
            self.ready.set()
            pieces = self.payload.splitlines(keepends=True) if self.whole else [bytes([b]) for b in self.payload]
            end = self.startedAt + GIVE_UP
            i = 0
            while time.monotonic() < end:
                try:
                    sock.sendall(pieces[i % len(pieces)])
                except OSError:
                    break
                i += 1
                if not self._read(sock, self.every):
                    break
            self.closedAt = time.monotonic()
        except OSError:
            self.closedAt = time.monotonic()
        finally:
            self.ready.set()
            sock.close()

    def finish(self):
        self.join(GIVE_UP + 30)
        assert not self.is_alive()
        assert self.closedAt is not None and self.closedAt - self.startedAt < GIVE_UP - 5, self.received
        return self.received


def start(*dribblers):
    for d in dribblers:
        d.start()
    for d in dribblers:
        assert d.ready.wait(30)
    return dribblers


def test_smtp(server):
    port = server.port("smtp")
    envelope = [b"EHLO slow.example\r\n", b"MAIL FROM:<x@remote.example>\r\n", b"RCPT TO:<bob@example.test>\r\n"]
    data = Dribbler(port, envelope + [b"DATA\r\n"], b"Subject: slow\r\n\r\n" + b"x" * 200)
    line = Dribbler(port, [b"EHLO slow.example\r\n"], b"MAIL FROM:<someone-rather-slow@remote.example>\r\n")
    submission = Dribbler(server.port("submissions"), [b"EHLO slow.example\r\n"], b"NOOP\r\n", whole=True, tls=True)
    start(data, line, submission)
    # meanwhile, an honest client is served
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("y@remote.example", ["alice@example.test"], b"Subject: honest\r\n\r\nhello\r\n")
    assert data.is_alive() and line.is_alive()
    assert data.finish().endswith(b"421 4.4.2 Timeout: message data arriving too slowly, closing the connection\r\n")
    assert line.finish().endswith(b"421 4.4.2 Timeout: command line not completed in time, closing the connection\r\n")
    assert submission.finish().endswith(b"421 4.4.2 Timeout: no login in time, closing the connection\r\n")
    assert len(server.messageFiles("alice@example.test")) == 1
    assert server.messageFiles("bob@example.test") == []  # the dribbled message was dropped


def test_imap(server):
    port = server.port("imap")
    line = Dribbler(port, [b"a1 LOGIN alice@example.test alice-pw\r\n"], b"a2 SELECT INBOX\r\n")
    literal = Dribbler(port, [b"a1 LOGIN alice@example.test alice-pw\r\n", b"a2 APPEND INBOX {1000}\r\n"], b"y" * 1000)
    prelogin = Dribbler(port, [], b"a NOOP\r\n", whole=True)
    start(line, literal, prelogin)
    client = imaplib.IMAP4("127.0.0.1", port, timeout=30)
    client.login("bob@example.test", "bob-pw")
    assert client.select("INBOX")[0] == "OK"
    client.logout()
    assert line.is_alive() and literal.is_alive()
    assert line.finish().endswith(b"* BYE Autologout; command not completed in time\r\n")
    assert literal.finish().endswith(b"* BYE Autologout; command not completed in time\r\n")
    assert prelogin.finish().endswith(b"* BYE Autologout; no login within %d seconds\r\n" % DEADLINE)


def test_pop3(server):
    port = server.port("pop3")
    line = Dribbler(port, [b"USER alice@example.test\r\n", b"PASS alice-pw\r\n"], b"LIST 1\r\n")
    prelogin = Dribbler(port, [], b"CAPA\r\n", whole=True)
    start(line, prelogin)
    client = poplib.POP3("127.0.0.1", port, timeout=30)
    client.user("bob@example.test")
    client.pass_("bob-pw")
    assert client.stat()[0] >= 0
    client.quit()
    assert line.is_alive()
    assert line.finish().endswith(b"-ERR Timeout: command line not completed within %d seconds\r\n" % DEADLINE)
    assert prelogin.finish().endswith(b"-ERR Timeout: no login within %d seconds of connecting\r\n" % DEADLINE)


def test_no_traceback(server):
    assert "Traceback" not in server.log() and "Unhandled" not in server.log()

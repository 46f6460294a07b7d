"""
Bad input against the real server process, over raw sockets, on SMTP (MX
and submission), IMAP and POP3: the promise that every bad input gets the
right protocol reply and a clear message, that the session stays sane and
that nothing already accepted is lost.

The parsers are fuzzed in-process in tests/smtp, tests/imap and tests/pop3;
this module checks the whole stack (Twisted protocol, session, store) of one
running server:

* a table per protocol of nasty inputs, each followed on the same
  connection by valid commands that must still work;
* limits read from the server's own config, probed just over (and at) the
  limit;
* TLS ClientHello bytes on a plain port, 1000 pipelined NOOPs, half-closed
  connections in the middle of a command, of DATA, of APPEND and of a POP3
  transaction;
* Hypothesis byte soups, one connection each, then a valid command;
* at the end (module teardown, and the last test): the server still accepts
  connections on every port, its log has no "Traceback" and no "Unhandled",
  and the message accepted with a 250 at the start is still there, intact.

Every socket read is bounded by ``TIMEOUT``: a hang fails the test.
"""

from __future__ import annotations

import base64
import os
import poplib
import re
import socket
import ssl

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailnet import config as mailnetConfig
from tests.harness import MailServer

TIMEOUT = 5.0
LITERAL_LIMIT = 20000  # [limits] imap_literal_size of the test server
USERS = {
    "alice@example.test": "alice-pw",
    "carol@example.test": "carol-pw",  # receives only what must not arrive
    "keeper@example.test": "keeper-pw",  # holds the message accepted first
    "dave@example.test": "dave-pw",  # the byte soups' logged-in sessions
}
KEEPER_MESSAGE = (
    b"From: sender@remote.test\r\n"
    b"To: keeper@example.test\r\n"
    b"Subject: accepted before the sweep\r\n"
    b"Message-ID: <keeper-1@remote.test>\r\n"
    b"\r\n"
    b"Line one.\r\n"
    b"..a line that starts with a dot\r\n"
    b"\xc3\xa9t\xc3\xa9 8-bit text\r\n"
    b"\r\n"
    b"Last line.\r\n"
)
# KEEPER_MESSAGE as the store must keep it (dot-unstuffed)
KEEPER_STORED = KEEPER_MESSAGE.replace(b"\r\n..a line", b"\r\n.a line")


# -- Raw connections -------------------------------------------------------


class Closed(Exception):
    """The server closed the connection (``reset``: with a TCP RST)."""

    def __init__(self, reset=False):
        super().__init__("connection reset" if reset else "connection closed")
        self.reset = reset


class Wire:
    """A raw client connection; every read is bounded by TIMEOUT."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buf = b""
        self.eof = False

    def send(self, data: bytes):
        self.sock.sendall(data)

    def _fill(self):
        if self.eof:
            raise Closed()
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise AssertionError(f"no answer within {TIMEOUT} s (hang); received so far: {self.buf[-300:]!r}")
        except ConnectionResetError:
            self.eof = True
            raise Closed(reset=True)
        if not chunk:
            self.eof = True
            raise Closed()
        self.buf += chunk

    def line(self) -> bytes:
        """The next line, without its CRLF (replies must use CRLF)."""
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        assert b"\n" not in line and b"\r" not in line, f"bare CR or LF in a reply: {line!r}"
        return line

    def read(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def expectClose(self):
        """The server closes the connection with nothing more to say."""
        try:
            self._fill()
        except Closed:
            assert not self.buf, f"unread data before the close: {self.buf!r}"
            return
        raise AssertionError(f"expected the server to close; it sent {self.buf!r}")

    def halfClose(self):
        self.sock.shutdown(socket.SHUT_WR)

    def close(self):
        self.sock.close()


def readable(text: str):
    """A reply text a person can read: printable, with words in it."""
    assert text.isprintable(), f"unprintable reply text: {text!r}"
    assert re.search(r"[A-Za-z]{3,}", text), f"reply text says nothing: {text!r}"


# -- The server ------------------------------------------------------------


def _smtpDeliver(port, sender, recipient, message: bytes):
    """Deliver over raw SMTP; returns the final reply (must be 250)."""
    w = Wire(port)
    try:
        smtpReply(w)
        for command, want in [("EHLO client.test", 250), (f"MAIL FROM:<{sender}>", 250),
                              (f"RCPT TO:<{recipient}>", 250), ("DATA", 354)]:
            assert smtpCommand(w, command.encode())[0] == want, command
        w.send(message + b".\r\n")
        code, text = smtpReply(w)
        smtpCommand(w, b"QUIT")
        return code, text
    finally:
        w.close()


@pytest.fixture(scope="module")
def mail(tmp_path_factory):
    s = MailServer(tmp_path_factory.mktemp("badinput"), config={
        # plain-port logins so every protocol can be driven in plaintext;
        # no login delay, so failed logins in the sweep cost no time
        "auth": {"allow_plaintext": True, "failure_delay": 0},
        "limits": {"imap_literal_size": LITERAL_LIMIT},
    })
    s.start()
    for name, password in USERS.items():
        s.addUser(name, password)
    s.limits = mailnetConfig.load(s.configPath).limits
    # Accepted before the sweep: must survive it untouched.
    code, text = _smtpDeliver(s.port("smtp"), "sender@remote.test", "keeper@example.test", KEEPER_MESSAGE)
    assert code == 250, text
    # Something in alice's INBOX for FETCH, STORE, RETR and DELE.
    for user in ("alice@example.test", "dave@example.test"):
        for i in range(2):
            body = b"Subject: for %s %d\r\n\r\nhello %d\r\n" % (user.encode(), i, i)
            assert _smtpDeliver(s.port("smtp"), "sender@remote.test", user, body)[0] == 250
    yield s
    try:
        checkSurvived(s)
    finally:
        s.stop()


def checkSurvived(s):
    """The server is alive and well, and kept what it accepted."""
    assert s.process.poll() is None, "the server died:\n" + s.log()
    for listener, greeting in [("smtp", rb"220 "), ("submission", rb"220 "), ("imap", rb"\* OK "),
                               ("pop3", rb"\+OK ")]:
        w = Wire(s.port(listener))
        try:
            assert re.match(greeting, w.line()), listener
        finally:
            w.close()
    log = s.log()
    assert "Traceback" not in log, log
    assert "Unhandled" not in log, log
    files = s.messageFiles("keeper@example.test")
    assert len(files) == 1, files
    with open(files[0], "rb") as f:
        stored = f.read()
    assert stored.endswith(KEEPER_STORED), stored
    # and as a client sees it
    p = poplib.POP3("127.0.0.1", s.port("pop3"), timeout=TIMEOUT)
    try:
        p.user("keeper@example.test")
        p.pass_("keeper-pw")
        assert p.stat()[0] == 1
        lines = p.retr(1)[1]
        assert b"\r\n".join(lines) + b"\r\n" == stored
    finally:
        p.quit()


# -- SMTP ------------------------------------------------------------------


def smtpReply(w, first=False) -> tuple[int, str]:
    """One (possibly multi-line) reply: (code, text of the last line, or of
    the first with ``first``)."""
    code = None
    texts = []
    while True:
        line = w.line()
        assert re.fullmatch(rb"[2-5]\d\d[ -].*", line), f"not an SMTP reply: {line!r}"
        assert code is None or int(line[:3]) == code, f"codes differ in one reply: {line!r}"
        code = int(line[:3])
        texts.append(line[4:].decode("utf-8"))
        if line[3:4] == b" ":
            return code, texts[0 if first else -1]


def smtpCommand(w, command: bytes):
    w.send(command + b"\r\n")
    return smtpReply(w)


def smtpExpect(reply, code, enhanced=None):
    got, text = reply
    assert got == code, f"expected {code}, got {got} {text}"
    if enhanced:
        assert text.startswith(enhanced + " "), f"expected {enhanced}: {got} {text}"
        text = text[len(enhanced) + 1:]
    if code >= 400:
        readable(text)


PLAIN_ALICE = base64.b64encode(b"\0alice@example.test\0alice-pw")


def smtpSession(mail, listener):
    """A session ready for MAIL: greeted, EHLO, and on submission AUTH."""
    w = Wire(mail.port(listener))
    assert smtpReply(w)[0] == 220
    assert smtpCommand(w, b"EHLO client.test")[0] == 250
    if listener == "submission":
        smtpExpect(smtpCommand(w, b"AUTH PLAIN " + PLAIN_ALICE), 235, "2.7.0")
    return w


def senderFor(listener):
    return "alice@example.test" if listener == "submission" else "someone@remote.test"


def smtpSane(w, listener):
    """The session still works: a full transaction up to DATA, then RSET."""
    smtpExpect(smtpCommand(w, b"NOOP"), 250, "2.0.0")
    smtpExpect(smtpCommand(w, b"RSET"), 250, "2.0.0")
    smtpExpect(smtpCommand(w, f"MAIL FROM:<{senderFor(listener)}>".encode()), 250, "2.1.0")
    smtpExpect(smtpCommand(w, b"RCPT TO:<alice@example.test>"), 250, "2.1.5")
    smtpExpect(smtpCommand(w, b"RSET"), 250, "2.0.0")
    smtpExpect(smtpCommand(w, b"QUIT"), 221, "2.0.0")
    w.expectClose()


def _smtpLong(limit, extra):
    # a NOOP line of exactly limit + extra octets, CRLF included
    return b"NOOP " + b"x" * (limit + extra - 7) + b"\r\n"


MAIL = b"MAIL FROM:<{sender}>"
# (id, setup commands, bad input, expected replies [(code, enhanced)], ports)
SMTP_CASES = [
    ("nul-in-verb", [], b"NO\x00OP\r\n", [(500, "5.5.2")]),
    ("nul-in-argument", [], b"HELO a\x00b\r\n", [(501, "5.5.4")]),
    ("nul-in-address", [], b"MAIL FROM:<a\x00b@remote.test>\r\n", [(501, "5.5.4")]),
    ("bare-cr", [], b"NOOP\rRSET\r\n", [(500, "5.5.2")]),
    ("bare-lf", [], b"NOOP\n", [(500, "5.5.2")]),
    ("bare-lf-then-crlf", [], b"RSET\nNOOP\r\n", [(500, "5.5.2"), (250, "2.0.0")]),
    ("invalid-utf8", [], b"NOOP \xff\xfe\r\n", [(500, "5.5.2")]),
    ("8bit-verb", [], "H\u00c9LO client.test\r\n".encode(), [(500, "5.5.2")]),
    ("8bit-sender-without-smtputf8", [], "MAIL FROM:<j\u00f6@remote.test>\r\n".encode(), [(553, "5.6.7")]),
    ("empty-line", [], b"\r\n", [(500, "5.5.2")]),
    ("line-just-over-limit", [], "long+1", [(500, "5.5.2")]),
    ("line-far-over-limit", [], "long*3", [(500, "5.5.2")]),
    ("line-at-limit-is-fine", [], "long+0", [(250, "2.0.0")]),
    ("unknown-command", [], b"XYZZY plugh\r\n", [(500, "5.5.2")]),
    ("expn-not-offered", [], b"EXPN staff\r\n", [(502, "5.5.1")]),
    ("data-before-mail", [], b"DATA\r\n", [(503, "5.5.1")]),
    ("rcpt-before-mail", [], b"RCPT TO:<alice@example.test>\r\n", [(503, "5.5.1")]),
    ("data-before-rcpt", [MAIL], b"DATA\r\n", [(554, "5.5.1")]),
    ("nested-mail", [MAIL], MAIL + b"\r\n", [(503, "5.5.1")]),
    ("bdat-before-mail", [], b"BDAT 6 LAST\r\nabcdef", [(503, "5.5.1")]),
    ("bdat-bad-size", [MAIL], b"BDAT -1\r\n", [(501, "5.5.4")]),
    ("mail-without-brackets", [], b"MAIL FROM:someone@remote.test\r\n", [(501, "5.1.7")]),
    ("mail-unclosed-bracket", [], b"MAIL FROM:<someone@remote.test\r\n", [(501, "5.1.7")]),
    ("mail-no-local-part", [], b"MAIL FROM:<@remote.test>\r\n", [(501, "5.1.7")]),
    ("mail-space-in-local", [], b"MAIL FROM:<some one@remote.test>\r\n", [(501, "5.1.7")]),
    ("mail-unbalanced-quote", [], b'MAIL FROM:<"some@remote.test>\r\n', [(501, "5.1.7")]),
    ("mail-bad-literal", [], b"MAIL FROM:<a@[999.1.1.1]>\r\n", [(501, "5.1.7")]),
    ("mail-local-too-long", [], b"MAIL FROM:<" + b"a" * 65 + b"@remote.test>\r\n", [(501, "5.1.7")]),
    ("mail-junk-after-path", [], b"MAIL FROM:<a@remote.test>junk\r\n", [(501, "5.1.7")]),
    ("mail-no-colon", [], b"MAIL FROM <a@remote.test>\r\n", [(501, "5.5.4")]),
    ("mail-unknown-parameter", [], MAIL + b" FOO=BAR\r\n", [(555, "5.5.4")]),
    ("mail-body-binarymime", [], MAIL + b" BODY=BINARYMIME\r\n", [(555, "5.5.4")]),
    ("mail-size-not-a-number", [], MAIL + b" SIZE=big\r\n", [(501, "5.5.4")]),
    ("mail-size-too-big", [], MAIL + b" SIZE=999999999999\r\n", [(552, "5.3.4")]),
    ("mail-parameter-twice", [], MAIL + b" SIZE=1 SIZE=2\r\n", [(501, "5.5.4")]),
    ("mail-bad-parameter-syntax", [], MAIL + b" =x\r\n", [(501, "5.5.4")]),
    ("rcpt-null-path", [MAIL], b"RCPT TO:<>\r\n", [(501, "5.1.3")]),
    ("rcpt-unknown-parameter", [MAIL], b"RCPT TO:<alice@example.test> XFOO\r\n", [(555, "5.5.4")]),
    ("rcpt-bad-notify", [MAIL], b"RCPT TO:<alice@example.test> NOTIFY=SOMETIMES\r\n", [(501, "5.5.4")]),
    ("rcpt-unknown-user", [MAIL], b"RCPT TO:<nobody@example.test>\r\n", [(550, "5.1.1")]),
    ("data-bare-lf", [MAIL, b"RCPT TO:<carol@example.test>", b"DATA"],
     b"Subject: smuggled\n\nbody\r\n.\r\n", [(554, "5.6.0")]),
    ("data-line-too-long", [MAIL, b"RCPT TO:<carol@example.test>", b"DATA"],
     b"Subject: long\r\n\r\n" + b"y" * 2000 + b"\r\n.\r\n", [(554, "5.6.0")]),
    ("starttls-with-argument", [], b"STARTTLS now\r\n", [(501, "5.5.4")]),
    ("helo-without-name", [], b"HELO\r\n", [(501, "5.5.4")]),
    ("rset-with-argument", [], b"RSET x\r\n", [(501, "5.5.4")]),
    ("auth-unknown-mechanism", [], b"AUTH FOO\r\n", [(504, "5.5.4")], ("smtp",)),
    ("auth-bad-base64", [], b"AUTH PLAIN !!!\r\n", [(501, "5.5.2")], ("smtp",)),
    ("auth-cancelled", [], b"AUTH LOGIN\r\n*\r\n", [(334, None), (501, "5.0.0")], ("smtp",)),
    ("auth-wrong-password", [], b"AUTH PLAIN " + base64.b64encode(b"\0alice@example.test\0wrong") + b"\r\n",
     [(535, "5.7.8")], ("smtp",)),
    ("auth-twice", [], b"AUTH PLAIN " + PLAIN_ALICE + b"\r\n", [(503, "5.5.1")], ("submission",)),
]


def _smtpParams():
    for case in SMTP_CASES:
        name, setup, bad, expected = case[:4]
        ports = case[4] if len(case) > 4 else ("smtp", "submission")
        for listener in ports:
            yield pytest.param(listener, setup, bad, expected, id=f"{listener}-{name}")


@pytest.mark.parametrize("listener,setup,bad,expected", list(_smtpParams()))
def test_smtp_bad_input(mail, listener, setup, bad, expected):
    sender = senderFor(listener).encode()
    w = smtpSession(mail, listener)
    try:
        for command in setup:
            code, text = smtpCommand(w, command.replace(b"{sender}", sender))
            assert code in (250, 354), (command, code, text)
        if isinstance(bad, str):
            limit = mail.limits.smtp_line_length
            bad = {"long+1": _smtpLong(limit, 1), "long+0": _smtpLong(limit, 0),
                   "long*3": b"z" * (3 * limit) + b"\r\n"}[bad]
        w.send(bad.replace(b"{sender}", sender))
        for code, enhanced in expected:
            reply = smtpReply(w)
            if code == 334:
                assert reply[0] == 334
            else:
                smtpExpect(reply, code, enhanced)
        smtpSane(w, listener)
    finally:
        w.close()


def test_smtp_mail_before_auth_on_submission(mail):
    w = Wire(mail.port("submission"))
    try:
        smtpReply(w)
        smtpCommand(w, b"EHLO client.test")
        smtpExpect(smtpCommand(w, b"MAIL FROM:<alice@example.test>"), 530, "5.7.0")
        smtpExpect(smtpCommand(w, b"MAIL FROM:alice"), 530, "5.7.0")
        smtpExpect(smtpCommand(w, b"AUTH PLAIN " + PLAIN_ALICE), 235, "2.7.0")
        smtpSane(w, "submission")
    finally:
        w.close()


def test_smtp_mail_before_helo(mail):
    w = Wire(mail.port("smtp"))
    try:
        smtpReply(w)
        smtpExpect(smtpCommand(w, b"MAIL FROM:<a@remote.test>"), 503, "5.5.1")
        smtpCommand(w, b"EHLO client.test")
        smtpSane(w, "smtp")
    finally:
        w.close()


def test_smtp_too_many_errors_closes_with_421(mail):
    """[limits] smtp_errors bad commands are answered; the next one gets 421
    4.7.0 and the connection is closed (RFC 5321 s4.3.2)."""
    w = smtpSession(mail, "smtp")
    try:
        limit = mail.limits.smtp_errors
        w.send(b"XYZZY\r\n" * limit)
        for _ in range(limit):
            smtpExpect(smtpReply(w), 500, "5.5.2")
        w.send(b"XYZZY\r\n")
        smtpExpect(smtpReply(w), 421, "4.7.0")
        w.expectClose()
    finally:
        w.close()


def clientHello() -> bytes:
    """The first flight of a TLS client: what a client that wrongly expects
    implicit TLS sends to a plain port."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="mx.example.test")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    assert hello[:1] == b"\x16"
    return hello


@pytest.mark.parametrize("listener", ["smtp", "submission"])
def test_smtp_tls_client_hello_on_plain_port(mail, listener):
    w = smtpSession(mail, listener)
    try:
        w.send(clientHello() + b"\r\nNOOP\r\nHELP\r\n")
        replies = []
        while True:
            reply = smtpReply(w)
            if reply[0] == 214:
                break
            replies.append(reply)
        # the hello's "lines" are refused, then NOOP works
        assert replies[-1][0] == 250, replies
        for reply in replies[:-1]:
            smtpExpect(reply, 500, "5.5.2")
        assert replies[:-1], "the ClientHello got no reply"
        smtpSane(w, listener)
    finally:
        w.close()


@pytest.mark.parametrize("listener", ["smtp", "submission"])
def test_smtp_thousand_pipelined_noops(mail, listener):
    w = smtpSession(mail, listener)
    try:
        w.send(b"NOOP\r\n" * 1000)
        for _ in range(1000):
            smtpExpect(smtpReply(w), 250, "2.0.0")
        smtpSane(w, listener)
    finally:
        w.close()


@pytest.mark.parametrize("listener", ["smtp", "submission"])
def test_smtp_half_close_mid_command(mail, listener):
    w = smtpSession(mail, listener)
    try:
        w.send(b"MAIL FROM:<someone@rem")
        w.halfClose()
        w.expectClose()
    finally:
        w.close()
    smtpSane(smtpSession(mail, listener), listener)


@pytest.mark.parametrize("listener", ["smtp", "submission"])
def test_smtp_half_close_mid_data_stores_nothing(mail, listener):
    before = mail.messageFiles("carol@example.test")
    w = smtpSession(mail, listener)
    try:
        for command in [f"MAIL FROM:<{senderFor(listener)}>".encode(), b"RCPT TO:<carol@example.test>"]:
            assert smtpCommand(w, command)[0] == 250
        smtpExpect(smtpCommand(w, b"DATA"), 354)
        w.send(b"Subject: never finished\r\n\r\nhalf a body")
        w.halfClose()
        w.expectClose()
    finally:
        w.close()
    w = smtpSession(mail, listener)
    smtpSane(w, listener)  # and by now the server has handled the close
    assert mail.messageFiles("carol@example.test") == before


# -- IMAP ------------------------------------------------------------------

# untagged, continuation, or a tag (RFC 9051 s9: ASTRING-CHARs but "+") and a status
IMAP_REPLY = re.compile(rb"(?:\* |\+ |\+$|[\x21-\x29\x2c-\x7e][\x21-\x7e]* (?:OK|NO|BAD) ).*")


def imapLine(w) -> bytes:
    """The next response line; a literal it announces is read and kept in it."""
    line = w.line()
    assert IMAP_REPLY.fullmatch(line), f"not an IMAP response: {line!r}"
    while (m := re.search(rb"\{(\d+)\}$", line)) is not None:
        line += b"\r\n" + w.read(int(m.group(1))) + w.line()
    return line


def imapTagged(w, tag: bytes):
    """Lines up to the tagged response: (untagged lines, kind, text)."""
    untagged = []
    while True:
        line = imapLine(w)
        if line.startswith(tag + b" "):
            kind, _, text = line[len(tag) + 1:].partition(b" ")
            return untagged, kind.decode(), text.decode("utf-8")
        untagged.append(line)


def imapExpect(result, kind, code=None):
    untagged, got, text = result
    assert got == kind, f"expected {kind}: {got} {text} (untagged: {untagged})"
    if code:
        assert text.startswith(f"[{code}] "), f"expected [{code}]: {text}"
    if kind != "OK":
        readable(re.sub(r"^\[[^\]]*\] ", "", text))
    return untagged


def imapCommand(w, tag: bytes, command: bytes):
    w.send(tag + b" " + command + b"\r\n")
    return imapTagged(w, tag)


def imapSession(mail, state):
    w = Wire(mail.port("imap"))
    line = w.line()
    assert line.startswith(b"* OK "), line
    if state in ("auth", "selected"):
        imapExpect(imapCommand(w, b"s1", b"LOGIN alice@example.test alice-pw"), "OK")
    if state == "selected":
        imapExpect(imapCommand(w, b"s2", b"SELECT INBOX"), "OK")
    return w


def imapSane(w, state):
    imapExpect(imapCommand(w, b"z1", b"NOOP"), "OK")
    if state == "none":
        imapExpect(imapCommand(w, b"z2", b"LOGIN alice@example.test alice-pw"), "OK")
    if state in ("none", "auth"):
        imapExpect(imapCommand(w, b"z3", b"SELECT INBOX"), "OK")
    untagged = imapExpect(imapCommand(w, b"z4", b"FETCH 1:2 (UID FLAGS)"), "OK")
    assert len([u for u in untagged if b" FETCH " in u]) == 2, untagged
    w.send(b"z5 LOGOUT\r\n")
    assert imapTagged(w, b"z5")[1] == "OK"
    w.expectClose()


# (id, state, bad input, expected [(tag or None for untagged, kind, code)])
IMAP_CASES = [
    ("nul", "none", b"x1 NOOP\x00\r\n", [(b"x1", "BAD", None)]),
    ("nul-in-quoted", "none", b'x1 LOGIN "al\x00ice" "pw"\r\n', [(b"x1", "BAD", None)]),
    ("nul-in-literal-name", "auth", b"x1 SELECT {3+}\r\na\x00b\r\n", [(b"x1", "NO", None)]),
    ("bare-cr", "none", b"x1 NOOP\rx2 NOOP\r\n", [(b"x1", "BAD", None)]),
    # RFC 9051 s2.2: lines end with CRLF; a bare LF is taken as a line end
    # (as Dovecot and Cyrus do), so the command works
    ("bare-lf-is-a-line-end", "none", b"x1 NOOP\n", [(b"x1", "OK", None)]),
    ("invalid-utf8-atom", "none", b"x1 NOOP \xff\xfe\r\n", [(b"x1", "BAD", None)]),
    ("invalid-utf8-mailbox", "auth", b'x1 SELECT "\xc3\x28"\r\n', [(b"x1", "BAD", None)]),
    ("cr-in-quoted", "none", b'x1 LOGIN alice@example.test "alice\r-pw"\r\n', [(b"x1", "BAD", None)]),
    ("8bit-mailbox-unknown", "auth", 'x1 SELECT "Entw\u00fcrfe"\r\n'.encode(), [(b"x1", "NO", None)]),
    ("line-just-over-limit", "none", "long+1", [(b"x1", "BAD", "TOOBIG")]),
    ("line-far-over-limit", "none", "long*3", [(b"x1", "BAD", "TOOBIG")]),
    ("line-at-limit-is-fine", "auth", "long+0", [(b"x1", "OK", None)]),
    ("literal-over-limit", "auth", "literal+1", [(b"x1", "BAD", "TOOBIG")]),
    ("nonsync-literal-over-limit", "auth", "nonsync+1", [(b"x1", "BAD", "TOOBIG")]),
    ("literal-over-preauth-limit", "none", b"x1 LOGIN {9000}\r\n", [(b"x1", "BAD", "TOOBIG")]),
    ("literal-count-too-small", "none", b"x1 LOGIN {5+}\r\nalice@example.test alice-pw\r\n",
     [(b"x1", "BAD", None)]),
    ("literal-count-absurd", "none", b"x1 LOGIN {99999999999999999999}\r\n", [(b"x1", "BAD", "TOOBIG")]),
    ("literal-count-not-a-number", "none", b"x1 LOGIN {abc}\r\n", [(b"x1", "BAD", None)]),
    ("literal-count-negative", "none", b"x1 LOGIN {-1}\r\n", [(b"x1", "BAD", None)]),
    ("unbalanced-paren-open", "selected", b"x1 FETCH 1 (FLAGS UID\r\n", [(b"x1", "BAD", None)]),
    ("unbalanced-paren-close", "selected", b"x1 FETCH 1 FLAGS)\r\n", [(b"x1", "BAD", None)]),
    ("unbalanced-store-flags", "selected", b"x1 STORE 1 +FLAGS (\\Seen\r\n", [(b"x1", "BAD", None)]),
    ("unbalanced-search", "selected", b"x1 SEARCH (OR SEEN\r\n", [(b"x1", "BAD", None)]),
    ("unbalanced-quote-login", "none", b'x1 LOGIN "alice@example.test alice-pw\r\n', [(b"x1", "BAD", None)]),
    ("unbalanced-quote-select", "auth", b'x1 SELECT "INBOX\r\n', [(b"x1", "BAD", None)]),
    ("unknown-command", "none", b"x1 XYZZY\r\n", [(b"x1", "BAD", None)]),
    ("unknown-uid-command", "selected", b"x1 UID XYZZY 1\r\n", [(b"x1", "BAD", None)]),
    ("tag-only", "none", b"x1\r\n", [(b"x1", "BAD", None)]),
    ("no-tag", "none", b"\r\n", [(None, "BAD", None)]),
    ("star-as-tag", "none", b"* NOOP\r\n", [(None, "BAD", None)]),
    ("fetch-before-login", "none", b"x1 FETCH 1 FLAGS\r\n", [(b"x1", "BAD", None)]),
    ("select-before-login", "none", b"x1 SELECT INBOX\r\n", [(b"x1", "BAD", None)]),
    ("fetch-before-select", "auth", b"x1 FETCH 1 FLAGS\r\n", [(b"x1", "BAD", None)]),
    ("expunge-before-select", "auth", b"x1 EXPUNGE\r\n", [(b"x1", "BAD", None)]),
    ("login-twice", "auth", b"x1 LOGIN alice@example.test alice-pw\r\n", [(b"x1", "BAD", None)]),
    ("wrong-password", "none", b"x1 LOGIN alice@example.test wrong\r\n", [(b"x1", "NO", "AUTHENTICATIONFAILED")]),
    ("seq-zero", "selected", b"x1 FETCH 0 FLAGS\r\n", [(b"x1", "BAD", None)]),
    ("seq-star-star", "selected", b"x1 FETCH *:* FLAGS\r\n", [(b"x1", "OK", None)]),
    ("seq-2-to-32", "selected", b"x1 FETCH 4294967296 FLAGS\r\n", [(b"x1", "BAD", None)]),
    ("seq-negative", "selected", b"x1 FETCH -1 FLAGS\r\n", [(b"x1", "BAD", None)]),
    ("seq-open-range", "selected", b"x1 FETCH 1: FLAGS\r\n", [(b"x1", "BAD", None)]),
    ("seq-empty-item", "selected", b"x1 FETCH 1,,2 FLAGS\r\n", [(b"x1", "BAD", None)]),
    ("uid-zero", "selected", b"x1 UID FETCH 0 FLAGS\r\n", [(b"x1", "BAD", None)]),
    ("uid-beyond-is-empty", "selected", b"x1 UID FETCH 4294967295 FLAGS\r\n", [(b"x1", "OK", None)]),
    ("store-seq-zero", "selected", b"x1 STORE 0 +FLAGS (\\Seen)\r\n", [(b"x1", "BAD", None)]),
    ("copy-seq-2-to-32", "selected", b"x1 COPY 4294967296 INBOX\r\n", [(b"x1", "BAD", None)]),
    ("authenticate-bad-base64", "none", b"x1 AUTHENTICATE PLAIN\r\n!!!\r\n", [(b"x1", "BAD", None)]),
    ("authenticate-cancelled", "none", b"x1 AUTHENTICATE PLAIN\r\n*\r\n", [(b"x1", "BAD", None)]),
    ("authenticate-unknown-mechanism", "none", b"x1 AUTHENTICATE FOO\r\n", [(b"x1", "NO", None)]),
    ("append-to-nowhere", "auth", b"x1 APPEND Nowhere {5+}\r\nhello\r\n", [(b"x1", "NO", "TRYCREATE")]),
]


def _imapBad(mail, bad):
    limit = mail.limits.imap_line_length
    # the command text counts CRLF (parser: len(line) + 2)
    if bad == "long+1":
        return b"x1 NOOP " + b"a" * (limit - 9) + b"\r\n"
    if bad == "long*3":
        return b"x1 NOOP " + b"a" * (3 * limit) + b"\r\n"
    if bad == "long+0":
        pattern = b'x1 LIST "" "'
        return pattern + b"a" * (limit - len(pattern) - 3) + b'"\r\n'
    if bad == "literal+1":
        return b"x1 APPEND INBOX {%d}\r\n" % (mail.limits.imap_literal_size + 1)
    if bad == "nonsync+1":
        size = mail.limits.imap_literal_size + 1
        return b"x1 APPEND INBOX {%d+}\r\n" % size + b"a" * size + b"\r\n"
    return bad


@pytest.mark.parametrize("state,bad,expected", [pytest.param(*c[1:], id=c[0]) for c in IMAP_CASES])
def test_imap_bad_input(mail, state, bad, expected):
    w = imapSession(mail, state)
    try:
        w.send(_imapBad(mail, bad))
        for tag, kind, code in expected:
            if tag is None:
                line = imapLine(w)
                assert line.startswith(b"* " + kind.encode() + b" "), line
                readable(line[len(kind) + 3:].decode("utf-8"))
            else:
                imapExpect(imapTagged(w, tag), kind, code)
        imapSane(w, state)
    finally:
        w.close()


def test_imap_literal_with_too_few_bytes_then_half_close_appends_nothing(mail):
    """An APPEND literal announced longer than what comes, then the client
    half-closes: nothing is appended, the session ends quietly."""
    before = len(mail.messageFiles("alice@example.test"))
    w = imapSession(mail, "auth")
    try:
        w.send(b"x1 APPEND INBOX {300}\r\n")
        assert imapLine(w).startswith(b"+ ")
        w.send(b"Subject: cut short\r\n\r\nonly this\r\n")
        w.halfClose()
        w.expectClose()
    finally:
        w.close()
    imapSane(imapSession(mail, "auth"), "auth")
    assert len(mail.messageFiles("alice@example.test")) == before


def test_imap_half_close_mid_command(mail):
    w = imapSession(mail, "none")
    try:
        w.send(b"x1 LOGIN alice@exa")
        w.halfClose()
        w.expectClose()
    finally:
        w.close()
    imapSane(imapSession(mail, "none"), "none")


def test_imap_overlong_sasl_line_says_bye(mail):
    """A SASL response over imap_line_length cannot be answered with a tag
    (the command is still running): untagged BYE, then the close."""
    w = imapSession(mail, "none")
    try:
        w.send(b"x1 AUTHENTICATE PLAIN\r\n")
        assert imapLine(w).startswith(b"+")
        w.send(b"A" * (mail.limits.imap_line_length + 10))
        while True:
            line = imapLine(w)
            if line.startswith(b"* BYE "):
                break
            assert line.startswith(b"x1 BAD "), line
        readable(line[6:].decode())
        w.expectClose()
    finally:
        w.close()


@pytest.mark.parametrize("state", ["none", "auth"])
def test_imap_nonsync_literal_too_big_to_skip_says_bye(mail, state):
    """A non-synchronizing literal over the limit is read and dropped, but
    one with an absurd count cannot be: BYE [TOOBIG], then the close."""
    w = imapSession(mail, state)
    try:
        w.send(b"x1 APPEND INBOX {99999999999999999999+}\r\nSubject: x\r\n\r\nx\r\n")
        line = imapLine(w)
        assert line.startswith(b"* BYE [TOOBIG] "), line
        readable(line[15:].decode())
        w.expectClose()
    finally:
        w.close()


def test_imap_tls_client_hello_on_plain_port(mail):
    w = imapSession(mail, "none")
    try:
        w.send(clientHello() + b"\r\nz0 NOOP\r\n")
        untagged, kind, text = imapTagged(w, b"z0")
        assert kind == "OK"
        assert untagged, "the ClientHello got no reply"
        for line in untagged:
            assert re.match(rb"(\* |[^ ]+ )BAD ", line), line
        imapSane(w, "none")
    finally:
        w.close()


def test_imap_thousand_pipelined_noops(mail):
    w = imapSession(mail, "selected")
    try:
        w.send(b"".join(b"n%d NOOP\r\n" % i for i in range(1000)))
        for i in range(1000):
            assert imapTagged(w, b"n%d" % i)[1] == "OK"
        imapSane(w, "selected")
    finally:
        w.close()


# -- POP3 ------------------------------------------------------------------


def popLine(w) -> bytes:
    line = w.line()
    assert re.fullmatch(rb"(\+OK|-ERR)( .*)?|\+ .*|\+", line), f"not a POP3 reply: {line!r}"
    return line


def popExpect(line, kind, code=None):
    assert line.startswith(kind.encode()), f"expected {kind}: {line!r}"
    text = line[len(kind) + 1:].decode("utf-8")
    if code:
        assert text.startswith(f"[{code}] "), line
        text = text[len(code) + 3:]
    if kind == "-ERR":
        readable(text)
    return text


def popCommand(w, command: bytes):
    w.send(command + b"\r\n")
    return popLine(w)


def popSession(mail, state):
    w = Wire(mail.port("pop3"))
    popExpect(popLine(w), "+OK")
    if state == "trans":
        popExpect(popCommand(w, b"USER alice@example.test"), "+OK")
        popExpect(popCommand(w, b"PASS alice-pw"), "+OK")
    return w


def popMultiline(w):
    lines = []
    while (line := w.line()) != b".":
        lines.append(line)
    return lines


def popSane(w, state):
    popExpect(popCommand(w, b"NOOP"), "+OK")
    if state == "none":
        popExpect(popCommand(w, b"USER alice@example.test"), "+OK")
        popExpect(popCommand(w, b"PASS alice-pw"), "+OK")
    count = int(popExpect(popCommand(w, b"STAT"), "+OK").split()[0])
    assert count >= 2
    popExpect(popCommand(w, b"UIDL"), "+OK")
    assert len(popMultiline(w)) == count
    popExpect(popCommand(w, b"QUIT"), "+OK")
    w.expectClose()


POP3_CASES = [
    ("nul-in-keyword", "none", b"NO\x00OP\r\n", ["-ERR"]),
    ("nul-in-argument", "none", b"USER ali\x00ce\r\n", ["-ERR"]),
    ("bare-cr", "none", b"NOOP\rNOOP\r\n", ["-ERR"]),
    # documented: a bare LF ends a line, as most POP3 servers accept
    ("bare-lf-is-a-line-end", "none", b"NOOP\n", ["+OK"]),
    ("invalid-utf8-user", "none", b"USER \xff\xfe\r\n", ["-ERR"]),
    ("8bit-keyword", "none", b"NO\xc3\xa9OP\r\n", ["-ERR"]),
    ("line-just-over-limit", "none", "long+1", ["-ERR"]),
    ("line-far-over-limit", "trans", "long*3", ["-ERR"]),
    ("line-at-limit-is-fine", "none", "long+0", ["+OK"]),
    ("empty-line", "none", b"\r\n", ["-ERR"]),
    ("unknown-command", "none", b"XYZZY\r\n", ["-ERR"]),
    ("unknown-command-logged-in", "trans", b"XYZZY 1\r\n", ["-ERR"]),
    ("retr-before-login", "none", b"RETR 1\r\n", ["-ERR"]),
    ("stat-before-login", "none", b"STAT\r\n", ["-ERR"]),
    ("dele-before-login", "none", b"DELE 1\r\n", ["-ERR"]),
    ("pass-without-user", "none", b"PASS alice-pw\r\n", ["-ERR"]),
    ("user-after-login", "trans", b"USER alice@example.test\r\n", ["-ERR"]),
    ("wrong-password", "none", b"USER alice@example.test\r\nPASS wrong\r\n", ["+OK", "-ERR"]),
    ("retr-zero", "trans", b"RETR 0\r\n", ["-ERR"]),
    ("retr-negative", "trans", b"RETR -1\r\n", ["-ERR"]),
    ("retr-2-to-32", "trans", b"RETR 4294967296\r\n", ["-ERR"]),
    ("retr-not-a-number", "trans", b"RETR one\r\n", ["-ERR"]),
    ("retr-no-such-message", "trans", b"RETR 999\r\n", ["-ERR"]),
    ("retr-no-argument", "trans", b"RETR\r\n", ["-ERR"]),
    ("top-negative-lines", "trans", b"TOP 1 -1\r\n", ["-ERR"]),
    ("top-missing-lines", "trans", b"TOP 1\r\n", ["-ERR"]),
    ("list-zero", "trans", b"LIST 0\r\n", ["-ERR"]),
    ("dele-zero", "trans", b"DELE 0\r\n", ["-ERR"]),
    ("dele-twice", "trans", b"DELE 1\r\nDELE 1\r\nRSET\r\n", ["+OK", "-ERR", "+OK"]),
    ("auth-unknown-mechanism", "none", b"AUTH FOO\r\n", ["-ERR"]),
    ("auth-bad-base64", "none", b"AUTH PLAIN\r\n!!!\r\n", ["+", "-ERR"]),
    ("auth-cancelled", "none", b"AUTH PLAIN\r\n*\r\n", ["+", "-ERR"]),
    ("stls-with-argument", "none", b"STLS now\r\n", ["-ERR"]),
]


def _popBad(mail, bad):
    limit = mail.limits.pop3_line_length
    if bad == "long+1":
        return b"NOOP " + b"x" * (limit - 6) + b"\r\n"
    if bad == "long+0":
        return b"NOOP " + b"x" * (limit - 7) + b"\r\n"
    if bad == "long*3":
        return b"STAT " + b"x" * (3 * limit) + b"\r\n"
    return bad


@pytest.mark.parametrize("state,bad,expected", [pytest.param(*c[1:], id=c[0]) for c in POP3_CASES])
def test_pop3_bad_input(mail, state, bad, expected):
    w = popSession(mail, state)
    try:
        w.send(_popBad(mail, bad))
        for kind in expected:
            line = popLine(w)
            if kind == "+":
                assert line == b"+" or line.startswith(b"+ "), line
            else:
                popExpect(line, kind)
        popSane(w, state)
    finally:
        w.close()


def test_pop3_tls_client_hello_on_plain_port(mail):
    w = popSession(mail, "none")
    try:
        data = clientHello() + b"\r\n"
        w.send(data + b"NOOP\r\n")
        # a bare LF ends a POP3 line: one reply per LF in what was sent
        for _ in range(data.count(b"\n")):
            popExpect(popLine(w), "-ERR")
        popExpect(popLine(w), "+OK")
        popSane(w, "none")
    finally:
        w.close()


def test_pop3_thousand_pipelined_noops(mail):
    w = popSession(mail, "trans")
    try:
        w.send(b"NOOP\r\n" * 1000)
        for _ in range(1000):
            popExpect(popLine(w), "+OK")
        popSane(w, "trans")
    finally:
        w.close()


def test_pop3_half_close_mid_command(mail):
    w = popSession(mail, "none")
    try:
        w.send(b"USER ali")
        w.halfClose()
        w.expectClose()
    finally:
        w.close()
    popSane(popSession(mail, "none"), "none")


def test_pop3_half_close_after_dele_deletes_nothing(mail):
    """RFC 1939 s6: without QUIT there is no UPDATE state; DELE is undone."""
    before = len(mail.messageFiles("alice@example.test"))
    w = popSession(mail, "trans")
    try:
        popExpect(popCommand(w, b"DELE 1"), "+OK")
        w.send(b"DELE 2\r\nQU")
        popExpect(popLine(w), "+OK")
        w.halfClose()
        w.expectClose()
    finally:
        w.close()
    popSane(popSession(mail, "trans"), "trans")
    assert len(mail.messageFiles("alice@example.test")) == before


# -- Byte soups --------------------------------------------------------------

_COMMON = [b"\r\n", b"\r\n", b"\r", b"\n", b" ", b" ", b"\x00", b'"', b"(", b")", b"<", b">", b":", b"*",
           b"\xff", b"\xc3\xa9", b"\\", b"{5}\r\n", b"{3+}\r\n", b"{99999999999}\r\n", b"0", b"1:*",
           b"4294967296", b"-1", b"=", b"%", b"[", b"]"]
SMTP_WORDS = [b"EHLO x.test", b"HELO", b"MAIL FROM:", b"RCPT TO:", b"DATA", b"BDAT 5", b"BDAT 3 LAST", b"RSET",
              b"NOOP", b"QUIT", b"VRFY", b"EXPN", b"HELP", b"AUTH PLAIN", b"AUTH LOGIN", b"<someone@remote.test>",
              b"<alice@example.test>", b"SIZE=", b"BODY=8BITMIME", b"SMTPUTF8", b"NOTIFY=", b"ORCPT=rfc822;",
              b"\r\n.\r\n", b"."]
IMAP_WORDS = [b"a1 ", b"a2 ", b"* ", b"+ ", b"UID ", b"NOOP", b"LOGIN", b"LOGOUT", b"SELECT", b"EXAMINE",
              b"FETCH", b"STORE", b"SEARCH", b"APPEND", b"CAPABILITY", b"AUTHENTICATE PLAIN", b"ID", b"ENABLE",
              b"IDLE", b"DONE", b"LIST", b"STATUS", b"INBOX", b"BODY[", b"FLAGS", b"\\Seen", b"NIL", b"~{3}\r\n",
              b"CHARSET", b"alice@example.test"]
POP3_WORDS = [b"USER ", b"PASS ", b"STAT", b"LIST", b"RETR", b"DELE", b"NOOP", b"RSET", b"QUIT", b"TOP", b"UIDL",
              b"APOP", b"AUTH PLAIN", b"CAPA ", b"alice@example.test", b"1", b"2"]


def soups(words):
    token = st.one_of(st.sampled_from(words), st.sampled_from(_COMMON), st.binary(max_size=12))
    return st.lists(token, max_size=40).map(b"".join)


# BADINPUT_EXAMPLES=2000 for a longer hunt
SOUP = settings(max_examples=int(os.environ.get("BADINPUT_EXAMPLES", 50)), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
# Sent after each soup: fills any literal or BDAT chunk the soup left open
# (the soups' counts are small), ends a DATA body, ends any line.
PAD = b"\r\n" + b" " * 40 + b"\r\n"


@given(soup=soups(SMTP_WORDS))
@SOUP
def test_smtp_byte_soup(mail, soup):
    w = smtpSession(mail, "smtp")
    replies = []
    try:
        w.send(soup + PAD + b".\r\n" + b"NOOP\r\nEHLO zz-end.test\r\n")
        while True:
            reply = smtpReply(w, first=True)
            if reply[0] == 250 and reply[1].endswith(" greets zz-end.test"):
                break
            replies.append(reply)
    except Closed as closed:
        # QUIT, or [limits] smtp_errors bad lines, or too many failed logins
        if not closed.reset:
            assert replies and replies[-1][0] in (221, 421), replies[-3:]
        else:
            assert b"QUIT" in soup or soup.count(b"\n") >= mail.limits.smtp_errors, soup
        return
    finally:
        w.close()
    assert replies and replies[-1] == (250, "2.0.0 OK"), replies[-3:]


def soupSession(mail, protocol, state):
    """A connection for a soup: before login, or logged in as dave (whose
    mailbox the soups may change; the other tests never look at it)."""
    if protocol == "imap":
        w = imapSession(mail, "none")
        if state == "selected":
            imapExpect(imapCommand(w, b"s1", b"LOGIN dave@example.test dave-pw"), "OK")
            imapExpect(imapCommand(w, b"s2", b"SELECT INBOX"), "OK")
        return w
    w = popSession(mail, "none")
    if state == "trans":
        popExpect(popCommand(w, b"USER dave@example.test"), "+OK")
        popExpect(popCommand(w, b"PASS dave-pw"), "+OK")
    return w


@pytest.mark.parametrize("state", ["none", "selected"])
@given(soup=soups(IMAP_WORDS))
@SOUP
def test_imap_byte_soup(mail, state, soup):
    w = soupSession(mail, "imap", state)
    lines = []
    try:
        w.send(soup + PAD + b"zz9 NOOP\r\n")
        while True:
            line = imapLine(w)
            if line.startswith(b"zz9 "):
                assert line.startswith(b"zz9 OK "), line
                return
            lines.append(line)
    except Closed as closed:
        if not closed.reset:
            assert any(line.startswith(b"* BYE ") for line in lines), lines[-3:]
        else:
            assert b"LOGOUT" in soup, soup
    finally:
        w.close()


_POP_MULTI = {b"CAPA", b"RETR", b"TOP"}


def _popMultiline(line: bytes, reply: bytes, state: str) -> bool:
    """Whether a +OK reply to this command line is followed by a multi-line
    body (RFC 1939, RFC 2449)."""
    if not reply.startswith(b"+OK"):
        return False
    words = line.rstrip(b"\r").split(b" ")
    keyword = words[0].upper()
    if keyword in _POP_MULTI or (keyword == b"AUTH" and len(words) == 1):
        return True
    return state == "trans" and keyword in (b"LIST", b"UIDL") and len(words) == 1


@pytest.mark.parametrize("state", ["none", "trans"])
@given(soup=soups(POP3_WORDS))
@SOUP
def test_pop3_byte_soup(mail, state, soup):
    if state == "trans":
        # no UPDATE state: the soups must not delete dave's messages
        soup = soup.replace(b"QUIT", b"QUUX")
    w = soupSession(mail, "pop3", state)
    sent = soup + PAD + b"NOOP\r\n"
    lines = []
    try:
        w.send(sent)
        # one reply per line sent (a bare LF ends a line too), multi-line
        # for CAPA, RETR, TOP and listings
        commands = sent.split(b"\n")[:-1]
        for command in commands:
            lines.append(popLine(w))
            if len(command) < mail.limits.pop3_line_length and _popMultiline(command, lines[-1], state):
                popMultiline(w)
    except Closed as closed:
        # QUIT, or [limits] auth_failures failed logins
        if not closed.reset:
            assert lines and lines[-1][:1] in (b"+", b"-"), lines[-3:]
        else:
            assert b"QUIT" in soup or soup.count(b"PASS") + soup.count(b"AUTH") >= mail.limits.auth_failures, soup
        return
    finally:
        w.close()
    assert lines[-1].startswith(b"+OK"), lines[-3:]


# -- And at the end -----------------------------------------------------------


def test_zz_server_survived_the_sweep(mail):
    """Runs last in this module (per xdist worker the fixture teardown
    checks the same again)."""
    checkSurvived(mail)

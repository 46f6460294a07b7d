"""
Shared by the bad-input sweep (test_bad_input_smtp.py, _imap.py, _pop3.py,
_soups.py): raw connections whose every read is bounded by ``TIMEOUT``, the
server's users and the message it must keep, and per protocol the helpers
that open a session, expect a reply and prove the session still sane.
The server itself is the ``mail`` fixture in conftest.py.
"""

from __future__ import annotations

import base64
import poplib
import re
import socket
import ssl

import pytest

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



def smtpDeliver(port, sender, recipient, message: bytes):
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

"""
Bad input against the real server process over raw IMAP sockets: a table of
nasty inputs in each state (not authenticated, authenticated, selected),
each followed on the same connection by valid commands that must still
work; line and literal limits read from the server's config, probed just
over (and at) the limit; an overlong SASL line, an absurd non-synchronizing
literal, a TLS ClientHello on the plain port, 1000 pipelined NOOPs,
half-closed connections mid-command and mid-APPEND.

The parser is fuzzed in-process in tests/imap; this sweep shares one running
server with test_bad_input_smtp.py, _pop3.py and _soups.py (conftest.py;
badinput.py has the helpers).
"""

from __future__ import annotations

import re

import pytest

from tests.integration.badinput import (clientHello, imapExpect, imapLine, imapSane, imapSession,
                                        imapTagged, readable)


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

"""
Bad input against the real server process over raw POP3 sockets: a table of
nasty inputs before and after login, each followed on the same connection
by valid commands that must still work; the line limit read from the
server's config, probed just over (and at) the limit; a TLS ClientHello on
the plain port, 1000 pipelined NOOPs, half-closed connections mid-command
and after DELE (which must delete nothing).

The parser is fuzzed in-process in tests/pop3; this sweep shares one running
server with test_bad_input_smtp.py, _imap.py and _soups.py (conftest.py;
badinput.py has the helpers).
"""

from __future__ import annotations

import pytest

from tests.integration.badinput import clientHello, popCommand, popExpect, popLine, popSane, popSession


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

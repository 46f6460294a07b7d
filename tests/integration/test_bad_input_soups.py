"""
Hypothesis byte soups against the real server process, one connection each
(SMTP, IMAP before login and selected, POP3 before login and in a
transaction), then a valid command that must be answered; a reply to every
line, or a close the soup asked for.  Last, the check that the sweep's one
server (conftest.py, shared with test_bad_input_smtp.py, _imap.py and
_pop3.py) still accepts connections on every port, logged no "Traceback" and
no "Unhandled", and still holds, intact, the message accepted before it.

BADINPUT_EXAMPLES=2000 for a longer hunt.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.badinput import (Closed, checkSurvived, imapCommand, imapExpect, imapLine, imapSession,
                                        popCommand, popExpect, popLine, popMultiline, popSession, smtpReply,
                                        smtpSession)


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
    # as the server splits a command (mailnet/pop3/protocol.py): the keyword
    # up to the first space, then arguments split on whitespace, so
    # "UIDL " is UIDL without an argument, a listing
    keyword, _, rest = line.rstrip(b"\r").partition(b" ")
    keyword = keyword.upper()
    noArgument = not rest.split()
    if keyword in _POP_MULTI or (keyword == b"AUTH" and noArgument):
        return True
    return state == "trans" and keyword in (b"LIST", b"UIDL") and noArgument


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
    """Runs last in the sweep without xdist (this module's name sorts after
    the other test_bad_input_* modules); with xdist, the package fixture's
    teardown checks the same again on each worker."""
    checkSurvived(mail)

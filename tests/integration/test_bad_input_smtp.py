"""
Bad input against the real server process over raw SMTP sockets (MX and
submission): a table of nasty inputs, each followed on the same connection
by valid commands that must still work; limits read from the server's own
config, probed just over (and at) the limit; a TLS ClientHello on the plain
port, 1000 pipelined NOOPs, half-closed connections mid-command and mid-DATA.

The parser is fuzzed in-process in tests/smtp; this sweep checks the whole
stack (Twisted protocol, session, store) of one running server, shared with
test_bad_input_imap.py, _pop3.py and _soups.py (conftest.py; badinput.py has
the helpers).  Every socket read is bounded: a hang fails the test.
"""

from __future__ import annotations

import base64

import pytest

from tests.integration.badinput import (PLAIN_ALICE, Wire, clientHello, senderFor, smtpCommand, smtpExpect, smtpReply,
                                        smtpSane, smtpSession)


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

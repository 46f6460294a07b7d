"""
POP3 beside the other protocols of the same process: IMAP clients changing
flags or expunging while a POP3 session is open, and mail arriving over
SMTP.  Each test is skipped until its protocol is part of the build.
"""

import imaplib
import importlib.util
import smtplib

import pytest

from tests.pop3.clients import mimeMessage, newUser, pop3s, putMessage, retr, tlsContext

pytestmark = pytest.mark.slow


def has(module):
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


needsIMAP = pytest.mark.skipif(not has("mailnet.imap.server"), reason="IMAP is not on this branch yet")
needsSMTP = pytest.mark.skipif(not has("mailnet.smtp.server"), reason="SMTP is not on this branch yet")


def imap(server, name, pw):
    c = imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=tlsContext(server), timeout=30)
    c.login(name, pw)
    return c


@needsIMAP
def test_uidl_survives_imap_flag_changes(server):
    name, pw = newUser(server)
    for i in range(3):
        putMessage(server, name, mimeMessage(f"i{i}"))
    c = pop3s(server, name, pw)
    before = c.uidl()[1]
    c.quit()
    m = imap(server, name, pw)
    m.select("INBOX")
    assert m.store("1:3", "+FLAGS", r"(\Seen \Flagged)")[0] == "OK"
    assert m.store("2", "-FLAGS", r"(\Seen)")[0] == "OK"
    m.logout()
    c = pop3s(server, name, pw)
    assert c.uidl()[1] == before
    c.quit()


@needsIMAP
def test_imap_expunge_during_a_pop3_session(server):
    name, pw = newUser(server)
    sent = [mimeMessage(f"x{i}") for i in range(3)]
    for m in sent:
        putMessage(server, name, m)
    c = pop3s(server, name, pw)
    assert c.stat()[0] == 3
    m = imap(server, name, pw)  # IMAP does not take the POP3 lock
    m.select("INBOX")
    m.store("2", "+FLAGS", r"(\Deleted)")
    m.expunge()
    m.logout()
    with pytest.raises(poplibError(), match=r"-ERR Message 2 was removed by another client"):
        c.retr(2)
    assert retr(c, 1) == sent[0] and retr(c, 3) == sent[2]
    c.dele(3)
    assert c.quit().startswith(b"+OK")
    c = pop3s(server, name, pw)
    assert c.stat()[0] == 1 and retr(c, 1) == sent[0]
    c.quit()


@needsIMAP
def test_retr_is_seen_in_imap(server):
    name, pw = newUser(server)
    putMessage(server, name, mimeMessage())
    c = pop3s(server, name, pw)
    retr(c, 1)
    c.quit()
    m = imap(server, name, pw)
    m.select("INBOX", readonly=True)
    typ, data = m.fetch("1", "(FLAGS)")
    assert typ == "OK" and b"\\Seen" in data[0]
    m.logout()


def poplibError():
    import poplib

    return poplib.error_proto


@needsSMTP
def test_mail_received_over_smtp_is_retrieved_intact(server):
    name, pw = newUser(server)
    message = mimeMessage("over smtp")
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as s:
        s.sendmail("bob@example.org", [name], message)
    c = pop3s(server, name, pw)
    assert c.stat()[0] == 1
    got = retr(c, 1)
    c.quit()
    # The receiving server puts trace fields (Received:, Return-Path:) on top.
    assert got.endswith(message)
    trace = got[: len(got) - len(message)]
    assert all(line.startswith((b"Received:", b"Return-Path:", b"Delivered-To:", b" ", b"\t"))
               for line in trace.split(b"\r\n") if line)

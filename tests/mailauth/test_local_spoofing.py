"""
Our own domains cannot be forged by strangers, by default (issue 16): the
local-domain rule needs no DNS, so it applies whether or not ``[mailauth]
inbound`` is on.  MAIL FROM in a local domain without AUTH is refused at
MAIL FROM (RFC 5321 s3.3 lets the server refuse it); a From field in a
local domain without AUTH at the end of DATA.  The real server here runs
the harness's configuration, which does not mention [mailauth].
"""

from __future__ import annotations

import smtplib
import subprocess

import pytest

from tests.smtp.e2e import unverified
from tests.smtp.helpers import Recorder, makeSession, plain

REASON = "example.test is a local domain here: log in to send as it"


# -- In process: the session -----------------------------------------------------------------


@pytest.mark.parametrize("sender", ["x@example.test", "X@EXAMPLE.TEST", "x@mail.example.test"])
def test_mail_from_in_a_local_domain_without_auth_is_refused(tmp_path, sender):
    session, rec = makeSession(tmp_path)
    session.feed(b"EHLO c.example\r\n")
    rec.take()
    session.feed(f"MAIL FROM:<{sender}>\r\n".encode())
    (reply,) = rec.take()
    assert (reply.code, reply.enhanced) == (550, "5.7.1")
    assert "is a local domain here: log in to send as it" in reply.data.decode()
    # the session stays sane: a foreign sender goes on
    session.feed(b"MAIL FROM:<x@remote.example>\r\nRCPT TO:<alice@example.test>\r\n")
    assert [r.code for r in rec.take()] == [250, 250]


@pytest.mark.parametrize("sender", ["x@remote.example", "x@notexample.test", "", "x@[192.0.2.9]"])
def test_other_senders_are_accepted(tmp_path, sender):
    session, rec = makeSession(tmp_path)
    session.feed(f"EHLO c.example\r\nMAIL FROM:<{sender}>\r\n".encode())
    assert [r.code for r in rec.take()] == [250, 250]


def test_authenticated_or_label_may_use_a_local_sender(tmp_path):
    rec = Recorder(passwords={"alice@example.test": "pw"})
    session, rec = makeSession(tmp_path, tls=True, recorder=rec)
    session.feed(b"EHLO c.example\r\nAUTH PLAIN " + plain("alice@example.test", "pw").encode() + b"\r\n"
                 b"MAIL FROM:<alice@example.test>\r\n")
    assert [r.code for r in rec.take()] == [250, 235, 250]
    session, rec = makeSession(tmp_path, refuseLocalSenders=False)
    session.feed(b"EHLO c.example\r\nMAIL FROM:<x@example.test>\r\n")
    assert [r.code for r in rec.take()] == [250, 250]


# -- The real server, default configuration ----------------------------------------------------


@pytest.fixture
def mx(make_server):
    server = make_server()
    server.addUser("alice@example.test", "alice-pw")
    server.addUser("bob@example.test", "bob-pw")
    return server


def test_default_server_refuses_a_local_mail_from_at_mail(mx):
    with smtplib.SMTP("127.0.0.1", mx.port("smtp"), timeout=30) as c:
        c.ehlo("client.example")
        code, text = c.mail("alice@example.test")
        assert (code, text) == (550, b"5.7.1 " + REASON.encode())
        assert c.mail("someone@remote.test")[0] == 250  # the session goes on
        assert c.rcpt("bob@example.test")[0] == 250
        code, _ = c.data(b"From: someone@remote.test\r\nSubject: fine\r\n\r\nbody\r\n")
        assert code == 250
    assert len(mx.messageFiles("bob@example.test")) == 1


def test_default_server_refuses_a_local_from_at_end_of_data(mx):
    with smtplib.SMTP("127.0.0.1", mx.port("smtp"), timeout=30) as c:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            c.sendmail("someone@remote.test", ["bob@example.test"],
                       b"From: Alice <alice@example.test>\r\nSubject: forged\r\n\r\nbody\r\n")
        assert refused.value.smtp_code == 550 and refused.value.smtp_error == b"5.7.1 " + REASON.encode()
    assert mx.messageFiles("bob@example.test") == []


def test_swaks_forgery_refused_and_submission_with_login_accepted(mx):
    done = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(mx.port("smtp")), "--helo",
                           "client.example", "--from", "alice@example.test", "--to", "bob@example.test"],
                          capture_output=True, text=True, timeout=60)
    out = done.stdout + done.stderr
    assert done.returncode != 0 and f"<** 550 5.7.1 {REASON}" in out, out
    assert "RCPT TO" not in out  # refused at MAIL FROM, not later
    with smtplib.SMTP("127.0.0.1", mx.port("submission"), timeout=30) as c:
        c.starttls(context=unverified())
        c.login("alice@example.test", "alice-pw")
        c.sendmail("alice@example.test", ["bob@example.test"], b"From: alice@example.test\r\nSubject: mine\r\n\r\nok\r\n")
    assert len(mx.messageFiles("bob@example.test")) == 1


def test_label_lets_them_through(make_server):
    server = make_server(config={"mailauth": {"local_spoofing": "label"}})
    server.addUser("bob@example.test", "bob-pw")
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as c:
        c.sendmail("alice@example.test", ["bob@example.test"], b"From: alice@example.test\r\n\r\nbody\r\n")
    assert len(server.messageFiles("bob@example.test")) == 1


@pytest.mark.parametrize("shape", ["header only", "folded From, large body"])
def test_local_from_refused_whatever_the_message_shape(mx, shape):
    """The From rule looks at the header section as it streams by: a message
    that is all header, and a large one whose From is folded, are refused
    at the end of DATA and nothing of them is kept."""
    if shape == "header only":
        message = b"Subject: no body\r\nFrom: alice@example.test\r\n"
    else:
        message = (b"Subject: big\r\nFrom: Alice\r\n <alice@example.test>\r\n\r\n"
                   + (b"z" * 76 + b"\r\n") * 20000)  # 1.5 MB
    with smtplib.SMTP("127.0.0.1", mx.port("smtp"), timeout=60) as c:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            c.sendmail("someone@remote.test", ["bob@example.test"], message)
        assert refused.value.smtp_code == 550 and refused.value.smtp_error == b"5.7.1 " + REASON.encode()
        c.sendmail("someone@remote.test", ["bob@example.test"], b"From: someone@remote.test\r\n\r\nfine\r\n")
    [kept] = mx.messageFiles("bob@example.test")
    assert b"fine" in open(kept, "rb").read()

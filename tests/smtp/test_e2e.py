"""The real server (twistd plugin, Maildir store) driven by clients we did
not write: smtplib, swaks, and raw sockets for what they refuse to send.
swaks's and msmtp's submissions are in tests/test_clients_on_both_stores.py
(on the Maildir and the PostgreSQL store)."""

import email.policy
import os
import smtplib
from email.message import EmailMessage

import pytest

from tests.conftest import USERS
from tests.harness import MailServer
from tests.smtp.e2e import Raw, canonical, newest, run, strip_trace, unverified

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mx(tmp_path_factory):
    # Relayed test mail must never look up a real MX: whatever the queue does
    # with it goes to a closed local port.
    server = MailServer(tmp_path_factory.mktemp("smtp-e2e"), config={"relay": {"smarthost": "127.0.0.1:9"}})
    server.start()
    for name, password in USERS.items():
        server.addUser(name, password)
    server.addAlias("sales@example.test", "alice@example.test", "bob@example.test")
    server.addAlias("fwd@example.test", "friend@remote.test")
    yield server
    server.stop()


def files(server, user):
    return list(server.messageFiles(user))


def test_smtplib_mx_delivery_to_several_local_recipients(mx):
    before = {u: files(mx, u) for u in ("alice@example.test", "bob@example.test")}
    with smtplib.SMTP("127.0.0.1", mx.port("smtp")) as c:
        refused = c.sendmail("someone@remote.test", ["alice@example.test", "Bob@Example.test", "sales@example.test"],
                             b"Subject: three ways\r\n\r\nhi\r\n")
        assert refused == {}
    for user in ("alice@example.test", "bob@example.test"):
        data = newest(mx, user, before[user])  # exactly one new copy each
        assert canonical(data).startswith(b"Return-Path: <someone@remote.test>\r\nReceived: from ")
        assert canonical(strip_trace(data)) == b"Subject: three ways\r\n\r\nhi\r\n"


def test_mime_message_arrives_byte_for_byte(mx):
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = "Jörg <someone@remote.test>"
    msg["To"] = "alice@example.test"
    msg["Subject"] = "Grüße aus Köln – ✓ ünïcödé"
    msg["Message-ID"] = "<e2e-mime@remote.test>"
    msg.set_content("Héllo wörld, 8-bit body.\n.leading dot line\n..two dots\nend\n", cte="8bit")
    msg.add_attachment(bytes(range(256)) * 40, maintype="application", subtype="octet-stream", filename="blob.bin")
    sent = msg.as_bytes()
    assert b"=?utf-8?" in sent and "Héllo".encode() in sent and b"\r\n.leading" in sent
    before = files(mx, "alice@example.test")
    with smtplib.SMTP("127.0.0.1", mx.port("smtp")) as c:
        c.ehlo("client.remote.test")
        assert c.has_extn("8bitmime")
        c.sendmail("someone@remote.test", ["alice@example.test"], sent, mail_options=["BODY=8BITMIME"])
    stored = newest(mx, "alice@example.test", before)
    assert canonical(strip_trace(stored)) == sent


def test_no_open_relay(mx):
    with smtplib.SMTP("127.0.0.1", mx.port("smtp")) as c:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
            c.sendmail("someone@remote.test", ["victim@elsewhere.test"], b"Subject: relay?\r\n\r\nx\r\n")
        code, text = info.value.recipients["victim@elsewhere.test"]
        assert (code, text[:5]) == (554, b"5.7.1")
        # nor through an address literal
        c.rset()
        c.mail("someone@remote.test")
        assert c.rcpt("x@[127.0.0.1]")[0] == 554


def test_unknown_user(mx):
    with smtplib.SMTP("127.0.0.1", mx.port("smtp")) as c:
        c.ehlo()
        c.mail("someone@remote.test")
        code, text = c.rcpt("nobody@example.test")
        assert (code, text[:5]) == (550, b"5.1.1")


def test_auth_refused_before_tls_on_submission(mx):
    with smtplib.SMTP("127.0.0.1", mx.port("submission")) as c:
        c.ehlo()
        assert not c.has_extn("auth") and c.has_extn("starttls")
        code, text = c.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1wdw==")
        assert (code, text) == (530, b"5.7.0 Must issue a STARTTLS command first")
        code, _ = c.docmd("MAIL", "FROM:<alice@example.test>")
        assert code == 530


def test_submission_starttls_auth_and_wrong_password(mx):
    with smtplib.SMTP("127.0.0.1", mx.port("submission")) as c:
        c.starttls(context=unverified())
        c.ehlo()
        assert "PLAIN" in c.esmtp_features["auth"]
        with pytest.raises(smtplib.SMTPAuthenticationError) as info:
            c.login("alice@example.test", "wrong")
        assert info.value.smtp_code == 535
    with smtplib.SMTP("127.0.0.1", mx.port("submission")) as c:
        c.starttls(context=unverified())
        c.login("alice@example.test", "alice-pw")
        # may not send as someone else
        with pytest.raises(smtplib.SMTPSenderRefused) as info:
            c.sendmail("bob@example.test", ["bob@example.test"], b"Subject: x\r\n\r\nx\r\n")
        assert info.value.smtp_code == 553
        before = files(mx, "bob@example.test")
        c.sendmail("alice@example.test", ["bob@example.test"], b"Subject: sub\r\n\r\nvia submission\r\n")
    data = newest(mx, "bob@example.test", before)
    assert b"with ESMTPSA id" in data and b"authenticated as alice@example.test" in data


def test_submission_adds_a_missing_date_and_message_id(mx):
    """RFC 6409 s8.3: the submission server adds Date and Message-ID when the
    client left them out, at the end of the header section; it leaves a
    message that has them, and mail arriving on the MX, as they are."""
    bare = b"From: alice@example.test\r\nSubject: bare\r\n\r\nno date, no id\r\n"
    whole = (b"From: alice@example.test\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
             b"Message-Id: <given@example.test>\r\nSubject: whole\r\n\r\nbody\r\n")
    headerOnly = b"Subject: only a header\r\n"
    stored = []
    with smtplib.SMTP("127.0.0.1", mx.port("submission")) as c:
        c.starttls(context=unverified())
        c.login("alice@example.test", "alice-pw")
        for message in (bare, whole, headerOnly):
            before = files(mx, "bob@example.test")
            c.sendmail("alice@example.test", ["bob@example.test"], message)
            stored.append(canonical(strip_trace(newest(mx, "bob@example.test", before))))
    parsed = email.message_from_bytes(stored[0], policy=email.policy.default)
    assert parsed["Message-ID"].endswith("@mx.example.test>") and parsed["Date"].datetime is not None
    head, _, body = stored[0].partition(b"\r\n\r\n")
    assert head.startswith(b"From: alice@example.test\r\nSubject: bare\r\nDate: ")
    assert (head.count(b"\r\nDate: "), head.count(b"\r\nMessage-ID: "), body) == (1, 1, b"no date, no id\r\n")
    assert stored[1] == whole
    assert stored[2].startswith(headerOnly + b"Date: ") and stored[2].count(b"Message-ID: ") == 1
    with smtplib.SMTP("127.0.0.1", mx.port("smtp")) as c:
        before = files(mx, "bob@example.test")
        foreign = bare.replace(b"alice@example.test", b"someone@remote.test")  # no local From without login
        c.sendmail("someone@remote.test", ["bob@example.test"], foreign)
        assert canonical(strip_trace(newest(mx, "bob@example.test", before))) == foreign


def test_submissions_implicit_tls_relays_to_the_spool(mx):
    with smtplib.SMTP_SSL("127.0.0.1", mx.port("submissions"), context=unverified()) as c:
        c.login("alice@example.test", "alice-pw")
        c.sendmail("alice@example.test", ["friend@remote.test"], b"Subject: out\r\n\r\nto the world\r\n",
                   rcpt_options=["NOTIFY=FAILURE"])
    line = mx.waitForLog("queued")
    assert "for 1 recipient(s)" in line


def test_smuggling_refused(mx):
    before = {u: files(mx, u) for u in ("alice@example.test", "bob@example.test")}
    raw = Raw(mx.port("smtp"))
    try:
        raw.cmd(b"EHLO attacker.test\r\n")
        assert raw.cmd(b"MAIL FROM:<someone@remote.test>\r\n")[:3] == b"250"
        assert raw.cmd(b"RCPT TO:<alice@example.test>\r\n")[:3] == b"250"
        assert raw.cmd(b"DATA\r\n")[:3] == b"354"
        # CVE-2023-51764 style: a second message hidden behind <LF>.<LF>
        reply = raw.cmd(b"Subject: legit\r\n\r\nhello\n.\nMAIL FROM:<admin@example.test>\nRCPT TO:<bob@example.test>\n"
                        b"DATA\nSubject: smuggled\n\nevil\n.\r\n.\r\n")
        assert reply == b"554 5.6.0 Message contains a bare CR or LF; lines must end with <CR><LF>\r\n"
        # the session goes on and nothing was delivered
        assert raw.cmd(b"NOOP\r\n") == b"250 2.0.0 OK\r\n"
    finally:
        raw.close()
    for user, old in before.items():
        assert files(mx, user) == old


def test_starttls_injection_refused(mx):
    raw = Raw(mx.port("smtp"))
    try:
        raw.cmd(b"EHLO attacker.test\r\n")
        # the MAIL rides in the same packet as STARTTLS, before the handshake
        raw.send(b"STARTTLS\r\nMAIL FROM:<admin@example.test>\r\n")
        assert raw.reply() == b"220 2.0.0 Ready to start TLS\r\n"
        raw.starttls()
        # had it been run, its "250 2.1.0" would come first
        assert raw.cmd(b"EHLO attacker.test\r\n").startswith(b"250-")
        assert raw.cmd(b"RCPT TO:<bob@example.test>\r\n") == b"503 5.5.1 Send MAIL first\r\n"
    finally:
        raw.close()


def test_long_command_line_and_bdat(mx):
    before = files(mx, "bob@example.test")
    raw = Raw(mx.port("smtp"))
    try:
        raw.cmd(b"EHLO c.test\r\n")
        assert raw.cmd(b"NOOP " + b"x" * 2000 + b"\r\n") == b"500 5.5.2 Line too long\r\n"
        # CHUNKING, pipelined as RFC 3030 allows
        raw.send(b"MAIL FROM:<someone@remote.test>\r\nRCPT TO:<bob@example.test>\r\nBDAT 15\r\nSubject: bdat\r\n"
                 b"BDAT 8 LAST\r\n\r\nbody\r\n")
        assert [raw.reply()[:3] for _ in range(4)] == [b"250"] * 4
    finally:
        raw.close()
    assert canonical(strip_trace(newest(mx, "bob@example.test", before))) == b"Subject: bdat\r\n\r\nbody\r\n"


def test_size_limits(make_server):
    s = make_server(config={"limits": {"message_size": 20000}})
    s.addUser("bob@example.test", "bob-pw")
    with smtplib.SMTP("127.0.0.1", s.port("smtp")) as c:
        c.ehlo()
        assert c.esmtp_features["size"] == "20000"
        # declared too big: refused at MAIL (smtplib sends SIZE=)
        with pytest.raises(smtplib.SMTPSenderRefused) as info:
            c.sendmail("a@remote.test", ["bob@example.test"], b"x" * 30000)
        assert (info.value.smtp_code, info.value.smtp_error[:5]) == (552, b"5.3.4")
    # not declared: refused at the end of DATA
    body = tmp = os.path.join(s.directory, "big.eml")
    with open(tmp, "w") as f:
        f.write("Subject: big\n\n" + ("y" * 70 + "\n") * 400)
    result = run(["swaks", "--server", "127.0.0.1", "--port", str(s.port("smtp")), "--from", "a@remote.test",
                  "--to", "bob@example.test", "--data", body])
    assert "552 5.3.4" in result.stdout.decode()
    assert s.messageFiles("bob@example.test") == []


def test_smtputf8_address_and_body(mx):
    mx.addUser("jörg@example.test", "jörg-pw")
    message = "From: pelé@remote.test\r\nTo: jörg@example.test\r\nSubject: ünïcödé\r\n\r\nGrüße\r\n".encode()
    with smtplib.SMTP("127.0.0.1", mx.port("smtp")) as c:
        c.ehlo()
        assert c.has_extn("smtputf8")
        c.sendmail("pelé@remote.test", ["jörg@example.test"], message, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
        # without SMTPUTF8 a non-ASCII address is refused
        c.command_encoding = "utf-8"
        code, text = c.docmd("MAIL", "FROM:<pelé@remote.test>")
        assert (code, text[:5]) == (553, b"5.6.7")
    (path,) = mx.messageFiles("jörg@example.test")
    with open(path, "rb") as f:
        data = f.read()
    assert canonical(strip_trace(data)) == message
    assert b"with UTF8SMTP id" in data and "Return-Path: <pelé@remote.test>".encode() in data


def test_connections_per_ip_limit(make_server):
    s = make_server(config={"limits": {"connections_per_ip": 2}})
    first, second = Raw(s.port("smtp")), Raw(s.port("smtp"))
    try:
        assert first.greeting.startswith(b"220 ") and second.greeting.startswith(b"220 ")
        third = Raw(s.port("smtp"))
        assert third.greeting == b"421 4.7.0 Too many connections, try again later\r\n"
        third.close()
    finally:
        first.close()
        second.close()

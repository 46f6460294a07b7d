"""
Outbound DKIM on the real server: mail from an authenticated user is
signed once, before it is stored or spooled, and the signature verifies
with tools we did not write (Perl's Mail::DKIM and OpenDKIM's
opendkim-testmsg), the key found through the test DNS server.
"""

from __future__ import annotations

import email
import glob
import os
import smtplib
import time

import pytest

from tests.harness import MailServer
from tests.mailauth.helpers import (ZoneServer, haveMailDKIM, mailDKIMVerify, opendkimProblem, opendkimVerify,
                                    txtOf)

pytestmark = pytest.mark.slow

MESSAGE = ("From: Alice <alice@a.test>\r\nTo: bob@a.test, carol@remote.test\r\nSubject: signed\r\n"
           "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
           "Signed by mailnet.\r\n.dot-stuffed line\r\n")


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    root = tmp_path_factory.mktemp("signing")
    server = MailServer(root / "a", config={
        "server": {"hostname": "mx.a.test"},
        "domains": {"local": ["a.test"]},
        "auth": {"allow_plaintext": True},
    })
    zone = {}
    for algorithm, selector in (("rsa", "rsa1"), ("ed25519", "ed1")):
        out = server.mailnet("dkim", "keygen", "a.test", "--selector", selector, "--algorithm", algorithm).stdout
        name, value = txtOf(out)
        zone[name] = {"TXT": [value]}
    dns = ZoneServer(root, zone)
    server.start()
    server.addUser("alice@a.test", "alice-pw")
    server.addUser("bob@a.test", "bob-pw")
    yield server, dns, root
    server.stop()
    dns.stop()


def _submit(server, message=MESSAGE, rcpts=("bob@a.test", "carol@remote.test")):
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=30) as c:
        c.login("alice@a.test", "alice-pw")
        c.sendmail("alice@a.test", list(rcpts), message.encode())


def _delivered(server, user, marker):
    """The stored message containing ``marker`` (Maildir names do not sort in
    arrival order within a second)."""
    for name in server.messageFiles(user):
        with open(name, "rb") as f:
            data = f.read()
        if marker in data:
            return data
    raise AssertionError(f"no message with {marker!r} for {user}:\n{server.log()[-3000:]}")


def test_submission_is_signed_once_for_store_and_spool(signer):
    server, dns, root = signer
    _submit(server)
    stored = _delivered(server, "bob@a.test", b"Subject: signed\r\n")
    header = stored.split(b"\r\n\r\n", 1)[0]
    assert header.count(b"DKIM-Signature:") == 2
    assert b"a=rsa-sha256" in header and b"a=ed25519-sha256" in header and b"c=relaxed/relaxed" in header
    # the spool item (carol@remote.test waits: the tests' resolver answers nothing) carries the same signatures
    [spooled] = glob.glob(os.path.join(server.dataDir, "queue", "*.msg"))
    with open(spooled, "rb") as f:
        queued = f.read()
    sigs = [l for l in queued.split(b"\r\n\r\n", 1)[0].split(b"\r\n") if l.startswith(b"DKIM-Signature")]
    assert len(sigs) == 2
    # retries send the spooled bytes: flushing does not sign again
    server.mailnet("queue", "flush")
    server.waitForLog("carol@remote.test", timeout=20)
    with open(spooled, "rb") as f:
        assert f.read() == queued
    msg = email.message_from_bytes(stored)
    assert msg["Subject"] == "signed"


def test_mx_mail_is_not_signed(signer):
    server, dns, root = signer
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as c:
        c.sendmail("someone@elsewhere.test", ["bob@a.test"],
                   b"From: someone@elsewhere.test\r\nSubject: unsigned\r\n\r\nhi\r\n")
    stored = _delivered(server, "bob@a.test", b"Subject: unsigned")
    assert b"DKIM-Signature" not in stored


@pytest.mark.skipif(not haveMailDKIM(), reason="Perl's Mail::DKIM (libmail-dkim-perl, in .ci/apt-packages) "
                                              "is not installed")
def test_mail_dkim_verifies_our_signature(signer):
    server, dns, root = signer
    _submit(server, MESSAGE.replace("signed", "for Mail::DKIM"), rcpts=["bob@a.test"])
    stored = [f for f in server.messageFiles("bob@a.test") if b"for Mail::DKIM" in open(f, "rb").read()]
    with open(stored[0], "rb") as f:
        message = f.read()
    out = mailDKIMVerify(message, dns.port)
    # Mail::DKIM 1.2023 knows no ed25519 (RFC 8463 s5: a verifier ignores what it does not know)
    assert "signature a.test rsa-sha256 pass" in out and "result: pass" in out, out
    altered = message.replace(b"Signed by mailnet.", b"Signed by someone else.")
    out = mailDKIMVerify(altered, dns.port)
    assert "rsa-sha256 fail" in out and "result: fail" in out, out


@pytest.mark.skipif(opendkimProblem() is not None, reason=str(opendkimProblem()))
def test_opendkim_verifies_our_signature(signer, tmp_path):
    server, dns, root = signer
    _submit(server, MESSAGE.replace("signed", "for OpenDKIM"), rcpts=["bob@a.test"])
    stored = [f for f in server.messageFiles("bob@a.test") if b"for OpenDKIM" in open(f, "rb").read()]
    with open(stored[0], "rb") as f:
        message = f.read()
    # opendkim-testmsg checks the first signature (ours: RSA, then ed25519)
    out = opendkimVerify(message, dns.path, str(tmp_path))
    assert "opendkim-testmsg status 0" in out, out
    # and the ed25519 one alone (RFC 8463; OpenDKIM 2.11 verifies it)
    rsa, ed = _splitSignatures(message)
    out = opendkimVerify(ed + _body(message), dns.path, str(tmp_path))
    assert "opendkim-testmsg status 0" in out, out
    altered = message.replace(b"Signed by mailnet.", b"Signed by someone else.")
    out = opendkimVerify(altered, dns.path, str(tmp_path))
    assert "opendkim-testmsg status 0" not in out, out


def _splitSignatures(message):
    from mailnet.mailauth.headers import fields

    header = message.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    return [raw for name, raw in fields(header) if name == "dkim-signature"]


def _body(message):
    """The message without its DKIM-Signature fields."""
    from mailnet.mailauth.headers import fields

    header, _, rest = message.partition(b"\r\n\r\n")
    kept = b"".join(raw for name, raw in fields(header + b"\r\n") if name != "dkim-signature")
    return kept + b"\r\n" + rest


def test_signing_uses_a_new_key_without_restart(signer):
    """A key made while the server runs is used within seconds (no restart)."""
    server, dns, root = signer
    server.mailnet("dkim", "keygen", "a.test", "--selector", "later")
    import time

    deadline = time.monotonic() + 30
    attempt = 0
    while time.monotonic() < deadline:
        attempt += 1
        _submit(server, MESSAGE.replace("signed", f"later {attempt}"), rcpts=["bob@a.test"])
        message = _delivered(server, "bob@a.test", f"Subject: later {attempt}\r\n".encode())
        if b"s=later;" in message:
            return
        time.sleep(1)
    raise AssertionError("the new key was not used")


@pytest.mark.skipif(not haveMailDKIM(), reason="Perl's Mail::DKIM (libmail-dkim-perl, in .ci/apt-packages) "
                                              "is not installed")
def test_the_queues_own_dsn_is_signed_and_mail_dkim_verifies_it(signer):
    """A report the queue makes (here the success DSN of NOTIFY=SUCCESS) comes
    from MAILER-DAEMON@mx.a.test: signed with a.test's keys, once."""
    server, dns, root = signer
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=30) as c:
        c.login("alice@a.test", "alice-pw")
        c.sendmail("alice@a.test", ["bob@a.test"], MESSAGE.replace("signed", "tell me").encode(),
                   rcpt_options=["NOTIFY=SUCCESS"])
    server.waitForLog("success DSN for 1 recipient(s) queued as", timeout=30)
    deadline = time.monotonic() + 30
    while True:
        reports = [open(f, "rb").read() for f in server.messageFiles("alice@a.test")]
        reports = [r for r in reports if b"multipart/report" in r]
        if reports or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    [report] = reports
    head = report.split(b"\r\n\r\n", 1)[0]
    assert b"MAILER-DAEMON@mx.a.test" in head
    # once with each key a.test has now (another test of this module may have added one)
    selectors = sorted(name.split(".")[0] for name in os.listdir(os.path.join(server.dataDir, "dkim", "a.test")))
    unfolded = head.replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ")
    fields = [line for line in unfolded.split(b"\r\n") if line.startswith(b"DKIM-Signature:")]
    assert sorted(f.split(b" s=")[1].split(b";")[0].decode() for f in fields) == selectors, fields
    assert all(b" d=a.test;" in f for f in fields) and len(selectors) >= 2
    out = mailDKIMVerify(report, dns.port)
    assert "signature a.test rsa-sha256 pass" in out and "result: pass" in out, out

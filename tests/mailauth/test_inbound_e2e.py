"""
Two mailnet instances on 127.0.0.1, a.test and b.test, with the test DNS
server (twisted.names) publishing a.test's SPF, DKIM key and DMARC policy:

* a.test -> b.test through a's queue arrives with dkim=pass spf=pass
  dmarc=pass in one Authentication-Results field of b's;
* a forged From of a.test sent straight to b's MX is refused (DMARC
  p=reject), a p=quarantine domain's forgery goes to Junk;
* a message altered after signing gets dkim=fail;
* mail without login claiming b.test itself is refused (swaks);
* an Authentication-Results field claiming b's authserv-id is removed;
* a DNS server that never answers gives temperror, not a hung session.
"""

from __future__ import annotations

import os
import re
import smtplib
import socket
import subprocess
import time

import pytest

from tests.harness import MailServer
from tests.mailauth.helpers import ZoneServer, txtOf

pytestmark = pytest.mark.slow


def _zone(dkimName, dkimValue):
    return {
        "b.test": {"MX": [[10, "mx.b.test"]], "TXT": ["v=spf1 mx -all"]},
        "mx.b.test": {"A": ["127.0.0.1"]},
        "_dmarc.b.test": {"TXT": ["v=DMARC1; p=reject"]},
        "a.test": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
        dkimName: {"TXT": [dkimValue]},
        "_dmarc.a.test": {"TXT": ["v=DMARC1; p=reject; rua=mailto:postmaster@a.test"]},
        "q.test": {"TXT": ["v=spf1 ip4:192.0.2.1 -all"]},
        "_dmarc.q.test": {"TXT": ["v=DMARC1; p=quarantine"]},
        "n.test": {"TXT": ["v=spf1 ip4:192.0.2.1 -all"]},
        "_dmarc.n.test": {"TXT": ["v=DMARC1; p=none"]},
        "evil.test": {"TXT": ["v=spf1 +all"]},
    }


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("pair")
    a = MailServer(root / "a", config={
        "server": {"hostname": "mx.a.test"},
        "domains": {"local": ["a.test"]},
        "auth": {"allow_plaintext": True},
        "queue": {"retry_initial": 1, "retry_max": 2},
    })
    name, value = txtOf(a.mailnet("dkim", "keygen", "a.test", "--selector", "rsa1").stdout)
    dns = ZoneServer(root, _zone(name, value))
    nameservers = {"nameservers": [f"127.0.0.1:{dns.port}"], "timeout": 2}
    b = MailServer(root / "b", config={
        "server": {"hostname": "mx.b.test"},
        "domains": {"local": ["b.test"]},
        "mailauth": {"inbound": True},
        "dns": nameservers,
    })
    b.start()
    b.addUser("bob@b.test", "bob-pw")
    a.sections["relay"] = {"mx_port": b.port("smtp"), "connect_timeout": 5}
    a.sections["dns"] = nameservers
    from tests.harness import writeConfig
    writeConfig(a.configPath, a.sections)
    a.start()
    a.addUser("alice@a.test", "alice-pw")
    yield a, b, dns
    a.stop()
    b.stop()
    dns.stop()


def _waitFor(server, user, count, folder="INBOX", timeout=30, marker=None):
    """The message (with ``marker`` in it, if given) once ``count`` are there.
    Maildir names do not sort in arrival order within a second: find by content."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = server.messageFiles(user, folder)
        if len(files) >= count:
            found = []
            for name in files:
                with open(name, "rb") as f:
                    data = f.read()
                if marker is None or marker in data:
                    found.append((os.stat(name).st_mtime_ns, data))
            if found:
                return max(found)[1]
        time.sleep(0.1)
    raise AssertionError(f"no message {count} for {user} in {folder}:\n{server.log()[-3000:]}")


def _results(message: bytes) -> list[str]:
    """The Authentication-Results fields of a stored message, unfolded."""
    header = message.split(b"\r\n\r\n", 1)[0].decode()
    unfolded = re.sub(r"\r\n[ \t]+", " ", header)
    return [line for line in unfolded.split("\r\n") if line.lower().startswith("authentication-results:")]


def _swaks(server, *args, interface="127.0.0.1"):
    done = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(server.port("smtp")),
                           "--local-interface", interface, "--helo", "client.example", *args],
                          capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout + done.stderr


def test_a_to_b_passes_spf_dkim_dmarc(pair):
    a, b, dns = pair
    with smtplib.SMTP("127.0.0.1", a.port("submission"), timeout=30) as c:
        c.login("alice@a.test", "alice-pw")
        c.sendmail("alice@a.test", ["bob@b.test"],
                   b"From: Alice <alice@a.test>\r\nTo: bob@b.test\r\nSubject: from a to b\r\n\r\nHello b.\r\n")
    message = _waitFor(b, "bob@b.test", 1, marker=b"from a to b")
    [field] = _results(message)
    assert field.startswith("Authentication-Results: mx.b.test;"), field
    assert "spf=pass" in field and "smtp.mailfrom=a.test" in field, field
    assert "dkim=pass" in field and "header.d=a.test" in field and "header.s=rsa1" in field, field
    assert "dmarc=pass" in field and "header.from=a.test" in field, field
    # our field comes after our Received, before the sender's DKIM-Signature
    header = message.split(b"\r\n\r\n", 1)[0]
    assert header.index(b"by mx.b.test") < header.index(b"Authentication-Results") < header.index(b"DKIM-Signature")
    b.waitForLog("spf=pass dkim=pass dmarc=pass")


def test_forged_from_is_refused(pair):
    """From: alice@a.test, but neither SPF (sent from 127.0.0.2) nor DKIM: DMARC p=reject."""
    a, b, dns = pair
    before = len(b.messageFiles("bob@b.test"))
    status, out = _swaks(b, "--from", "alice@a.test", "--to", "bob@b.test", "--h-From", "Alice <alice@a.test>",
                         "--h-Subject", "forged", interface="127.0.0.2")
    assert status != 0 and "<** 550 5.7.1 Message refused: DMARC policy of a.test" in out, out
    # the classic header forgery: an envelope of the forger's own (SPF passes for evil.test), From of a.test
    status, out = _swaks(b, "--from", "x@evil.test", "--to", "bob@b.test", "--h-From", "alice@a.test")
    assert status != 0 and "550 5.7.1 Message refused: DMARC policy of a.test" in out, out
    assert len(b.messageFiles("bob@b.test")) == before


def test_altered_after_signing_gets_dkim_fail(pair):
    a, b, dns = pair
    count = len(b.messageFiles("bob@b.test"))
    with smtplib.SMTP("127.0.0.1", a.port("submission"), timeout=30) as c:
        c.login("alice@a.test", "alice-pw")
        c.sendmail("alice@a.test", ["bob@b.test"],
                   b"From: alice@a.test\r\nTo: bob@b.test\r\nSubject: to be altered\r\n\r\nPay 10 euros.\r\n")
    original = _waitFor(b, "bob@b.test", count + 1, marker=b"Pay 10 euros.")
    assert "dkim=pass" in _results(original)[0]
    # b's copy (its Return-Path, Received and Authentication-Results included), changed and sent again
    # from an address a.test's SPF allows: DKIM fails, DMARC still passes on aligned SPF
    altered = original.split(b"\r\n", 1)[1].replace(b"Pay 10 euros.", b"Pay 1000 euros.")
    with smtplib.SMTP("127.0.0.1", b.port("smtp"), timeout=30) as c:
        c.sendmail("alice@a.test", ["bob@b.test"], altered)
    message = _waitFor(b, "bob@b.test", count + 2, marker=b"Pay 1000 euros.")
    fields = _results(message)
    assert len([f for f in fields if f.startswith("Authentication-Results: mx.b.test;")]) == 1, fields
    [field] = fields  # the old one, claiming mx.b.test, was removed (RFC 8601 s5)
    assert "dkim=fail" in field and "body hash mismatch" in field, field
    assert "spf=pass" in field and "dmarc=pass" in field, field
    assert b"Pay 1000 euros." in message


def test_local_domain_without_login_is_refused(pair):
    a, b, dns = pair
    before = len(b.messageFiles("bob@b.test"))
    status, out = _swaks(b, "--from", "bob@b.test", "--to", "bob@b.test")
    assert status != 0 and "550 5.7.1 b.test is a local domain here: log in to send as it" in out, out
    status, out = _swaks(b, "--from", "x@evil.test", "--to", "bob@b.test", "--h-From", "Bob <bob@b.test>")
    assert status != 0 and "550 5.7.1 b.test is a local domain here" in out, out
    status, out = _swaks(b, "--from", "x@evil.test", "--to", "bob@b.test", "--h-From", "x@evil.test")
    assert status == 0, out
    assert len(b.messageFiles("bob@b.test")) == before + 1


def test_our_authserv_id_from_outside_is_removed(pair):
    a, b, dns = pair
    before = len(b.messageFiles("bob@b.test"))
    forged = (b"Authentication-Results: mx.b.test; dkim=pass header.d=bank.test; dmarc=pass\r\n"
              b"Authentication-Results: (comment) MX.B.TEST (more);\r\n spf=pass\r\n"
              b"Authentication-Results: other.test; spf=pass smtp.mailfrom=evil.test\r\n"
              b"From: x@evil.test\r\nSubject: trust me\r\n\r\nbody\r\n")
    with smtplib.SMTP("127.0.0.1", b.port("smtp"), timeout=30) as c:
        c.sendmail("x@evil.test", ["bob@b.test"], forged)
    message = _waitFor(b, "bob@b.test", before + 1, marker=b"trust me")
    fields = _results(message)
    assert len(fields) == 2, fields
    assert fields[0].startswith("Authentication-Results: mx.b.test;") and "dkim=none" in fields[0]
    assert fields[1].startswith("Authentication-Results: other.test;")
    assert b"bank.test" not in message


def test_quarantine_goes_to_junk_and_none_is_labelled(pair):
    a, b, dns = pair
    junk = len(b.messageFiles("bob@b.test", "Junk"))
    inbox = len(b.messageFiles("bob@b.test"))
    status, out = _swaks(b, "--from", "x@q.test", "--to", "bob@b.test", "--h-From", "x@q.test")
    assert status == 0, out
    message = _waitFor(b, "bob@b.test", junk + 1, folder="Junk", marker=b"x@q.test")
    assert "dmarc=fail" in _results(message)[0] and "policy.dmarc=quarantine" in _results(message)[0]
    status, out = _swaks(b, "--from", "x@n.test", "--to", "bob@b.test", "--h-From", "x@n.test")
    assert status == 0, out
    message = _waitFor(b, "bob@b.test", inbox + 1, marker=b"x@n.test")
    assert "spf=fail" in _results(message)[0] and "dmarc=fail" in _results(message)[0]
    assert len(b.messageFiles("bob@b.test", "Junk")) == junk + 1


def test_silent_dns_gives_temperror_not_a_hung_session(tmp_path):
    """A DNS server that never answers: the message is accepted, labelled temperror, in bounded time."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        server = MailServer(tmp_path / "c", config={
            "server": {"hostname": "mx.c.test"},
            "domains": {"local": ["c.test"]},
            "mailauth": {"inbound": True, "check_timeout": 6, "spf_time_limit": 4},
            "dns": {"nameservers": [f"127.0.0.1:{silent.getsockname()[1]}"], "timeout": 1},
        })
        server.start()
        server.addUser("carol@c.test", "carol-pw")
        started = time.monotonic()
        with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=60) as c:
            c.sendmail("x@a.test", ["carol@c.test"], b"From: x@a.test\r\nSubject: slow dns\r\n\r\nbody\r\n")
            assert c.noop()[0] == 250  # the session goes on
        took = time.monotonic() - started
        message = _waitFor(server, "carol@c.test", 1)
        [field] = _results(message)
        assert "spf=temperror" in field and "dmarc=temperror" in field, field
        assert took < 30, took
        # stopping while a check waits for that DNS: the server still stops, and soon
        raw = socket.create_connection(("127.0.0.1", server.port("smtp")), timeout=30)
        raw.sendall(b"EHLO client.example\r\nMAIL FROM:<x@a.test>\r\nRCPT TO:<carol@c.test>\r\nDATA\r\n")
        reply = b""
        while b"354" not in reply:
            reply += raw.recv(4096)
        raw.sendall(b"From: x@a.test\r\nSubject: stop now\r\n\r\nbody\r\n.\r\n")
        time.sleep(0.5)  # the check is under way (SPF waits up to spf_time_limit for the silent server)
        started = time.monotonic()
        server.stop()
        # twistd ends by re-raising SIGTERM (-15); the harness would SIGKILL (-9) one that hangs
        assert server.process.returncode == -15 and time.monotonic() - started < 20, server.log()[-2000:]
        raw.close()
    finally:
        silent.close()

"""
Forwarding on the real server: an alias of fwd.test sends mail on to
carol@gmail.test.  The next hop (an aiosmtpd capture server, the MX of
gmail.test and orig.test in the test DNS) must see

* MAIL FROM in SRS0 form at fwd.test (SPF there checks us, not orig.test),
  the same address Perl's Mail::SRS makes with our secret and the same day;
* an ARC set (RFC 8617) that verifies, with dkimpy and with Perl's
  Mail::DKIM::ARC::Verifier, against the key in the test DNS, carrying the
  SPF pass we saw;

and a bounce to that SRS address (null sender, sent with swaks) must reach
the original sender; a non-bounce or a forged address is refused.
"""

from __future__ import annotations

import os
import shutil
import smtplib
import stat
import subprocess
import time

import dkim
import pytest

from tests.harness import MailServer, writeConfig
from tests.mailauth.helpers import ZoneServer, txtOf
from tests.queue.e2e import Sink

pytestmark = pytest.mark.slow

MESSAGE = ("From: Alice <alice@orig.test>\r\nTo: list@fwd.test\r\nSubject: forwarded\r\n"
           "Date: Fri, 04 Dec 2026 05:00:00 +0000\r\nMessage-ID: <fwd-1@orig.test>\r\n"
           "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease pass this on.\r\n")


@pytest.fixture(scope="module")
def forwarder(tmp_path_factory):
    root = tmp_path_factory.mktemp("forward")
    sink = Sink().start()
    server = MailServer(root / "fwd", config={
        "server": {"hostname": "mx.fwd.test"},
        "domains": {"local": ["fwd.test"]},
        "mailauth": {"inbound": True},
        "queue": {"retry_initial": 1, "retry_max": 2},
        "relay": {"mx_port": sink.port, "connect_timeout": 5},
    })
    name, value = txtOf(server.mailnet("dkim", "keygen", "fwd.test", "--selector", "rsa1").stdout)
    zone = {
        "orig.test": {"MX": [[10, "mx.orig.test"]], "TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
        "mx.orig.test": {"A": ["127.0.0.1"]},
        "gmail.test": {"MX": [[10, "mx.gmail.test"]]},
        "mx.gmail.test": {"A": ["127.0.0.1"]},
        "fwd.test": {"MX": [[10, "mx.fwd.test"]], "TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
        "mx.fwd.test": {"A": ["127.0.0.1"]},
        name: {"TXT": [value]},
    }
    dns = ZoneServer(root, zone)
    server.sections["dns"] = {"nameservers": [f"127.0.0.1:{dns.port}"], "timeout": 2}
    writeConfig(server.configPath, server.sections)
    server.start()
    server.addAlias("list@fwd.test", "carol@gmail.test")
    yield server, sink, dns, (name, value)
    server.stop()
    dns.stop()
    sink.stop()


def _send(server, sender, rcpt, message=MESSAGE):
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as c:
        c.sendmail(sender, [rcpt], message.encode())


def _arrived(sink, predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for m in sink.handler.messages if predicate(m)]
        if found:
            return found[-1]
        time.sleep(0.05)
    raise AssertionError(f"nothing arrived: {[(m['sender'], m['rcpts']) for m in sink.handler.messages]}")


def _perlSRS(secret, code):
    script = "use Mail::SRS; my $s = Mail::SRS->new(Secret => $ARGV[0], MaxAge => 21); " + code
    return subprocess.run(["perl", "-e", script, secret], capture_output=True, text=True, timeout=30).stdout.strip()


def test_forward_has_srs_sender_and_a_verifying_arc_set(forwarder):
    server, sink, dns, (keyName, keyValue) = forwarder
    _send(server, "alice@orig.test", "list@fwd.test")
    got = _arrived(sink, lambda m: m["rcpts"] == ["carol@gmail.test"] and b"fwd-1@" in m["data"])
    sender = got["sender"]
    assert sender.startswith("SRS0=") and sender.endswith("=orig.test=alice@fwd.test"), sender
    # the secret was made once, 0600, and Mail::SRS with it writes the same address (same day)
    path = os.path.join(server.dataDir, "srs", "secret")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path) as f:
        secret = f.read().strip()
    assert secret not in server.log()
    if shutil.which("perl") and subprocess.run(["perl", "-MMail::SRS", "-e", "1"]).returncode == 0:
        assert _perlSRS(secret, "print $s->forward('alice@orig.test', 'fwd.test');") == sender
        assert _perlSRS(secret, f"print $s->reverse('{sender}');") == "alice@orig.test"

    data = got["data"].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    header = data.split(b"\r\n\r\n", 1)[0]
    assert header.startswith(b"ARC-Seal: i=1; cv=none;"), header[:300]
    assert b"ARC-Message-Signature: i=1;" in header and b"ARC-Authentication-Results: i=1; mx.fwd.test;" in header
    aar = header.split(b"ARC-Authentication-Results:", 1)[1].split(b"\r\nARC-", 1)[0]
    assert b"spf=pass" in aar and b"arc=none" in aar
    record = keyValue.encode()

    def dnsfunc(name, timeout=5):
        return record if name.decode().rstrip(".") == keyName else None
    cv, results, reason = dkim.arc_verify(data, dnsfunc=dnsfunc)
    assert cv == b"pass", (reason, results)
    # the local copy is not sealed; the queue's log names the SRS sender nowhere secret
    assert "ARC-sealed d=fwd.test" in server.log()


PERL_ARC = r"""
use strict; use warnings;
use Net::DNS::Resolver; use Mail::DKIM::ARC::Verifier;
my $port = shift;
Mail::DKIM::DNS::resolver(Net::DNS::Resolver->new(nameservers => ['127.0.0.1'], port => $port,
                                                  recurse => 1, udp_timeout => 5, tcp_timeout => 5));
my $arc = Mail::DKIM::ARC::Verifier->new();
while (<STDIN>) { chomp; s/\015$//; $arc->PRINT("$_\015\012"); }
$arc->CLOSE;
print $arc->result, "\n";
"""


def test_arc_set_verifies_with_mail_dkim(forwarder):
    server, sink, dns, _ = forwarder
    if subprocess.run(["perl", "-MMail::DKIM::ARC::Verifier", "-MNet::DNS::Resolver", "-e", "1"],
                      capture_output=True).returncode:
        pytest.skip("Mail::DKIM (libmail-dkim-perl) is not installed")
    message = MESSAGE.replace("fwd-1@", "fwd-2@")
    _send(server, "alice@orig.test", "list@fwd.test", message)
    got = _arrived(sink, lambda m: b"fwd-2@" in m["data"])
    out = subprocess.run(["perl", "-e", PERL_ARC, str(dns.port)], input=got["data"], capture_output=True,
                         timeout=60)
    assert out.stdout.decode().strip() == "pass", out.stderr.decode()


def test_bounce_to_the_srs_address_goes_back_to_the_sender(forwarder):
    server, sink, dns, _ = forwarder
    message = MESSAGE.replace("fwd-1@", "fwd-3@")
    _send(server, "alice@orig.test", "list@fwd.test", message)
    srsAddress = _arrived(sink, lambda m: b"fwd-3@" in m["data"])["sender"]
    if shutil.which("swaks") is None:
        pytest.skip("swaks is not installed")
    bounce = ("From: MAILER-DAEMON@mx.gmail.test\r\nTo: %s\r\nSubject: Undelivered Mail Returned to Sender\r\n"
              "Message-ID: <bounce-3@mx.gmail.test>\r\n\r\ncarol is gone\r\n" % srsAddress)
    out = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(server.port("smtp")), "--from", "<>",
                          "--to", srsAddress, "--data", "-", "--helo", "mx.gmail.test", "--timeout", "30"],
                         input=bounce, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout[-2000:]
    back = _arrived(sink, lambda m: b"bounce-3@" in m["data"])
    assert back["sender"] == "" and back["rcpts"] == ["alice@orig.test"]
    # sent on to another domain by us, so sealed as well; the null sender stays null (no SRS)
    assert back["data"].startswith(b"ARC-Seal: i=1; cv=none;")


def test_srs_address_refuses_non_bounces_and_forgeries(forwarder):
    server, sink, dns, _ = forwarder
    message = MESSAGE.replace("fwd-1@", "fwd-4@")
    _send(server, "alice@orig.test", "list@fwd.test", message)
    srsAddress = _arrived(sink, lambda m: b"fwd-4@" in m["data"])["sender"]
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as c:
        c.ehlo("mx.gmail.test")
        c.mail("mallory@orig.test")
        code, text = c.rcpt(srsAddress)
        assert code == 550 and b"only bounces" in text
        c.rset()
        c.mail("")
        tag, hash_, rest = srsAddress.split("=", 2)
        forged = f"{tag}={'AAAA' if hash_ != 'AAAA' else 'BBBB'}={rest}"
        code, text = c.rcpt(forged)
        assert code == 550 and b"invalid SRS address (bad SRS hash)" in text
        code, text = c.rcpt(srsAddress.replace("=orig.test=alice", "=orig.test=bob"))
        assert code == 550 and b"bad SRS hash" in text

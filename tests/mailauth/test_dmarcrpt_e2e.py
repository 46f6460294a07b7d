"""
DMARC aggregate reports end to end: two mailnet instances on 127.0.0.1,
a.test and b.test, with the test DNS server publishing a.test's SPF, DKIM
key and ``_dmarc.a.test`` with ``rua=mailto:dmarc@a.test``.

a.test sends b.test two messages (they pass), a forger sends b.test one
with From: a.test (refused, p=reject); ``mailnet dmarc show`` on b lists
the rows, ``mailnet dmarc report --now`` sends the report, which b's queue
delivers to a's MX: it arrives in dmarc@a.test's mailbox, and its gzipped
XML says what happened (counts, dispositions, results).
"""

from __future__ import annotations

import email
import email.policy
import gzip
import smtplib
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

from tests.harness import MailServer, freePort, writeConfig
from tests.mailauth.helpers import ZoneServer, txtOf
from tests.mailauth.test_dmarcrpt import checkStructure

pytestmark = pytest.mark.slow


def _zone(dkimName, dkimValue):
    return {
        "a.test": {"MX": [[10, "mx.a.test"]], "TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
        "mx.a.test": {"A": ["127.0.0.1"]},
        dkimName: {"TXT": [dkimValue]},
        "_dmarc.a.test": {"TXT": ["v=DMARC1; p=reject; rua=mailto:dmarc@a.test"]},
        "b.test": {"MX": [[10, "mx.b.test"]], "TXT": ["v=spf1 mx -all"]},
        "mx.b.test": {"A": ["127.0.0.1"]},
        "_dmarc.b.test": {"TXT": ["v=DMARC1; p=reject"]},
    }


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("dmarcrpt")
    aSmtp = freePort()  # b's queue delivers the report to it: known before either starts
    a = MailServer(root / "a", config={
        "server": {"hostname": "mx.a.test"},
        "domains": {"local": ["a.test"]},
        "auth": {"allow_plaintext": True},
        "queue": {"retry_initial": 1, "retry_max": 2},
        "listen": {"smtp": f"tcp:{aSmtp}:interface=127.0.0.1"},
    })
    name, value = txtOf(a.mailnet("dkim", "keygen", "a.test", "--selector", "rsa1").stdout)
    dns = ZoneServer(root, _zone(name, value))
    nameservers = {"nameservers": [f"127.0.0.1:{dns.port}"], "timeout": 2}
    b = MailServer(root / "b", config={
        "server": {"hostname": "mx.b.test"},
        "domains": {"local": ["b.test"]},
        "mailauth": {"inbound": True},
        "dns": nameservers,
        "queue": {"retry_initial": 1, "retry_max": 2},
        "relay": {"mx_port": aSmtp, "connect_timeout": 5},
    })
    b.start()
    b.addUser("bob@b.test", "bob-pw")
    a.sections["dns"] = nameservers
    a.sections["relay"] = {"mx_port": b.port("smtp"), "connect_timeout": 5}
    writeConfig(a.configPath, a.sections)
    a.start()
    a.addUser("alice@a.test", "alice-pw")
    a.addUser("dmarc@a.test", "dmarc-pw")
    yield a, b, dns
    a.stop()
    b.stop()
    dns.stop()


def _waitFor(predicate, what, timeout=30, servers=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.2)
    logs = "\n".join(server.log()[-3000:] for server in servers)
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


def test_the_report_of_what_b_received_arrives_at_a(pair):
    a, b, dns = pair
    for i in range(2):
        with smtplib.SMTP("127.0.0.1", a.port("submission"), timeout=30) as c:
            c.login("alice@a.test", "alice-pw")
            c.sendmail("alice@a.test", ["bob@b.test"],
                       f"From: Alice <alice@a.test>\r\nTo: bob@b.test\r\nSubject: hello {i}\r\n\r\nHi.\r\n".encode())
    _waitFor(lambda: len(b.messageFiles("bob@b.test")) >= 2, "a's two messages at b")
    # a forged From: a.test from another address (no SPF, no DKIM): refused, and reported
    done = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(b.port("smtp")), "--local-interface",
                           "127.0.0.2", "--helo", "client.example", "--from", "alice@a.test", "--to", "bob@b.test",
                           "--h-From", "Alice <alice@a.test>", "--h-Subject", "forged"],
                          capture_output=True, text=True, timeout=60)
    assert "550 5.7.1 Message refused: DMARC policy of a.test" in done.stdout + done.stderr
    # the rows are stored within a few seconds (batched, not one write per message)
    shown = _waitFor(lambda: "a.test: 3 messages" in (s := b.mailnet("dmarc", "show").stdout) and s, "3 rows")
    assert "(2 dmarc pass, 1 fail) from 2 addresses; disposition: none 2, reject 1" in shown, shown
    out = b.mailnet("dmarc", "report", "--now").stdout
    assert "1 DMARC report queued" in out, out
    files = _waitFor(lambda: a.messageFiles("dmarc@a.test"), "the report at dmarc@a.test", servers=(b, a))
    with open(files[0], "rb") as f:
        msg = email.message_from_binary_file(f, policy=email.policy.default)
    assert msg["Subject"].startswith("Report Domain: a.test Submitter: mx.b.test Report-ID: <"), msg["Subject"]
    assert msg["From"] == "MAILER-DAEMON@mx.b.test"
    [part] = [p for p in msg.iter_attachments() if p.get_content_type() == "application/gzip"]
    name = part.get_filename()
    assert name.startswith("mx.b.test!a.test!") and name.endswith(".xml.gz"), name
    root = ET.fromstring(gzip.decompress(part.get_content()))
    checkStructure(root)
    begin, end = int(root.findtext("report_metadata/date_range/begin")), int(root.findtext("report_metadata/date_range/end"))
    assert name == f"mx.b.test!a.test!{begin}!{end}.xml.gz" and begin % 86400 == 0 and begin < end <= time.time()
    assert root.findtext("report_metadata/org_name") == "mx.b.test"
    assert root.findtext("policy_published/domain") == "a.test" and root.findtext("policy_published/p") == "reject"
    records = {r.findtext("row/source_ip"): r for r in root.findall("record")}
    assert set(records) == {"127.0.0.1", "127.0.0.2"}
    good, bad = records["127.0.0.1"], records["127.0.0.2"]
    assert good.findtext("row/count") == "2"
    assert [good.findtext(f"row/policy_evaluated/{k}") for k in ("disposition", "dkim", "spf")] == ["none", "pass", "pass"]
    assert good.findtext("identifiers/header_from") == "a.test" and good.findtext("identifiers/envelope_to") == "b.test"
    assert good.findtext("auth_results/dkim/domain") == "a.test" and good.findtext("auth_results/dkim/selector") == "rsa1"
    assert good.findtext("auth_results/dkim/result") == "pass" and good.findtext("auth_results/spf/result") == "pass"
    assert bad.findtext("row/count") == "1"
    assert [bad.findtext(f"row/policy_evaluated/{k}") for k in ("disposition", "dkim", "spf")] == ["reject", "fail", "fail"]
    assert bad.findtext("auth_results/spf/result") == "fail" and bad.find("auth_results/dkim") is None
    # reported: nothing left to show
    assert "a.test" not in b.mailnet("dmarc", "show").stdout

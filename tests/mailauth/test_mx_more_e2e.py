"""
The real server (b.test, [mailauth] inbound on) and the test DNS server,
driven with smtplib and swaks:

* DMARC pct= (RFC 7489 s6.6.4): p=reject with pct=0 is never applied, the
  next weaker policy is: the message is accepted into Junk, not refused.
* ARC (RFC 8617): a chain of two sets sealed by dkimpy's arc_sign, its
  keys in the test DNS server, gets arc=pass in our field; the same chain
  with its body changed arc=fail; a message without ARC fields arc=none.
* NOTIFY=SUCCESS from an MX client (RFC 3461; docs/smtp.md): honoured when
  SPF passed for the MAIL FROM domain (a "delivered" DSN comes back to the
  sender), still treated as failures-only after SPF fail or none.  The
  senders are local users so that the DSN lands where the test can see it
  (hence ``local_spoofing = "label"``, as in tests/queue's backscatter test).
"""

from __future__ import annotations

import smtplib
import time

import pytest

from tests.harness import MailServer
from tests.mailauth.arcchain import Sealer, chain
from tests.mailauth.helpers import ZoneServer
from tests.mailauth.test_inbound_e2e import _results, _swaks, _waitFor

pytestmark = pytest.mark.slow


SEALERS = (Sealer("fwd.test"), Sealer("list.test", "s2"))


def _zone():
    return {
        **{sealer.name: {"TXT": [sealer.record]} for sealer in SEALERS},
        "b.test": {"MX": [[10, "mx.b.test"]], "TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
        "mx.b.test": {"A": ["127.0.0.1"]},
        # c.test: no SPF record (spf=none)
        "pct0.test": {"TXT": ["v=spf1 ip4:192.0.2.1 -all"]},
        "_dmarc.pct0.test": {"TXT": ["v=DMARC1; p=reject; pct=0"]},
    }


@pytest.fixture(scope="module")
def mx(tmp_path_factory):
    root = tmp_path_factory.mktemp("mx")
    dns = ZoneServer(root, _zone())
    server = MailServer(root / "b", config={
        "server": {"hostname": "mx.b.test"},
        "domains": {"local": ["b.test", "c.test"]},
        "mailauth": {"inbound": True, "local_spoofing": "label"},
        "queue": {"retry_initial": 1, "retry_max": 2},
        "dns": {"nameservers": [f"127.0.0.1:{dns.port}"], "timeout": 2},
    })
    try:
        server.start()
        for user in ("bob@b.test", "alice@b.test", "carol@c.test"):
            server.addUser(user, "pw")
        yield server, dns
    finally:
        server.stop()
        dns.stop()


def test_dmarc_pct_0_quarantines_instead_of_rejecting(mx):
    """p=reject, pct=0, SPF fail and no DKIM: accepted into Junk (s6.6.4), labelled as not sampled."""
    server, dns = mx
    junk = len(server.messageFiles("bob@b.test", "Junk"))
    for n in range(3):  # pct=0 is never applied, whatever the draw
        status, out = _swaks(server, "--from", "x@pct0.test", "--to", "bob@b.test", "--h-From", "x@pct0.test",
                             "--h-Subject", f"pct zero {n}")
        assert status == 0 and "550" not in out, out
        message = _waitFor(server, "bob@b.test", junk + n + 1, folder="Junk", marker=f"pct zero {n}".encode())
        [field] = _results(message)
        assert "dmarc=fail (p=reject dis=quarantine pct=0 not sampled)" in field, field
        assert "policy.dmarc=quarantine" in field, field
    server.waitForLog("dmarc=fail (p=reject pct=0 not sampled: quarantine)")
    assert not any(b"pct zero" in open(f, "rb").read() for f in server.messageFiles("bob@b.test"))


def _ours(message: bytes) -> str:
    """Our Authentication-Results field (the sealers added theirs too)."""
    [field] = [f for f in _results(message) if f.startswith("Authentication-Results: mx.b.test;")]
    return field


def _send(server, message: bytes, sender="x@fwd.test"):
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=60) as c:
        c.sendmail(sender, ["bob@b.test"], message)


def test_arc_pass_fail_none(mx):
    server, dns = mx
    inbox = len(server.messageFiles("bob@b.test"))
    sealed = chain(SEALERS, b"From: Alice <alice@a.test>\r\nTo: list@fwd.test\r\nSubject: arc sealed\r\n\r\n"
                            b"Hello.\r\n")
    _send(server, sealed)
    message = _waitFor(server, "bob@b.test", inbox + 1, marker=b"arc sealed")
    field = _ours(message)
    assert "arc=pass (i=2 d=list.test) smtp.remote-ip=127.0.0.1" in field, field
    server.waitForLog("arc=pass")

    _send(server, sealed.replace(b"Hello.", b"Hello!"))
    message = _waitFor(server, "bob@b.test", inbox + 2, marker=b"Hello!")
    field = _ours(message)
    assert "arc=fail (i=2)" in field and "ARC-Message-Signature did not validate" in field, field

    _send(server, b"From: x@fwd.test\r\nSubject: no arc here\r\n\r\nplain\r\n")
    message = _waitFor(server, "bob@b.test", inbox + 3, marker=b"no arc here")
    field = _ours(message)
    assert "arc=none" in field, field


def _notifying(server, sender, envid, source="127.0.0.1"):
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=60, source_address=(source, 0)) as c:
        c.sendmail(sender, ["bob@b.test"], f"From: {sender}\r\nSubject: notify {envid}\r\n\r\nhi\r\n".encode(),
                   mail_options=[f"ENVID={envid}"], rcpt_options=["NOTIFY=SUCCESS"])


def test_notify_success_is_honoured_after_spf_pass_only(mx):
    server, dns = mx
    inbox = len(server.messageFiles("bob@b.test"))
    # SPF fail (b.test allows 127.0.0.1 only) and SPF none (c.test has no record): failures only,
    # so bob's copy is stored at once and there is no spool item that could report success
    _notifying(server, "alice@b.test", "SPFFAIL", source="127.0.0.2")
    _notifying(server, "carol@c.test", "SPFNONE")
    _waitFor(server, "bob@b.test", inbox + 1, marker=b"notify SPFFAIL")
    _waitFor(server, "bob@b.test", inbox + 2, marker=b"notify SPFNONE")
    # SPF pass: the "delivered" DSN (RFC 3464) comes back to alice
    _notifying(server, "alice@b.test", "SPFPASS")
    _waitFor(server, "bob@b.test", inbox + 3, marker=b"notify SPFPASS")
    report = _waitFor(server, "alice@b.test", 1, marker=b"SPFPASS")
    assert b"Action: delivered" in report and b"Original-Envelope-Id: SPFPASS" in report, report[:3000]
    assert b"multipart/report" in report and b"report-type=delivery-status" in report.replace(b'"', b"")
    server.waitForLog("success DSN for 1 recipient(s) queued as")
    time.sleep(2)  # a report for the others would have been made by now (same queue, earlier)
    assert len(server.messageFiles("alice@b.test")) == 1
    assert server.messageFiles("carol@c.test") == []

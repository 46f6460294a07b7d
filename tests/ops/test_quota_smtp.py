"""
Quotas over SMTP with real clients (smtplib, swaks) against the real
server: 452 4.2.2 at RCPT for a full mailbox, 552 5.2.2 for a message
larger than the whole quota (at RCPT from SIZE=, at the end of DATA
without it), 452 4.2.2 at the end of DATA for a lone recipient the message
would take past the quota, several recipients delivered, the warning
message, the maildirsize file.
"""

from __future__ import annotations

import email
import shutil
import smtplib
import subprocess

import pytest

from tests.ops.quota_helpers import QUOTA_USER, maildirsize, message, quotaServer, waitFor
from tests.ops.test_metrics_e2e import moved, scrape


def _send(port, rcpts, data, size=False):
    """One transaction without SIZE= (smtplib's low-level calls); returns the replies."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("client.example")
        opts = [f"SIZE={len(data)}"] if size else []
        assert s.mail("sender@elsewhere.example", opts)[0] == 250
        rcptReplies = [s.rcpt(r) for r in rcpts]
        if not any(code == 250 for code, _ in rcptReplies):
            return rcptReplies, None
        code, text = s.data(data)
        return rcptReplies, (code, text)


def _inbox(server, user=QUOTA_USER):
    out = []
    for path in server.messageFiles(user):
        with open(path, "rb") as f:
            out.append(email.message_from_bytes(f.read()))
    return out


def test_smtp_quota_replies_and_warning(make_server):
    server = quotaServer(make_server, storage="3000")
    port = server.port("smtp")
    before = scrape(server)
    # The first delivery makes the account (and the count).
    rcpts, end = _send(port, [QUOTA_USER], message(300, "first"))
    assert end[0] == 250
    waitFor(lambda: maildirsize(server), what="maildirsize")
    assert maildirsize(server).startswith(b"3000S\n")

    # Larger than the whole quota: 552 5.2.2, from SIZE= at RCPT ...
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
            s.sendmail("sender@elsewhere.example", [QUOTA_USER], message(4000))
    code, text = e.value.recipients[QUOTA_USER]
    assert code == 552 and text.startswith(b"5.2.2"), text
    # ... and at the end of DATA without it.
    rcpts, end = _send(port, [QUOTA_USER], message(4000))
    assert rcpts[0][0] == 250
    assert end[0] == 552 and end[1].startswith(b"5.2.2"), end

    # Fits: stored.
    rcpts, end = _send(port, [QUOTA_USER], message(1800, "second"))
    assert end[0] == 250, end
    # Would go past the quota, one recipient: 452 4.2.2 at the end of DATA.
    rcpts, end = _send(port, [QUOTA_USER], message(900))
    assert end[0] == 452 and end[1].startswith(b"4.2.2"), end
    # With SIZE= it is refused at RCPT already, for that recipient only.
    rcpts, end = _send(port, [QUOTA_USER, "alice@example.test"], message(900), size=True)
    assert rcpts[0][0] == 452 and rcpts[0][1].startswith(b"4.2.2"), rcpts
    assert rcpts[1][0] == 250 and end[0] == 250
    # Several recipients that passed RCPT: delivered to all (never lost).
    rcpts, end = _send(port, [QUOTA_USER, "alice@example.test"], message(900, "both"))
    assert [r[0] for r in rcpts] == [250, 250] and end[0] == 250
    subjects = [m["Subject"] for m in _inbox(server)]
    assert "both" in subjects

    # Over now: 452 4.2.2 at RCPT, the other recipient is taken.
    rcpts, end = _send(port, [QUOTA_USER, "alice@example.test"], message(200, "alice only"))
    assert rcpts[0][0] == 452 and b"4.2.2" in rcpts[0][1], rcpts
    assert rcpts[1][0] == 250 and end[0] == 250

    # One warning, from the postmaster, plain text; no second one.
    warnings = waitFor(lambda: [m for m in _inbox(server) if m["Subject"] == "Your mailbox is almost full"],
                       what="the warning")
    rcpts, end = _send(port, [QUOTA_USER, "alice@example.test"], message(100, "again"))
    assert end[0] == 250
    server.waitForLog("quota warning delivered to carol@example.test")
    warnings = [m for m in _inbox(server) if m["Subject"] == "Your mailbox is almost full"]
    assert len(warnings) == 1
    w = warnings[0]
    assert w["From"] == "Mail system <postmaster@example.test>"
    assert w.get_content_type() == "text/plain" and w["Auto-Submitted"] == "auto-generated"
    assert "full" in w.get_payload()
    assert server.log().count("quota warning delivered") == 1
    # The metrics: the refusals by class, the one warning.
    after = scrape(server)
    assert moved(before, after, "mailnet_quota_warnings_total") == 1
    # 452 4.2.2: at RCPT three times, once at the end of DATA; 552 5.2.2 twice.
    assert moved(before, after, "mailnet_smtp_refusals_total", reason="temporary_mailbox") == 4
    assert moved(before, after, "mailnet_smtp_refusals_total", reason="permanent_mailbox") == 2


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed (scripts/test installs it)")
def test_swaks_to_a_full_mailbox(make_server):
    server = quotaServer(make_server, storage="1000")
    port = server.port("smtp")
    # Two recipients: delivered to both, which takes carol past her quota.
    rcpts, end = _send(port, [QUOTA_USER, "alice@example.test"], message(990, "fills it"))
    assert end[0] == 250
    waitFor(lambda: maildirsize(server), what="maildirsize")
    done = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(port), "--to", QUOTA_USER,
                           "--from", "someone@elsewhere.example", "--helo", "client.example"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "452 4.2.2" in done.stdout, done.stdout

"""``mailnet status`` against a running server and a stopped one."""

from __future__ import annotations

import os
import smtplib

from tests.harness import MailServer


def test_status_running_then_stopped(tmp_path):
    server = MailServer(tmp_path / "s", config={"relay": {"smarthost": "127.0.0.1:9"},
                                                "queue": {"retry_initial": 3600}})
    server.start()
    try:
        server.addUser("alice@example.test", "alice-pw")
        with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as c:
            c.sendmail("x@remote.test", ["alice@example.test"], b"Subject: hi\r\n\r\nhi\r\n")
        result = server.mailnet("status", check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        out = result.stdout
        for name in ("smtp", "submission", "imap", "imaps", "pop3", "http", "metrics"):
            assert f"  {name:12} up    127.0.0.1 port {server.port(name)}" in out, out
        assert "queue: 0 item(s), 0 held, 0 recipient(s) waiting, 0 corrupt, oldest -" in out
        assert "store: reachable" in out
        assert "certificate cert: 36" in out or "certificate cert: " in out
        assert out.rstrip().endswith("ok")
    finally:
        server.stop()
    result = server.mailnet("status", check=False)
    assert result.returncode == 1
    assert "  smtp         down" in result.stdout
    assert "PROBLEMS: listener smtp is down" in result.stdout


def test_status_queue_and_broken_store(tmp_path):
    server = MailServer(tmp_path / "s", config={"relay": {"smarthost": "127.0.0.1:9"},
                                                "queue": {"retry_initial": 3600}})
    server.start()
    try:
        server.addUser("alice@example.test", "alice-pw")
        import ssl
        context = ssl.create_default_context(cafile=server.certFile)
        context.check_hostname = False
        with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=30) as c:
            c.starttls(context=context)
            c.login("alice@example.test", "alice-pw")
            c.sendmail("alice@example.test", ["far@remote.test"], b"Subject: out\r\n\r\nout\r\n")
        # The smarthost does not answer: the item waits for its retry.
        server.waitForLog("deferred")
        result = server.mailnet("status", check=False)
        assert "queue: 1 item(s), 0 held, 1 recipient(s) waiting, 0 corrupt, oldest " in result.stdout
        assert result.returncode == 0, result.stdout
        mail = os.path.join(server.dataDir, "mail")
        os.rename(mail, mail + ".away")
        with open(mail, "w") as f:
            f.write("not a directory")
        result = server.mailnet("status", check=False)
        assert result.returncode == 1
        assert "store: not answering (Not a directory)" in result.stdout
        assert "the store is not reachable" in result.stdout
    finally:
        server.stop()

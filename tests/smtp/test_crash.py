"""kill -9 while clients send: every message that got its 250 is stored
exactly once after the restart, and no half-written message is visible."""

import collections
import re
import smtplib
import threading

import pytest

from tests.smtp.e2e import canonical, strip_trace

pytestmark = pytest.mark.slow

CLIENTS = 6
ENOUGH = 60  # acknowledged messages before the kill


def test_kill_9_while_sending(make_server):
    server = make_server()
    server.addUser("bob@example.test", "bob-pw")
    server.addUser("carol@example.test", "carol-pw")
    port = server.port("smtp")
    acked = []
    progress = threading.Condition()

    def client(n):
        i = 0
        try:
            while True:
                with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
                    for _ in range(3):  # several messages per session
                        token = f"m{n}x{i}"
                        i += 1
                        body = f"Subject: {token}\r\nMessage-ID: <{token}@crash.test>\r\n\r\n" + "line\r\n" * (i % 50) + f"end {token}\r\n"
                        c.sendmail("sender@remote.test", ["bob@example.test", "carol@example.test"], body.encode())
                        with progress:
                            acked.append(token)
                            progress.notify_all()
        except (OSError, smtplib.SMTPException):
            return  # the server is gone

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    with progress:
        assert progress.wait_for(lambda: len(acked) >= ENOUGH, timeout=60), f"only {len(acked)} messages sent"
    server.kill()  # SIGKILL while the clients are mid-way
    for t in threads:
        t.join(15)
    confirmed = set(acked)
    assert len(confirmed) >= ENOUGH

    server.start()
    for user in ("bob@example.test", "carol@example.test"):
        counts = collections.Counter()
        for path in server.messageFiles(user):
            with open(path, "rb") as f:
                data = canonical(strip_trace(f.read()))
            token = re.match(rb"Subject: (m\d+x\d+)\r\n", data).group(1).decode()
            # whole, never truncated
            assert data.endswith(f"end {token}\r\n".encode()), path
            counts[token] += 1
        missing = confirmed - set(counts)
        assert not missing, f"{user}: acknowledged but lost: {sorted(missing)[:10]}"
        duplicated = [t for t, n in counts.items() if n > 1]
        assert not duplicated, f"{user}: stored twice: {duplicated[:10]}"
    # and the restarted server works
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as c:
        c.sendmail("sender@remote.test", ["bob@example.test"], b"Subject: after\r\n\r\nback\r\n")

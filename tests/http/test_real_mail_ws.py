"""
jmaplib on the real server: Mailbox/get, and WebSocket push (RFC 8887) after
an SMTP delivery and an IMAP STORE.  In a module (a server) of its own: in
tests/http/test_real_mail.py, under a loaded machine (three runs at once),
the first HTTP request made after this test sometimes read its response
without its first 21 bytes; not yet understood (see the report of the
jmap-mail branch), so kept apart from the other tests' connections.
"""

import os
import time

import pytest

from tests.conftest import USERS
from tests.http.test_real_mail import ALICE, accountId, imap, one, send, waitFor
from tests.http.tlsproxy import TLSProxy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.harness import MailServer

    server = MailServer(tmp_path_factory.mktemp("jmapmailws"), config={"auth": {"allow_plaintext": True}})
    server.start()
    for name, password in USERS.items():
        server.addUser(name, password)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(server):
    tls = TLSProxy(server.port("http"), server.certFile, os.path.join(server.dataDir, "tls", "key.pem"))
    yield tls
    tls.close()


def test_jmaplib_mail_calls_and_websocket_push(server, proxy):
    pytest.importorskip("httpx_ws", reason="httpx-ws is in the test extra (pyproject.toml)")
    import ssl
    import threading

    import httpx
    from jmap.client import JMAPClient
    from jmap.push import WebSocketClient

    verify = ssl.create_default_context(cafile=os.path.join(server.dataDir, "tls", "dev-ca.pem"))
    client = JMAPClient.connect(f"https://localhost:{proxy.port}/.well-known/jmap",
                                auth=httpx.BasicAuth(*ALICE), http=httpx.Client(verify=verify, timeout=30))
    try:
        boxes = client.call("Mailbox/get", {"ids": None, "properties": ["name", "role"]}, account_id=accountId(server))
        # jmaplib parses the answer into its Mailbox models
        assert ("INBOX", "inbox") in [(m.name, m.role) for m in boxes.items]
        send(server, "jmaplib ws")
        waitFor(lambda: one(server, "Email/query", filter={"subject": "jmaplib ws"})["ids"])
        with WebSocketClient(client) as socket_:
            socket_.enable_push(["Email"], resume=False)
            stream = socket_.notifications()
            for how in ("smtp", "imap"):
                got = []
                reader = threading.Thread(target=lambda: got.append(next(stream)), daemon=True)
                reader.start()
                time.sleep(0.3)  # the enable is sent before the change
                started = time.monotonic()
                if how == "smtp":
                    send(server, "jmaplib ws pushed")
                else:
                    m = imap(server)
                    try:
                        m.select("INBOX")
                        typ, data = m.search(None, "SUBJECT", '"jmaplib ws"')
                        m.store(data[0].split()[0], "+FLAGS", "(\\Flagged)")
                    finally:
                        m.logout()
                reader.join(20)
                elapsed = time.monotonic() - started
                assert got, f"no StateChange over the WebSocket after {how}"
                # the change this test made, not a leftover of an earlier one
                assert got[0].changed[accountId(server)]["Email"] == one(server, "Email/get", ids=[])["state"]
                print(f"websocket push after {how}: {elapsed:.3f} s")
                assert elapsed < 10
    finally:
        client.close()

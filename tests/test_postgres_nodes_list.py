"""
The message list index shared by two mailnet nodes on one PostgreSQL
(issue 18; docs/scaling.md, docs/store.md "Message list index"): two real
server processes on one database.  A message delivered by smtplib through
node A is listed by JMAP ``Email/query`` (jmapc) on node B with its
subject, sender and preview; its list fields are in the database when the
250 comes; a flag set over IMAP (imaplib) on node B is in node A's
``Email/get``; an EXPUNGE on B takes it out of A's list.
"""

from __future__ import annotations

import base64
import http.client
import imaplib
import json
import os
import smtplib

import pytest

from tests.harness import MailServer
from tests.http.tlsproxy import TLSProxy
from tests.store import postgres_fixture
from tests.test_postgres_nodes import eventually, pgConfig

pgServer = postgres_fixture.pgServer
pgDatabase = postgres_fixture.pgDatabase

pytestmark = pytest.mark.slow

ALICE = ("alice@example.test", "alice-pw")
MAIL = "urn:ietf:params:jmap:mail"
MESSAGE = ("From: Bob Smith <bob@elsewhere.test>\r\nTo: Alice <alice@example.test>\r\n"
           "Subject: Shared index\r\nMessage-ID: <shared.1@elsewhere.test>\r\n\r\n"
           "Listed on every node from one table.\r\n")


@pytest.fixture
def nodes(pgServer, pgDatabase, tmp_path):
    started = []
    try:
        for name in "ab":
            node = MailServer(tmp_path / f"node{name}",
                              config=pgConfig(pgServer, pgDatabase, auth={"allow_plaintext": True}))
            node.start()
            started.append(node)
            node.addUser(*ALICE)
        yield started
    finally:
        for node in started:
            node.stop()


def api(server, *calls):
    from mailnet.jmap.core import CORE, accountIdFor

    for _, args in calls:
        args.setdefault("accountId", accountIdFor(ALICE[0]))
    body = json.dumps({"using": [CORE, MAIL],
                       "methodCalls": [[name, args, str(n)] for n, (name, args) in enumerate(calls)]}).encode()
    connection = http.client.HTTPConnection("127.0.0.1", server.port("http"), timeout=30)
    auth = base64.b64encode(f"{ALICE[0]}:{ALICE[1]}".encode()).decode()
    connection.request("POST", "/jmap/api/", body, {"Content-Type": "application/json", "Authorization": "Basic " + auth})
    response = connection.getresponse()
    data = json.loads(response.read())
    connection.close()
    assert response.status == 200, data
    return [args for _, args, _ in data["methodResponses"]]


def test_a_delivery_on_a_is_listed_on_b_and_flags_on_b_show_on_a(nodes, pgServer, pgDatabase):
    jmapc = pytest.importorskip("jmapc", reason="jmapc is in the test extra (pyproject.toml)")
    from jmapc import Comparator
    from jmapc.methods import EmailGet, EmailQuery

    a, b = nodes
    with smtplib.SMTP("127.0.0.1", a.port("smtp"), timeout=30) as smtp:
        smtp.sendmail("bob@elsewhere.test", [ALICE[0]], MESSAGE.encode())
    # The 250 came after the commit that wrote the list fields with the message.
    with pgServer.connect(pgDatabase) as conn:
        fields = conn.execute("SELECT s.fields FROM messages m JOIN body_summaries s ON s.hash = m.body_hash").fetchall()
    assert len(fields) == 1 and json.loads(fields[0][0])["subject"] == "Shared index"

    proxy = TLSProxy(b.port("http"), b.certFile, os.path.join(b.dataDir, "tls", "key.pem"))
    try:
        client = jmapc.Client.create_with_password(f"localhost:{proxy.port}", *ALICE)
        client.requests_session.trust_env = False
        client.requests_session.verify = os.path.join(b.dataDir, "tls", "dev-ca.pem")
        ids = client.request(EmailQuery(sort=[Comparator(property="receivedAt", is_ascending=False)])).ids
        assert len(ids) == 1
        [email] = client.request(EmailGet(ids=ids, properties=["subject", "from", "preview", "keywords"])).data
        assert email.subject == "Shared index"
        assert [(x.name, x.email) for x in email.mail_from] == [("Bob Smith", "bob@elsewhere.test")]
        assert email.preview == "Listed on every node from one table."
        assert not email.keywords
    finally:
        proxy.close()

    m = imaplib.IMAP4("127.0.0.1", b.port("imap"), timeout=30)
    try:
        m.login(*ALICE)
        m.select("INBOX")
        m.store("1", "+FLAGS", "(\\Flagged $label1)")
        [got] = api(a, ("Email/get", {"ids": ids, "properties": ["keywords", "subject"]}))
        assert got["list"] == [{"id": ids[0], "keywords": {"$flagged": True, "$label1": True},
                                "subject": "Shared index"}]
        m.store("1", "+FLAGS", "(\\Deleted)")
        m.expunge()
    finally:
        m.logout()
    eventually(lambda: api(a, ("Email/query", {}))[0]["ids"] == [])

"""
JMAP uploads shared by two real mailnet nodes on one PostgreSQL (issue 18,
docs/scaling.md): a blob uploaded through node A (RFC 8620 s6.1) is the
attachment of a draft that Email/set creates through node B (RFC 8621
s4.6), and imaplib on node A reads the attachment's bytes back.  With the
database stopped, an upload is answered 503 and an Email/set using an
uploaded blob serverUnavailable (RFC 8620 s3.6.2), and both nodes carry on after.
"""

from __future__ import annotations

import base64
import email
import email.policy
import http.client
import imaplib
import json
import os
import ssl

import pytest

from tests import pgnodes
from tests.pgnodes import ALICE

pgServer = pgnodes.pgServer
pgDatabase = pgnodes.pgDatabase

pytestmark = pytest.mark.slow

USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]


nodes = pgnodes.loopbackNodes  # two nodes on 127.0.0.1 (tests/pgnodes.py)


def headers(**extra):
    token = base64.b64encode(f"{ALICE[0]}:{ALICE[1]}".encode()).decode()
    return dict({"Authorization": "Basic " + token}, **extra)


def request(node, method, path, body, contentType):
    connection = http.client.HTTPConnection(node.host, node.port("http"), timeout=60)
    try:
        connection.request(method, path, body, headers(**{"Content-Type": contentType}))
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def accountId():
    from mailnet.jmap.core import accountIdFor

    return accountIdFor(ALICE[0])


def upload(node, data, contentType="application/pdf"):
    return request(node, "POST", f"/jmap/upload/{accountId()}/", data, contentType)


def api(node, *calls):
    body = json.dumps({"using": USING, "methodCalls": [[n, a, str(i)] for i, (n, a) in enumerate(calls)]})
    status, data = request(node, "POST", "/jmap/api/", body.encode(), "application/json")
    assert status == 200, data
    return json.loads(data)["methodResponses"]


def draftsId(node):
    [[_, answer, _]] = api(node, ("Mailbox/get", {"accountId": accountId(), "ids": None}))
    [found] = [m["id"] for m in answer["list"] if m["role"] == "drafts"]
    return found


def createDraft(node, mailboxId, blobId):
    return api(node, ("Email/set", {"accountId": accountId(), "create": {"d1": {
        "mailboxIds": {mailboxId: True}, "keywords": {"$draft": True},
        "from": [{"email": ALICE[0]}], "to": [{"email": "bob@elsewhere.test"}], "subject": "with an attachment",
        "bodyValues": {"t": {"value": "see the attachment"}},
        "textBody": [{"partId": "t", "type": "text/plain"}],
        "attachments": [{"blobId": blobId, "type": "application/pdf", "name": "report.pdf"}]}}}))


def attachmentsOnImap(node):
    c = imaplib.IMAP4_SSL("127.0.0.1", node.port("imaps"), ssl_context=ssl.create_default_context(cafile=node.certFile))
    try:
        c.login(*ALICE)
        typ, _ = c.select("Drafts", readonly=True)
        assert typ == "OK"
        typ, data = c.fetch("1:*", "(BODY.PEEK[])")
        assert typ == "OK", data
        messages = [email.message_from_bytes(item[1], policy=email.policy.default) for item in data
                    if isinstance(item, tuple)]
        c.logout()
    except BaseException:
        c.shutdown()
        raise
    return [(part.get_filename(), part.get_payload(decode=True)) for m in messages for part in m.iter_attachments()]


def test_an_upload_through_a_is_attached_through_b_and_read_on_a(nodes):
    a, b = nodes
    data = os.urandom(700 * 1024)  # several chunks
    status, body = upload(a, data)
    assert status == 201, body
    blobId = json.loads(body)["blobId"]
    [[name, answer, _]] = createDraft(b, draftsId(b), blobId)
    assert name == "Email/set" and "d1" in (answer.get("created") or {}), answer
    assert attachmentsOnImap(a) == [("report.pdf", data)]


def test_a_database_outage_is_503_and_server_unavailable(pgServer, nodes):
    a, b = nodes
    status, body = upload(a, b"kept")
    assert status == 201, body
    blobId = json.loads(body)["blobId"]
    drafts = draftsId(b)
    pgServer.stop()
    try:
        status, body = upload(a, b"while the database is away")
        assert status == 503, body
        assert pgServer.dir.encode() not in body
        [[name, answer, _]] = createDraft(b, drafts, blobId)
        assert name == "error" and answer["type"] == "serverUnavailable", answer
    finally:
        pgServer.start()
    # Back: both nodes serve again (a node fails fast for a few seconds after an outage).
    pgnodes.eventually(lambda: upload(a, b"after")[0] == 201, what="an upload after the outage")
    pgnodes.eventually(lambda: "created" in createDraft(b, drafts, blobId)[0][1], what="Email/set after the outage")
    assert ("report.pdf", b"kept") in attachmentsOnImap(a)

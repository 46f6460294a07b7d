"""
JMAP mail (RFC 8621) on the real server (tests/harness.py): mail delivered
by SMTP (smtplib) and changed over IMAP (imaplib), read and changed with
jmapc (through the TLS proxy it needs) and raw JSON; /changes after an SMTP
delivery and an IMAP STORE; EventSource push within a second of either.
"""

import base64
import http.client
import imaplib
import json
import os
import smtplib
import socket
import time

import pytest

from tests.conftest import USERS
from tests.http.tlsproxy import TLSProxy

pytestmark = pytest.mark.slow

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
ALICE = ("alice@example.test", USERS["alice@example.test"])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.harness import MailServer

    server = MailServer(tmp_path_factory.mktemp("jmapmail"), config={"http": {"push_ping_minimum": 1},
                                                                       # imaplib logs in without STARTTLS here
                                                                       "auth": {"allow_plaintext": True}})
    server.start()
    for name, password in USERS.items():
        server.addUser(name, password)
    yield server
    server.stop()


def send(server, subject, body="Hello over SMTP.\r\n", to=ALICE[0]):
    message = (f"From: Bob <bob@elsewhere.test>\r\nTo: {to}\r\nSubject: {subject}\r\n"
               f"Message-ID: <{subject.replace(' ', '-')}.{time.time_ns()}@example.test>\r\n\r\n{body}")
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as smtp:
        smtp.sendmail("bob@elsewhere.test", [to], message.encode())


def api(server, *calls):
    body = json.dumps({"using": [CORE, MAIL],
                       "methodCalls": [[name, args, str(n)] for n, (name, args) in enumerate(calls)]}).encode()
    connection = http.client.HTTPConnection("127.0.0.1", server.port("http"), timeout=30)
    auth = base64.b64encode(f"{ALICE[0]}:{ALICE[1]}".encode()).decode()
    connection.request("POST", "/jmap/api/", body, {"Content-Type": "application/json", "Authorization": "Basic " + auth})
    response = connection.getresponse()
    data = json.loads(response.read())
    connection.close()
    assert response.status == 200, data
    return [args if name != "error" else ("error", args["type"]) for name, args, _ in data["methodResponses"]]


def accountId(server):
    from mailnet.jmap.core import accountIdFor

    return accountIdFor(ALICE[0])


def one(server, name, **args):
    args.setdefault("accountId", accountId(server))
    return api(server, (name, args))[0]


def imap(server):
    m = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=30)
    m.login(*ALICE)
    return m


def waitFor(predicate, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("not within the timeout")


def subjects(server, ids):
    got = one(server, "Email/get", ids=ids, properties=["subject"])["list"]
    return {e["id"]: e["subject"] for e in got}


@pytest.fixture(scope="module")
def proxy(server):
    tls = TLSProxy(server.port("http"), server.certFile, os.path.join(server.dataDir, "tls", "key.pem"))
    yield tls
    tls.close()


def test_jmapc_reads_and_changes_mail_seen_over_imap(server, proxy):
    jmapc = pytest.importorskip("jmapc", reason="jmapc is in the test extra (pyproject.toml)")
    from jmapc import Comparator, EmailQueryFilterCondition, MailboxQueryFilterCondition
    from jmapc.methods import EmailGet, EmailQuery, EmailSet, MailboxGet, MailboxQuery

    send(server, "jmapc one", "First body.\r\n")
    send(server, "jmapc two", "Second body.\r\n")
    client = jmapc.Client.create_with_password(f"localhost:{proxy.port}", *ALICE)
    client.requests_session.trust_env = False
    client.requests_session.verify = os.path.join(server.dataDir, "tls", "dev-ca.pem")
    inboxId = client.request(MailboxQuery(filter=MailboxQueryFilterCondition(role="inbox"))).ids[0]
    mailboxes = {m.name: m for m in client.request(MailboxGet(ids=None)).data}
    inbox = mailboxes["INBOX"]
    assert inbox.id == inboxId and inbox.role == "inbox" and inbox.total_emails >= 2
    archive = mailboxes["Archive"]
    query = client.request(EmailQuery(filter=EmailQueryFilterCondition(in_mailbox=inboxId),
                                      sort=[Comparator(property="receivedAt", is_ascending=False)],
                                      limit=2, calculate_total=True))
    assert len(query.ids) == 2 and query.total >= 2
    emails = client.request(EmailGet(ids=query.ids, fetch_text_body_values=True,
                                     properties=["subject", "from", "keywords", "mailboxIds", "bodyValues",
                                                 "textBody", "receivedAt", "threadId"])).data
    assert [e.subject for e in emails] == ["jmapc two", "jmapc one"]
    assert emails[0].mail_from[0].email == "bob@elsewhere.test"
    assert emails[0].body_values[emails[0].text_body[0].part_id].value == "Second body.\n"
    newest = emails[0].id
    # keywords over JMAP -> flags over IMAP
    result = client.request(EmailSet(update={newest: {"keywords/$seen": True, "keywords/$flagged": True}}))
    assert newest in result.updated
    m = imap(server)
    try:
        m.select("INBOX")
        typ, data = m.search(None, "FLAGGED", "SEEN", "SUBJECT", '"jmapc two"')
        assert typ == "OK" and len(data[0].split()) == 1
    finally:
        m.logout()
    # a move over JMAP -> the message is in Archive over IMAP
    result = client.request(EmailSet(update={newest: {"mailboxIds": {archive.id: True}}}))
    assert newest in result.updated
    m = imap(server)
    try:
        typ, data = m.select("Archive")
        typ, data = m.search(None, "SUBJECT", '"jmapc two"')
        assert len(data[0].split()) == 1
        m.select("INBOX")
        typ, data = m.search(None, "SUBJECT", '"jmapc two"')
        assert data[0].split() == []
    finally:
        m.logout()


def test_raw_message_blob_is_the_imap_bytes(server):
    send(server, "blob check", "Bytes.\r\n")
    ids = one(server, "Email/query", limit=1)["ids"]
    [email] = one(server, "Email/get", ids=ids, properties=["blobId", "size", "subject", "textBody"])["list"]
    assert email["subject"] == "blob check"
    auth = base64.b64encode(f"{ALICE[0]}:{ALICE[1]}".encode()).decode()
    connection = http.client.HTTPConnection("127.0.0.1", server.port("http"), timeout=30)
    connection.request("GET", f"/jmap/download/{accountId(server)}/{email['blobId']}/m.eml?type=message/rfc822",
                       headers={"Authorization": "Basic " + auth})
    response = connection.getresponse()
    raw = response.read()
    assert response.status == 200 and len(raw) == email["size"]
    part = email["textBody"][0]["blobId"]
    connection.request("GET", f"/jmap/download/{accountId(server)}/{part}/t.txt?type=text/plain",
                       headers={"Authorization": "Basic " + auth})
    response = connection.getresponse()
    assert response.read() == b"Bytes.\r\n" and response.status == 200
    connection.close()
    m = imap(server)
    try:
        m.select("INBOX")
        typ, data = m.search(None, "SUBJECT", '"blob check"')
        typ, data = m.fetch(data[0].split()[0], "(RFC822)")
        assert data[0][1] == raw
    finally:
        m.logout()


def test_changes_after_smtp_delivery_and_imap_store(server):
    state = one(server, "Email/get", ids=[])["state"]
    send(server, "changes one")
    changes = waitFor(lambda: one(server, "Email/changes", sinceState=state)["created"] and
                      one(server, "Email/changes", sinceState=state))
    [created] = changes["created"]
    assert subjects(server, [created]) == {created: "changes one"}
    mailboxChanges = one(server, "Mailbox/changes", sinceState=state)
    assert mailboxChanges["updatedProperties"] == ["totalEmails", "unreadEmails", "totalThreads", "unreadThreads"]
    state = changes["newState"]
    m = imap(server)
    try:
        m.select("INBOX")
        typ, data = m.search(None, "SUBJECT", '"changes one"')
        m.store(data[0].split()[0], "+FLAGS", "(\\Answered)")
    finally:
        m.logout()
    changes = one(server, "Email/changes", sinceState=state)
    assert changes["updated"] == [created] and changes["created"] == []
    keywords = one(server, "Email/get", ids=[created], properties=["keywords"])["list"][0]["keywords"]
    assert keywords == {"$answered": True}


def test_errors_over_http(server):
    account = accountId(server)
    answers = api(server,
                  ("Email/query", {"accountId": account, "filter": {"bogus": "x"}}),
                  ("Email/query", {"accountId": account, "sort": [{"property": "bogus"}]}),
                  ("Email/query", {"accountId": account, "anchor": "nope"}),
                  ("Email/changes", {"accountId": account, "sinceState": "nope"}),
                  ("Email/set", {"accountId": account, "ifInState": "nope", "destroy": []}),
                  ("Mailbox/get", {"accountId": account, "ids": None, "properties": ["bogus"]}),
                  ("Thread/get", {"accountId": "other", "ids": []}))
    assert answers == [("error", "unsupportedFilter"), ("error", "unsupportedSort"), ("error", "anchorNotFound"),
                       ("error", "cannotCalculateChanges"), ("error", "stateMismatch"),
                       ("error", "invalidArguments"), ("error", "accountNotFound")]


def eventSource(server):
    s = socket.create_connection(("127.0.0.1", server.port("http")), timeout=30)
    auth = base64.b64encode(f"{ALICE[0]}:{ALICE[1]}".encode())
    s.sendall(b"GET /jmap/eventsource/?types=*&closeafter=state&ping=0 HTTP/1.1\r\nHost: x\r\n"
              b"Authorization: Basic " + auth + b"\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 200")
    return s, head.partition(b"\r\n\r\n")[2]


def readState(s, already):
    data = already
    while b"event: state" not in data or b"\n\n" not in data.partition(b"event: state")[2]:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    line = [x for x in data.partition(b"event: state")[2].split(b"\n") if x.startswith(b"data: ")][0]
    return json.loads(line[6:])


@pytest.mark.parametrize("how", ["smtp", "imap"])
def test_eventsource_push_after_smtp_and_imap_store(server, how):
    send(server, f"push {how}")
    waitFor(lambda: one(server, "Email/query", filter={"subject": f"push {how}"})["ids"])
    m = imap(server)
    try:
        m.select("INBOX")
        s, rest = eventSource(server)
        time.sleep(0.2)  # the stream is subscribed once its head is sent
        started = time.monotonic()
        if how == "smtp":
            send(server, "pushed")
        else:
            typ, data = m.search(None, "SUBJECT", f'"push {how}"')
            m.store(data[0].split()[0], "+FLAGS", "(\\Flagged)")
        change = readState(s, rest)
        elapsed = time.monotonic() - started
        s.close()
    finally:
        m.logout()
    assert change["@type"] == "StateChange"
    states = change["changed"][accountId(server)]
    assert "Email" in states  # a \Flagged change leaves the Mailbox counts alone
    assert states["Email"] == one(server, "Email/get", ids=[])["state"]  # this change, not an earlier one
    print(f"push after {how}: {elapsed:.3f} s")
    # RFC 8620 s7 / issue 14: within 1 s; the margin is for a loaded test machine.
    assert elapsed < 10


def test_mailbox_set_and_email_destroy_seen_over_imap(server):
    created = one(server, "Mailbox/set", create={"p": {"name": "Projects"}})["created"]["p"]["id"]
    child = one(server, "Mailbox/set", create={"c": {"name": "2026", "parentId": created}})["created"]["c"]["id"]
    m = imap(server)
    try:
        typ, listed = m.list()
        names = b"\n".join(listed)
        assert b'"Projects"' in names or b" Projects" in names
        assert b"Projects/2026" in names
    finally:
        m.logout()
    assert one(server, "Mailbox/set", update={created: {"name": "Work"}})["updated"] == {created: None}
    assert one(server, "Mailbox/set", destroy=[created])["notDestroyed"][created]["type"] == "mailboxHasChild"
    send(server, "to destroy")
    [emailId] = waitFor(lambda: one(server, "Email/query", filter={"subject": "to destroy"})["ids"])
    assert one(server, "Email/set", update={emailId: {"mailboxIds": {child: True}}})["updated"] == {emailId: None}
    answer = one(server, "Mailbox/set", destroy=[child])
    assert answer["notDestroyed"][child]["type"] == "mailboxHasEmail"
    m = imap(server)
    try:
        typ, listed = m.list()
        assert b"Work/2026" in b"\n".join(listed)
        typ, data = m.select("Work/2026")
        assert data == [b"1"]
    finally:
        m.logout()
    assert one(server, "Email/set", destroy=[emailId])["destroyed"] == [emailId]
    m = imap(server)
    try:
        typ, data = m.select("Work/2026")
        assert data == [b"0"]
    finally:
        m.logout()
    assert one(server, "Mailbox/set", destroy=[child])["destroyed"] == [child]
    assert one(server, "Mailbox/set", destroy=[created])["destroyed"] == [created]
    m = imap(server)
    try:
        typ, listed = m.list()
        assert b"Work" not in b"\n".join(listed)
    finally:
        m.logout()

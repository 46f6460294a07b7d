"""
Email/query filters and sorts (RFC 8621 s4.4), Email/queryChanges and
SearchSnippet/get on the real server: mail delivered by SMTP (smtplib),
flagged over IMAP, searched with jmapc (through the TLS proxy it needs) and
raw JSON for the errors.
"""

import datetime
import os
import smtplib

import pytest

from tests.http.test_real_mail import ALICE, api, imap, one
from tests.http.tlsproxy import TLSProxy

pytestmark = pytest.mark.slow

MAILS = [
    # (subject, from, cc, bcc, extra header, body)
    ("Lunch plans", "Bob Smith <bob@elsewhere.test>", None, None, "X-Tag: blue", "Shall we meet at noon?"),
    ("Re: Lunch plans", "Carol <carol@elsewhere.test>", "Bob Smith <bob@elsewhere.test>", None, None,
     "Noon is fine, caf=C3=A9 downstairs."),
    ("Quarterly report", "Dave <dave@corp.test>", None, "Eve <eve@corp.test>", "X-Tag: red",
     "The numbers are attached."),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.conftest import USERS
    from tests.harness import MailServer

    server = MailServer(tmp_path_factory.mktemp("jmapquery"), config={"auth": {"allow_plaintext": True}})
    server.start()
    for name, password in USERS.items():
        server.addUser(name, password)
    for n, (subject, sender, cc, bcc, extra, body) in enumerate(MAILS):
        head = [f"From: {sender}", f"To: Alice <{ALICE[0]}>", f"Subject: {subject}", f"Message-ID: <q{n}@elsewhere.test>"]
        head += [f"Cc: {cc}"] if cc else []
        head += [f"Bcc: {bcc}"] if bcc else []
        head += [extra] if extra else []
        if n == 1:
            head += ["In-Reply-To: <q0@elsewhere.test>", "References: <q0@elsewhere.test>"]
        head += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
                 "Content-Transfer-Encoding: quoted-printable"]
        with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as smtp:
            smtp.sendmail("bob@elsewhere.test", [ALICE[0]], ("\r\n".join(head) + "\r\n\r\n" + body + "\r\n").encode())
    m = imap(server)
    try:
        m.select("INBOX")
        m.store("3", "+FLAGS", "(\\Flagged)")  # the report, over IMAP
    finally:
        m.logout()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(server):
    jmapc = pytest.importorskip("jmapc", reason="jmapc is in the test extra (pyproject.toml)")
    proxy = TLSProxy(server.port("http"), server.certFile, os.path.join(server.dataDir, "tls", "key.pem"))
    c = jmapc.Client.create_with_password(f"localhost:{proxy.port}", *ALICE)
    c.requests_session.trust_env = False
    c.requests_session.verify = os.path.join(server.dataDir, "tls", "dev-ca.pem")
    yield c
    proxy.close()


def subjectsOf(server, ids):
    got = {e["id"]: e["subject"] for e in one(server, "Email/get", ids=ids, properties=["subject"])["list"]}
    return [got[i] for i in ids]


def test_jmapc_filters(server, client):
    from jmapc import Comparator, EmailQueryFilterCondition as C, EmailQueryFilterOperator as Op, Operator
    from jmapc.methods import EmailQuery

    def found(filter, sort=None):
        ids = client.request(EmailQuery(filter=filter, sort=sort)).ids
        return subjectsOf(server, ids) if ids else []

    assert found(C(text="café")) == ["Re: Lunch plans"]  # quoted-printable UTF-8 body, decoded
    assert found(C(text="eve@corp")) == ["Quarterly report"]  # Bcc
    assert found(C(mail_from="bob smith")) == ["Lunch plans"]
    assert found(C(to="alice")) == ["Quarterly report", "Re: Lunch plans", "Lunch plans"]
    assert found(C(cc="BOB")) == ["Re: Lunch plans"]
    assert found(C(bcc="eve")) == ["Quarterly report"]
    assert found(C(body="noon")) == ["Re: Lunch plans", "Lunch plans"]
    assert found(C(header=["X-Tag"])) == ["Quarterly report", "Lunch plans"]
    assert found(C(header=["x-tag", "Blue"])) == ["Lunch plans"]
    assert found(C(has_keyword="$flagged")) == ["Quarterly report"]
    assert found(C(some_in_thread_have_keyword="$flagged")) == ["Quarterly report"]
    assert found(C(none_in_thread_have_keyword="$flagged")) == ["Re: Lunch plans", "Lunch plans"]
    assert found(C(after=datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc), min_size=10,
                   has_attachment=False, text="lunch")) == ["Re: Lunch plans", "Lunch plans"]
    assert found(Op(operator=Operator.NOT, conditions=[C(text="lunch")])) == ["Quarterly report"]
    assert found(Op(operator=Operator.OR, conditions=[C(body="numbers"), Op(
        operator=Operator.AND, conditions=[C(mail_from="carol"), C(body="fine")])])) == [
            "Quarterly report", "Re: Lunch plans"]
    by = found(None, sort=[Comparator(property="subject"), Comparator(property="receivedAt", is_ascending=True)])
    assert by == ["Lunch plans", "Re: Lunch plans", "Quarterly report"]
    assert found(None, sort=[Comparator(property="from", is_ascending=False)])[0] == "Quarterly report"  # Dave


def test_errors_over_raw_http(server):
    from mailnet.jmap.core import accountIdFor

    account = accountIdFor(ALICE[0])
    for args, error in (({"filter": {"snippet": "x"}}, "unsupportedFilter"),
                        ({"filter": {"header": ["Bad Name"]}}, "invalidArguments"),
                        ({"filter": {"operator": "XOR", "conditions": []}}, "unsupportedFilter"),
                        ({"sort": [{"property": "id"}]}, "unsupportedSort"),
                        ({"sort": [{"property": "subject", "collation": "i;octet"}]}, "unsupportedSort"),
                        ({"sort": [{"property": "hasKeyword"}]}, "invalidArguments")):
        assert api(server, ("Email/query", dict(args, accountId=account))) == [("error", error)], args


def test_jmapc_search_snippets(server, client):
    from jmapc import EmailQueryFilterCondition as C
    from jmapc.methods import EmailQuery, SearchSnippetGet

    filter = C(text="noon")
    ids = client.request(EmailQuery(filter=filter)).ids
    snippets = client.request(SearchSnippetGet(ids=ids, filter=filter)).data
    assert [s.preview for s in snippets] == ["<mark>Noon</mark> is fine, café downstairs.",
                                             "Shall we meet at <mark>noon</mark>?"]
    assert [s.subject for s in snippets] == [None, None]
    snippet = one(server, "SearchSnippet/get", emailIds=ids[:1], filter={"subject": "lunch"})["list"][0]
    assert snippet == {"emailId": ids[0], "subject": "Re: <mark>Lunch</mark> plans", "preview": None}
    assert one(server, "SearchSnippet/get", emailIds=ids, filter={"nope": 1}) == ("error", "unsupportedFilter")


def test_eventsource_resumes_with_last_event_id(server):
    """RFC 8620 s7.3: a client that comes back with Last-Event-ID gets what it missed at once."""
    import base64
    import json
    import socket

    from mailnet.jmap.core import accountIdFor
    from mailnet.jmap.push import parsePushState

    def stream(lastEventId):
        s = socket.create_connection(("127.0.0.1", server.port("http")), timeout=30)
        auth = base64.b64encode(f"{ALICE[0]}:{ALICE[1]}".encode())
        s.sendall(b"GET /jmap/eventsource/?types=Email&closeafter=state&ping=0 HTTP/1.1\r\nHost: x\r\n"
                  b"Authorization: Basic " + auth + b"\r\nLast-Event-ID: " + lastEventId + b"\r\n\r\n")
        data = b""
        while not (b"event: state" in data and b"\n\n" in data.partition(b"event: state")[2]):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        s.close()
        block = data.partition(b"event: state")
        lines = (block[0].rsplit(b"\n", 2)[-2:] + block[2].split(b"\n"))
        eventId = [x[4:] for x in lines if x.startswith(b"id: ")][0].decode()
        return json.loads([x for x in lines if x.startswith(b"data: ")][0][6:]), eventId

    account = accountIdFor(ALICE[0])
    state = one(server, "Email/get", ids=[])["state"]
    change, eventId = stream(b"not-one-of-ours")  # an id we did not give: every current state, at once
    assert change["changed"] == {account: {"Email": state}} and change["pushState"] == eventId
    assert parsePushState(eventId) == {account: {"Email": state}}
    old = base64.urlsafe_b64encode(json.dumps({account: {"Email": "0.0"}}).encode()).rstrip(b"=")
    change, _ = stream(old)  # an old pushState: the new state
    assert change["changed"] == {account: {"Email": state}}

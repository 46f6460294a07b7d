"""
App passwords (bearer tokens, mailnet/tokens.py), CORS ([http] cors_origins)
and the client address in JMAP submissions, on the real server
(tests/harness.py): ``mailnet token add|list|revoke`` run as the admin
would, raw HTTP (http.client), jmapc with a bearer token through the TLS
proxy, and the token as an app password over IMAP, POP3 and SMTP AUTH.
"""

import base64
import email
import email.policy
import hashlib
import http.client
import imaplib
import json
import os
import poplib
import smtplib

import pytest

from mailnet.jmap.core import accountIdFor
from tests.conftest import USERS
from tests.harness import MailServer
from tests.http.tlsproxy import TLSProxy

pytestmark = pytest.mark.slow

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
SUBMISSION = "urn:ietf:params:jmap:submission"
ALICE = ("alice@example.test", USERS["alice@example.test"])
BOB = ("bob@example.test", USERS["bob@example.test"])
APP = "https://app.example.org"


@pytest.fixture(scope="module")
def jmap(tmp_path_factory):
    server = MailServer(tmp_path_factory.mktemp("tokens"),
                        config={"auth": {"allow_plaintext": True},
                                "http": {"cors_origins": [APP], "request_deadline": 10},
                                "jmap": {"submission_hold": 0}})
    server.start()
    for name, password in USERS.items():
        server.addUser(name, password)
    yield server
    server.stop()


def newToken(server, user=ALICE[0], name=None):
    args = ["token", "add", user] + (["--name", name] if name else [])
    return server.mailnet(*args).stdout.strip()


def call(server, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", server.port("http"), timeout=30)
    connection.request(method, path, body=body, headers=dict(headers or {}))
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response, data


def bearer(token):
    return {"Authorization": "Bearer " + token}


def basic(user=ALICE):
    return {"Authorization": "Basic " + base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()}


def api(server, auth, *calls, headers=None):
    body = json.dumps({"using": [CORE, MAIL, SUBMISSION],
                       "methodCalls": [[name, dict(args, accountId=accountIdFor(ALICE[0])), str(n)]
                                       for n, (name, args) in enumerate(calls)]}).encode()
    response, data = call(server, "POST", "/jmap/api/", body,
                          dict(auth, **{"Content-Type": "application/json"}, **(headers or {})))
    assert response.status == 200, data
    return json.loads(data)["methodResponses"]


def test_token_cli_hashed_at_rest_bearer_then_revoked(jmap):
    token = newToken(jmap, name="phone")
    assert token.startswith("mn_") and len(token) == 46
    path = os.path.join(jmap.dataDir, "users.tokens")
    with open(path) as f:
        stored = f.read()
    assert token not in stored and token[3:] not in stored
    assert hashlib.sha256(token.encode()).hexdigest() in stored
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    listed = jmap.mailnet("token", "list", ALICE[0]).stdout
    assert listed.startswith("phone  created ") and token not in listed

    response, data = call(jmap, "GET", "/.well-known/jmap", headers=bearer(token))
    assert response.status == 200, data
    assert json.loads(data)["username"] == ALICE[0]

    jmap.mailnet("token", "revoke", ALICE[0], "phone")
    response, data = call(jmap, "GET", "/.well-known/jmap", headers=bearer(token))
    assert response.status == 401
    assert 'Bearer realm="mailnet"' in response.headers.get_all("WWW-Authenticate")
    assert jmap.mailnet("token", "list", ALICE[0]).stdout == ""
    gone = jmap.mailnet("token", "revoke", ALICE[0], "phone", check=False)
    assert gone.returncode == 1 and "no token named phone" in gone.stderr
    assert token not in jmap.log()


def test_bad_bearer_tokens_are_refused_and_counted(jmap):
    for header in ("Bearer mn_" + "A" * 43, "Bearer nonsense", "Bearer  ", "Bearer a b"):
        response, data = call(jmap, "GET", "/.well-known/jmap", headers={"Authorization": header})
        assert response.status == 401, (header, data)
        assert json.loads(data)["status"] == 401
    # Through the login sequence: logged (never the token) and throttled like a bad password.
    assert "failed login for '(bearer token)'" in jmap.log()
    assert "mn_" + "A" * 43 not in jmap.log()


def test_bearer_follows_the_plaintext_rule(tmp_path):
    server = MailServer(tmp_path)  # allow_plaintext off (the default)
    server.start()
    try:
        server.addUser(*ALICE)
        token = newToken(server)
        response, _ = call(server, "GET", "/.well-known/jmap", headers=bearer(token))
        assert response.status == 200  # loopback: a proxy on this machine
        response, data = call(server, "GET", "/.well-known/jmap",
                              headers=dict(bearer(token), **{"X-Forwarded-Proto": "http"}))
        assert response.status == 401 and b"only accepted over TLS" in data
        # CORS is off by default: a preflight is not answered as one.
        response, _ = call(server, "OPTIONS", "/jmap/api/", headers={
            "Origin": APP, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        assert response.status == 405
        assert response.getheader("Access-Control-Allow-Origin") is None
    finally:
        server.stop()


def test_token_is_an_app_password_for_basic_imap_pop3_smtp_and_webmail(jmap):
    token = newToken(jmap, user=BOB[0], name="mailapp")
    basic = base64.b64encode(f"{BOB[0]}:{token}".encode()).decode()
    response, _ = call(jmap, "GET", "/.well-known/jmap", headers={"Authorization": "Basic " + basic})
    assert response.status == 200
    imap = imaplib.IMAP4("127.0.0.1", jmap.port("imap"), timeout=30)
    assert imap.login(BOB[0], token)[0] == "OK"
    imap.logout()
    pop = poplib.POP3("127.0.0.1", jmap.port("pop3"), timeout=30)
    pop.user(BOB[0])
    assert pop.pass_(token).startswith(b"+OK")
    pop.quit()
    with smtplib.SMTP("127.0.0.1", jmap.port("submission"), timeout=30) as smtp:
        smtp.ehlo()
        assert smtp.login(BOB[0], token)[0] == 235
    response, data = call(jmap, "POST", "/webmail/login", json.dumps({"username": BOB[0], "password": token}),
                          {"Content-Type": "application/json"})
    assert response.status == 200 and "mailnet_session=" in response.getheader("Set-Cookie"), data
    # Someone else's token is not Bob's password.
    other = newToken(jmap, user=ALICE[0])
    imap = imaplib.IMAP4("127.0.0.1", jmap.port("imap"), timeout=30)
    with pytest.raises(imaplib.IMAP4.error):
        imap.login(BOB[0], other)
    imap.shutdown()


def test_cors_preflight_and_response_headers(jmap):
    preflight = {"Origin": APP, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"}
    for path in ("/.well-known/jmap", "/jmap/api/", f"/jmap/upload/{accountIdFor(ALICE[0])}/",
                 "/jmap/download/x/y/z", "/jmap/eventsource/"):
        response, body = call(jmap, "OPTIONS", path, headers=preflight)
        assert response.status == 204, path
        assert response.getheader("Access-Control-Allow-Origin") == APP
        assert "POST" in response.getheader("Access-Control-Allow-Methods")
        allowed = response.getheader("Access-Control-Allow-Headers").lower()
        assert "authorization" in allowed and "content-type" in allowed
        assert int(response.getheader("Access-Control-Max-Age")) > 0
        assert response.getheader("Access-Control-Allow-Credentials") is None
    # Another origin: no preflight answer, no Allow-Origin.
    response, _ = call(jmap, "OPTIONS", "/jmap/api/", headers=dict(preflight, Origin="https://evil.example"))
    assert response.status == 405 and response.getheader("Access-Control-Allow-Origin") is None
    # The real request: Allow-Origin on the answer (even a 401), never credentials, never *.
    token = newToken(jmap)
    response, _ = call(jmap, "GET", "/.well-known/jmap", headers=dict(bearer(token), Origin=APP))
    assert response.status == 200
    assert response.getheader("Access-Control-Allow-Origin") == APP
    assert response.getheader("Access-Control-Allow-Credentials") is None
    response, _ = call(jmap, "GET", "/.well-known/jmap", headers={"Origin": "https://evil.example"})
    assert response.status == 401 and response.getheader("Access-Control-Allow-Origin") is None


def test_submission_received_shows_the_client_address(jmap):
    auth = basic()  # Basic: independent of the tokens
    [[_, boxes, _]] = api(jmap, auth, ("Mailbox/get", {"ids": None, "properties": ["name"]}))
    drafts = next(m["id"] for m in boxes["list"] if m["name"] == "Drafts")
    [[_, ids, _]] = api(jmap, auth, ("Identity/get", {"ids": None}))
    identity = next(i["id"] for i in ids["list"] if i["email"] == ALICE[0])
    responses = api(jmap, auth, ("Email/set", {"create": {"d": {
        "mailboxIds": {drafts: True}, "keywords": {"$draft": True},
        "from": [{"email": ALICE[0]}], "to": [{"email": BOB[0]}], "subject": "via proxy",
        "textBody": [{"partId": "t", "type": "text/plain"}], "bodyValues": {"t": {"value": "Hi.\n"}}}}}),
        ("EmailSubmission/set", {"create": {"s": {"identityId": identity, "emailId": "#d"}}}),
        # Loopback is a trusted proxy: its X-Forwarded-For names the client.
        headers={"X-Forwarded-For": "192.0.2.77"})
    assert "s" in responses[1][1]["created"], responses
    files = jmap.messageFiles(BOB[0])
    messages = [email.message_from_bytes(open(f, "rb").read(), policy=email.policy.compat32) for f in files]
    [sent] = [m for m in messages if m["Subject"] == "via proxy"]
    assert "[192.0.2.77]" in sent.get_all("Received")[0]


def test_jmapc_with_a_bearer_token(jmap):
    jmapc = pytest.importorskip("jmapc", reason="jmapc is in the test extra (pyproject.toml)")
    from jmapc.methods import CoreEcho, MailboxGet

    token = newToken(jmap, name="jmapc")
    proxy = TLSProxy(jmap.port("http"), jmap.certFile, os.path.join(jmap.dataDir, "tls", "key.pem"))
    try:
        client = jmapc.Client.create_with_api_token(f"localhost:{proxy.port}", token)
        client.requests_session.trust_env = False
        client.requests_session.verify = os.path.join(jmap.dataDir, "tls", "dev-ca.pem")
        assert client.jmap_session.username == ALICE[0]
        assert client.request(CoreEcho(data={"t": 1})).data == {"t": 1}
        assert "INBOX" in {m.name for m in client.request(MailboxGet(ids=None)).data}
    finally:
        proxy.close()

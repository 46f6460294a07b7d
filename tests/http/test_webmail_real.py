"""
The webmail's server side on the real server (tests/harness.py), with
http.client: login (ok, wrong, throttled with Basic's throttle), the
cookie's flags (Secure through the TLS proxy only), resume, logout ending
the session server side, CSRF on the API and upload, downloads, Basic
untouched, the static files, and the cleaned HTML of a hostile message
(cid: inlined, remote images counted).
"""

import base64
import gzip
import http.client
import json
import os
import smtplib
import ssl
import time

import pytest

from tests.conftest import USERS
from tests.http.hostilemail import PNG, REMOTE_COUNT, SUBJECT, hostileMessage
from tests.http.tlsproxy import TLSProxy

pytestmark = pytest.mark.slow

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
ALICE = ("alice@example.test", USERS["alice@example.test"])
APP_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
           "frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    from tests.harness import MailServer

    server = MailServer(tmp_path_factory.mktemp("webmail"), config={"auth": {"failure_delay": 0.5}})
    server.start()
    for name, password in USERS.items():
        server.addUser(name, password)
    yield server
    server.stop()


def request(server, method, path, body=None, headers=None, connection=None):
    connection = connection or http.client.HTTPConnection("127.0.0.1", server.port("http"), timeout=60)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response, data


def login(server, user=ALICE, **kw):
    body = json.dumps({"username": user[0], "password": user[1]}).encode()
    return request(server, "POST", "/webmail/login", body, {"Content-Type": "application/json"}, **kw)


def loggedIn(server):
    response, data = login(server)
    assert response.status == 200, data
    return response.getheader("Set-Cookie").split(";")[0], json.loads(data)["csrf"]


def basic(user=ALICE):
    return "Basic " + base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()


def api(server, headers, *calls):
    body = json.dumps({"using": [CORE, MAIL],
                       "methodCalls": [[name, args, str(n)] for n, (name, args) in enumerate(calls)]}).encode()
    return request(server, "POST", "/jmap/api/", body, dict({"Content-Type": "application/json"}, **headers))


def test_login_cookie_and_jmap_with_it(web):
    response, data = login(web)
    assert response.status == 200
    cookie = response.getheader("Set-Cookie")
    assert cookie.split("; ")[1:] == ["HttpOnly", "SameSite=Strict", "Path=/"]
    assert response.getheader("Content-Security-Policy") == APP_CSP
    session = cookie.split(";")[0]
    csrf = json.loads(data)["csrf"]
    response, data = request(web, "GET", "/webmail/session", headers={"Cookie": session})
    assert response.status == 200 and json.loads(data) == {"username": ALICE[0], "csrf": csrf}
    response, data = request(web, "GET", "/.well-known/jmap", headers={"Cookie": session})
    assert response.status == 200 and json.loads(data)["username"] == ALICE[0]
    response, data = api(web, {"Cookie": session}, ("Core/echo", {}))
    assert response.status == 403 and json.loads(data)["type"] == "urn:mailnet:csrf"
    response, data = api(web, {"Cookie": session, "X-CSRF-Token": "nope"}, ("Core/echo", {}))
    assert response.status == 403
    response, data = api(web, {"Cookie": session, "X-CSRF-Token": csrf}, ("Core/echo", {"x": 1}))
    assert response.status == 200 and json.loads(data)["methodResponses"][0][1] == {"x": 1}
    # Basic is as it was: no CSRF header needed.
    response, data = api(web, {"Authorization": basic()}, ("Core/echo", {}))
    assert response.status == 200


def test_wrong_login_and_throttle_shared_with_basic(web):
    bob = ("bob@example.test", "Wr0ng-pass-4711")
    start = time.monotonic()
    response, data = login(web, bob)
    first = time.monotonic() - start
    assert response.status == 401 and json.loads(data) == {"error": "Login failed"}
    assert response.getheader("Set-Cookie") is None
    assert first >= 0.4  # [auth] failure_delay 0.5 before the answer
    # The next try, over Basic, waits for the failures counted from the webmail login (0.5 * 2).
    start = time.monotonic()
    response, data = api(web, {"Authorization": basic(bob)}, ("Core/echo", {}))
    assert response.status == 401
    assert time.monotonic() - start >= 0.9
    assert "Wr0ng-pass-4711" not in web.log()


def test_secure_cookie_through_the_tls_proxy(web):
    tls = TLSProxy(web.port("http"), web.certFile, os.path.join(web.dataDir, "tls", "key.pem"))
    try:
        context = ssl.create_default_context(cafile=web.certFile)
        context.check_hostname = False
        connection = http.client.HTTPSConnection("127.0.0.1", tls.port, timeout=60, context=context)
        response, data = login(web, connection=connection)
        assert response.status == 200
        assert response.getheader("Set-Cookie").split("; ")[1:] == ["HttpOnly", "SameSite=Strict", "Path=/", "Secure"]
    finally:
        tls.close()


def test_logout_ends_the_session_server_side(web):
    session, csrf = loggedIn(web)
    response, _ = request(web, "POST", "/webmail/logout", headers={"Cookie": session})
    assert response.status == 403  # without the token
    response, _ = request(web, "POST", "/webmail/logout", headers={"Cookie": session, "X-CSRF-Token": csrf})
    assert response.status == 204 and "Max-Age=0" in response.getheader("Set-Cookie")
    # The old cookie, replayed: refused everywhere.
    for path in ("/webmail/session", "/.well-known/jmap"):
        response, _ = request(web, "GET", path, headers={"Cookie": session})
        assert response.status == 401
    response, _ = api(web, {"Cookie": session, "X-CSRF-Token": csrf}, ("Core/echo", {}))
    assert response.status == 401


def test_upload_needs_csrf_download_does_not(web):
    session, csrf = loggedIn(web)
    accountId = json.loads(request(web, "GET", "/.well-known/jmap", headers={"Cookie": session})[1])[
        "primaryAccounts"][CORE]
    response, _ = request(web, "POST", f"/jmap/upload/{accountId}/", b"<script>alert(1)</script>",
                          {"Cookie": session, "Content-Type": "text/html"})
    assert response.status == 403
    response, data = request(web, "POST", f"/jmap/upload/{accountId}/", b"<script>alert(1)</script>",
                             {"Cookie": session, "Content-Type": "text/html", "X-CSRF-Token": csrf})
    assert response.status == 201
    blobId = json.loads(data)["blobId"]
    response, data = request(web, "GET", f"/jmap/download/{accountId}/{blobId}/page.html?type=text/html",
                             headers={"Cookie": session})
    assert response.status == 200 and data == b"<script>alert(1)</script>"
    # An HTML attachment opened directly cannot run: attachment, no sniffing, a sandbox CSP.
    assert response.getheader("Content-Disposition").startswith("attachment;")
    assert response.getheader("X-Content-Type-Options") == "nosniff"
    assert response.getheader("Content-Security-Policy") == "default-src 'none'; sandbox"
    response, data = request(web, "POST", f"/jmap/upload/{accountId}/", PNG,
                             {"Cookie": session, "Content-Type": "image/png", "X-CSRF-Token": csrf})
    pngId = json.loads(data)["blobId"]
    response, data = request(web, "GET", f"/jmap/download/{accountId}/{pngId}/a.png?type=image/png",
                             headers={"Cookie": session})
    assert response.getheader("Content-Disposition").startswith("inline;") and data == PNG
    assert response.getheader("Content-Security-Policy") == "default-src 'none'; sandbox"


def test_static_files(web):
    response, data = request(web, "GET", "/")
    assert response.status == 200 and response.getheader("Content-Type") == "text/html; charset=utf-8"
    assert data.lstrip().lower().startswith(b"<!doctype html>")
    for name, value in (("Content-Security-Policy", APP_CSP), ("X-Frame-Options", "DENY"),
                        ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer")):
        assert response.getheader(name) == value
    etag = response.getheader("ETag")
    response, data = request(web, "GET", "/", headers={"If-None-Match": etag})
    assert response.status == 304 and data == b""
    response, data = request(web, "GET", "/", headers={"Accept-Encoding": "gzip"})
    if response.getheader("Content-Encoding") == "gzip":  # only files over 512 bytes are compressed
        data = gzip.decompress(data)
    assert data.lstrip().lower().startswith(b"<!doctype html>")
    for path in ("/webmail/static/../../auth.py", "/webmail/static/%2e%2e/%2e%2e/auth.py",
                 "/webmail/static/../webmail.py", "/webmail/static/", "/../../etc/passwd", "/webmail/static/.x"):
        response, data = request(web, "GET", path)
        assert response.status in (400, 404), path
        assert b"import" not in data and b"root:" not in data
    response, _ = request(web, "GET", "/webmail/static/index.html")
    assert response.status == 200 and response.getheader("Content-Security-Policy") == APP_CSP


def deliver(server, message, to=ALICE[0]):
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as smtp:
        smtp.sendmail("attacker@evil.example", [to], message)


def findEmail(server, headers, accountId, subject):
    for _ in range(100):
        (query, got) = [json.loads(api(server, headers,
                                       ("Email/query", {"accountId": accountId}),
                                       ("Email/get", {"accountId": accountId,
                                                      "#ids": {"resultOf": "0", "name": "Email/query", "path": "/ids"},
                                                      "properties": ["subject", "from", "htmlBody", "blobId"]}))[1])
                        ["methodResponses"][i][1] for i in (0, 1)]
        found = [e for e in got["list"] if e["subject"] == subject]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError("not delivered")


def test_hostile_html_cleaned_with_cid_inlined(web):
    deliver(web, hostileMessage())
    session, csrf = loggedIn(web)
    accountId = json.loads(request(web, "GET", "/.well-known/jmap", headers={"Cookie": session})[1])[
        "primaryAccounts"][CORE]
    email = findEmail(web, {"Authorization": basic()}, accountId, SUBJECT)
    # The markup in Subject and From is data in JSON; the app puts it in textContent.
    assert email["from"][0]["name"] == "<img src=x onerror=alert(1)>"
    [part] = email["htmlBody"]
    path = f"/webmail/html/{accountId}/{email['id']}/{part['partId']}"
    response, data = request(web, "GET", path, headers={"Cookie": session})
    assert response.status == 200, data
    assert response.getheader("Content-Type") == "text/html; charset=utf-8"
    assert response.getheader("Content-Security-Policy") == (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'self'")
    assert response.getheader("X-Frame-Options") == "SAMEORIGIN"
    assert response.getheader("X-Mailnet-Remote-Content") == str(REMOTE_COUNT)
    text = data.decode()
    assert "data:image/png;base64," + base64.b64encode(PNG).decode() in text  # cid: inlined
    for needle in ("<script", "onerror", "javascript:", "<iframe", "<form", "<meta http", "<base", "<svg", "url("):
        assert needle not in text.lower(), needle
    assert "script executed" not in text.replace('ipt&gt;console.log("script executed")', "")
    # HEAD gives the same count without the body (the app asks it before it shows the frame).
    response, data = request(web, "HEAD", path, headers={"Cookie": session})
    assert response.status == 200 and data == b""
    assert response.getheader("X-Mailnet-Remote-Content") == str(REMOTE_COUNT)
    # remote=1: the images are shown, the CSP lets them load.
    response, data = request(web, "GET", path + "?remote=1", headers={"Cookie": session})
    assert response.getheader("X-Mailnet-Remote-Content") == "0"
    assert "img-src data: http: https:;" in response.getheader("Content-Security-Policy")
    assert 'src="https://evil.example/tracker.gif"' in data.decode()
    # Basic works too; another user's account, a text part, a bad path: 404, nothing else.
    assert request(web, "GET", path, headers={"Authorization": basic()})[0].status == 200
    bobs = request(web, "GET", path, headers={"Authorization": basic(("bob@example.test", USERS["bob@example.test"]))})
    assert bobs[0].status == 404
    for bad in (path.rsplit("/", 1)[0] + "/2", path.rsplit("/", 1)[0] + "/x", path + "/more",
                f"/webmail/html/{accountId}/nope/1"):
        assert request(web, "GET", bad, headers={"Cookie": session})[0].status == 404, bad
    assert request(web, "GET", path)[0].status == 401


def test_startup_banner_names_the_webmail(web):
    assert f"webmail: http://127.0.0.1:{web.port('http')}/" in web.log()


def test_removing_a_user_ends_their_sessions(web):
    carol = ("carol@example.test", "carol-pw-1")
    web.addUser(*carol)
    response, data = login(web, carol)
    assert response.status == 200
    session = response.getheader("Set-Cookie").split(";")[0]
    assert request(web, "GET", "/.well-known/jmap", headers={"Cookie": session})[0].status == 200
    web.mailnet("user", "del", carol[0])
    for _ in range(50):  # the users file is read again when it changes
        if request(web, "GET", "/.well-known/jmap", headers={"Cookie": session})[0].status == 401:
            break
        time.sleep(0.2)
    assert request(web, "GET", "/.well-known/jmap", headers={"Cookie": session})[0].status == 401

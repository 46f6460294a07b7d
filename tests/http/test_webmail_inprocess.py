"""
The webmail's server side in-process (tests/http/inprocess.py: a real
twisted.web Site over StringTransport, a task.Clock): login, session,
logout, the cookie as JMAP authentication with its CSRF rules, the static
files (types, ETag, gzip, no escape), and [webmail] enabled = false.
"""

import gzip
import json

import pytest

from mailnet.http.webmail import APP_CSP, StaticFiles
from tests.http.inprocess import HTTP

JSON = {b"content-type": b"application/json"}
ECHO = json.dumps({"using": ["urn:ietf:params:jmap:core"], "methodCalls": [["Core/echo", {"a": 1}, "0"]]}).encode()


@pytest.fixture
def http(tmp_path):
    return HTTP(tmp_path)


def login(http, user="alice@example.test", password="alice-pw", headers=None, host="127.0.0.1"):
    body = json.dumps({"username": user, "password": password}).encode()
    return http.request(b"POST", b"/webmail/login", body, {**JSON, **(headers or {})}, host=host, auth=False)


def loggedIn(http):
    r = login(http)
    assert r.status == 200, r.body
    return r.header("set-cookie").split(";")[0].encode(), r.json()["csrf"].encode()


def test_login_sets_the_cookie_and_gives_the_csrf_token(http):
    r = login(http)
    assert r.status == 200
    assert r.json()["username"] == "alice@example.test" and len(r.json()["csrf"]) >= 43
    cookie = r.header("set-cookie")
    assert cookie.startswith("mailnet_session=")
    attributes = [a.strip() for a in cookie.split(";")[1:]]
    assert attributes == ["HttpOnly", "SameSite=Strict", "Path=/"]  # no Secure over plain loopback
    assert r.header("content-security-policy") == APP_CSP.decode()


def test_login_over_a_tls_proxy_sets_secure(http):
    r = login(http, headers={b"x-forwarded-proto": b"https"})
    assert r.status == 200 and "Secure" in r.header("set-cookie").split("; ")


def test_x_forwarded_proto_is_ignored_from_an_untrusted_peer(tmp_path):
    http = HTTP(tmp_path, authConfig={"allow_plaintext": True})
    r = login(http, headers={b"x-forwarded-proto": b"https"}, host="192.0.2.7")
    assert r.status == 200 and "Secure" not in r.header("set-cookie")


def test_wrong_login(http):
    r = login(http, password="wrong")
    assert r.status == 401 and r.json() == {"error": "Login failed"}
    assert r.header("set-cookie") is None


def test_plaintext_refused_off_loopback_like_basic(http):
    r = login(http, host="192.0.2.7")
    assert r.status == 403 and "TLS" in r.json()["error"]
    assert http.checker.checks == 0  # nothing checked


@pytest.mark.parametrize("body, headers, status", [
    (b'{"username": "a"}', JSON, 400),
    (b"username=a&password=b", {b"content-type": b"application/x-www-form-urlencoded"}, 415),
    (b'{"username": "a", "password": "b"}', {b"content-type": b"text/plain"}, 415),
    (b"\xff", JSON, 400),
    (b'{"username": "", "password": "b"}', JSON, 400),
    (b'{"username": "alice@example.test", "password": "alice-pw"}',
     {**JSON, b"sec-fetch-site": b"cross-site"}, 403),
])
def test_bad_logins(http, body, headers, status):
    r = http.request(b"POST", b"/webmail/login", body, headers, auth=False)
    assert r.status == status and "error" in r.json()


def test_session_resumes_and_logout_ends_it_server_side(http):
    cookie, csrf = loggedIn(http)
    r = http.request(b"GET", b"/webmail/session", headers={b"cookie": cookie}, auth=False)
    assert r.status == 200 and r.json() == {"username": "alice@example.test", "csrf": csrf.decode()}
    r = http.request(b"POST", b"/webmail/logout", headers={b"cookie": cookie}, auth=False)
    assert r.status == 403 and r.json()["type"] == "urn:mailnet:csrf"  # logout needs the token too
    r = http.request(b"POST", b"/webmail/logout", headers={b"cookie": cookie, b"x-csrf-token": csrf}, auth=False)
    assert r.status == 204 and "Max-Age=0" in r.header("set-cookie")
    assert len(http.service.sessions) == 0
    for path in (b"/webmail/session", b"/.well-known/jmap"):
        r = http.request(b"GET", path, headers={b"cookie": cookie}, auth=False)
        assert r.status == 401
        # No Basic challenge: the browser would show its own login dialog instead of the app's.
        assert "Basic" not in (r.header("www-authenticate") or "")


def test_session_expires_when_idle(http):
    cookie, csrf = loggedIn(http)
    http.clock.advance(8 * 3600 - 10)
    assert http.request(b"GET", b"/webmail/session", headers={b"cookie": cookie}, auth=False).status == 200
    http.clock.advance(8 * 3600 + 10)
    assert http.request(b"GET", b"/webmail/session", headers={b"cookie": cookie}, auth=False).status == 401


def test_cookie_authenticates_jmap_with_csrf_on_changes(http):
    cookie, csrf = loggedIn(http)
    r = http.request(b"GET", b"/.well-known/jmap", headers={b"cookie": cookie}, auth=False)
    assert r.status == 200 and r.json()["username"] == "alice@example.test"
    for headers in ({}, {b"x-csrf-token": b"wrong"}, {b"x-csrf-token": csrf + b"x"}):
        r = http.request(b"POST", b"/jmap/api/", ECHO, {**JSON, b"cookie": cookie, **headers}, auth=False)
        assert r.status == 403
        assert r.json() == {"type": "urn:mailnet:csrf", "status": 403, "detail": "missing or wrong X-CSRF-Token"}
    r = http.request(b"POST", b"/jmap/api/", ECHO, {**JSON, b"cookie": cookie, b"x-csrf-token": csrf}, auth=False)
    assert r.status == 200 and r.json()["methodResponses"] == [["Core/echo", {"a": 1}, "0"]]
    upload = b"/jmap/upload/" + http.accountId().encode() + b"/"
    r = http.request(b"POST", upload, b"data", {b"cookie": cookie}, auth=False)
    assert r.status == 403 and r.json()["type"] == "urn:mailnet:csrf"
    r = http.request(b"POST", upload, b"data", {b"cookie": cookie, b"x-csrf-token": csrf}, auth=False)
    assert r.status == 201
    blobId = r.json()["blobId"].encode()
    # A GET needs no token: the app's download links are plain links.
    r = http.request(b"GET", b"/jmap/download/" + http.accountId().encode() + b"/" + blobId + b"/a.bin",
                     headers={b"cookie": cookie}, auth=False)
    assert r.status == 200 and r.body == b"data"


def test_cross_site_fetch_metadata_refused_even_for_gets(http):
    cookie, csrf = loggedIn(http)
    for site in (b"cross-site", b"same-site"):
        r = http.request(b"GET", b"/.well-known/jmap", headers={b"cookie": cookie, b"sec-fetch-site": site},
                         auth=False)
        assert r.status == 403 and r.json()["type"] == "urn:mailnet:csrf"
    for site in (b"same-origin", b"none"):
        r = http.request(b"GET", b"/.well-known/jmap", headers={b"cookie": cookie, b"sec-fetch-site": site},
                         auth=False)
        assert r.status == 200


def test_websocket_with_the_cookie_needs_our_origin(http):
    cookie, csrf = loggedIn(http)
    handshake = {b"cookie": cookie, b"upgrade": b"websocket", b"connection": b"Upgrade",
                 b"sec-websocket-key": b"dGhlIHNhbXBsZSBub25jZQ==", b"sec-websocket-version": b"13",
                 b"sec-websocket-protocol": b"jmap"}
    r = http.request(b"GET", b"/jmap/ws/", headers={**handshake, b"origin": b"http://evil.example"}, auth=False)
    assert r.status == 403
    r = http.request(b"GET", b"/jmap/ws/", headers=handshake, auth=False)
    assert r.status == 403  # no Origin at all
    connection = http.connect()
    connection.send(b"GET", b"/jmap/ws/", headers={**handshake, b"origin": b"http://127.0.0.1:8080"}, auth=False)
    assert connection.response().status == 101


def test_basic_still_works_without_csrf(http):
    r = http.request(b"POST", b"/jmap/api/", ECHO, JSON)
    assert r.status == 200
    r = http.request(b"GET", b"/.well-known/jmap", auth=False)
    assert r.status == 401 and r.header("www-authenticate").startswith("Basic")


def test_static_files(tmp_path):
    root = tmp_path / "static"
    (root / "js").mkdir(parents=True)
    (root / "index.html").write_text("<!DOCTYPE html><p>app</p>" + " " * 2000)
    (root / "js" / "app.js").write_text("export const x = 1;\n" * 100)
    (root / "app.css").write_text("body{}")
    (root / ".hidden").write_text("secret")
    (tmp_path / "outside.txt").write_text("outside")
    (root / "link.txt").symlink_to(tmp_path / "outside.txt")
    http = HTTP(tmp_path / "data")
    http.service.webmail.static = StaticFiles(str(root))

    r = http.request(b"GET", b"/", auth=False)
    assert r.status == 200 and r.body.startswith(b"<!DOCTYPE html><p>app</p>")
    assert r.header("content-type") == "text/html; charset=utf-8"
    for name, value in (("content-security-policy", APP_CSP.decode()), ("x-frame-options", "DENY"),
                        ("x-content-type-options", "nosniff"), ("referrer-policy", "no-referrer")):
        assert r.header(name) == value
    r = http.request(b"GET", b"/webmail/static/js/app.js", auth=False)
    assert r.header("content-type") == "text/javascript; charset=utf-8"
    etag = r.header("etag").encode()
    r = http.request(b"GET", b"/webmail/static/js/app.js", headers={b"if-none-match": etag}, auth=False)
    assert r.status == 304 and r.body == b""
    r = http.request(b"GET", b"/webmail/static/js/app.js", headers={b"accept-encoding": b"gzip, br"}, auth=False)
    assert r.header("content-encoding") == "gzip" and gzip.decompress(r.body) == b"export const x = 1;\n" * 100
    r = http.request(b"GET", b"/webmail/static/js/app.js", headers={b"accept-encoding": b"gzip;q=0"}, auth=False)
    assert r.header("content-encoding") is None
    r = http.request(b"GET", b"/webmail/static/app.css", auth=False)
    assert r.header("content-type") == "text/css; charset=utf-8" and r.body == b"body{}"
    for path in (b"/webmail/static/../outside.txt", b"/webmail/static/%2e%2e/outside.txt",
                 b"/webmail/static/js/../../outside.txt", b"/webmail/static/.hidden", b"/webmail/static/link.txt",
                 b"/webmail/static/js", b"/webmail/static/js/", b"/webmail/static/", b"/webmail/static//etc/passwd",
                 b"/index.html", b"/elsewhere", b"/webmail/static/js%2fapp.js"):
        r = http.request(b"GET", path, auth=False)
        assert r.status == 404, path
        assert b"outside" not in r.body and b"secret" not in r.body
        assert r.header("content-security-policy") is not None
    r = http.request(b"POST", b"/webmail/static/app.css", auth=False)
    assert r.status == 405


def test_webmail_can_be_turned_off(tmp_path):
    from mailnet import config

    http = HTTP(tmp_path)
    http.config = config.fromDict({"server": {"data_dir": str(tmp_path)}, "webmail": {"enabled": False}})
    import types

    from mailnet.http.server import HTTPService
    from mailnet.jmap.push import MemoryPushSource
    context = types.SimpleNamespace(config=http.config, reactor=http.clock, store=http.store,
                                    login=http.service.context.login)
    http.service = HTTPService(context, push=MemoryPushSource())
    http.site = http.service.site
    assert http.request(b"GET", b"/", auth=False).status == 404
    assert login(http).status == 404
    # The cookie is no authentication then.
    assert http.request(b"GET", b"/.well-known/jmap", headers={b"cookie": b"mailnet_session=x"},
                        auth=False).status == 401


def test_eventsource_with_the_cookie(http):
    """A browser's EventSource cannot send Authorization: the cookie is how the app gets push (a GET: no token)."""
    cookie, csrf = loggedIn(http)
    connection = http.connect()
    connection.send(b"GET", b"/jmap/eventsource/?types=*&closeafter=no&ping=0", headers={b"cookie": cookie},
                    auth=False)
    r = connection.response()
    assert r.status == 200 and r.header("content-type").startswith("text/event-stream")
    r = http.request(b"GET", b"/jmap/eventsource/?types=*&closeafter=no&ping=0",
                     headers={b"cookie": cookie, b"sec-fetch-site": b"cross-site"}, auth=False)
    assert r.status == 403

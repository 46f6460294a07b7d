"""
The http listener in-process (twisted.web over StringTransport, task.Clock):
security headers, 404 without paths, bodies refused unread, the request
deadline, authentication and the plaintext rule, the JMAP API's
request-level errors and limits, upload and download.
"""

import json

from twisted.internet import defer

from mailnet.jmap.dispatch import CORE
from tests.http.inprocess import HTTP, basic

JSON = {b"content-type": b"application/json"}


def test_session_resource_and_security_headers(tmp_path):
    http = HTTP(tmp_path)
    response = http.request(b"GET", b"/.well-known/jmap")
    assert response.status == 200
    session = response.json()
    assert session["username"] == "alice@example.test"
    assert session["apiUrl"] == "http://127.0.0.1:8080/jmap/api/"
    assert list(session["accounts"]) == [http.accountId()]
    assert response.header("cache-control") == "no-store"
    assert response.header("x-content-type-options") == "nosniff"
    assert response.header("content-security-policy").startswith("default-src 'none'")
    assert response.header("x-frame-options") == "DENY"
    assert response.header("server") == "mailnet"


def test_not_found_shows_no_path(tmp_path):
    http = HTTP(tmp_path)
    for path in (b"/secret-name-xyz", b"/jmap/api/secret-name-xyz", b"/jmap/download/secret-name-xyz"):
        response = http.request(b"GET", path)
        assert response.status in (404, 405)
        assert b"secret-name-xyz" not in response.raw
        assert response.header("x-content-type-options") == "nosniff"


def test_without_credentials_401_with_a_challenge(tmp_path):
    http = HTTP(tmp_path)
    response = http.request(b"GET", b"/.well-known/jmap", auth=False)
    assert response.status == 401
    assert response.header("www-authenticate").startswith('Basic realm="mailnet"')
    assert http.request(b"GET", b"/.well-known/jmap", auth=basic(password="wrong")).status == 401
    assert http.request(b"GET", b"/.well-known/jmap", auth=b"Basic !!!notbase64").status == 401
    assert http.request(b"GET", b"/.well-known/jmap", auth=b"Bearer abc").status == 401


def test_passwords_not_taken_from_a_remote_client_without_tls(tmp_path):
    http = HTTP(tmp_path)
    response = http.request(b"GET", b"/.well-known/jmap", host="192.0.2.7")
    assert response.status == 401 and "TLS" in response.json()["detail"]
    assert response.header("www-authenticate")
    assert http.checker.checks == 0  # nothing checked
    # A local client that says (through a proxy header) it came in without TLS: refused too.
    assert http.request(b"GET", b"/.well-known/jmap", headers={b"x-forwarded-proto": b"http"}).status == 401
    assert http.request(b"GET", b"/.well-known/jmap", host="192.0.2.7",
                        headers={b"x-forwarded-proto": b"https"}).status == 401  # not a trusted proxy
    assert http.checker.checks == 0


def test_allow_plaintext_takes_passwords_from_anywhere(tmp_path):
    http = HTTP(tmp_path, authConfig={"allow_plaintext": True})
    assert http.request(b"GET", b"/.well-known/jmap", host="192.0.2.7").status == 200


def test_a_trusted_proxy(tmp_path):
    http = HTTP(tmp_path, http={"trusted_proxies": ["10.0.0.0/24"]})
    response = http.request(b"GET", b"/.well-known/jmap", host="10.0.0.5",
                            headers={b"x-forwarded-proto": b"https", b"x-forwarded-for": b"198.51.100.1, 203.0.113.9",
                                     b"host": b"mail.example.test"})
    assert response.status == 200
    assert response.json()["apiUrl"] == "https://mail.example.test/jmap/api/"
    assert http.request(b"GET", b"/.well-known/jmap", host="10.0.0.5",
                        headers={b"x-forwarded-proto": b"http"}).status == 401


def test_the_client_address_behind_a_trusted_proxy(tmp_path):
    http = HTTP(tmp_path, http={"trusted_proxies": ["10.0.0.5"]})
    seen = []
    login = http.service.authenticator.login.login

    def spy(protocol, peer, *args, **kw):
        seen.append((protocol, peer))
        return login(protocol, peer, *args, **kw)

    http.service.authenticator.login.login = spy
    forwarded = {b"x-forwarded-for": b"198.51.100.1, 203.0.113.9"}
    http.request(b"GET", b"/.well-known/jmap", host="10.0.0.5", headers=forwarded)
    http.request(b"GET", b"/.well-known/jmap", host="10.0.0.6", headers=forwarded, auth=True)
    http.request(b"GET", b"/.well-known/jmap", host="127.0.0.1", headers=forwarded)
    assert seen == [("http", "203.0.113.9"), ("http", "203.0.113.9")]  # 10.0.0.6 is refused before any check


def test_an_api_body_over_the_limit_is_refused_from_its_length_unread(tmp_path):
    http = HTTP(tmp_path, http={"max_size_request": 10_000})
    connection = http.connect()
    connection.raw(b"POST /jmap/api/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Expect: 100-continue\r\nAuthorization: " + basic() + b"\r\nContent-Length: 10001\r\n\r\n")
    response = connection.response()
    assert response.status == 413 and b"100 Continue" not in response.raw
    assert response.json() == {"type": "urn:ietf:params:jmap:error:limit", "status": 413,
                               "detail": "The body is larger than 10000 bytes.", "limit": "maxSizeRequest"}
    assert connection.closed
    assert http.checker.checks == 0


def test_a_chunked_body_over_the_limit_is_cut_off(tmp_path):
    http = HTTP(tmp_path, http={"max_size_request": 10_000})
    connection = http.connect()
    connection.raw(b"POST /jmap/api/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(3):
        connection.raw(b"1000\r\n" + b"x" * 4096 + b"\r\n")
    assert connection.response().status == 413 and connection.closed


def test_other_paths_take_small_bodies_only(tmp_path):
    http = HTTP(tmp_path)
    response = http.request(b"POST", b"/.well-known/jmap", b"x" * 70_000)
    assert response.status == 413


def test_the_request_deadline_is_not_pushed_back_by_trickling_bytes(tmp_path):
    http = HTTP(tmp_path, http={"request_deadline": 30})
    connection = http.connect()
    head = b"GET /.well-known/jmap HTTP/1.1\r\nHost: x\r\n"
    for byte in head:
        connection.raw(bytes([byte]))
        http.clock.advance(1)
        if connection.closed:
            break
    assert connection.closed
    assert connection.response().status == 408
    # An idle kept-alive connection is closed by the idle timeout.
    connection = http.connect()
    connection.send(b"GET", b"/.well-known/jmap")
    assert connection.response().status == 200
    http.clock.advance(http.config.http.idle_timeout + 1)
    assert connection.closed


def test_request_errors(tmp_path):
    http = HTTP(tmp_path, http={"max_calls_in_request": 2})
    def api(body, headers=JSON):
        return http.request(b"POST", b"/jmap/api/", body, headers)

    response = api(b'{"using": [], "methodCalls": []}', {b"content-type": b"text/plain"})
    assert (response.status, response.json()["type"]) == (400, "urn:ietf:params:jmap:error:notJSON")
    assert response.header("content-type") == "application/problem+json"
    assert api(b"{").json()["type"].endswith(":notJSON")
    assert api(b'{"using": "x"}').json()["type"].endswith(":notRequest")
    problem = api(b'{"using": ["urn:example:nope"], "methodCalls": []}').json()
    assert problem["type"].endswith(":unknownCapability") and "urn:example:nope" in problem["detail"]
    problem = api(json.dumps({"using": [CORE], "methodCalls": [["Core/echo", {}, "c"]] * 3}).encode()).json()
    assert problem["type"].endswith(":limit") and problem["limit"] == "maxCallsInRequest"
    assert http.request(b"GET", b"/jmap/api/").status == 405
    response = http.api([["Core/echo", {"x": "é"}, "c"], ["Blob/get", {}, "d"]])
    assert response.status == 200 and response.header("cache-control") == "no-store"
    assert response.json()["methodResponses"] == [["Core/echo", {"x": "é"}, "c"], ["error", {"type": "unknownMethod"}, "d"]]


def test_concurrent_requests_per_user_are_limited(tmp_path):
    http = HTTP(tmp_path, http={"max_concurrent_requests": 1})
    gate = defer.Deferred()

    async def wait(call):
        await gate
        return {}

    http.service.registry.method("Test/wait", wait)
    first = http.connect()
    first.send(b"POST", b"/jmap/api/", json.dumps({"using": [CORE], "methodCalls": [["Test/wait", {}, "w"]]}).encode(), JSON)
    second = http.api([["Core/echo", {}, "c"]])
    assert second.status == 429
    assert second.json()["limit"] == "maxConcurrentRequests"
    assert http.api([["Core/echo", {}, "c"]], auth=basic("bob@example.test")).status == 200  # another user
    gate.callback(None)
    assert first.response().json()["methodResponses"] == [["Test/wait", {}, "w"]]
    assert http.api([["Core/echo", {}, "c"]]).status == 200


def test_upload_and_download(tmp_path):
    http = HTTP(tmp_path)
    account = http.accountId()
    response = http.request(b"POST", b"/jmap/upload/%s/" % account.encode(), b"<script>alert(1)</script>",
                            {b"content-type": b"text/html"})
    assert response.status == 201
    upload = response.json()
    assert upload["accountId"] == account and upload["size"] == 25 and upload["type"] == "text/html"
    blobId = upload["blobId"]
    path = b"/jmap/download/%s/%s/r%%C3%%A9sum%%C3%%A9%%20%%22x%%22.html?type=text/html" % (account.encode(), blobId.encode())
    response = http.request(b"GET", path)
    assert response.status == 200 and response.body == b"<script>alert(1)</script>"
    assert response.header("content-type") == "text/html"
    assert response.header("x-content-type-options") == "nosniff"
    assert "sandbox" in response.header("content-security-policy")
    assert response.header("content-disposition") == (
        "attachment; filename=\"r_sum_ _x_.html\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22x%22.html")
    response = http.request(b"GET", path.replace(b"text/html", b"text/html%0d%0aX-Evil:%201"))
    assert response.header("content-type") == "application/octet-stream" and "x-evil" not in response.headers
    # Another user cannot read it, nor upload into this account.
    other = basic("bob@example.test")
    assert http.request(b"GET", path, auth=other).status == 404
    assert http.request(b"POST", b"/jmap/upload/%s/" % account.encode(), b"x", auth=other).status == 404
    # Names never leave the blob directory.
    for bad in (b"../../users", b"..%2F..%2Fusers", b"%2e%2e", b"G" + b"0" * 300):
        assert http.request(b"GET", b"/jmap/download/%s/%s/x" % (account.encode(), bad)).status == 404
    # Blob/copy within the account.
    response = http.api([["Blob/copy", {"fromAccountId": account, "accountId": account, "blobIds": [blobId, "Gnope"]}, "c"]])
    answer = response.json()["methodResponses"][0][1]
    assert answer["copied"] == {blobId: blobId} and answer["notCopied"]["Gnope"]["type"] == "blobNotFound"
    response = http.api([["Blob/copy", {"fromAccountId": "nope", "accountId": account, "blobIds": []}, "c"]])
    assert response.json()["methodResponses"][0][1]["type"] == "fromAccountNotFound"


def test_a_blob_swept_between_its_look_up_and_its_open_is_a_404(tmp_path):
    from mailnet.jmap.blobs import Blob

    http = HTTP(tmp_path)
    account = http.accountId()

    def gone(kind):
        def opener():
            raise kind("removed while it was read")
        return opener

    for kind in (FileNotFoundError, LookupError):
        http.service.jmap.blobs.find = lambda accountId, blobId, kind=kind: defer.succeed(
            Blob(blobId, 5, "application/octet-stream", gone(kind)))
        response = http.request(b"GET", b"/jmap/download/%s/Gswept/x.bin" % account.encode())
        assert response.status == 404, response.raw[:200]
    # and the server goes on
    assert http.request(b"GET", b"/.well-known/jmap").status in (200, 301, 302, 307, 308)


def test_upload_over_the_limit(tmp_path):
    http = HTTP(tmp_path, http={"max_size_upload": 100})
    response = http.request(b"POST", b"/jmap/upload/%s/" % http.accountId().encode(), b"x" * 101)
    assert response.status == 413 and response.json()["limit"] == "maxSizeUpload"
    session = http.request(b"GET", b"/.well-known/jmap").json()
    assert session["capabilities"][CORE]["maxSizeUpload"] == 100


def test_trusted_proxies_are_checked_with_the_config():
    import pytest

    from mailnet import config

    with pytest.raises(config.ConfigError, match=r"\[http\] trusted_proxies: 'nonsense' is not an address"):
        config.fromDict({"http": {"trusted_proxies": ["10.0.0.0/8", "nonsense"]}})
    assert config.fromDict({"http": {"trusted_proxies": ["10.0.0.0/8", "::1", "192.0.2.7"]}}).http.trusted_proxies


def test_another_authentication_scheme_plugs_in(tmp_path):
    """The shape the webmail's cookie session will take: one more scheme, no password involved."""
    from twisted.internet import defer

    from mailnet.http.auth import AuthRefused, Principal

    class CookieScheme:
        name = "cookie"

        def challenge(self):
            return None

        def credentials(self, request):
            return request.getCookie(b"session")

        def authenticate(self, authenticator, request, credentials, alive=None):
            if credentials != b"good":
                return defer.fail(AuthRefused(401, "Session expired."))
            return defer.succeed(Principal("bob@example.test", None, lambda: None, self.name))

    http = HTTP(tmp_path)
    http.service.authenticator.schemes.insert(0, CookieScheme())
    response = http.request(b"GET", b"/.well-known/jmap", headers={b"cookie": b"session=good"}, auth=False)
    assert response.status == 200 and response.json()["username"] == "bob@example.test"
    assert http.checker.checks == 0
    response = http.request(b"GET", b"/.well-known/jmap", headers={b"cookie": b"session=old"}, auth=False)
    assert response.status == 401 and response.headers["www-authenticate"] == ['Basic realm="mailnet", charset="UTF-8"']
    assert http.request(b"GET", b"/.well-known/jmap").json()["username"] == "alice@example.test"  # Basic still works

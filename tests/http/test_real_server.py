"""
JMAP on the real server (tests/harness.py starts it), driven by clients we
did not write: http.client/urllib, curl, and the JMAP client libraries
jmapc and jmaplib (through a TLS proxy, as deployed: both insist on https).
Bad input gets the RFC's error, the server stays up, a slow client does not
stall the others, and no password reaches the log.
"""

import base64
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import USERS
from tests.http.tlsproxy import TLSProxy

pytestmark = pytest.mark.slow

CORE = "urn:ietf:params:jmap:core"
ALICE = ("alice@example.test", USERS["alice@example.test"])


@pytest.fixture(scope="module")
def jmap(tmp_path_factory):
    from tests.harness import MailServer

    server = MailServer(tmp_path_factory.mktemp("jmap"),
                        config={"http": {"max_size_request": 100_000, "max_size_upload": 1_000_000,
                                         "push_ping_minimum": 1, "request_deadline": 10}})
    server.start()
    for name, password in USERS.items():
        server.addUser(name, password)
    yield server
    server.stop()


def authHeader(user=ALICE):
    return "Basic " + base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()


def call(server, method, path, body=None, headers=None, user=ALICE):
    connection = http.client.HTTPConnection("127.0.0.1", server.port("http"), timeout=30)
    headers = dict(headers or {})
    if user:
        headers["Authorization"] = authHeader(user)
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response, data


def api(server, calls, using=(CORE,), **kw):
    body = json.dumps({"using": list(using), "methodCalls": calls}).encode()
    return call(server, "POST", "/jmap/api/", body, {"Content-Type": "application/json"}, **kw)


def test_session_and_echo_with_urllib(jmap):
    request = urllib.request.Request(jmap.url("/.well-known/jmap"), headers={"Authorization": authHeader()})
    with urllib.request.urlopen(request, timeout=30) as response:
        session = json.load(response)
        assert response.headers["Cache-Control"] == "no-store"
    assert session["username"] == "alice@example.test"
    assert session["apiUrl"] == jmap.url("/jmap/api/")
    assert session["capabilities"][CORE]["maxSizeRequest"] == 100_000
    accountId = session["primaryAccounts"][CORE]
    body = json.dumps({"using": [CORE], "methodCalls": [["Core/echo", {"hi": [1, "é"]}, "0"]]}).encode()
    request = urllib.request.Request(session["apiUrl"], data=body,
                                     headers={"Authorization": authHeader(), "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert json.load(response)["methodResponses"] == [["Core/echo", {"hi": [1, "é"]}, "0"]]
    assert accountId in session["accounts"]


@pytest.mark.parametrize("body, contentType, status, type", [
    (b"{", "application/json", 400, "notJSON"),
    (b'{"using": []}', "text/plain", 400, "notJSON"),
    (b'{"using": [], "methodCalls": {}}', "application/json", 400, "notRequest"),
    (b'{"using": ["urn:nope"], "methodCalls": []}', "application/json", 400, "unknownCapability"),
])
def test_request_level_errors(jmap, body, contentType, status, type):
    response, data = call(jmap, "POST", "/jmap/api/", body, {"Content-Type": contentType})
    assert response.status == status and response.headers["Content-Type"] == "application/problem+json"
    assert json.loads(data)["type"] == "urn:ietf:params:jmap:error:" + type


def test_method_level_errors(jmap):
    response, data = api(jmap, [["Mailbox/get", {"accountId": "x"}, "1"],
                                ["Blob/copy", {"fromAccountId": "nope", "accountId": "nope", "blobIds": []}, "2"],
                                ["Core/echo", {"#a": {"resultOf": "9", "name": "Core/echo", "path": "/a"}}, "3"]])
    types = [args["type"] for name, args, _ in json.loads(data)["methodResponses"]]
    assert types == ["unknownMethod", "accountNotFound", "invalidResultReference"]


def test_limits_are_enforced(jmap):
    calls = [["Core/echo", {}, str(i)] for i in range(jmap_limit(jmap, "maxCallsInRequest") + 1)]
    response, data = api(jmap, calls)
    assert response.status == 400 and json.loads(data)["limit"] == "maxCallsInRequest"
    # A body over maxSizeRequest is refused from its Content-Length, before it is sent.
    with socket.create_connection(("127.0.0.1", jmap.port("http")), timeout=30) as s:
        s.sendall(b"POST /jmap/api/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Authorization: " + authHeader().encode() + b"\r\nContent-Length: 100000000\r\n\r\n")
        answer = s.recv(65536)
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert b'"limit": "maxSizeRequest"' in answer


def jmap_limit(server, name):
    response, data = call(server, "GET", "/.well-known/jmap")
    return json.loads(data)["capabilities"][CORE][name]


def test_auth_refusals_and_no_passwords_in_the_log(jmap):
    response, _ = call(jmap, "GET", "/.well-known/jmap", user=None)
    assert response.status == 401 and response.headers["WWW-Authenticate"].startswith("Basic")
    response, _ = call(jmap, "GET", "/.well-known/jmap", user=("alice@example.test", "guess-Zq8"))
    assert response.status == 401
    response, data = call(jmap, "GET", "/no/such/secret-thing")
    assert response.status == 404 and b"secret-thing" not in data
    log = jmap.log()
    assert "guess-Zq8" not in log and USERS["alice@example.test"] not in log
    assert "failed login for 'alice@example.test'" in log


def test_upload_and_download_with_curl(jmap, tmp_path):
    curl = shutil.which("curl")
    assert curl, "curl is installed by scripts/test"
    accountId = json.loads(call(jmap, "GET", "/.well-known/jmap")[1])["primaryAccounts"][CORE]
    source = tmp_path / "photo.bin"
    source.write_bytes(os.urandom(300_000))
    user = f"{ALICE[0]}:{ALICE[1]}"
    out = subprocess.run([curl, "-sS", "--fail", "-u", user, "-H", "Content-Type: image/png", "--data-binary",
                          f"@{source}", jmap.url(f"/jmap/upload/{accountId}/")], capture_output=True, check=True)
    upload = json.loads(out.stdout)
    assert upload["size"] == 300_000 and upload["type"] == "image/png"
    target = tmp_path / "back.bin"
    out = subprocess.run([curl, "-sS", "--fail", "-u", user, "-D", "-", "-o", str(target),
                          jmap.url(f"/jmap/download/{accountId}/{upload['blobId']}/holiday%20photo.png?type=image/png")],
                         capture_output=True, check=True)
    assert target.read_bytes() == source.read_bytes()
    headers = out.stdout.decode().lower()
    # A raster image may be shown in a tab (docs/webmail.md "Downloads"); anything else is an attachment.
    assert "content-disposition: inline" in headers and "x-content-type-options: nosniff" in headers
    assert "content-security-policy: default-src 'none'; sandbox" in headers
    out = subprocess.run([curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "-u", "alice@example.test:wrong",
                          jmap.url("/.well-known/jmap")], capture_output=True)
    assert out.stdout == b"401"


@pytest.fixture(scope="module")
def proxy(jmap):
    tls = TLSProxy(jmap.port("http"), jmap.certFile, os.path.join(jmap.dataDir, "tls", "key.pem"))
    yield tls
    tls.close()


def test_jmapc(jmap, proxy, tmp_path):
    jmapc = pytest.importorskip("jmapc", reason="jmapc is in the test extra (pyproject.toml)")
    from jmapc.methods import CoreEcho
    from jmapc.models import EmailBodyPart

    client = jmapc.Client.create_with_password(f"localhost:{proxy.port}", *ALICE)
    client.requests_session.trust_env = False  # REQUESTS_CA_BUNDLE would win over verify
    client.requests_session.verify = os.path.join(jmap.dataDir, "tls", "dev-ca.pem")
    session = client.jmap_session
    assert session.username == "alice@example.test"
    assert session.api_url == f"https://localhost:{proxy.port}/jmap/api/"
    assert session.capabilities.core.max_calls_in_request >= 1
    assert client.request(CoreEcho(data={"x": 1})).data == {"x": 1}
    attachment = tmp_path / "notes.txt"
    attachment.write_bytes(b"line one\r\nline two\r\n")
    blob = client.upload_blob(attachment)
    assert blob.size == 20 and blob.type == "text/plain"
    target = tmp_path / "downloaded.txt"
    client.download_attachment(EmailBodyPart(blob_id=blob.id, name="notes.txt", type="text/plain"), target)
    assert target.read_bytes() == attachment.read_bytes()


def test_jmaplib(jmap, proxy):
    pytest.importorskip("jmap", reason="jmaplib is in the test extra (pyproject.toml)")
    import httpx
    from jmap.client import JMAPClient
    from jmap.push import EventSourceClient, Ping

    verify = ssl.create_default_context(cafile=os.path.join(jmap.dataDir, "tls", "dev-ca.pem"))
    transport = httpx.Client(verify=verify, timeout=30)
    client = JMAPClient.connect(f"https://localhost:{proxy.port}/.well-known/jmap",
                                auth=httpx.BasicAuth(*ALICE), http=transport)
    try:
        assert client.echo(a=[1, 2]) == {"a": [1, 2]}
        upload = client.upload(b"\x00\x01binary", content_type="application/octet-stream")
        assert upload.size == 8
        assert client.download(upload.blob_id, name="x.bin") == b"\x00\x01binary"
        # Push: the event source answers, and pings on the asked interval.
        started = time.monotonic()
        stream = EventSourceClient(client, ping=1).events()
        first = next(stream)
        stream.close()
        assert isinstance(first, Ping) and time.monotonic() - started < 20
    finally:
        client.close()


def test_a_slow_client_does_not_stall_the_others(jmap):
    slow = socket.create_connection(("127.0.0.1", jmap.port("http")), timeout=30)
    trickle = socket.create_connection(("127.0.0.1", jmap.port("http")), timeout=30)
    try:
        slow.sendall(b"POST /jmap/api/ HTTP/1.1\r\nHost: x\r\nContent-Length: 50000\r\n\r\n" + b"x" * 100)
        trickle.sendall(b"GET /.well-known/jmap HTTP/1.1\r\n")
        for _ in range(5):
            started = time.monotonic()
            response, data = api(jmap, [["Core/echo", {}, "0"]])
            assert response.status == 200 and time.monotonic() - started < 10
        # The trickling head is cut off by the request deadline (10 s here), however it dribbles.
        deadline = time.monotonic() + 30
        answer = b""
        while time.monotonic() < deadline:
            try:
                trickle.sendall(b"X")
            except OSError:
                break
            trickle.settimeout(1)
            try:
                chunk = trickle.recv(1000)
            except socket.timeout:
                continue
            answer += chunk
            if not chunk or b"408" in answer:
                break
        assert b"408" in answer
    finally:
        slow.close()
        trickle.close()
    response, _ = api(jmap, [["Core/echo", {}, "0"]])
    assert response.status == 200


@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n",
    b"GET /.well-known/jmap HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n",
    b"POST /jmap/api/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"POST /jmap/api/ HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    b"POST /jmap/api/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,  # a TLS ClientHello on the plain port
])
def test_malformed_http_is_refused_and_the_server_stays_up(jmap, raw):
    with socket.create_connection(("127.0.0.1", jmap.port("http")), timeout=30) as s:
        s.sendall(raw)
        answer = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer[:200]
    response, _ = api(jmap, [["Core/echo", {}, "0"]])
    assert response.status == 200


def test_jmaplib_over_websocket(jmap, proxy):
    pytest.importorskip("httpx_ws", reason="httpx-ws is in the test extra (pyproject.toml)")
    import httpx
    from jmap.client import JMAPClient
    from jmap.push import WebSocketClient

    verify = ssl.create_default_context(cafile=os.path.join(jmap.dataDir, "tls", "dev-ca.pem"))
    client = JMAPClient.connect(f"https://localhost:{proxy.port}/.well-known/jmap",
                                auth=httpx.BasicAuth(*ALICE), http=httpx.Client(verify=verify, timeout=30))
    try:
        assert client.session.capability_value("urn:ietf:params:jmap:websocket")["url"] == \
            f"wss://localhost:{proxy.port}/jmap/ws/"
        with WebSocketClient(client) as socket_:
            with socket_.batch() as batch:
                first = batch.add("Core/echo", {"over": "websocket"})
                second = batch.add("Core/echo", {"n": 2})
            assert first.result == {"over": "websocket"}
            assert second.result == {"n": 2}
    finally:
        client.close()


def test_websocket_connections_are_counted_and_released(make_server):
    server = make_server(config={"limits": {"connections_per_ip": 2}})
    server.addUser(*ALICE)
    key = base64.b64encode(os.urandom(16)).decode()
    for _ in range(4):  # more than the limit, one after another
        with socket.create_connection(("127.0.0.1", server.port("http")), timeout=30) as s:
            s.sendall((f"GET /jmap/ws/ HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: jmap\r\n"
                       f"Authorization: {authHeader()}\r\n\r\n").encode())
            answer = s.recv(65536)
            assert answer.startswith(b"HTTP/1.1 101 ") and b"jmap" in answer.lower()
        time.sleep(0.2)
    deadline = time.monotonic() + 10
    while True:  # the slots come back once the server has seen the closes
        response, _ = call(server, "GET", "/.well-known/jmap")
        if response.status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert response.status == 200


def test_the_log_shows_no_paths_or_queries_at_info(jmap):
    call(jmap, "GET", "/jmap/download/a1/Gsecret-blob/secret%20name.pdf?type=x/y")
    call(jmap, "GET", "/private-looking-path?token=abc")
    response, _ = call(jmap, "GET", "/.well-known/jmap")
    assert response.status == 200
    time.sleep(0.5)
    log = jmap.log()
    for text in ("secret", "private-looking", "token=abc"):
        assert text not in log

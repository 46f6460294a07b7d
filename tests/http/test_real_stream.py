"""
The streamed API answer on the real server (issue 14): a raw HTTP client
that reads a 10 MB Email/get slowly gets the whole JSON, and the server's
peak memory grows by about the decoded text, not the text, its JSON and
their bytes (the code before: about 4x the body).
"""

import base64
import json
import os
import socket
import time

import pytest

from tests.http.inprocess import Response

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
USER, PASSWORD = "alice@example.test", "alice-stream-pw"
LINE = "All work and no play makes a very long message indeed, line after line.\r\n"
MB = 10


def status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


@pytest.fixture
def server(make_server):
    if not os.path.exists("/proc/self/clear_refs"):
        pytest.skip("needs Linux /proc/PID/clear_refs to reset the peak RSS")
    s = make_server(config={"auth": {"allow_plaintext": True}})
    s.addUser(USER, PASSWORD)
    return s


def post(port, body):
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode())
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    s.sendall(b"POST /jmap/api/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Basic "
              + auth + b"\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    return s


def request(calls):
    return json.dumps({"using": [CORE, MAIL], "methodCalls": calls}).encode()


def test_a_slow_reader_gets_all_of_a_10_mb_body_with_flat_memory(server):
    body = LINE * (MB * 1024 * 1024 // len(LINE))
    data = ("From: Big <big@example.org>\r\nTo: alice@example.test\r\nSubject: huge\r\n\r\n" + body).encode()
    query = request([["Email/query", {"accountId": accountId()}, "q"]])
    readAll(post(server.port("http"), query))  # the account (and its Maildir) made
    box = server.maildir(USER)
    os.makedirs(os.path.join(box, "new"), exist_ok=True)
    with open(os.path.join(box, "new", "1700000000.M1P1.huge"), "wb") as f:
        f.write(data)
    s = post(server.port("http"), query)
    ids = Response(readAll(s)).json()["methodResponses"][0][1]["ids"]
    assert len(ids) == 1
    pid = server.process.pid
    before = status(pid, "VmRSS")
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # the peak RSS starts again from here
    s = post(server.port("http"), request([["Email/get", {
        "accountId": accountId(), "ids": ids, "properties": ["bodyValues", "textBody"], "fetchTextBodyValues": True}, "g"]]))
    raw = b""
    while len(raw) < 2 * 1024 * 1024:  # the first 2 MB slowly
        chunk = s.recv(16 * 1024)
        assert chunk
        raw += chunk
        time.sleep(0.002)
    raw += readAll(s)
    peak = status(pid, "VmHWM") - before
    response = Response(raw)
    assert response.status == 200
    [email] = response.json()["methodResponses"][0][1]["list"]
    value = email["bodyValues"][email["textBody"][0]["partId"]]
    assert value["value"] == body.replace("\r\n", "\n") and value["isTruncated"] is False
    # The decoded text (about MB MB) and a constant; the code before took about 4x.
    assert peak < 2 * len(body), peak


def accountId():
    from mailnet.jmap.core import accountIdFor

    return accountIdFor(USER)


def readAll(s):
    raw = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        raw += chunk
    s.close()
    return raw

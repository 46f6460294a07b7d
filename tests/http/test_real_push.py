"""
RFC 8620 s7.2 PushSubscription on the real server (tests/harness.py): a
Web Push receiver on 127.0.0.1 (https with the development CA, and plain
http through [jmap] push_allowed_prefixes) gets the PushVerification, then
StateChanges after SMTP deliveries, encrypted (RFC 8291) for the keys the
test made with jmaplib (which reads each push); the subscription outlives kill -9; one that keeps failing is
dropped.
"""

import base64
import http.client
import json
import os
import smtplib
import time

import pytest

from tests.conftest import USERS
from tests.harness import MailServer
from tests.http.pushreceiver import PushReceiver
from tests.queue.e2e import waitFor

pytestmark = pytest.mark.slow

CORE = "urn:ietf:params:jmap:core"
ALICE = ("alice@example.test", USERS["alice@example.test"])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("jmappush")
    server = MailServer(directory, config={
        "auth": {"allow_plaintext": True},
        "jmap": {"push_allowed_prefixes": ["http://127.0.0.1:", "https://127.0.0.1:"], "push_coalesce": 0.2, "push_attempts": 3,
                 "push_retry_initial": 0.3, "push_retry_max": 1.0,
                 "push_ca_file": os.path.join(str(directory), "data", "tls", "dev-ca.pem")}})
    server.start()
    for name, password in USERS.items():
        server.addUser(name, password)
    yield server
    server.stop()


def api(server, name, **args):
    body = json.dumps({"using": [CORE], "methodCalls": [[name, args, "0"]]}).encode()
    connection = http.client.HTTPConnection("127.0.0.1", server.port("http"), timeout=30)
    auth = base64.b64encode(f"{ALICE[0]}:{ALICE[1]}".encode()).decode()
    connection.request("POST", "/jmap/api/", body, {"Content-Type": "application/json",
                                                    "Authorization": "Basic " + auth})
    response = connection.getresponse()
    data = json.loads(response.read())
    connection.close()
    assert response.status == 200, data
    [[got, answer, _]] = data["methodResponses"]
    assert got == name, answer
    return answer


def send(server, subject):
    message = (f"From: Bob <bob@elsewhere.test>\r\nTo: {ALICE[0]}\r\nSubject: {subject}\r\n"
               f"Message-ID: <{time.time_ns()}@example.test>\r\n\r\nHello.\r\n")
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as smtp:
        smtp.sendmail("bob@elsewhere.test", [ALICE[0]], message.encode())


def stateChanges(receiver):
    return [json.loads(body) for path, headers, body in receiver.received
            if json.loads(body)["@type"] == "StateChange"]


def test_https_push_encrypted_verified_and_kept_across_kill_9(server):
    # jmaplib (a client we did not write) makes the keys and the create record, and reads each push.
    pytest.importorskip("jmap", reason="jmaplib is in the test extra (pyproject.toml)")
    from jmap.push import PushKeyPair, new_subscription, read_push
    from jmap.models.push import PushVerification, StateChange

    receiver = PushReceiver(server.certFile, os.path.join(server.dataDir, "tls", "key.pem"))
    keys = PushKeyPair.generate()
    try:
        record = new_subscription("phone-1", receiver.url(), keys=keys.keys, types=["Email", "Thread"])
        started = time.monotonic()
        created = api(server, "PushSubscription/set", create={"p": record})
        i = created["created"]["p"]["id"]
        waitFor(lambda: receiver.received, timeout=30, what="the PushVerification")
        print(f"verification POST received {time.monotonic() - started:.3f} s after the create was sent")
        path, headers, body = receiver.received[0]
        assert headers["content-encoding"] == "aes128gcm" and headers["content-type"] == "application/json"
        assert int(headers["ttl"]) > 0
        verification = read_push(body, keys)
        assert isinstance(verification, PushVerification) and verification.push_subscription_id == i
        code = verification.verification_code
        assert api(server, "PushSubscription/set", update={i: {"verificationCode": code}})["updated"] == {i: None}
        started = time.monotonic()
        send(server, "pushed")
        sent = time.monotonic()
        waitFor(lambda: len(receiver.received) > 1, timeout=30, what="a StateChange")
        print(f"SMTP session {sent - started:.3f} s; push POST received {time.monotonic() - sent:.3f} s after "
              "it ended (push_coalesce 0.2 s)")
        path, headers, body = receiver.received[1]
        change = read_push(body, keys)
        assert isinstance(change, StateChange) and headers["urgency"] == "normal"
        [(accountId, types)] = change.changed.items()
        # Only the types asked for; the first delivery to this new account is an Email change.
        assert "Email" in types and set(types) <= {"Email", "Thread"}
        seen = len(receiver.received)
        server.kill()
        server.start()
        got = api(server, "PushSubscription/get", ids=None)["list"]
        assert [(s["id"], s["deviceClientId"], s["verificationCode"]) for s in got] == [(i, "phone-1", code)]
        send(server, "pushed after the restart")
        waitFor(lambda: len(receiver.received) > seen, timeout=30, what="a StateChange after the restart")
        assert isinstance(read_push(receiver.received[seen][2], keys), StateChange)
        assert api(server, "PushSubscription/set", destroy=[i])["destroyed"] == [i]
    finally:
        receiver.stop()


def test_http_only_when_allowed_and_a_failing_subscription_is_dropped(server):
    refused = api(server, "PushSubscription/set", create={"p": {"deviceClientId": "d",
                                                                "url": "http://localhost:9/push"}})
    assert refused["notCreated"]["p"]["type"] == "invalidProperties"
    assert refused["notCreated"]["p"]["properties"] == ["url"]
    # https, but to this machine without the operator's prefix: refused too (the server makes the request).
    local = api(server, "PushSubscription/set", create={"p": {"deviceClientId": "d", "url": "https://[::1]:9/push"}})
    assert local["notCreated"]["p"]["type"] == "invalidProperties"
    receiver = PushReceiver()
    try:
        i = api(server, "PushSubscription/set", create={"p": {"deviceClientId": "d", "url": receiver.url()}}
                )["created"]["p"]["id"]
        waitFor(lambda: receiver.received, timeout=30, what="the PushVerification")
        code = json.loads(receiver.received[0][2])["verificationCode"]
        api(server, "PushSubscription/set", update={i: {"verificationCode": code}})
        receiver.status = 500
        send(server, "nobody takes this push")
        waitFor(lambda: not api(server, "PushSubscription/get", ids=[i])["list"], timeout=60, what="the drop")
        assert len(stateChanges(receiver)) == 3  # push_attempts
        assert api(server, "PushSubscription/get", ids=[i])["notFound"] == [i]
    finally:
        receiver.stop()

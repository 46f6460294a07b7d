"""JMAP over WebSocket (RFC 8887) in-process: the handshake with the jmap subprotocol, requests, errors, push, limits."""

import json

from twisted.internet.error import ConnectionDone
from twisted.python import failure
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, RejectConnection, Request, TextMessage

from tests.http.inprocess import HTTP, basic

CORE = "urn:ietf:params:jmap:core"


class Client:
    def __init__(self, http, subprotocols=("jmap",), auth=None):
        self.connection = http.connect()
        self.ws = WSConnection(ConnectionType.CLIENT)
        headers = [(b"authorization", auth or basic())]
        self.connection.raw(self.ws.send(Request(host="127.0.0.1", target="/jmap/ws/", subprotocols=list(subprotocols),
                                                 extra_headers=headers)))
        self.accepted = None
        self.rejected = False
        self.events = self._pump()

    def _pump(self):
        data = self.connection.transport.value()
        self.connection.transport.clear()
        self.ws.receive_data(data)
        out = []
        for event in self.ws.events():
            if isinstance(event, AcceptConnection):
                self.accepted = event
            elif isinstance(event, RejectConnection):
                self.rejected = True
            else:
                out.append(event)
        return out

    def send(self, value):
        text = value if isinstance(value, str) else json.dumps(value)
        self.connection.raw(self.ws.send(TextMessage(text)))
        return self.received()

    def received(self):
        return [json.loads(e.data) if isinstance(e, TextMessage) else e for e in self._pump()]


def test_requests_over_the_socket(tmp_path):
    http = HTTP(tmp_path)
    session = http.request(b"GET", b"/.well-known/jmap").json()
    assert session["capabilities"]["urn:ietf:params:jmap:websocket"] == {"url": "ws://127.0.0.1:8080/jmap/ws/", "supportsPush": True}
    client = Client(http)
    assert client.accepted is not None and client.accepted.subprotocol == "jmap"
    answer = client.send({"@type": "Request", "id": "r1", "using": [CORE], "methodCalls": [["Core/echo", {"a": 1}, "c"]]})
    assert answer[0]["@type"] == "Response" and answer[0]["requestId"] == "r1"
    assert answer[0]["methodResponses"] == [["Core/echo", {"a": 1}, "c"]]
    answer = client.send({"@type": "Request", "using": [CORE], "methodCalls": []})
    assert "requestId" not in answer[0]


def test_request_errors_over_the_socket(tmp_path):
    http = HTTP(tmp_path, http={"max_calls_in_request": 1})
    client = Client(http)
    cases = [("{", "notJSON", None), ({"@type": "Nope", "id": "x"}, "notRequest", "x"),
             ({"@type": "Request", "id": "u", "using": ["urn:nope"], "methodCalls": []}, "unknownCapability", "u"),
             ({"@type": "Request", "id": "l", "using": [CORE], "methodCalls": [["Core/echo", {}, "1"]] * 2}, "limit", "l")]
    for message, type, requestId in cases:
        answer = client.send(message)[0]
        assert answer["@type"] == "RequestError" and answer["type"] == "urn:ietf:params:jmap:error:" + type
        assert answer.get("requestId") == requestId
    assert answer["limit"] == "maxCallsInRequest"
    # The socket is still good.
    assert client.send({"@type": "Request", "using": [CORE], "methodCalls": []})[0]["@type"] == "Response"


def test_push_enable_and_disable(tmp_path):
    http = HTTP(tmp_path)
    client = Client(http)
    assert client.send({"@type": "WebSocketPushEnable", "dataTypes": ["Email"]}) == []
    http.service.push.publish("alice@example.test", {"a1": {"Email": "5", "Mailbox": "6"}})
    [change] = client.received()
    assert change["@type"] == "StateChange" and change["changed"] == {"a1": {"Email": "5"}}
    client.send({"@type": "WebSocketPushDisable"})
    http.service.push.publish("alice@example.test", {"a1": {"Email": "7"}})
    assert client.received() == []
    client.send({"@type": "WebSocketPushEnable", "dataTypes": None})
    assert http.service.push.count() == 1
    client.connection.protocol.connectionLost(failure.Failure(ConnectionDone()))
    assert http.service.push.count() == 0


def test_handshake_refusals(tmp_path):
    http = HTTP(tmp_path)
    assert Client(http, subprotocols=("chat",)).accepted is None
    assert Client(http, auth=basic(password="wrong")).accepted is None
    assert Client(http, auth=basic(), subprotocols=()).accepted is None
    response = http.request(b"GET", b"/jmap/ws/")  # not an upgrade
    assert response.status == 400


def test_oversized_and_binary_messages_close_the_socket(tmp_path):
    http = HTTP(tmp_path, http={"max_size_request": 10_000})
    client = Client(http)
    client.send("x" * 20_000)
    assert client.connection.closed
    client = Client(http)
    client.connection.raw(client.ws.send(BytesMessage(b"\x00\x01")))
    events = client.received()
    assert any(isinstance(e, CloseConnection) and e.code == 1003 for e in events)


def test_an_upgrade_without_host_is_a_400(tmp_path):
    """Found by tests/http/test_fuzz.py: h11 refused it with an exception of its own (a 500 then)."""
    http = HTTP(tmp_path)
    connection = http.connect()
    connection.raw(b"GET /jmap/ws/ HTTP/1.1\r\nAuthorization: " + basic() + b"\r\nUpgrade: websocket\r\n"
                   b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                   b"Sec-WebSocket-Protocol: jmap\r\n\r\n")
    assert connection.response().status == 400


def test_push_state_and_resume(tmp_path):
    """RFC 8887 s4.3.5: each StateChange has a pushState; WebSocketPushEnable with one gets what changed since."""
    from mailnet.jmap.push import parsePushState

    http = HTTP(tmp_path)
    client = Client(http)
    client.send({"@type": "WebSocketPushEnable", "dataTypes": None})
    http.service.push.publish("alice@example.test", {"a1": {"Email": "5", "Mailbox": "6"}})
    [change] = client.received()
    assert parsePushState(change["pushState"]) == {"a1": {"Email": "5", "Mailbox": "6"}}
    client.send({"@type": "WebSocketPushDisable"})
    http.service.push.publish("alice@example.test", {"a1": {"Email": "7"}})  # missed
    [resumed] = client.send({"@type": "WebSocketPushEnable", "dataTypes": ["Email", "Mailbox"],
                             "pushState": change["pushState"]})
    assert resumed["changed"] == {"a1": {"Email": "7"}}
    assert parsePushState(resumed["pushState"]) == {"a1": {"Email": "7", "Mailbox": "6"}}
    assert client.send({"@type": "WebSocketPushEnable", "dataTypes": None, "pushState": resumed["pushState"]}) == []
    [everything] = client.send({"@type": "WebSocketPushEnable", "dataTypes": ["Mailbox"], "pushState": "not ours"})
    assert everything["changed"] == {"a1": {"Mailbox": "6"}}

"""
The API answer streamed (issue 14) in-process: a large Email/get goes out
in pieces with flow control, a slow client never makes the server buffer
the whole answer, and the bytes are the JSON of the answer.
"""

import json

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.python import failure

from mailnet.jmap import jsonstream
from tests.http.inprocess import HTTP, Connection, Response, Transport

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
LINE = "A long body, line after line, caf\u00e9 \U0001F600 \"q\".\r\n"
BODY = LINE * 80000  # ~3.8 MB of text, ~5 MB of JSON
# What a TCP transport keeps before it pauses its producer (twisted's bufferSize is 64 KB).
BUFFER = 64 * 1024


class SlowTransport(Transport):
    """A transport whose client reads only when told: it pauses the HTTP channel once its buffer is full."""

    channel = None  # the HTTPChannel: the producer TCP would pause
    most = 0
    paused = False

    def write(self, data):
        super().write(data)
        buffered = len(self.io.getvalue())
        self.most = max(self.most, buffered)
        if buffered > BUFFER and self.channel is not None and not self.paused:
            self.paused = True
            self.channel.pauseProducing()

    def writeSequence(self, data):
        self.write(b"".join(data))

    def read(self):
        data = self.value()
        self.clear()
        if self.paused:
            self.paused = False
            self.channel.resumeProducing()
        return data


def deliver(http, body=BODY, user="alice@example.test"):
    d = http.store.newDelivery()
    d.addRecipient(user)
    d.write(("From: b@example.test\r\nSubject: big\r\nContent-Type: text/plain; charset=utf-8\r\n"
             "Content-Transfer-Encoding: 8bit\r\n\r\n" + body).encode())
    d.commit()


def connect(http, transport):
    address = IPv4Address("TCP", "127.0.0.1", 40000)
    protocol = http.site.buildProtocol(address)
    protocol.makeConnection(transport)
    transport.channel = getattr(protocol, "_channel", protocol)  # under the site's protocol wrapper
    return Connection(protocol, transport)


def getBig(http, connection):
    account = http.accountId()
    body = json.dumps({"using": [CORE, MAIL], "methodCalls": [
        ["Email/query", {"accountId": account}, "q"],
        ["Email/get", {"accountId": account, "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                       "properties": ["subject", "bodyValues", "textBody"], "fetchTextBodyValues": True}, "g"]]})
    connection.send(b"POST", b"/jmap/api/", body.encode(), {b"content-type": b"application/json"})


def expected(value):
    return json.dumps(value, separators=(",", ":")).encode()


def test_a_slow_client_holds_the_server_to_its_buffer(tmp_path):
    http = HTTP(tmp_path)
    deliver(http)
    transport = SlowTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
                              peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    connection = connect(http, transport)
    getBig(http, connection)
    # The client has read nothing: the server wrote about one buffer's worth (plus a piece) and waits.
    assert transport.paused
    assert transport.most < BUFFER + 8 * jsonstream.SLICE, transport.most
    raw, rounds = b"", 0
    while True:
        data = transport.read()
        if not data:
            break
        raw += data
        rounds += 1
        assert transport.most < BUFFER + 8 * jsonstream.SLICE, transport.most
    assert rounds > 20  # it took many reads of the client
    response = Response(raw)
    assert response.status == 200
    assert response.header("transfer-encoding") == "chunked"
    answer = response.json()
    [email] = answer["methodResponses"][1][1]["list"]
    value = email["bodyValues"][email["textBody"][0]["partId"]]
    assert value == {"value": BODY.replace("\r\n", "\n"), "isEncodingProblem": False, "isTruncated": False}
    # The bytes are those of one json.dumps of the same answer.
    assert response.body == expected(answer)


def test_small_answers_are_one_write_with_a_length(tmp_path):
    http = HTTP(tmp_path)
    deliver(http, body="short\r\n")
    response = http.api([["Core/echo", {"a": "\U0001F600"}, "e"]], using=(CORE, MAIL))
    assert response.status == 200
    assert response.header("content-length") == str(len(response.body))
    assert response.body == expected(response.json())


def test_the_client_going_away_mid_answer_stops_the_writes(tmp_path):
    http = HTTP(tmp_path)
    deliver(http)
    transport = SlowTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
                              peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    connection = connect(http, transport)
    getBig(http, connection)
    transport.read()
    before = transport.most
    connection.protocol.connectionLost(failure.Failure(ConnectionDone()))
    transport.read()  # a resume after the loss writes nothing more
    assert transport.value() == b""
    assert transport.most == before
    # The next request (a new connection) is served: the concurrency count was given back.
    response = http.api([["Core/echo", {}, "e"]], using=(CORE, MAIL))
    assert response.status == 200

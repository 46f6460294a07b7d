"""Push over EventSource (RFC 8620 s7.3) in-process: events, types, closeafter, ping with a task.Clock, limits."""

import json

from twisted.internet.error import ConnectionDone
from twisted.python import failure

from mailnet.jmap.push import EventSourceArguments
from tests.http.inprocess import HTTP, basic


def events(data: bytes, withIds=False):
    """(event, data) of each event; the pushState (tested on its own) left out unless ``withIds``."""
    out = []
    for block in data.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":") and ": " in line)
        if fields:
            value = json.loads(fields["data"])
            if withIds:
                out.append((fields.get("event"), value, fields.get("id")))
            else:
                value.pop("pushState", None)
                out.append((fields.get("event"), value))
    return out


def open_stream(http, query=b"types=*&closeafter=no&ping=0", user="alice@example.test", headers=None):
    connection = http.connect()
    connection.send(b"GET", b"/jmap/eventsource/?" + query, headers=headers, auth=basic(user))
    head = connection.transport.value()
    assert b" 200 " in head.split(b"\r\n", 1)[0], head
    assert b"text/event-stream" in head
    connection.transport.clear()
    if headers:
        connection.transport.write(head.split(b"\r\n\r\n", 1)[1])  # events sent at once stay for body()
    return connection


def body(connection):
    from tests.http.inprocess import dechunk
    raw = connection.transport.value()
    connection.transport.clear()
    return dechunk(raw)


def test_state_changes_reach_the_stream(tmp_path):
    http = HTTP(tmp_path)
    connection = open_stream(http)
    account = http.accountId()
    http.service.push.publish("bob@example.test", {"other": {"Email": "9"}})
    http.service.push.publish("alice@example.test", {account: {"Email": "s1", "Mailbox": "s2"}})
    assert events(body(connection)) == [("state", {"@type": "StateChange", "changed": {account: {"Email": "s1", "Mailbox": "s2"}}})]
    assert not connection.closed
    connection.protocol.connectionLost(failure.Failure(ConnectionDone()))
    assert http.service.push.count() == 0  # unsubscribed when the client goes


def test_types_filter_and_closeafter_state(tmp_path):
    http = HTTP(tmp_path)
    connection = open_stream(http, b"types=Mailbox&closeafter=state&ping=0")
    http.service.push.publish("alice@example.test", {"a1": {"Email": "1"}})
    assert body(connection) == b""
    http.service.push.publish("alice@example.test", {"a1": {"Email": "2", "Mailbox": "3"}})
    raw = connection.transport.value()
    assert [e[0] for e in events(body(connection))] == ["state"]
    assert raw.endswith(b"0\r\n\r\n")  # the response ended (the last chunk)
    assert http.service.push.count() == 0


def test_ping_on_the_interval_with_the_minimum_enforced(tmp_path):
    http = HTTP(tmp_path, http={"push_ping_minimum": 5})
    connection = open_stream(http, b"types=*&closeafter=no&ping=1")
    http.clock.advance(4)
    assert body(connection) == b""
    http.clock.advance(1)
    assert events(body(connection)) == [("ping", {"interval": 5})]
    http.clock.advance(3)
    http.service.push.publish("alice@example.test", {"a1": {"Email": "1"}})
    http.clock.advance(4)  # an event restarts the interval
    assert [e[0] for e in events(body(connection))] == ["state"]
    http.clock.advance(1)
    assert [e[0] for e in events(body(connection))] == ["ping"]


def test_bad_arguments_and_the_per_user_limit(tmp_path):
    http = HTTP(tmp_path, http={"push_connections_per_user": 2})
    for query in (b"closeafter=maybe", b"ping=-1", b"ping=abc", b"types=a%20b", b"ping=1&ping=2"):
        assert http.request(b"GET", b"/jmap/eventsource/?" + query).status == 400
    assert http.request(b"GET", b"/jmap/eventsource/", auth=False).status == 401
    open_stream(http)
    second = open_stream(http)
    assert http.request(b"GET", b"/jmap/eventsource/").status == 429
    second.protocol.connectionLost(failure.Failure(ConnectionDone()))
    open_stream(http)


def test_arguments():
    parsed = EventSourceArguments.parse({"types": ["Email,Mailbox"], "closeafter": ["state"], "ping": ["1000"]}, 10)
    assert parsed.types == {"Email", "Mailbox"} and parsed.closeAfterState and parsed.ping == 1000
    assert EventSourceArguments.parse({}, 10).ping == 0
    # s7.3: a minimum above 30 is not allowed, a maximum below 300 neither.
    assert EventSourceArguments.parse({"ping": ["1"]}, 100).ping == 30
    assert EventSourceArguments.parse({"ping": ["100000"]}, 10, maximumPing=60).ping == 300
    assert parsed.filter({"a": {"Email": "1", "Thread": "2"}, "b": {"Thread": "3"}}) == {"a": {"Email": "1"}}


def test_push_state_and_resume_with_last_event_id(tmp_path):
    from mailnet.jmap.push import parsePushState

    http = HTTP(tmp_path)
    account = http.accountId()
    http.service.push.publish("alice@example.test", {account: {"Email": "1", "Mailbox": "1"}})
    connection = open_stream(http)
    assert events(body(connection)) == []  # no Last-Event-ID: nothing at once (the client calls /changes)
    http.service.push.publish("alice@example.test", {account: {"Email": "2"}})
    [(kind, data, eventId)] = events(body(connection), withIds=True)
    # RFC 8620 s7.1: the pushState is every state the stream told, the event's id the same.
    assert data["pushState"] == eventId and parsePushState(eventId) == {account: {"Email": "2"}}
    connection.protocol.connectionLost(failure.Failure(ConnectionDone()))
    http.service.push.publish("alice@example.test", {account: {"Mailbox": "3"}})  # while away
    again = open_stream(http, headers={b"last-event-id": eventId.encode()})
    [(kind, data, newId)] = events(body(again), withIds=True)
    assert kind == "state" and data["changed"] == {account: {"Mailbox": "3"}}  # only what was missed
    assert parsePushState(newId) == {account: {"Email": "2", "Mailbox": "3"}}
    uptodate = open_stream(http, headers={b"last-event-id": newId.encode()})
    assert events(body(uptodate)) == []
    stranger = open_stream(http, b"types=Email&closeafter=state&ping=0", headers={b"last-event-id": b"junk:\x01"})
    assert events(body(stranger)) == [("state", {"@type": "StateChange", "changed": {account: {"Email": "2"}}})]
    assert parsePushState("junk") is None and parsePushState("e30") == {}

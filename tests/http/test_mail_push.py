"""Push from the store (mailnet/jmap/storepush.py) in-process: a delivery reaches EventSource and WebSocket clients."""

from twisted.internet.error import ConnectionDone
from twisted.python import failure

from tests.http.inprocess import HTTP
from tests.http.test_eventsource import body, events, open_stream
from tests.http.test_websocket import Client


def deliver(http, user="alice@example.test", subject="hi"):
    d = http.store.newDelivery()
    d.addRecipient(user)
    d.write(f"From: b@example.test\r\nSubject: {subject}\r\n\r\nbody\r\n".encode())
    d.commit()


def currentState(http, user="alice@example.test"):
    out = []
    http.store.accountFor(user, True).currentState().addCallback(out.append)
    return out[0]


def test_a_delivery_reaches_the_event_stream(tmp_path):
    http = HTTP(tmp_path, storePush=True)
    connection = open_stream(http)
    deliver(http, "bob@example.test")  # another user's mail: nothing
    assert body(connection) == b""
    deliver(http)
    state = currentState(http)
    [(name, change)] = events(body(connection))
    assert name == "state"
    assert change["changed"] == {http.accountId(): {"Email": state, "EmailDelivery": state, "Mailbox": state}}
    connection.protocol.connectionLost(failure.Failure(ConnectionDone()))
    assert http.service.push.count() == 0 and http.service.push.users == {}
    assert not http.store.accountFor("alice@example.test", True).accountListeners.items


def test_a_flag_change_reaches_the_websocket(tmp_path):
    http = HTTP(tmp_path, storePush=True)
    deliver(http)
    client = Client(http)
    assert client.send({"@type": "WebSocketPushEnable", "dataTypes": ["Email"]}) == []
    account = http.store.accountFor("alice@example.test", True)
    folder = []
    account.openFolder("INBOX").addCallback(folder.append)
    uid = folder[0].messages()[0].uid
    folder[0].setFlags([uid], ["\\Flagged"], "add")
    folder[0].close()
    [change] = client.received()
    assert change["@type"] == "StateChange" and change["changed"] == {http.accountId(): {"Email": currentState(http)}}
    client.connection.protocol.connectionLost(failure.Failure(ConnectionDone()))
    assert http.service.push.count() == 0

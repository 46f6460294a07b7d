"""In-process tests of mailnet/metrics.py and the hooks that feed it."""

from __future__ import annotations

import types

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import protocol, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from mailnet import metrics, net


def sample(m, name, **labels):
    value = m.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_registries_are_separate():
    a, b = metrics.Metrics(), metrics.Metrics()
    a.connectionsOpened.labels(listener="smtp").inc()
    assert sample(a, "mailnet_connections_opened_total", listener="smtp") == 1
    assert sample(b, "mailnet_connections_opened_total", listener="smtp") == 0
    from prometheus_client import REGISTRY
    assert REGISTRY.get_sample_value("mailnet_connections_opened_total", {"listener": "smtp"}) is None


def test_reason_class():
    assert metrics.reasonClass(554, "5.4.6") == "permanent_network"
    assert metrics.reasonClass(451, "4.3.0") == "temporary_system"
    assert metrics.reasonClass(550, "5.7.1") == "permanent_policy"
    assert metrics.reasonClass(452, None) == "temporary_other"
    assert metrics.reasonClass(550, "garbage") == "permanent_other"


def test_render_both_formats():
    m = metrics.Metrics()
    m.jmapCall("Email/get", True)
    m.jmapCall("Whatever/x", False)
    body, kind = m.render(None)
    assert kind.startswith("text/plain")
    found = {s.labels["method"]: s.value for f in text_string_to_metric_families(body.decode())
             if f.name == "mailnet_jmap_method_calls" for s in f.samples if s.name.endswith("_total")}
    assert found == {"Email/get": 1.0, "unknown": 1.0}
    body, kind = m.render("application/openmetrics-text; version=1.0.0")
    assert kind.startswith("application/openmetrics-text") and body.endswith(b"# EOF\n")


class Echo(protocol.Protocol):
    pass


def test_limited_factory_counts_opened_refused_open():
    m = metrics.Metrics()
    factory = net.LimitedFactory(protocol.Factory.forProtocol(Echo), 1, 1, b"no\r\n", name="imap", metrics=m)
    addr = IPv4Address("TCP", "127.0.0.1", 1234)
    first = factory.buildProtocol(addr)
    first.makeConnection(StringTransport())
    refused = factory.buildProtocol(addr)
    refused.makeConnection(StringTransport())
    assert sample(m, "mailnet_connections_opened_total", listener="imap") == 1
    assert sample(m, "mailnet_connections_refused_total", listener="imap") == 1
    assert sample(m, "mailnet_sessions_open", listener="imap") == 1
    first.connectionLost(None)
    assert sample(m, "mailnet_sessions_open", listener="imap") == 0


def test_queue_collector_states_and_oldest_age():
    m = metrics.Metrics()
    clock = task.Clock()
    clock.advance(1000)

    def item(arrival, held=False, jobs=0):
        return types.SimpleNamespace(envelope=types.SimpleNamespace(arrival=arrival), held=held, inflight=set(),
                                     jobs=jobs)
    runner = types.SimpleNamespace(clock=clock, items={"a": item(900), "b": item(400, held=True),
                                                       "c": item(990, jobs=1)})
    assert sample(m, "mailnet_queue_oldest_age_seconds") == 0
    m.watchQueue(runner)
    assert sample(m, "mailnet_queue_items", state="deferred") == 1
    assert sample(m, "mailnet_queue_items", state="held") == 1
    assert sample(m, "mailnet_queue_items", state="active") == 1
    assert sample(m, "mailnet_queue_oldest_age_seconds") == 600


def test_login_sequence_counts_per_protocol():
    from twisted.cred import checkers, portal
    from zope.interface import Interface, implementer
    from twisted.cred.portal import IRealm

    from mailnet import login

    class IThing(Interface):
        pass

    @implementer(IRealm)
    class Realm:
        def requestAvatar(self, avatarId, mind, *interfaces):
            return IThing, types.SimpleNamespace(username=avatarId), lambda: None

    checker = checkers.InMemoryUsernamePasswordDatabaseDontUse(alice=b"pw")
    clock = task.Clock()
    m = metrics.Metrics()
    sequence = login.LoginSequence(portal.Portal(Realm(), [checker]), login.AuthThrottle(clock, baseDelay=0),
                                   clock, m)
    results = []
    sequence.login("pop3", "127.0.0.1", b"alice", b"pw", IThing).addBoth(results.append)
    sequence.login("pop3", "127.0.0.1", b"alice", b"bad", IThing).addBoth(results.append)
    clock.advance(60)
    assert len(results) == 2
    assert sample(m, "mailnet_auth_attempts_total", protocol="pop3", outcome="success") == 1
    assert sample(m, "mailnet_auth_attempts_total", protocol="pop3", outcome="failure") == 1


def test_local_delivery_latency_and_errors():
    from twisted.internet import defer

    from mailnet.localdelivery import LocalDelivery

    class Delivery:
        def __init__(self, fail):
            self.fail = fail

        def addRecipient(self, name, folder):
            pass

        def write(self, data):
            pass

        def commit(self):
            return defer.fail(OSError(28, "No space")) if self.fail else defer.succeed(None)

        def abort(self):
            pass

    m = metrics.Metrics()
    for fail in (False, True):
        store = types.SimpleNamespace(newDelivery=lambda fail=fail: Delivery(fail))
        d = LocalDelivery(store, ["alice"], "", metrics=m).commit()
        d.addErrback(lambda f: None)
    assert sample(m, "mailnet_store_delivery_seconds_count", source="smtp") == 1
    assert sample(m, "mailnet_store_errors_total", source="smtp") == 1

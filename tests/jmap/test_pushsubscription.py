"""
RFC 8620 s7.2 PushSubscription in-process: the methods over a MemoryUserData,
the PushSender with a task.Clock, a MemoryPushSource and a recording post;
RFC 8291 encryption against the RFC's own example.
"""

import json

from cryptography.hazmat.primitives.asymmetric import ec
from twisted.internet import task

from mailnet.jmap import webpush
from mailnet.jmap.dispatch import CORE, Context, Limits, defaultRegistry, processRequest, runSync
from mailnet.jmap.identity import MemoryUserData
from mailnet.jmap.push import MemoryPushSource
from mailnet.jmap.pushsender import PushSender
from mailnet.jmap.request import Request
from tests.jmap.pushhelp import UserAgent, unb64

USER = "alice@example.test"
URL = "https://push.example.test/s/1"


class Posts:
    """A push service: records each POST, answers ``status`` (or raises when it is an exception)."""

    def __init__(self):
        self.requests = []
        self.status = 201

    def __call__(self, url, headers, body):
        self.requests.append((url, dict(headers), body))
        if isinstance(self.status, Exception):
            raise self.status
        return self.status


class World:
    def __init__(self, data=None, clock=None, **options):
        self.clock = clock or task.Clock()
        self.data = data or MemoryUserData()
        self.source = MemoryPushSource()
        self.posts = Posts()
        options.setdefault("allowedPrefixes", ("http://127.0.0.1:",))
        self.sender = PushSender(self.posts, self.clock, self.source, self.data, runSync, coalesce=1.0,
                                 attempts=3, backoff=10, maxBackoff=25, perUser=3, maxExpires=86400, **options)
        self.registry = defaultRegistry()

    def call(self, name, args, user=USER):
        context = Context(user, {}, Limits(), {"pushSender": self.sender, "userData": self.data})
        response = runSync(processRequest(self.registry, Request([CORE], [[name, args, "0"]], None), context))
        return response["methodResponses"][0]

    def ok(self, name, **args):
        got, answer, _ = self.call(name, args)
        assert got == name, answer
        return answer

    def create(self, **record):
        record.setdefault("deviceClientId", "phone")
        record.setdefault("url", URL)
        return self.ok("PushSubscription/set", create={"c": record})

    def body(self, n, agent=None):
        url, headers, body = self.posts.requests[n]
        if agent is not None:
            assert headers["Content-Encoding"] == "aes128gcm"
            body = agent.decrypt(body)
        return json.loads(body)


def test_rfc8291_example():
    # RFC 8291 Appendix A: the application server's key and the salt fixed, the body is the RFC's byte for byte.
    private = ec.derive_private_key(int.from_bytes(unb64("yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"), "big"),
                                    ec.SECP256R1())
    body = webpush.encrypt(b"When I grow up, I want to be a watermelon",
                           unb64("BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"),
                           unb64("BTBZMqHH6r4Tts7J_aSIgg"), private, unb64("DGv6ra1nlYgDCS1FRnbzlw"))
    assert webpush.b64encode(body) == (
        "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqK"
        "K6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN")
    # And the user agent's half (tests/jmap/pushhelp.py, written apart) reads it back.
    agent = UserAgent(ec.derive_private_key(int.from_bytes(unb64("q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"),
                                                           "big"), ec.SECP256R1()), unb64("BTBZMqHH6r4Tts7J_aSIgg"))
    assert agent.decrypt(body) == b"When I grow up, I want to be a watermelon"


def test_verification_then_state_changes_encrypted_and_coalesced():
    w = World()
    agent = UserAgent()
    created = w.create(keys=agent.keys(), types=["Email", "Mailbox"])["created"]["c"]
    i = created["id"]
    assert created["verificationCode"] is None and "expires" in created  # the server set expires
    w.clock.advance(0)
    [(url, headers, _)] = w.posts.requests
    assert url == URL and headers["TTL"].isdigit() and headers["Content-Type"] == "application/json"
    verification = w.body(0, agent)
    assert verification["@type"] == "PushVerification" and verification["pushSubscriptionId"] == i
    # Not verified: changes are not pushed.
    w.source.publish(USER, {"A1": {"Email": "1"}})
    w.clock.advance(5)
    assert len(w.posts.requests) == 1
    wrong = w.ok("PushSubscription/set", update={i: {"verificationCode": "nope"}})
    assert wrong["notUpdated"][i]["type"] == "invalidProperties"
    assert w.ok("PushSubscription/set", update={i: {"verificationCode": verification["verificationCode"]}}
                )["updated"] == {i: None}
    got = w.ok("PushSubscription/get", ids=None)["list"]
    assert got == [{"id": i, "deviceClientId": "phone", "verificationCode": verification["verificationCode"],
                    "expires": created["expires"], "types": ["Email", "Mailbox"]}]
    # Three changes within the coalescing second: one StateChange with the newest states, types filtered.
    w.source.publish(USER, {"A1": {"Email": "2", "Thread": "2"}})
    w.source.publish(USER, {"A1": {"Email": "3"}})
    w.source.publish(USER, {"A1": {"Mailbox": "3"}})
    w.clock.advance(1)
    assert len(w.posts.requests) == 2
    change = w.body(1, agent)
    assert change["@type"] == "StateChange" and change["changed"] == {"A1": {"Email": "3", "Mailbox": "3"}}
    assert w.posts.requests[1][1]["Urgency"] == "normal"


def test_get_and_set_rules():
    w = World()
    assert w.call("PushSubscription/get", {"properties": ["url"]})[1]["type"] == "forbidden"
    assert w.call("PushSubscription/get", {"accountId": "A1"})[1]["type"] == "invalidArguments"
    bad = w.ok("PushSubscription/set", create={
        "http": {"deviceClientId": "d", "url": "http://push.example.test/x"},
        "ftp": {"deviceClientId": "d", "url": "ftp://push.example.test/x"},
        "userinfo": {"deviceClientId": "d", "url": "https://u:p@push.example.test/x"},
        "loopback": {"deviceClientId": "d", "url": "https://127.0.0.2/x"},
        "v6": {"deviceClientId": "d", "url": "https://[::1]/x"},
        "private": {"deviceClientId": "d", "url": "https://10.1.2.3/x"},
        "linklocal": {"deviceClientId": "d", "url": "https://169.254.169.254/latest"},
        "localhost": {"deviceClientId": "d", "url": "https://localhost:8443/x"},
        "keys": {"deviceClientId": "d", "url": URL, "keys": {"p256dh": "AAAA", "auth": "AAAA"}},
        "code": {"deviceClientId": "d", "url": URL, "verificationCode": "x"},
        "device": {"url": URL},
        "types": {"deviceClientId": "d", "url": URL, "types": "Email"},
        "expires": {"deviceClientId": "d", "url": URL, "expires": "tomorrow"},
    })["notCreated"]
    assert {k: v["type"] for k, v in bad.items()} == {k: "invalidProperties" for k in bad}
    assert bad["http"]["properties"] == ["url"] and bad["keys"]["properties"] == ["keys"]
    # The allow-list lets a loopback http URL in (tests).
    assert w.create(url="http://127.0.0.1:9/push")["created"]
    # expires is capped at maxExpires ahead, and returned when it was.
    far = w.create(expires="2999-01-01T00:00:00Z")["created"]["c"]
    assert far["expires"] == "1970-01-02T00:00:00Z"
    near = w.create(expires="1970-01-01T01:00:00Z")["created"]["c"]
    assert "expires" not in near
    # At most perUser (3).
    assert w.create()["notCreated"]["c"]["type"] == "overQuota"
    i = near["id"]
    assert w.ok("PushSubscription/set", update={i: {"url": URL + "x"}})["notUpdated"][i]["type"] == "invalidProperties"
    assert w.ok("PushSubscription/set", update={i: {"expires": "2999-01-01T00:00:00Z"}})["updated"][i] == {
        "expires": "1970-01-02T00:00:00Z"}
    assert w.ok("PushSubscription/set", destroy=[i, "Pnope"])["notDestroyed"]["Pnope"]["type"] == "notFound"
    assert len(w.ok("PushSubscription/get")["list"]) == 2
    # Another user sees none of them.
    got, answer, _ = w.call("PushSubscription/get", {}, user="bob@example.test")
    assert answer["list"] == []
    # Expired: gone from /get, and nothing is sent.
    w.clock.advance(86401)
    assert w.ok("PushSubscription/get")["list"] == []


def verified(w, **record):
    i = w.create(**record)["created"]["c"]["id"]
    w.clock.advance(0)
    code = w.body(len(w.posts.requests) - 1)["verificationCode"]
    w.ok("PushSubscription/set", update={i: {"verificationCode": code}})
    return i


def test_retries_with_backoff_then_dropped_durably():
    w = World()
    verified(w)
    w.posts.status = 503
    w.source.publish(USER, {"A1": {"Email": "1"}})
    w.clock.advance(1)
    assert len(w.posts.requests) == 2
    w.source.publish(USER, {"A1": {"Email": "2"}})  # merged into the retry
    w.clock.advance(9.5)
    assert len(w.posts.requests) == 2
    w.clock.advance(0.5)  # 10 s after the first failure
    assert len(w.posts.requests) == 3 and w.body(2)["changed"] == {"A1": {"Email": "2"}}
    w.clock.advance(19)
    assert len(w.posts.requests) == 3
    w.clock.advance(1)  # 20 s after the second: the third attempt fails, the subscription is dropped
    assert len(w.posts.requests) == 4
    assert w.ok("PushSubscription/get")["list"] == []
    assert w.data.load(USER, "pushsubscriptions")["subscriptions"] == {}
    assert w.source.count(USER) == 0
    w.source.publish(USER, {"A1": {"Email": "3"}})
    w.clock.advance(100)
    assert len(w.posts.requests) == 4


def test_a_success_resets_failures_and_gone_drops_at_once():
    w = World()
    i = verified(w)
    w.posts.status = ConnectionRefusedError()
    w.source.publish(USER, {"A1": {"Email": "1"}})
    w.clock.advance(1)
    w.posts.status = 200
    w.clock.advance(10)
    assert w.body(2)["changed"] == {"A1": {"Email": "1"}}
    assert w.sender.subs[USER][i].failures == 0
    w.posts.status = 410  # RFC 8030: the push subscription is gone
    w.source.publish(USER, {"A1": {"Email": "2"}})
    w.clock.advance(1)
    assert w.ok("PushSubscription/get")["list"] == []


def test_subscriptions_outlive_a_restart():
    w = World()
    i = verified(w, types=["Email"])
    unverified = w.create(deviceClientId="tablet")["created"]["c"]["id"]
    # A restart: a new sender over the same documents.
    again = World(data=w.data, clock=w.clock)
    assert again.sender.load([(USER, w.data.load(USER, "pushsubscriptions"))]) == 2
    again.source.publish(USER, {"A1": {"Email": "9", "Mailbox": "9"}})
    again.clock.advance(1)
    [(url, headers, body)] = again.posts.requests
    assert json.loads(body)["changed"] == {"A1": {"Email": "9"}}
    assert {s["id"] for s in again.ok("PushSubscription/get")["list"]} == {i, unverified}


def test_two_nodes_share_the_documents_and_push_only_their_own_changes():
    # Two senders over one document store (the PostgreSQL table of several nodes), each told by its node of
    # another node's write (reload), each source telling own changes apart (StorePushSource.subscribeOwn).
    from mailnet.jmap.storepush import StorePushSource
    from mailnet.store.changes import Listeners

    class Account:
        def __init__(self):
            self.listeners = Listeners()

        def addListener(self, listener):
            self.listeners.add(listener)

    class Store:
        def __init__(self):
            self.account = Account()

        def getAccount(self, username):
            from twisted.internet import defer

            return defer.succeed(self.account)

    a = World()
    b = World(data=a.data, clock=a.clock)
    for w in (a, b):
        w.store = Store()
        w.sender.source = StorePushSource(w.store)
    made = a.create(types=["Email", "Mailbox"])["created"]["c"]["id"]
    a.clock.advance(0)
    code = a.body(0)["verificationCode"]
    b.sender.reload(USER)  # A's write, heard of by B
    assert b.sender.count() == 1 and b.ok("PushSubscription/get")["list"][0]["id"] == made
    assert b.ok("PushSubscription/set", update={made: {"verificationCode": code}})["updated"] == {made: None}
    a.sender.reload(USER)
    # A change B made is pushed by B; A, which only heard of it (own = nothing), pushes nothing.
    b.store.account.listeners.tell(b.store.account, "5", {"Email", "Mailbox"})
    a.store.account.listeners.tell(a.store.account, "5", {"Email", "Mailbox"}, own=())
    a.clock.advance(1)
    assert len(a.posts.requests) == 1 and len(b.posts.requests) == 1
    from mailnet.jmap.core import accountIdFor

    assert b.body(0)["changed"] == {accountIdFor(USER): {"Email": "5", "Mailbox": "5"}}
    # Destroyed through B: A, told, forgets it; a change A makes is pushed nowhere.
    assert b.ok("PushSubscription/set", destroy=[made])["destroyed"] == [made]
    a.sender.reload(USER)
    assert a.sender.count() == 0
    a.store.account.listeners.tell(a.store.account, "6", {"Email"})
    a.clock.advance(5)
    assert len(a.posts.requests) == 1 and len(b.posts.requests) == 1


def test_a_reload_running_during_a_local_write_is_read_again():
    from twisted.internet import defer

    w = World()
    i = verified(w)
    waiting = []

    class Slow:
        """The documents, whose loads wait until the test lets them answer."""

        def load(self, username, name):
            d = defer.Deferred()
            waiting.append((d, w.data.load(username, name)))
            return d

        def update(self, username, name, change):
            return w.data.update(username, name, change)

    w.sender.userData = Slow()
    w.sender.runner = lambda coroutine: defer.ensureDeferred(coroutine)
    w.sender.reload(USER)  # reads the document with the subscription
    old = waiting.pop()
    w.data.update(USER, "pushsubscriptions", lambda doc: dict(doc, subscriptions={}))
    w.sender.changed(USER, w.data.load(USER, "pushsubscriptions"))  # a local destroy meanwhile
    old[0].callback(old[1])  # the older answer comes last: not taken, read again
    assert w.sender.count() == 0 and len(waiting) == 1
    again = waiting.pop()
    again[0].callback(again[1])
    assert w.sender.count() == 0 and not w.sender.rereading
    assert i


PUSH_KEYS = ["deviceClientId", "url", "keys", "p256dh", "auth", "expires", "types", "verificationCode", "id",
             "accountId", "ifInState", "ids", "properties", "create", "update", "destroy"]


def _json():
    from hypothesis import strategies as st

    return st.recursive(
        st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.text(max_size=12)
        | st.sampled_from([URL, "http://127.0.0.1:9/", "https://[::1]/", "Email", "Mailbox/x", "2030-01-01T00:00:00Z",
                           "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
                           "BTBZMqHH6r4Tts7J_aSIgg", "#c", "é\r\n"]),
        lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(PUSH_KEYS), children,
                                                                           max_size=5),
        max_leaves=12)


def test_arbitrary_arguments_get_an_answer_or_an_rfc_error():
    # Hypothesis: /get and /set with arbitrary JSON arguments and records: never serverFail.
    from hypothesis import HealthCheck, given, settings, strategies as st

    w = World()

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(args=st.dictionaries(st.sampled_from(PUSH_KEYS), _json(), max_size=4),
           record=st.dictionaries(st.sampled_from(PUSH_KEYS), _json(), max_size=5))
    def check(args, record):
        for name, arguments in (("PushSubscription/get", args), ("PushSubscription/set", args),
                                ("PushSubscription/set", {"create": {"c": dict({"deviceClientId": "d", "url": URL},
                                                                              **record)}})):
            got, answer, _ = w.call(name, arguments)
            if got == "error":
                assert answer["type"] != "serverFail", (arguments, answer)
            for key in ("notCreated", "notUpdated", "notDestroyed"):
                for error in (answer.get(key) or {}).values():
                    assert error["type"] != "serverFail"
            w.data.docs.clear()  # keep under the per-user limit
            w.clock.advance(1)

    check()

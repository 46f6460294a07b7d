"""
RFC 8621 s8 VacationResponse in-process (the dispatcher over a memory store
and a FileVacationStore), the auto-reply decision of mailnet/mail/autoreply.py
(RFC 3834), and the responder behind local delivery (mailnet/vacation.py).
"""

import email
import email.policy
import json
import os

import pytest
from twisted.internet import defer
from twisted.python.failure import Failure

from mailnet import localdelivery, vacation
from mailnet.jmap.dispatch import CORE, Context, processRequest, runSync
from mailnet.jmap.mailbox import MAIL
from mailnet.jmap.request import Request
from mailnet.jmap.vacation import VACATION
from mailnet.mail import autoreply
from mailnet.queue.spool import Spool
from tests.jmap.mailhelp import USER, MailSession


def sync(f, *args):
    try:
        return defer.succeed(f(*args))
    except Exception:
        return defer.fail()


class VacationSession(MailSession):
    def __init__(self, tmp_path):
        super().__init__()
        self.vacations = vacation.FileVacationStore(str(tmp_path / "vacation"), runInThread=sync)

    def request(self, *calls):
        context = Context(USER, {self.jmapAccount.id: self.jmapAccount}, self.limits, {"vacation": self.vacations})
        methodCalls = []
        for n, (name, args) in enumerate(calls):
            args = dict(args)
            args.setdefault("accountId", self.jmapAccount.id)
            methodCalls.append([name, args, str(n)])
        return runSync(processRequest(self.registry, Request([CORE, MAIL, VACATION], methodCalls, None), context))


def test_get_and_set_the_singleton(tmp_path):
    s = VacationSession(tmp_path)
    assert VACATION in s.jmapAccount.capabilities
    got = s.ok("VacationResponse/get", ids=None)
    assert got["list"] == [{"id": "singleton", "isEnabled": False, "fromDate": None, "toDate": None,
                            "subject": None, "textBody": None, "htmlBody": None}]
    assert s.ok("VacationResponse/get", ids=["other"])["notFound"] == ["other"]
    answer = s.ok("VacationResponse/set", ifInState=got["state"], update={"singleton": {
        "isEnabled": True, "subject": "Away", "textBody": "Back on Monday.", "toDate": "2030-01-01T00:00:00Z"}})
    assert answer["updated"] == {"singleton": None} and answer["newState"] != got["state"]
    [record] = s.ok("VacationResponse/get", ids=["singleton"], properties=["isEnabled", "subject"])["list"]
    assert record == {"id": "singleton", "isEnabled": True, "subject": "Away"}
    # Durable, in a file named by no user name, read back by a new store.
    [name] = os.listdir(tmp_path / "vacation")
    assert USER not in name and json.loads((tmp_path / "vacation" / name).read_text())["settings"]["isEnabled"]
    again = vacation.FileVacationStore(str(tmp_path / "vacation"), runInThread=sync)
    assert runSync(_await(again.get(USER)))["textBody"] == "Back on Monday."
    # RFC 8621 s8.2: create and destroy are "singleton" errors; bad values invalidProperties.
    answer = s.ok("VacationResponse/set", create={"x": {"isEnabled": True}}, destroy=["singleton"],
                  update={"singleton": {"isEnabled": "yes", "fromDate": "tomorrow", "subject": "a\r\nBcc: x"},
                          "other": {"isEnabled": False}})
    assert answer["notCreated"]["x"]["type"] == "singleton" and answer["notDestroyed"]["singleton"]["type"] == "singleton"
    assert answer["notUpdated"]["singleton"]["type"] == "invalidProperties"
    assert set(answer["notUpdated"]["singleton"]["properties"]) == {"isEnabled", "fromDate", "subject"}
    assert answer["notUpdated"]["other"]["type"] == "notFound"
    assert s.ok("VacationResponse/set", update={"singleton": {"id": "x"}})["notUpdated"]["singleton"]["type"] == \
        "invalidProperties"
    assert s.error("VacationResponse/set", ifInState="old", update={}) == "stateMismatch"


def test_without_a_vacation_store_it_is_forbidden():
    s = MailSession()
    context = Context(USER, {s.jmapAccount.id: s.jmapAccount}, s.limits)
    answer = runSync(processRequest(s.registry, Request(
        [CORE, VACATION], [["VacationResponse/get", {"accountId": s.jmapAccount.id}, "0"]], None), context))
    assert answer["methodResponses"][0][1]["type"] == "forbidden"


async def _await(d):
    return await d


def header(extra="", subject="Hello", messageId="<orig@elsewhere.test>"):
    return (f"From: Bob <bob@elsewhere.test>\r\nTo: {USER}\r\nSubject: {subject}\r\nMessage-ID: {messageId}\r\n"
            f"References: <root@elsewhere.test>\r\n{extra}\r\nHi.\r\n").encode()


@pytest.mark.parametrize("sender, extra, why", [
    ("bob@elsewhere.test", "", None),
    ("bob@elsewhere.test", "Auto-Submitted: no\r\n", None),
    ("", "", "null sender"),
    ("MAILER-DAEMON@elsewhere.test", "", "machine sender"),
    ("owner-list@elsewhere.test", "", "machine sender"),
    ("list-request@elsewhere.test", "", "machine sender"),
    ("bob@elsewhere.test", "Auto-Submitted: auto-replied\r\n", "auto-submitted"),
    ("bob@elsewhere.test", "Auto-Submitted: auto-generated; owner-email=x@y\r\n", "auto-submitted"),
    ("bob@elsewhere.test", "List-Id: <list.elsewhere.test>\r\n", "mailing list"),
    ("bob@elsewhere.test", "List-Unsubscribe: <mailto:x@y>\r\n", "mailing list"),
    ("bob@elsewhere.test", "Precedence: bulk\r\n", "bulk precedence"),
    ("bob@elsewhere.test", "Precedence: junk\r\n", "bulk precedence"),
    ("bob@elsewhere.test", "Precedence: List\r\n", "bulk precedence"),
    ("bob@elsewhere.test", "X-Auto-Response-Suppress: OOF\r\n", "auto-response suppressed"),
    (USER, "", "own address"),
])
def test_refusals(sender, extra, why):
    assert autoreply.refusal(sender, autoreply.fields(header(extra)), ownAddresses=(USER,)) == why


def test_the_reply():
    data = autoreply.buildReply(USER, "bob@elsewhere.test", autoreply.fields(header(subject="=?utf-8?q?H=C3=A9llo?=")),
                                None, None, "<p>Away &amp; <b>back</b> soon</p><script>x</script>", "mx.example.test",
                                now=0)
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    m = email.message_from_bytes(data, policy=email.policy.default)
    assert m["Auto-Submitted"] == "auto-replied" and m["To"] == "bob@elsewhere.test" and m["From"] == USER
    assert m["In-Reply-To"] == "<orig@elsewhere.test>"
    assert m["References"] == "<root@elsewhere.test> <orig@elsewhere.test>"
    assert m["Subject"] == "Auto: Héllo" and m["Message-ID"].endswith("@mx.example.test>")
    assert m.get_body(("plain",)).get_content().strip() == "Away & back soon"
    assert "<b>back</b>" in m.get_body(("html",)).get_content()
    plain = email.message_from_bytes(autoreply.buildReply(USER, "b@x", {}, "Away", "Text.", None, "h"),
                                     policy=email.policy.default)
    assert plain["Subject"] == "Away" and "In-Reply-To" not in plain and plain.get_content().strip() == "Text."


def test_active_dates():
    assert not vacation.active(dict(vacation.DEFAULT), 0)
    on = dict(vacation.DEFAULT, isEnabled=True, fromDate="2026-01-01T00:00:00Z", toDate="2026-02-01T00:00:00Z")
    assert vacation.active(on, 1767225600) and not vacation.active(on, 1767225599)
    assert not vacation.active(on, 1769904000)  # toDate is the end, not included
    assert vacation.active(dict(on, fromDate=None, toDate=None), 0)


class Clock:
    def __init__(self):
        self.now = 1_800_000_000.0

    def time(self):
        return self.now


def test_responder_after_local_delivery(tmp_path):
    s = MailSession()
    store = vacation.FileVacationStore(str(tmp_path / "vacation"), runInThread=sync)
    spool = Spool(str(tmp_path / "queue"), runInThread=sync)
    clock = Clock()
    responder = vacation.Responder(store, spool, 7 * 86400, "mx.example.test", clock)
    localdelivery.setDeliveryHook(s.store, responder)
    try:
        def deliver(sender, data):
            d = localdelivery.LocalDelivery(s.store, [USER], sender, b"Received: by test\r\n")
            for i in range(0, len(data), 7):  # in pieces, as SMTP writes them
                d.write(data[i:i + 7])
            out = []
            d.commit().addBoth(out.append)
            assert len(out) == 1 and not isinstance(out[0], Failure), out

        deliver("bob@elsewhere.test", header())
        assert spool.ids() == []  # not enabled
        runSync(_await(store.set(USER, dict(vacation.DEFAULT, isEnabled=True, subject="Away", textBody="Gone."))))
        deliver("bob@elsewhere.test", header())
        [first] = spool.ids()
        envelope = spool.load(first)
        assert envelope.sender == "" and [r.address for r in envelope.recipients] == ["bob@elsewhere.test"]
        with spool.openData(first) as f:
            reply = email.message_from_bytes(f.read(), policy=email.policy.default)
        assert reply["Subject"] == "Away" and reply["In-Reply-To"] == "<orig@elsewhere.test>"
        deliver("bob@elsewhere.test", header(messageId="<second@elsewhere.test>"))  # within the period
        deliver("list@elsewhere.test", header("List-Id: <l.elsewhere.test>\r\n"))
        deliver("robot@elsewhere.test", header("Auto-Submitted: auto-generated\r\n"))
        deliver("", header())
        assert spool.ids() == [first]
        clock.now += 7 * 86400 + 1  # a new period
        deliver("BOB@elsewhere.test", header(messageId="<third@elsewhere.test>"))
        assert len(spool.ids()) == 2
        assert not responder.pending
    finally:
        localdelivery.setDeliveryHook(s.store, None)


def test_a_failing_hook_does_not_fail_the_delivery(tmp_path):
    s = MailSession()

    def broken(usernames, sender, header):
        raise RuntimeError("boom")
    localdelivery.setDeliveryHook(s.store, broken)
    try:
        d = localdelivery.LocalDelivery(s.store, [USER], "bob@elsewhere.test")
        d.write(header())
        out = []
        d.commit().addBoth(out.append)
        assert len(out) == 1 and not isinstance(out[0], Failure), out
        assert len(s.ok("Email/query")["ids"]) == 1
    finally:
        localdelivery.setDeliveryHook(s.store, None)


class Aliases:
    def __init__(self, table):
        self.table = table

    def get(self, address):
        return self.table.get(address.lower())


def directory():
    from mailnet.auth import CheckerUsers, Directory
    from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse

    users = CheckerUsers(InMemoryUsernamePasswordDatabaseDontUse(), [USER, "bob@example.test"])
    return Directory(["example.test"], users, Aliases({
        "sales@example.test": ["alice@example.test", "bob@example.test"],
        "bob-only@example.test": ["bob@example.test"],
        "@example.test": ["alice@example.test"],  # a catch-all: not one of her addresses for vacation
    }))


def addressed(to, extra="", sender="carol@elsewhere.test"):
    data = (f"From: Carol <{sender}>\r\nTo: {to}\r\nSubject: s\r\n{extra}\r\nHi.\r\n").encode()
    responder = vacation.Responder(None, None, 1, "mx.example.test", directory=directory())
    return autoreply.refusal(sender, autoreply.fields(data), isOwn=lambda a: responder.isOwn(USER, a))


@pytest.mark.parametrize("to, extra, why", [
    (USER, "", None),
    ("Alice <ALICE@Example.Test>", "", None),
    ("\"Smith, Al\" <x@elsewhere.test>, alice+holiday@example.test", "", None),  # RFC 5233 subaddress
    ("sales@example.test", "", None),  # an alias that delivers to her
    ("friends@lists.elsewhere.test", "Cc: Alice <alice@example.test>\r\n", None),
    ("friends@lists.elsewhere.test", "Resent-To: alice@example.test\r\n", None),
    ("friends@lists.elsewhere.test", "Resent-Cc: sales@example.test\r\n", None),
    # RFC 5230 s4.5: Bcc'd (her address nowhere in the header): no reply.
    ("friends@lists.elsewhere.test", "", "not addressed to the user"),
    ("undisclosed-recipients:;", "", "not addressed to the user"),
    ("bob-only@example.test", "", "not addressed to the user"),  # an alias of someone else
    ("whatever@example.test", "", "not addressed to the user"),  # reached her through the catch-all only
    ("=?utf-8?q?alice=40example=2Etest?= <x@elsewhere.test>", "", "not addressed to the user"),
])
def test_only_mail_that_names_one_of_her_addresses_is_answered(to, extra, why):
    assert addressed(to, extra) == why


def test_her_alias_as_sender_is_her_own_address():
    assert addressed(USER, sender="sales@example.test") == "own address"
    assert addressed(USER, sender="alice+x@example.test") == "own address"


def test_without_a_directory_only_her_own_address_counts():
    data = f"To: sales@example.test, {USER}\r\n\r\n".encode()
    assert autoreply.refusal("c@x.test", autoreply.fields(data), ownAddresses=(USER,)) is None
    data = b"To: sales@example.test\r\n\r\n"
    assert autoreply.refusal("c@x.test", autoreply.fields(data), ownAddresses=(USER,)) == "not addressed to the user"
    responder = vacation.Responder(None, None, 1, "mx.example.test")
    assert responder.isOwn(USER, USER.upper()) and not responder.isOwn(USER, "alice+x@example.test")


class RecordingSigner:
    """An OwnMailSigner's interface: keys by domain; the signature a marker field."""

    def __init__(self, keys):
        self.keys = keys
        self.asked = []

    def keysFor(self, domain):
        self.asked.append(domain)
        return self.keys

    def sign(self, message, keys):
        return b"DKIM-Signature: v=1; d=example.test; test\r\n" + message


@pytest.mark.parametrize("keys", [["a key"], []])
def test_the_reply_is_signed_once_before_it_is_spooled(tmp_path, keys):
    store = vacation.FileVacationStore(str(tmp_path / "vacation"), runInThread=sync)
    spool = Spool(str(tmp_path / "queue"), runInThread=sync)
    signer = RecordingSigner(keys)
    responder = vacation.Responder(store, spool, 86400, "mx.example.test", Clock(), signer=signer, runInThread=sync)
    runSync(_await(store.set(USER, dict(vacation.DEFAULT, isEnabled=True, textBody="Gone."))))
    responder([USER], "bob@elsewhere.test", header())
    assert not responder.pending and signer.asked == ["example.test"]  # the user's domain: the From's
    [queued] = spool.ids()
    with spool.openData(queued) as f:
        data = f.read()
    assert data.count(b"DKIM-Signature:") == (1 if keys else 0)
    assert data.startswith(b"DKIM-Signature:") == bool(keys)

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

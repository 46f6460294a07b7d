"""RFC 8621 Identity (s6) and EmailSubmission (s7) in-process: memory store, a task.Clock, a recording send."""

from twisted.internet import task

from mailnet.auth import AliasDB, Directory
from mailnet.jmap.dispatch import runSync
from mailnet.jmap.identity import MemoryUserData, SendRules, identityId
from mailnet.jmap.submission import Outbox, Outcome
from tests.jmap.mailhelp import USER
from tests.jmap.test_emailcreate import DraftSession, draft

SUBMISSION = "urn:ietf:params:jmap:submission"


class Users:
    def __init__(self, *names):
        self.names = {n.lower() for n in names}

    def canonical(self, address):
        return address.lower() if address.lower() in self.names else None

    def exists(self, address):
        return address.lower() in self.names


class Sent:
    def __init__(self):
        self.messages = []
        self.reply = Outcome(250, "2.0.0 OK")

    def __call__(self, username, mailFrom, rcptTo, data):
        self.messages.append((username, mailFrom, list(rcptTo), data))
        return self.reply


def session(tmp_path, hold=0.0, maxRecipients=100, aliases="sales@example.test: alice@example.test\n"
                                                            "@example.test: alice@example.test\n"):
    (tmp_path / "aliases").write_text(aliases)
    directory = Directory(["example.test"], Users(USER, "bob@example.test"), AliasDB(str(tmp_path / "aliases")))
    clock = task.Clock()
    sent = Sent()
    outbox = Outbox(sent, clock, hold=hold, maxRecipients=maxRecipients, messageSize=100_000,
                    resolve=directory.resolve, runner=runSync)
    s = DraftSession(sendRules=SendRules(directory), userData=MemoryUserData(), outbox=outbox, clock=clock)
    s.clock, s.sent, s.outbox = clock, sent, outbox
    return s


def request(s, *calls):
    from mailnet.jmap.dispatch import CORE, Context, processRequest
    from mailnet.jmap.mailbox import MAIL
    from mailnet.jmap.request import Request

    context = Context(USER, {s.jmapAccount.id: s.jmapAccount}, s.limits, dict(s.services))
    methodCalls = []
    for n, (name, args) in enumerate(calls):
        args = dict(args)
        args.setdefault("accountId", s.jmapAccount.id)
        methodCalls.append([name, args, str(n)])
    return runSync(processRequest(s.registry, Request([CORE, MAIL, SUBMISSION], methodCalls, None),
                                  context))["methodResponses"]


def ok(s, name, **args):
    answer = request(s, (name, args))
    assert answer[0][0] == name, answer
    return answer[0][1]


def test_identities_from_the_submission_rules(tmp_path):
    s = session(tmp_path)
    got = ok(s, "Identity/get", ids=None)
    assert [i["email"] for i in got["list"]] == [USER, "sales@example.test"]  # not the catch-all
    assert all(i["mayDelete"] is False for i in got["list"])
    assert got["list"][0]["id"] == identityId(USER)
    state = got["state"]
    mine = got["list"][0]["id"]
    answer = ok(s, "Identity/set", update={mine: {"name": "Alice", "textSignature": "-- \nAlice"}},
                create={"t": {"email": "alice+news@example.test", "name": "News"},
                        "x": {"email": "bob@example.test"}, "y": {"email": "alice@elsewhere.test"}},
                destroy=[mine])
    assert answer["updated"] == {mine: None}
    assert answer["created"]["t"]["mayDelete"] is True
    assert answer["notCreated"]["x"]["type"] == "forbiddenFrom" and answer["notCreated"]["y"]["type"] == "forbiddenFrom"
    assert answer["notDestroyed"][mine]["type"] == "forbidden"
    changes = ok(s, "Identity/changes", sinceState=state)
    assert changes["created"] == [answer["created"]["t"]["id"]] and changes["updated"] == [mine]
    got = {i["email"]: i for i in ok(s, "Identity/get", ids=None)["list"]}
    assert got[USER]["name"] == "Alice" and got[USER]["textSignature"] == "-- \nAlice"
    assert got["alice+news@example.test"]["name"] == "News"
    bad = ok(s, "Identity/set", update={mine: {"email": "x@example.test"}, "nope": {"name": "x"}})
    assert bad["notUpdated"][mine]["type"] == "invalidProperties" and bad["notUpdated"]["nope"]["type"] == "notFound"
    assert ok(s, "Identity/set", destroy=[answer["created"]["t"]["id"]])["destroyed"] == [answer["created"]["t"]["id"]]
    # The aliases file changes: the state does, and /changes across it cannot be answered.
    state = ok(s, "Identity/get", ids=[])["state"]
    (tmp_path / "aliases").write_text("")
    import os
    os.utime(tmp_path / "aliases", (1, 1))
    assert ok(s, "Identity/get", ids=[])["state"] != state
    assert request(s, ("Identity/changes", {"sinceState": state}))[0][1]["type"] == "cannotCalculateChanges"


def make(s, **extra):
    return ok(s, "Email/set", create={"d": draft(s, **extra)})["created"]["d"]["id"]


def test_submit_at_once_with_on_success_update(tmp_path):
    s = session(tmp_path)
    boxes = s.mailboxes()
    emailId = make(s, cc=[{"email": "bob@example.test"}], bcc=[{"email": "hidden@example.net"}])
    answer = request(s, ("EmailSubmission/set", {
        "create": {"k": {"identityId": identityId(USER), "emailId": emailId}},
        "onSuccessUpdateEmail": {"#k": {"mailboxIds/" + boxes["Drafts"]["id"]: None,
                                        "mailboxIds/" + boxes["Sent"]["id"]: True, "keywords/$draft": None}}}))
    assert [a[0] for a in answer] == ["EmailSubmission/set", "Email/set"]
    created = answer[0][1]["created"]["k"]
    assert created["undoStatus"] == "final"
    assert created["envelope"] == {"mailFrom": {"email": USER, "parameters": None},
                                   "rcptTo": [{"email": "bob@example.net", "parameters": None},
                                              {"email": "bob@example.test", "parameters": None},
                                              {"email": "hidden@example.net", "parameters": None}]}
    assert answer[1][1]["updated"] == {emailId: None}
    (user, mailFrom, rcptTo, data), = s.sent.messages
    assert user == USER and mailFrom == USER and b"\r\nBcc:" not in data and b"hidden@" not in data
    assert b"\r\nCc: bob@example.test\r\n" in data
    got = ok(s, "Email/get", ids=[emailId], properties=["mailboxIds", "keywords"])["list"][0]
    assert got["mailboxIds"] == {boxes["Sent"]["id"]: True} and got["keywords"] == {"$seen": True}
    sub = ok(s, "EmailSubmission/get", ids=[created["id"]])["list"][0]
    assert sub["deliveryStatus"]["bob@example.test"]["delivered"] == "queued"
    assert ok(s, "EmailSubmission/query", filter={"undoStatus": "final"})["ids"] == [created["id"]]
    # onSuccessDestroyEmail
    other = make(s)
    answer = request(s, ("EmailSubmission/set", {
        "create": {"k2": {"identityId": identityId(USER), "emailId": other,
                          "envelope": {"mailFrom": {"email": "sales@example.test"},
                                       "rcptTo": [{"email": "carol@example.net"}]}}},
        "onSuccessDestroyEmail": ["#k2"]}))
    assert answer[1][1]["destroyed"] == [other]
    assert s.sent.messages[-1][1:3] == ("sales@example.test", ["carol@example.net"])


def test_submission_errors(tmp_path):
    s = session(tmp_path, maxRecipients=2)
    me = identityId(USER)
    records = {
        "noident": {"identityId": "Inope", "emailId": make(s)},
        "noemail": {"identityId": me, "emailId": "Mnope"},
        "from": {"identityId": me, "emailId": make(s, **{"from": [{"email": "bob@example.test"}]})},
        "mailfrom": {"identityId": me, "emailId": make(s), "envelope": {
            "mailFrom": {"email": "bob@example.test"}, "rcptTo": [{"email": "x@example.net"}]}},
        "none": {"identityId": me, "emailId": make(s, to=None)},
        "many": {"identityId": me, "emailId": make(s, cc=[{"email": "c@example.net"}, {"email": "d@example.net"}])},
        "invalid": {"identityId": me, "emailId": make(s, to=[{"email": "nobody@local.test"}]), "envelope": {
            "mailFrom": {"email": USER}, "rcptTo": [{"email": "not an address"}]}},
        "params": {"identityId": me, "emailId": make(s), "envelope": {
            "mailFrom": {"email": USER, "parameters": {"HOLDFOR": "5"}}, "rcptTo": [{"email": "x@example.net"}]}},
        "nofrom": {"identityId": me, "emailId": make(s, **{"from": None})},
    }
    answer = ok(s, "EmailSubmission/set", create=records)
    assert {k: v["type"] for k, v in answer["notCreated"].items()} == {
        "noident": "invalidProperties", "noemail": "invalidProperties", "from": "forbiddenFrom",
        "mailfrom": "forbiddenMailFrom", "none": "noRecipients", "many": "tooManyRecipients",
        "invalid": "invalidRecipients", "params": "invalidProperties", "nofrom": "invalidEmail"}
    assert answer["notCreated"]["invalid"]["invalidRecipients"] == ["not an address"]
    assert answer["notCreated"]["many"]["maxRecipients"] == 2
    assert s.sent.messages == []
    # A refusal by the delivery (5xx) is forbiddenToSend.
    s.sent.reply = Outcome(554, "5.7.1 refused")
    refused = ok(s, "EmailSubmission/set", create={"r": {"identityId": me, "emailId": make(s)}})
    assert refused["notCreated"]["r"]["type"] == "forbiddenToSend"
    # Too large: over the outbox's messageSize.
    big = make(s, bodyValues={"t": {"value": "x" * 150_000}})
    assert ok(s, "EmailSubmission/set", create={"b": {"identityId": me, "emailId": big}}
              )["notCreated"]["b"]["type"] == "tooLarge"


def test_undo_within_the_hold_and_final_after_it(tmp_path):
    s = session(tmp_path, hold=5)
    me = identityId(USER)
    first = ok(s, "EmailSubmission/set", create={"a": {"identityId": me, "emailId": make(s)}})["created"]["a"]
    second = ok(s, "EmailSubmission/set", create={"b": {"identityId": me, "emailId": make(s)}})["created"]["b"]
    assert first["undoStatus"] == "pending" and s.sent.messages == []
    state = ok(s, "EmailSubmission/get", ids=[])["state"]
    s.clock.advance(2)
    assert ok(s, "EmailSubmission/set", update={first["id"]: {"undoStatus": "canceled"}})["updated"] == {
        first["id"]: None}
    s.clock.advance(4)
    assert len(s.sent.messages) == 1  # only the second
    got = {g["id"]: g for g in ok(s, "EmailSubmission/get", ids=None)["list"]}
    assert got[first["id"]]["undoStatus"] == "canceled" and got[second["id"]]["undoStatus"] == "final"
    late = ok(s, "EmailSubmission/set", update={second["id"]: {"undoStatus": "canceled"}})
    assert late["notUpdated"][second["id"]]["type"] == "cannotUnsend"
    changes = ok(s, "EmailSubmission/changes", sinceState=state)
    assert set(changes["updated"]) == {first["id"], second["id"]}


def test_pending_and_kept_submissions_are_bounded(tmp_path, monkeypatch):
    from mailnet.jmap import submission

    monkeypatch.setattr(submission, "MAX_PENDING", 2)
    monkeypatch.setattr(submission, "MAX_KEPT", 3)
    s = session(tmp_path, hold=5)
    me = identityId(USER)
    answer = ok(s, "EmailSubmission/set", create={str(n): {"identityId": me, "emailId": make(s)} for n in range(3)})
    assert len(answer["created"]) == 2 and answer["notCreated"]["2"]["type"] == "forbiddenToSend"
    s.clock.advance(6)
    for n in range(3):
        ok(s, "EmailSubmission/set", create={"x": {"identityId": me, "emailId": make(s)}})
        s.clock.advance(6)
    assert len(s.sent.messages) == 5
    assert len(ok(s, "EmailSubmission/get", ids=None)["list"]) == 3  # the oldest final ones went


class MemoryJournal:
    def __init__(self):
        self.entries = {}

    def save(self, i, entry, data):
        self.entries[i] = (entry, data)

    def remove(self, i):
        self.entries.pop(i, None)

    def load(self):
        return list(self.entries.values())


def test_held_submissions_are_journaled_and_restored(tmp_path):
    s = session(tmp_path, hold=5)
    journal = s.outbox.journal = MemoryJournal()
    me = identityId(USER)
    kept = ok(s, "EmailSubmission/set", create={"k": {"identityId": me, "emailId": make(s)}})["created"]["k"]["id"]
    gone = ok(s, "EmailSubmission/set", create={"g": {"identityId": me, "emailId": make(s)}})["created"]["g"]["id"]
    assert set(journal.entries) == {kept, gone}
    entry, data = journal.entries[kept]
    assert entry["username"] == USER and entry["rcptTo"] == ["bob@example.net"] and b"Subject: Hello" in data
    ok(s, "EmailSubmission/set", update={gone: {"undoStatus": "canceled"}})
    assert set(journal.entries) == {kept}  # a cancel leaves the journal before the answer
    # A restart: a new outbox, restored from the journal; the kept one is sent when due.
    clock, sent = task.Clock(), Sent()
    clock.advance(s.clock.seconds() + 2)
    restarted = Outbox(sent, clock, hold=5, resolve=None, runner=runSync, journal=journal)
    assert restarted.restore(journal.load()) == 1
    assert restarted.user(USER)["records"][kept].record["undoStatus"] == "pending"
    clock.advance(2.9)
    assert sent.messages == []
    clock.advance(0.2)
    [(user, mailFrom, rcptTo, message)] = sent.messages
    assert (user, rcptTo, message) == (USER, ["bob@example.net"], data)
    assert journal.entries == {} and restarted.user(USER)["records"][kept].record["undoStatus"] == "final"


def test_a_cancel_while_sending_is_too_late(tmp_path):
    from twisted.internet import defer

    s = session(tmp_path, hold=5)
    waiting = defer.Deferred()
    s.outbox.send = lambda *a: waiting
    s.outbox.runner = defer.ensureDeferred
    me = identityId(USER)
    i = ok(s, "EmailSubmission/set", create={"k": {"identityId": me, "emailId": make(s)}})["created"]["k"]["id"]
    s.clock.advance(6)  # due: the send has started and waits for the store
    late = ok(s, "EmailSubmission/set", update={i: {"undoStatus": "canceled"}})
    assert late["notUpdated"][i]["type"] == "cannotUnsend"
    waiting.callback(Outcome(250, "2.0.0 OK"))
    assert ok(s, "EmailSubmission/get", ids=[i])["list"][0]["deliveryStatus"]["bob@example.net"]["delivered"] == \
        "queued"


def _allChanges(s, name, state, maxChanges):
    """Follow /changes with maxChanges until hasMoreChanges is false; every page within the limit."""
    seen = {"created": set(), "updated": set(), "destroyed": set()}
    pages = 0
    while True:
        page = ok(s, name, sinceState=state, maxChanges=maxChanges)
        assert page["oldState"] == state
        assert len(page["created"]) + len(page["updated"]) + len(page["destroyed"]) <= maxChanges
        for k in seen:
            seen[k] |= set(page[k])
        pages += 1
        if not page["hasMoreChanges"]:
            return seen, pages, page["newState"]
        assert page["newState"] != state  # an intermediate state, never the same one
        state = page["newState"]


def test_identity_changes_honour_max_changes(tmp_path):
    # RFC 8620 s5.2: at most maxChanges ids, hasMoreChanges and an intermediate newState.
    s = session(tmp_path)
    start = ok(s, "Identity/get", ids=[])["state"]
    made = ok(s, "Identity/set", create={str(n): {"email": f"alice+{n}@example.test"} for n in range(5)})
    ids = {c["id"] for c in made["created"].values()}
    first = ok(s, "Identity/changes", sinceState=start, maxChanges=2)
    assert first["hasMoreChanges"] is True and len(first["created"]) == 2
    seen, pages, final = _allChanges(s, "Identity/changes", start, 2)
    assert seen["created"] == ids and pages == 3
    assert final == ok(s, "Identity/get", ids=[])["state"]
    whole = ok(s, "Identity/changes", sinceState=start)
    assert whole["hasMoreChanges"] is False and set(whole["created"]) == ids


def test_submission_changes_honour_max_changes(tmp_path):
    s = session(tmp_path, hold=5)
    me = identityId(USER)
    start = ok(s, "EmailSubmission/get", ids=[])["state"]
    made = ok(s, "EmailSubmission/set", create={str(n): {"identityId": me, "emailId": make(s)} for n in range(3)})
    ids = {c["id"] for c in made["created"].values()}
    first = ok(s, "EmailSubmission/changes", sinceState=start, maxChanges=1)
    assert first["hasMoreChanges"] is True and len(first["created"]) == 1
    seen, pages, final = _allChanges(s, "EmailSubmission/changes", start, 1)
    assert seen["created"] == ids and pages == 3
    assert final == ok(s, "EmailSubmission/get", ids=[])["state"]


def _delayed(s, emailId, **parameters):
    return {"identityId": identityId(USER), "emailId": emailId,
            "envelope": {"mailFrom": {"email": USER, "parameters": parameters},
                         "rcptTo": [{"email": "bob@example.net", "parameters": None}]}}


def test_delayed_send_with_holdfor_and_holduntil(tmp_path):
    # RFC 8621 s7 sendAt / RFC 4865 FUTURERELEASE: pending until the release, cancelable, then sent.
    from mailnet.jmap.submission import utcDate

    s = session(tmp_path, hold=0)
    s.outbox.maxDelayedSend = 3600
    s.outbox.journal = journal = MemoryJournal()
    start = s.clock.seconds()
    later = ok(s, "EmailSubmission/set", create={"a": _delayed(s, make(s), HOLDFOR="600")})["created"]["a"]
    assert later["undoStatus"] == "pending" and later["sendAt"] == utcDate(start + 600)
    until = utcDate(start + 1200)
    kept = ok(s, "EmailSubmission/set", create={"b": _delayed(s, make(s), HOLDUNTIL=until)})["created"]["b"]
    assert kept["sendAt"] == until and set(journal.entries) == {later["id"], kept["id"]}
    assert journal.entries[kept["id"]][0]["due"] == start + 1200
    got = ok(s, "EmailSubmission/get", ids=[later["id"]])["list"][0]
    assert got["envelope"]["mailFrom"]["parameters"] == {"HOLDFOR": "600"}
    s.clock.advance(599)
    assert s.sent.messages == []
    s.clock.advance(2)
    assert len(s.sent.messages) == 1
    assert ok(s, "EmailSubmission/get", ids=[later["id"]])["list"][0]["undoStatus"] == "final"
    # The second is canceled before its release: never sent.
    assert ok(s, "EmailSubmission/set", update={kept["id"]: {"undoStatus": "canceled"}})["updated"] == {
        kept["id"]: None}
    s.clock.advance(3600)
    assert len(s.sent.messages) == 1 and journal.entries == {}


def test_delayed_send_refusals(tmp_path):
    s = session(tmp_path, hold=0)
    emailId = make(s)

    def refused(**parameters):
        answer = ok(s, "EmailSubmission/set", create={"x": _delayed(s, emailId, **parameters)})
        return answer["notCreated"]["x"]

    # maxDelayedSend 0: no parameters at all.
    assert refused(HOLDFOR="60")["type"] == "invalidProperties"
    s.outbox.maxDelayedSend = 3600
    assert "3600" in refused(HOLDFOR="3601")["description"]  # beyond maxDelayedSend
    assert refused(HOLDFOR="-1")["type"] == "invalidProperties"
    assert refused(HOLDUNTIL="tomorrow")["type"] == "invalidProperties"
    assert refused(HOLDUNTIL="2030-01-01T00:00:00")["type"] == "invalidProperties"  # no offset
    assert refused(HOLDFOR="60", HOLDUNTIL="2030-01-01T00:00:00Z")["type"] == "invalidProperties"
    assert refused(SIZE="100")["type"] == "invalidProperties"
    assert s.sent.messages == []
    # A release already past goes at once.
    past = ok(s, "EmailSubmission/set", create={"p": _delayed(s, emailId, HOLDUNTIL="1970-01-01T00:00:00Z")})
    assert past["created"]["p"]["undoStatus"] == "final" and len(s.sent.messages) == 1


def test_submission_query_says_it_cannot_calculate_changes(tmp_path):
    # RFC 8620 s5.5: canCalculateChanges true promises a /queryChanges answer; ours is always
    # cannotCalculateChanges (jmapc's EmailSubmissionQuery said true, then its QueryChanges failed).
    s = session(tmp_path)
    answer = ok(s, "EmailSubmission/query")
    assert answer["canCalculateChanges"] is False
    assert request(s, ("EmailSubmission/queryChanges", {"sinceQueryState": answer["queryState"]})
                   )[0][1]["type"] == "cannotCalculateChanges"

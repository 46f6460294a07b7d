"""RFC 8621 Mailbox, Email, Thread in-process over the memory store (tests/jmap/mailhelp.py)."""

from tests.jmap.mailhelp import MailSession, message

MULTIPART = (
    "From: Carol <carol@example.test>\r\nTo: alice@example.test\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n"
    "Message-ID: <multi@example.test>\r\nReferences: <a@x> <b@x>\r\nList-Post: <mailto:l@example.test>\r\n"
    "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\n"
    "--B\r\nContent-Type: multipart/alternative; boundary=\"C\"\r\n\r\n"
    "--C\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    "Caf=C3=A9 au lait, a long line of text.\r\n"
    "--C\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Caf\xc3\xa9</p>\r\n--C--\r\n"
    "--B\r\nContent-Type: application/pdf; name=\"r.pdf\"\r\nContent-Disposition: attachment; filename=\"r.pdf\"\r\n"
    "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--B--\r\n"
).encode("latin-1")

LIST = ("id", "blobId", "threadId", "mailboxIds", "keywords", "size", "receivedAt", "messageId",
        "from", "to", "cc", "subject", "sentAt", "hasAttachment", "preview")


def test_session_capability_and_mailbox_get():
    s = MailSession()
    s.deliver(message("one"))
    s.deliver(message("two"), flags=("\\Seen",))
    cap = s.jmapAccount.capabilities["urn:ietf:params:jmap:mail"]
    assert cap["maxMailboxesPerEmail"] == 1 and "subject" in cap["emailQuerySortOptions"]
    boxes = s.mailboxes()
    inbox = boxes["INBOX"]
    assert inbox["role"] == "inbox" and inbox["parentId"] is None and inbox["isSubscribed"] is True
    assert (inbox["totalEmails"], inbox["unreadEmails"], inbox["totalThreads"], inbox["unreadThreads"]) == (2, 1, 2, 1)
    assert inbox["myRights"]["mayDelete"] is False and boxes["Sent"]["myRights"]["mayDelete"] is True
    assert {b["role"] for b in boxes.values()} == {"inbox", "sent", "drafts", "trash", "junk", "archive"}
    got = s.ok("Mailbox/get", ids=[inbox["id"], "nope"], properties=["name"])
    assert got["list"] == [{"id": inbox["id"], "name": "INBOX"}] and got["notFound"] == ["nope"]
    assert s.error("Mailbox/get", ids=None, properties=["colour"]) == "invalidArguments"


def test_mailbox_changes_count_only_and_rename():
    s = MailSession()
    state = s.ok("Mailbox/get", ids=[])["state"]
    s.deliver(message("one"))
    changes = s.ok("Mailbox/changes", sinceState=state)
    assert changes["updated"] == [s.mailboxes()["INBOX"]["id"]]
    assert changes["updatedProperties"] == ["totalEmails", "unreadEmails", "totalThreads", "unreadThreads"]
    state = changes["newState"]
    sent = s.mailboxes()["Sent"]["id"]
    assert s.ok("Mailbox/set", update={sent: {"name": "Outbox"}})["updated"] == {sent: None}
    changes = s.ok("Mailbox/changes", sinceState=state)
    assert sent in changes["updated"] and changes["updatedProperties"] is None
    assert s.error("Mailbox/changes", sinceState="nonsense") == "cannotCalculateChanges"


def test_mailbox_query_filters_and_sorts():
    s = MailSession()
    created = s.ok("Mailbox/set", create={"p": {"name": "Projects"}})["created"]["p"]["id"]
    child = s.ok("Mailbox/set", create={"c": {"name": "Alpha", "parentId": created}})["created"]["c"]["id"]
    assert s.ok("Mailbox/query", filter={"hasAnyRole": False}, sort=[{"property": "name"}])["ids"] == [child, created]
    assert s.ok("Mailbox/query", filter={"parentId": created})["ids"] == [child]
    assert s.ok("Mailbox/query", filter={"role": "inbox"})["ids"] == [s.mailboxes()["INBOX"]["id"]]
    ids = s.ok("Mailbox/query", filter={"operator": "NOT", "conditions": [{"hasAnyRole": True}]})["ids"]
    assert set(ids) == {child, created}
    assert s.ok("Mailbox/query", filter={"name": "PROJ"})["ids"] == [created]
    assert s.ok("Mailbox/query")["ids"][0] == s.mailboxes()["INBOX"]["id"]  # sortOrder: inbox first
    assert s.error("Mailbox/query", filter={"colour": "red"}) == "unsupportedFilter"
    assert s.error("Mailbox/query", sort=[{"property": "totalEmails"}]) == "unsupportedSort"
    assert s.error("Mailbox/queryChanges", sinceQueryState="x") == "cannotCalculateChanges"


def test_mailbox_set_create_rename_destroy():
    s = MailSession()
    made = s.ok("Mailbox/set", create={"a": {"name": "Work"}, "b": {"name": "a/b"}, "c": {"name": "INBOX"},
                                       "d": {"name": "X", "parentId": "nope"}, "e": {"name": "Y", "role": "trash"}})
    assert set(made["created"]) == {"a"}
    assert {k: v["type"] for k, v in made["notCreated"].items()} == {
        "b": "invalidProperties", "c": "invalidProperties", "d": "invalidProperties", "e": "invalidProperties"}
    work = made["created"]["a"]["id"]
    child = s.ok("Mailbox/set", create={"k": {"name": "Kid", "parentId": work}})["created"]["k"]["id"]
    assert s.ok("Mailbox/set", destroy=[work])["notDestroyed"][work]["type"] == "mailboxHasChild"
    inbox = s.mailboxes()["INBOX"]["id"]
    answer = s.ok("Mailbox/set", update={inbox: {"name": "Other"}}, destroy=[inbox])
    assert answer["notUpdated"][inbox]["type"] == "forbidden" and answer["notDestroyed"][inbox]["type"] == "forbidden"
    assert s.ok("Mailbox/set", update={child: {"parentId": None, "name": "Top"}})["updated"] == {child: None}
    boxes = s.mailboxes()
    assert boxes["Top"]["id"] == child and boxes["Top"]["parentId"] is None
    assert s.ok("Mailbox/set", update={work: {"parentId": work}})["notUpdated"][work]["type"] == "invalidProperties"
    s.deliver(message("kept"), folder="Work")
    assert s.ok("Mailbox/set", destroy=[work])["notDestroyed"][work]["type"] == "mailboxHasEmail"
    assert s.ok("Mailbox/set", destroy=[work], onDestroyRemoveEmails=True)["destroyed"] == [work]
    assert "Work" not in s.mailboxes()
    assert s.error("Mailbox/set", destroy=[], onDestroyRemoveEmails="yes") == "invalidArguments"
    state = s.ok("Mailbox/get", ids=[])["state"]
    assert s.error("Mailbox/set", ifInState=state + "x", destroy=[child]) == "stateMismatch"


def test_email_query_sort_filters_and_paging():
    s = MailSession()
    for n in range(1, 6):
        s.deliver(message(f"m{n}", body="x" * n * 100), date=n * 1000, flags=("\\Seen",) if n % 2 else ())
    s.deliver(message("archived"), folder="Archive", date=9000)
    inbox = s.mailboxes()["INBOX"]["id"]
    everything = s.ok("Email/query", calculateTotal=True)
    assert everything["total"] == 6 and everything["collapseThreads"] is False
    subjects = {i: e["subject"] for i, e in ((e["id"], e) for e in
                                             s.ok("Email/get", ids=everything["ids"], properties=["subject"])["list"])}
    newest = [subjects[i] for i in everything["ids"]]
    assert newest == ["archived", "m5", "m4", "m3", "m2", "m1"]
    oldest = s.ok("Email/query", sort=[{"property": "receivedAt", "isAscending": True}])["ids"]
    assert oldest == everything["ids"][::-1]
    page = s.ok("Email/query", filter={"inMailbox": inbox}, position=1, limit=2, calculateTotal=True)
    assert [subjects[i] for i in page["ids"]] == ["m4", "m3"] and page["total"] == 5 and page["position"] == 1
    def names(**args):
        return [subjects[i] for i in s.ok("Email/query", **args)["ids"]]
    assert names(filter={"inMailboxOtherThan": [inbox]}) == ["archived"]
    assert names(filter={"hasKeyword": "$seen"}) == ["m5", "m3", "m1"]
    assert names(filter={"notKeyword": "$seen", "inMailbox": inbox}) == ["m4", "m2"]
    assert names(filter={"after": "1970-01-01T00:50:00Z", "before": "1970-01-01T01:23:20Z"}) == ["m4", "m3"]
    sizes = {subjects[e["id"]]: e["size"] for e in s.ok("Email/get", ids=everything["ids"], properties=["size"])["list"]}
    assert names(filter={"minSize": sizes["m4"], "maxSize": sizes["m5"]}) == ["m4"]
    assert names(filter={"operator": "OR", "conditions": [{"subject": "m1"}, {"subject": "M2"}]}) == ["m2", "m1"]
    assert names(filter={"from": "bob@example"}) == newest
    assert names(filter={"inMailbox": inbox}, anchor=page["ids"][0], anchorOffset=-1, limit=2) == ["m5", "m4"]
    assert names(position=-2) == ["m2", "m1"]
    for bad, error in (({"filter": {"snippet": "x"}}, "unsupportedFilter"),
                       ({"sort": [{"property": "id"}]}, "unsupportedSort"),
                       ({"anchor": "nope"}, "anchorNotFound"),
                       ({"filter": {"before": "yesterday"}}, "invalidArguments"),
                       ({"filter": {"minSize": -1}}, "invalidArguments"),
                       ({"filter": {"hasKeyword": "bad keyword"}}, "invalidArguments"),
                       ({"collapseThreads": "yes"}, "invalidArguments"),
                       ({"limit": -1}, "invalidArguments")):
        assert s.error("Email/query", **bad) == error, bad
    assert s.error("Email/queryChanges", sinceQueryState="x") == "cannotCalculateChanges"  # an unknown state


def test_email_query_collapse_threads():
    s = MailSession()
    s.deliver(message("root"), date=1000)
    reply = message("Re: root", extra="In-Reply-To: <root@example.test>\r\nReferences: <root@example.test>\r\n")
    s.deliver(reply, date=2000)
    s.deliver(message("alone"), date=3000)
    ids = s.ok("Email/query")["ids"]
    threads = {e["id"]: e["threadId"] for e in s.ok("Email/get", ids=ids, properties=["threadId"])["list"]}
    assert len(set(threads.values())) == 2  # the reply joined its root's thread
    collapsed = s.ok("Email/query", collapseThreads=True, calculateTotal=True)
    assert collapsed["total"] == 2 and collapsed["ids"] == [ids[0], ids[1]]  # newest of each thread
    assert len({threads[i] for i in collapsed["ids"]}) == len(collapsed["ids"])


def test_email_get_list_properties():
    s = MailSession()
    s.deliver(message("one"), date=1000, flags=("\\Seen", "\\Flagged", "Work", "\\Deleted"))
    [emailId] = s.ok("Email/query")["ids"]
    [e] = s.ok("Email/get", ids=[emailId], properties=[
        "blobId", "threadId", "mailboxIds", "keywords", "size", "receivedAt", "messageId", "from", "to", "cc",
        "subject", "sentAt", "hasAttachment", "preview"])["list"]
    assert e["blobId"] == emailId and e["mailboxIds"] == {s.mailboxes()["INBOX"]["id"]: True}
    assert e["keywords"] == {"$seen": True, "$flagged": True, "work": True}
    assert e["receivedAt"] == "1970-01-01T00:16:40Z" and e["sentAt"] == "2026-12-03T10:00:00Z"
    assert e["messageId"] == ["one@example.test"] and e["from"] == [{"name": "Bob", "email": "bob@example.test"}]
    assert e["to"] == [{"name": None, "email": "alice@example.test"}] and e["cc"] is None
    assert e["subject"] == "one" and e["hasAttachment"] is False and e["preview"] == "Hi there."
    assert s.error("Email/get", ids=None) == "requestTooLarge"
    assert s.error("Email/get", ids=[emailId], properties=["header:Bad Name"]) == "invalidArguments"
    assert s.ok("Email/get", ids=["nope"])["notFound"] == ["nope"]


def test_email_get_body_properties():
    s = MailSession()
    s.deliver(MULTIPART)
    [emailId] = s.ok("Email/query")["ids"]
    [e] = s.ok("Email/get", ids=[emailId], fetchTextBodyValues=True, fetchHTMLBodyValues=True,
               maxBodyValueBytes=10, properties=[
                   "bodyStructure", "textBody", "htmlBody", "attachments", "bodyValues", "references",
                   "header:Subject:asText", "header:Subject", "header:List-Post:asURLs", "subject",
                   "header:references:asMessageIds:all", "headers", "sender"])["list"]
    assert e["subject"] == "café" and e["header:Subject:asText"] == "café"
    assert e["header:Subject"] == " =?utf-8?q?caf=C3=A9?="
    assert e["references"] == ["a@x", "b@x"] and e["header:references:asMessageIds:all"] == [["a@x", "b@x"]]
    assert e["header:List-Post:asURLs"] == ["mailto:l@example.test"] and e["sender"] is None
    assert [p["type"] for p in e["textBody"]] == ["text/plain"] and [p["type"] for p in e["htmlBody"]] == ["text/html"]
    assert [(p["name"], p["disposition"]) for p in e["attachments"]] == [("r.pdf", "attachment")]
    tree = e["bodyStructure"]
    assert tree["type"] == "multipart/mixed" and tree["partId"] is None
    assert [p["type"] for p in tree["subParts"]] == ["multipart/alternative", "application/pdf"]
    plain = e["textBody"][0]["partId"]
    assert e["bodyValues"][plain] == {"value": "Café au l", "isEncodingProblem": False, "isTruncated": True}
    html = e["htmlBody"][0]["partId"]
    assert e["bodyValues"][html]["value"].startswith("<p>Caf")
    assert {"name": "Message-ID", "value": " <multi@example.test>"} in e["headers"]
    whole = s.ok("Email/get", ids=[emailId], properties=["bodyValues"], fetchTextBodyValues=True)["list"][0]
    assert whole["bodyValues"][plain]["value"] == "Café au lait, a long line of text."  # the CRLF before a boundary is the boundary's
    assert s.error("Email/get", ids=[emailId], maxBodyValueBytes="10") == "invalidArguments"


def test_email_set_keywords_move_destroy_and_changes():
    s = MailSession()
    s.deliver(message("one"), date=1000)
    s.deliver(message("two"), date=2000)
    boxes = s.mailboxes()
    state = s.ok("Email/get", ids=[])["state"]
    two, one = s.ok("Email/query")["ids"]
    assert s.ok("Email/set", update={two: {"keywords/$seen": True, "keywords/$flagged": True}})["updated"] == {two: None}
    assert s.ok("Email/set", update={two: {"keywords/$flagged": None}})["updated"] == {two: None}
    changes = s.ok("Email/changes", sinceState=state)
    assert changes["updated"] == [two] and changes["created"] == []
    assert s.mailboxes()["INBOX"]["unreadEmails"] == 1
    archive = boxes["Archive"]["id"]
    assert s.ok("Email/set", update={two: {"mailboxIds": {archive: True}}})["updated"] == {two: None}
    got = s.ok("Email/get", ids=[two], properties=["mailboxIds", "keywords"])["list"][0]
    assert got == {"id": two, "mailboxIds": {archive: True}, "keywords": {"$seen": True}}
    answer = s.ok("Email/set", update={
        two: {"mailboxIds/" + boxes["Trash"]["id"]: True},
        one: {"keywords": {"bad key": True}},
        "nope": {"keywords/$seen": True},
    })
    assert answer["notUpdated"][two]["type"] == "tooManyMailboxes"
    assert answer["notUpdated"][one]["type"] == "invalidProperties"
    assert answer["notUpdated"]["nope"]["type"] == "notFound"
    assert s.ok("Email/set", update={one: {"subject": "x"}})["notUpdated"][one]["type"] == "invalidProperties"
    assert s.ok("Email/set", update={one: {"mailboxIds": {}}})["notUpdated"][one]["type"] == "invalidProperties"
    assert s.ok("Email/set", create={"k": {"subject": "draft"}})["notCreated"]["k"]["type"] == "invalidProperties"
    state = s.ok("Email/get", ids=[])["state"]
    assert s.error("Email/set", ifInState="0.0", destroy=[one]) == "stateMismatch"
    answer = s.ok("Email/set", ifInState=state, destroy=[one, "nope"])
    assert answer["destroyed"] == [one] and answer["notDestroyed"]["nope"]["type"] == "notFound"
    assert s.ok("Email/changes", sinceState=state)["destroyed"] == [one]
    assert s.error("Email/changes", sinceState="bogus") == "cannotCalculateChanges"


def test_thread_get_and_changes():
    s = MailSession()
    state = s.ok("Thread/changes", sinceState=s.ok("Email/get", ids=[])["state"])["newState"]
    s.deliver(message("one"))
    [emailId] = s.ok("Email/query")["ids"]
    threadId = s.ok("Email/get", ids=[emailId], properties=["threadId"])["list"][0]["threadId"]
    got = s.ok("Thread/get", ids=[threadId, "nope"])
    assert got["list"] == [{"id": threadId, "emailIds": [emailId]}] and got["notFound"] == ["nope"]
    assert threadId in s.ok("Thread/changes", sinceState=state)["created"]
    assert s.error("Thread/get", ids=None) == "requestTooLarge"
    assert s.error("Thread/changes", sinceState="bogus") == "cannotCalculateChanges"


def test_mail_methods_need_the_capability():
    s = MailSession()
    from mailnet.jmap.dispatch import CORE, Context, processRequest, runSync
    from mailnet.jmap.request import Request

    context = Context("alice@example.test", {s.jmapAccount.id: s.jmapAccount}, s.limits)
    calls = [["Mailbox/get", {"accountId": s.jmapAccount.id}, "0"]]
    answer = runSync(processRequest(s.registry, Request([CORE], calls, None), context))
    assert answer["methodResponses"][0][1]["type"] == "unknownMethod"


def test_list_properties_open_no_message_file(monkeypatch):
    from mailnet.store import memory

    s = MailSession()
    s.deliver(MULTIPART)
    ids = s.ok("Email/query")["ids"]
    s.ok("Email/get", ids=ids, properties=["subject"])  # indexed once (the store may read it to index it)
    opened = []
    original = memory._MemoryFolder.openMessage
    monkeypatch.setattr(memory._MemoryFolder, "openMessage", lambda self, uid: opened.append(uid) or original(self, uid))
    s.ok("Email/get", ids=ids, properties=list(LIST))
    s.ok("Email/query", filter={"subject": "caf", "hasAttachment": True}, collapseThreads=True)
    assert opened == []
    s.ok("Email/get", ids=ids, properties=["textBody"])
    assert len(opened) == 1



def test_mailbox_thread_counts_only_when_asked(monkeypatch):
    from mailnet.store import memory

    s = MailSession()
    s.deliver(message("one"))
    asked = []
    original = memory._MemoryFolder.threadIds
    monkeypatch.setattr(memory._MemoryFolder, "threadIds", lambda self, uids: asked.append(1) or original(self, uids))
    s.ok("Mailbox/get", ids=None, properties=["name", "totalEmails", "unreadEmails"])
    s.ok("Mailbox/query", filter={"role": "inbox"})
    assert asked == []
    assert s.ok("Mailbox/get", ids=None, properties=["totalThreads"])["list"][0]["totalThreads"] == 1
    assert asked


def test_creation_ids_in_parent_and_mailbox_ids():
    s = MailSession()
    s.deliver(message("one"))
    [emailId] = s.ok("Email/query")["ids"]
    answer = s.request(("Mailbox/set", {"create": {"top": {"name": "Clients"},
                                                   "sub": {"name": "Acme", "parentId": "#top"},
                                                   "bad": {"name": "X", "parentId": "#nope"}}}),
                       ("Email/set", {"update": {emailId: {"mailboxIds": {"#sub": True}}}}))
    [setBoxes, setEmails] = [args for _, args, _ in answer["methodResponses"]]
    top, sub = setBoxes["created"]["top"]["id"], setBoxes["created"]["sub"]["id"]
    assert setBoxes["notCreated"]["bad"]["type"] == "invalidProperties"
    assert setEmails["updated"] == {emailId: None}
    boxes = s.mailboxes()
    assert boxes["Acme"]["parentId"] == top and boxes["Acme"]["id"] == sub and boxes["Acme"]["totalEmails"] == 1


def test_a_filtered_query_reads_only_what_the_page_needs(monkeypatch):
    from mailnet.jmap import emailquery as email

    s = MailSession()
    for n in range(10):
        s.deliver(message(f"m{n}"), date=1000 + n)
    monkeypatch.setattr(email, "CHUNK", 2)
    asked = []
    original = s.account.emailSummaries
    monkeypatch.setattr(s.account, "emailSummaries", lambda ids: asked.append(len(list(ids))) or original(ids))
    page = s.ok("Email/query", filter={"notKeyword": "$seen"}, limit=3)
    assert len(page["ids"]) == 3 and sum(asked) == 4  # two chunks of two
    asked.clear()
    whole = s.ok("Email/query", filter={"notKeyword": "$seen"}, limit=3, calculateTotal=True)
    assert whole["ids"] == page["ids"] and whole["total"] == 10 and sum(asked) == 10

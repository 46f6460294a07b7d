"""
JMAP Quota (RFC 9425) in-process over a MemoryStore with a quota policy:
the capability, Quota/get, /changes (exact, from the state alone), /query
with filters and sorts, /queryChanges, and the overQuota helper for writes.
"""

from __future__ import annotations

import pytest

from mailnet.jmap.dispatch import CORE, Context, processRequest, runSync
from mailnet.jmap.errors import SetError
from mailnet.jmap.quota import QUOTA, checkQuota
from mailnet.jmap.request import Request
from mailnet.store.quota import QuotaPolicy
from tests.jmap.mailhelp import USER, MailSession, message


class QuotaSession(MailSession):
    def __init__(self, storage=10_000, messages=10):
        super().__init__()
        self.store.quotaPolicy = QuotaPolicy(storage=storage, messages=messages, warning=90, grace=0)

    def request(self, *calls):
        context = Context(USER, {self.jmapAccount.id: self.jmapAccount}, self.limits)
        methodCalls = []
        for n, (name, args) in enumerate(calls):
            args = dict(args)
            args.setdefault("accountId", self.jmapAccount.id)
            methodCalls.append([name, args, str(n)])
        return runSync(processRequest(self.registry, Request([CORE, QUOTA], methodCalls, None), context))


def test_capability_and_get():
    s = QuotaSession()
    assert QUOTA in s.registry.capabilities and s.jmapAccount.capabilities[QUOTA] == {}
    got = s.ok("Quota/get", ids=None)
    byId = {q["id"]: q for q in got["list"]}
    assert set(byId) == {"octets", "count"}
    octets = byId["octets"]
    assert octets["resourceType"] == "octets" and octets["scope"] == "account" and octets["types"] == ["Mail"]
    assert (octets["used"], octets["hardLimit"], octets["warnLimit"]) == (0, 10_000, 9000)
    data = message("one")
    s.deliver(data)
    got = s.ok("Quota/get", ids=["count", "octets", "nope"], properties=["used"])
    assert got["notFound"] == ["nope"]
    assert {q["id"]: q["used"] for q in got["list"]} == {"count": 1, "octets": len(data)}


def test_changes_exact_from_the_state():
    s = QuotaSession()
    state = s.ok("Quota/get", ids=None)["state"]
    assert s.ok("Quota/changes", sinceState=state)["updated"] == []
    s.deliver(message("one"))
    changes = s.ok("Quota/changes", sinceState=state)
    assert sorted(changes["updated"]) == ["count", "octets"] and changes["created"] == []
    assert changes["newState"] == s.ok("Quota/get", ids=[])["state"]
    # A new limit: the object is created; an old state from elsewhere cannot be calculated.
    s.store.quotaPolicy = QuotaPolicy(storage=10_000)
    changes = s.ok("Quota/changes", sinceState=changes["newState"])
    assert changes["destroyed"] == ["count"]
    assert s.error("Quota/changes", sinceState="garbage") == "cannotCalculateChanges"


def test_query_filters_sorts_and_query_changes():
    s = QuotaSession()
    assert s.ok("Quota/query")["ids"] == ["count", "octets"]  # by name: "Mail messages" < "Mail storage"
    assert s.ok("Quota/query", filter={"resourceType": "octets"})["ids"] == ["octets"]
    assert s.ok("Quota/query", filter={"type": "Mail", "scope": "account"}, calculateTotal=True)["total"] == 2
    assert s.ok("Quota/query", filter={"type": "Contact"})["ids"] == []
    assert s.error("Quota/query", filter={"colour": "red"}) == "unsupportedFilter"
    assert s.error("Quota/query", sort=[{"property": "hardLimit"}]) == "unsupportedSort"
    q = s.ok("Quota/query", sort=[{"property": "used", "isAscending": False}])
    s.store.quotaPolicy = QuotaPolicy(messages=10)
    changed = s.ok("Quota/queryChanges", sinceQueryState=q["queryState"], sort=[{"property": "used", "isAscending": False}])
    assert changed["removed"] == ["octets"] and changed["added"] == []


def test_over_quota_helper_for_email_writes():
    s = QuotaSession(storage=1000)
    runSync(checkQuota(s.account, 500))
    with pytest.raises(SetError) as e:
        runSync(checkQuota(s.account, 1500))
    assert e.value.type == "overQuota"
    # A store without quotas allows everything.
    runSync(checkQuota(object(), 10 ** 9))


def test_email_set_create_and_import_answer_over_quota():
    from mailnet.jmap.blobs import BlobLookup
    from mailnet.jmap.mailblobs import StoreBlobSource
    from tests.jmap.test_emailcreate import DraftSession, draft

    s = DraftSession()
    store = StoreBlobSource()
    store.remember(s.jmapAccount.id, s.account)
    s.services["blobs"] = BlobLookup([s.uploads, store])
    s.store.quotaPolicy = QuotaPolicy(storage=400, grace=0)
    s.uploads.add("Gbig", b"From: a@example.net\r\nSubject: big\r\n\r\n" + b"x" * 500 + b"\r\n")
    s.uploads.add("Gsmall", b"From: a@example.net\r\nSubject: small\r\n\r\nhi\r\n")
    inbox = s.mailboxes()["INBOX"]["id"]
    answer = s.ok("Email/import", emails={"a": {"blobId": "Gbig", "mailboxIds": {inbox: True}},
                                          "b": {"blobId": "Gsmall", "mailboxIds": {inbox: True}}})
    assert answer["notCreated"]["a"]["type"] == "overQuota" and "b" in answer["created"]
    made = s.ok("Email/set", create={"d": draft(s, bodyValues={"t": {"value": "y" * 600}})})
    assert made["notCreated"]["d"]["type"] == "overQuota"
    assert len(s.ok("Email/query")["ids"]) == 1

"""Hypothesis: arbitrary create records for Email/set, Email/import, Email/parse, Identity/set and
EmailSubmission/set get an answer or an RFC error, never serverFail (and never an exception)."""

import tempfile
import pathlib

from hypothesis import HealthCheck, given, settings, strategies as st

from tests.jmap.mailhelp import USER
from tests.jmap.test_submission import identityId, request, session

KEYS = ["mailboxIds", "keywords", "from", "to", "cc", "bcc", "sender", "replyTo", "subject", "sentAt", "messageId",
        "inReplyTo", "references", "textBody", "htmlBody", "attachments", "bodyStructure", "bodyValues", "partId",
        "blobId", "type", "charset", "name", "disposition", "cid", "language", "location", "subParts", "value",
        "email", "header:X-A:asText", "header:To:asAddresses", "header:Date:asDate", "header:X-B",
        "header:References:asMessageIds", "header:List-Post:asURLs", "header:X-C:all", "identityId", "emailId",
        "envelope", "mailFrom", "rcptTo", "parameters", "receivedAt", "isTruncated", "textSignature"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.text(max_size=12)
    | st.sampled_from([True, "t", "text/plain", "text/html", "multipart/mixed", "message/rfc822", "Gblob",
                       USER, "bob@example.net", "2026-01-01T00:00:00Z", "a@b", "inline", "attachment", "#d",
                       "é\r\nx", identityId(USER)]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(KEYS), children, max_size=5),
    max_leaves=14)

DIRECTORY = pathlib.Path(tempfile.mkdtemp())
S = session(DIRECTORY)
S.uploads.add("Gblob", b"From: a@b\r\nSubject: x\r\n\r\nbody\r\n", "message/rfc822")
DRAFTS = S.mailboxes()["Drafts"]["id"]


def valid():
    return {"mailboxIds": {DRAFTS: True}, "from": [{"email": USER}], "to": [{"email": "bob@example.net"}],
            "subject": "s", "textBody": [{"partId": "t"}], "bodyValues": {"t": {"value": "hi"}},
            "attachments": [{"blobId": "Gblob", "type": "message/rfc822"}]}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.dictionaries(st.sampled_from(KEYS), json_values, max_size=3), fromValid=st.booleans(),
       envelope=json_values)
def test_create_records_never_fail(changes, fromValid, envelope):
    record = dict(valid(), **changes) if fromValid else changes
    submission = {"identityId": identityId(USER), "emailId": "#d"}
    if not fromValid:
        submission.update(changes)
        submission["envelope"] = envelope
    calls = [("Email/set", {"create": {"d": record}}),
             ("Email/import", {"emails": {"i": record}}),
             ("Email/parse", {"blobIds": ["Gblob"], **{k: v for k, v in record.items() if k == "properties"}}),
             ("Identity/set", {"create": {"n": record}}),
             ("EmailSubmission/set", {"create": {"s": submission}})]
    for name, answer, _ in request(S, *calls):
        if name == "error":
            assert answer["type"] != "serverFail", (record, answer)
        for key in ("notCreated", "notUpdated"):
            for error in (answer.get(key) or {}).values():
                assert error["type"] != "serverFail"

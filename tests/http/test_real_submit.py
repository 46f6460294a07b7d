"""
Sending over JMAP on the real server (tests/harness.py): Email/set create
(drafts), Identity, EmailSubmission into SMTP's path, with real clients:
jmapc (through the TLS proxy it needs) and raw JSON; a second local user
reads the sent message over IMAP (imapclient); remote recipients get it
through the queue from an aiosmtpd peer (the smarthost); undo send; the
journey of issue 14 (SMTP in, JMAP reply, queue out, Sent over IMAP); a
created draft survives kill -9.
"""

import base64
import calendar
import email
import email.policy
import http.client
import json
import os
import smtplib
import time

import dkim
import pytest

from mailnet.jmap.core import accountIdFor
from tests.conftest import USERS
from tests.harness import MailServer
from tests.http.tlsproxy import TLSProxy
from tests.mailauth.helpers import txtOf
from tests.queue.e2e import Sink, waitFor

pytestmark = pytest.mark.slow

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
SUBMISSION = "urn:ietf:params:jmap:submission"
ALICE = ("alice@example.test", USERS["alice@example.test"])
BOB = ("bob@example.test", USERS["bob@example.test"])
HOLD = 2


@pytest.fixture(scope="module")
def sink():
    s = Sink().start()
    yield s
    s.stop()


def makeServer(directory, sink, **extra):
    config = {"auth": {"allow_plaintext": True},
              "relay": {"smarthost": f"127.0.0.1:{sink.port}", "smarthost_tls": "opportunistic",
                        "connect_timeout": 3},
              "queue": {"retry_initial": 1, "retry_max": 2, "delay_warning": 0},
              "jmap": {"submission_hold": HOLD},
              "limits": {"smtp_recipients": 5, "message_size": 300_000}}
    for section, values in extra.items():
        config.setdefault(section, {}).update(values)
    server = MailServer(directory, config=config)
    # A DKIM key for example.test: mail our users send is signed, by SMTP's path (docs/mailauth.md).
    server.dkimRecord = txtOf(server.mailnet("dkim", "keygen", "example.test", "--algorithm", "ed25519").stdout)
    server.start()
    for name, password in USERS.items():
        server.addUser(name, password)
    server.addAlias("sales@example.test", ALICE[0])
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory, sink):
    s = makeServer(tmp_path_factory.mktemp("jmapsubmit"), sink)
    yield s
    s.stop()


def api(server, *calls, user=ALICE):
    body = json.dumps({"using": [CORE, MAIL, SUBMISSION],
                       "methodCalls": [[name, dict(args, accountId=args.get("accountId", accountIdFor(user[0]))),
                                        str(n)] for n, (name, args) in enumerate(calls)]}).encode()
    connection = http.client.HTTPConnection("127.0.0.1", server.port("http"), timeout=60)
    auth = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
    connection.request("POST", "/jmap/api/", body, {"Content-Type": "application/json",
                                                    "Authorization": "Basic " + auth})
    response = connection.getresponse()
    data = json.loads(response.read())
    connection.close()
    assert response.status == 200, data
    return data["methodResponses"]


def one(server, name, **args):
    [[got, answer, _]] = api(server, (name, args))
    assert got == name, answer
    return answer


def upload(server, data, type="application/octet-stream"):
    connection = http.client.HTTPConnection("127.0.0.1", server.port("http"), timeout=60)
    auth = base64.b64encode(f"{ALICE[0]}:{ALICE[1]}".encode()).decode()
    connection.request("POST", f"/jmap/upload/{accountIdFor(ALICE[0])}/", data,
                       {"Content-Type": type, "Authorization": "Basic " + auth})
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()
    assert response.status == 201, answer
    return answer["blobId"]


def mailboxes(server):
    return {m["name"]: m["id"] for m in one(server, "Mailbox/get", ids=None, properties=["name"])["list"]}


def identity(server, address=ALICE[0]):
    return next(i["id"] for i in one(server, "Identity/get", ids=None)["list"] if i["email"] == address)


def draft(server, **extra):
    record = {"mailboxIds": {mailboxes(server)["Drafts"]: True}, "keywords": {"$draft": True, "$seen": True},
              "from": [{"name": "Alice", "email": ALICE[0]}], "to": [{"email": "carol@remote.test"}],
              "subject": "raw draft", "textBody": [{"partId": "t", "type": "text/plain"}],
              "bodyValues": {"t": {"value": "Hello.\n"}}}
    record.update(extra)
    return record


def imapFetch(server, user, folder, subject):
    """(flags, raw) of the message with this subject in the user's folder, or None."""
    from imapclient import IMAPClient

    with IMAPClient("127.0.0.1", port=server.port("imap"), ssl=False, timeout=30) as client:
        client.login(*user)
        client.select_folder(folder, readonly=True)
        uids = client.search(["SUBJECT", subject])
        if not uids:
            return None
        data = client.fetch(uids[-1:], ["FLAGS", "RFC822"])[uids[-1]]
        return data[b"FLAGS"], data[b"RFC822"]


def sinkMessages(sink, subject):
    return [m for m in list(sink.handler.messages) if m["message"]["Subject"] == subject]


def test_jmapc_draft_with_attachment_sent_read_by_bob_over_imap_and_by_the_peer(server, sink):
    jmapc = pytest.importorskip("jmapc", reason="jmapc is in the test extra (pyproject.toml)")
    from jmapc import Email, EmailAddress, EmailBodyPart, EmailBodyValue, EmailSubmission
    from jmapc.methods import EmailSet, EmailSubmissionSet, IdentityGet

    proxy = TLSProxy(server.port("http"), server.certFile, os.path.join(server.dataDir, "tls", "key.pem"))
    try:
        client = jmapc.Client.create_with_password(f"localhost:{proxy.port}", *ALICE)
        client.requests_session.trust_env = False
        client.requests_session.verify = os.path.join(server.dataDir, "tls", "dev-ca.pem")
        payload = os.urandom(3000) + b"\r\n\x00 end"
        path = os.path.join(server.directory, "report.bin")
        with open(path, "wb") as f:
            f.write(payload)
        blob = client.upload_blob(path)
        identities = client.request(IdentityGet(ids=None)).data
        mine = next(i for i in identities if i.email == ALICE[0])
        boxes = mailboxes(server)
        made = client.request(EmailSet(create={"d": Email(
            mailbox_ids={boxes["Drafts"]: True}, keywords={"$draft": True},
            mail_from=[EmailAddress(name="Alice Äpfel", email=ALICE[0])],
            to=[EmailAddress(name="Bob", email=BOB[0])], cc=[EmailAddress(email="carol@remote.test")],
            bcc=[EmailAddress(email="dave@remote.test")],
            subject="Quarterly report — Grüße", in_reply_to=["orig.1@remote.test"],
            references=["root.0@remote.test", "orig.1@remote.test"],
            body_values={"t": EmailBodyValue(value="Hi Bob,\nthe report is attached.\n")},
            text_body=[EmailBodyPart(part_id="t", type="text/plain")],
            attachments=[EmailBodyPart(blob_id=blob.id, type="application/octet-stream", name="report.bin")])}))
        emailId = made.created["d"].id
        assert made.created["d"].size > len(payload)
        responses = client.request([
            EmailSubmissionSet(create={"s": EmailSubmission(identity_id=mine.id, email_id=emailId)},
                               on_success_update_email={"#s": {f"mailboxIds/{boxes['Drafts']}": None,
                                                               f"mailboxIds/{boxes['Sent']}": True,
                                                               "keywords/$draft": None,
                                                               "keywords/$seen": True}})],
            raise_errors=True)
        submission = responses[0].response.created["s"]
        assert submission.undo_status.value == "pending"
    finally:
        proxy.close()
    # Bob (local) reads it over IMAP: the attachment byte for byte, the headers right, no Bcc.
    got = waitFor(lambda: imapFetch(server, BOB, "INBOX", "Quarterly report"), timeout=30, what="bob's copy")
    message = email.message_from_bytes(got[1], policy=email.policy.default)
    assert message["Bcc"] is None and b"dave@remote.test" not in got[1]
    assert message["Message-ID"].startswith("<") and message["Date"]
    assert message["From"].addresses[0].display_name == "Alice Äpfel"
    assert message["Subject"] == "Quarterly report — Grüße"
    assert message["In-Reply-To"] == "<orig.1@remote.test>"
    assert message["References"].split() == ["<root.0@remote.test>", "<orig.1@remote.test>"]
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == "report.bin" and attachment.get_content() == payload
    assert message.get_body(("plain",)).get_content().replace("\r\n", "\n") == "Hi Bob,\nthe report is attached.\n"
    # The peer (smarthost) gets it for carol and dave (Bcc) in the envelope, without Bcc in the bytes.
    [remote] = waitFor(lambda: sinkMessages(sink, "Quarterly report — Grüße"), timeout=40, what="the peer's copy")
    assert sorted(remote["rcpts"]) == ["carol@remote.test", "dave@remote.test"]
    assert remote["sender"] == ALICE[0] and remote["message"]["Bcc"] is None
    assert remote["message"]["Message-ID"] == message["Message-ID"]
    # Signed once, as SMTP submission signs (the local copy and the relayed one carry the same signature).
    assert "d=example.test" in remote["message"]["DKIM-Signature"] and message["DKIM-Signature"]
    name, record = server.dkimRecord
    assert dkim.verify(remote["data"], dnsfunc=lambda asked, timeout=5: record.encode()
                       if asked.decode().rstrip(".") == name else None)
    assert remote["message"].get_all("Received")[-1].startswith("from jmap")
    # Alice's copy is in Sent, seen, no longer a draft (onSuccessUpdateEmail).
    flags, raw = imapFetch(server, ALICE, "Sent", "Quarterly report")
    assert b"\\Seen" in flags and b"\\Draft" not in flags
    assert b"\r\nBcc: dave@remote.test\r\n" in raw  # the stored copy keeps Bcc
    assert imapFetch(server, ALICE, "Drafts", "Quarterly report") is None
    final = waitFor(lambda: [s for s in one(server, "EmailSubmission/get", ids=[submission.id])["list"]
                             if s["undoStatus"] == "final"], timeout=30, what="final")
    assert final[0]["deliveryStatus"][BOB[0]]["delivered"] == "yes"
    assert final[0]["deliveryStatus"]["carol@remote.test"]["delivered"] == "queued"


def test_undo_within_the_hold_is_never_delivered(server, sink):
    me = identity(server)
    canceled = one(server, "Email/set", create={"a": draft(server, subject="undo me")})["created"]["a"]["id"]
    kept = one(server, "Email/set", create={"b": draft(server, subject="keep me")})["created"]["b"]["id"]
    # Created and canceled in one request: certainly within the hold, however loaded the machine is.
    answers = api(server, ("EmailSubmission/set", {"create": {"u": {"identityId": me, "emailId": canceled}}}),
                  ("EmailSubmission/set", {"update": {"#u": {"undoStatus": "canceled"}}}))
    submitted = answers[0][1]["created"]["u"]["id"]
    assert answers[1][1]["updated"] == {submitted: None}
    later = one(server, "EmailSubmission/set", create={"k": {"identityId": me, "emailId": kept}})["created"]["k"]
    assert later["undoStatus"] == "pending"
    waitFor(lambda: sinkMessages(sink, "keep me"), timeout=40, what="the kept message")
    # The canceled one was due first; the later one arrived, so the canceled one is not coming.
    assert sinkMessages(sink, "undo me") == []
    got = {s["id"]: s["undoStatus"] for s in one(server, "EmailSubmission/get", ids=None)["list"]}
    assert got[submitted] == "canceled"
    assert waitFor(lambda: one(server, "EmailSubmission/get", ids=[later["id"]])["list"][0]["undoStatus"] == "final")
    late = one(server, "EmailSubmission/set", update={later["id"]: {"undoStatus": "canceled"}})
    assert late["notUpdated"][later["id"]]["type"] == "cannotUnsend"


def test_errors_over_http(server):
    me = identity(server)
    big = upload(server, os.urandom(310_000))
    answer = one(server, "Email/set", create={
        "noBox": {k: v for k, v in draft(server).items() if k != "mailboxIds"},
        "server": draft(server, size=10),
        "blob": draft(server, attachments=[{"blobId": "Gnosuchblob"}]),
        "big": draft(server, attachments=[{"blobId": big}]),
    })
    assert {k: v["type"] for k, v in answer["notCreated"].items()} == {
        "noBox": "invalidProperties", "server": "invalidProperties", "blob": "blobNotFound", "big": "tooLarge"}
    assert answer["notCreated"]["noBox"]["properties"] == ["mailboxIds"]
    assert answer["notCreated"]["blob"]["notFound"] == ["Gnosuchblob"]

    def email(**extra):
        return one(server, "Email/set", create={"e": draft(server, **extra)})["created"]["e"]["id"]

    # Refused by the delivery itself (SMTP's loop check: over 100 Received fields): after the hold, the
    # deliveryStatus says so.
    loop = email(**{"header:Received:all": [" from x by y; Thu, 3 Dec 2026 10:00:00 +0000"] * 101})
    refused = one(server, "EmailSubmission/set", create={"l": {"identityId": me, "emailId": loop}})["created"]["l"]
    status = waitFor(lambda: one(server, "EmailSubmission/get", ids=[refused["id"]])["list"][0]["deliveryStatus"],
                     timeout=30, what="the refusal")
    assert status["carol@remote.test"]["delivered"] == "no"
    assert status["carol@remote.test"]["smtpReply"].startswith("554 5.4.6")
    records = {
        "forbiddenFrom": {"identityId": me, "emailId": email(**{"from": [{"email": BOB[0]}]})},
        "forbiddenMailFrom": {"identityId": me, "emailId": email(), "envelope": {
            "mailFrom": {"email": BOB[0]}, "rcptTo": [{"email": "carol@remote.test"}]}},
        "invalidEmail": {"identityId": me, "emailId": email(**{"from": None})},
        "noRecipients": {"identityId": me, "emailId": email(to=None)},
        "tooManyRecipients": {"identityId": me, "emailId": email(
            to=[{"email": f"r{i}@remote.test"} for i in range(6)])},
        "invalidRecipients": {"identityId": me, "emailId": email(to=[{"email": "nobody@example.test"}])},
        "identity": {"identityId": "Inosuch", "emailId": email()},
    }
    answer = one(server, "EmailSubmission/set", create=records)
    assert {k: v["type"] for k, v in answer["notCreated"].items()} == dict(
        {k: k for k in records if k != "identity"}, identity="invalidProperties")
    assert answer["notCreated"]["invalidRecipients"]["invalidRecipients"] == ["nobody@example.test"]
    # Identity/set: an address alice may not send as.
    answer = one(server, "Identity/set", create={"x": {"email": BOB[0]}})
    assert answer["notCreated"]["x"]["type"] == "forbiddenFrom"
    # The session advertises the capability.
    connection = http.client.HTTPConnection("127.0.0.1", server.port("http"), timeout=30)
    auth = base64.b64encode(f"{ALICE[0]}:{ALICE[1]}".encode()).decode()
    connection.request("GET", "/.well-known/jmap", headers={"Authorization": "Basic " + auth})
    session = json.loads(connection.getresponse().read())
    connection.close()
    value = session["accounts"][accountIdFor(ALICE[0])]["accountCapabilities"][SUBMISSION]
    # [jmap] max_delayed_send (default a week): delayed send with FUTURERELEASE (RFC 4865 s3: the
    # longest interval, and the latest date-time, counted from the start of the day).
    week = 7 * 86400
    assert value["maxDelayedSend"] == week
    interval, latest = value["submissionExtensions"]["FUTURERELEASE"]
    latest = calendar.timegm(time.strptime(latest, "%Y-%m-%dT%H:%M:%SZ"))
    assert interval == str(week) and time.time() + week - 86400 - 60 <= latest <= time.time() + week
    assert session["primaryAccounts"][SUBMISSION] == accountIdFor(ALICE[0])


def test_identity_fields_persist_across_a_restart(tmp_path, sink):
    server = makeServer(tmp_path / "identity", sink)
    try:
        me = identity(server)
        assert {i["email"] for i in one(server, "Identity/get", ids=None)["list"]} == {ALICE[0],
                                                                                      "sales@example.test"}
        assert one(server, "Identity/set", update={me: {"name": "Alice A.", "textSignature": "-- \nA."}})[
            "updated"] == {me: None}
        server.kill()
        server.start()
        mine = one(server, "Identity/get", ids=[me])["list"][0]
        assert (mine["name"], mine["textSignature"]) == ("Alice A.", "-- \nA.")
    finally:
        server.stop()


def test_forbidden_to_send_without_a_hold(tmp_path, sink):
    server = makeServer(tmp_path / "nohold", sink, jmap={"submission_hold": 0})
    try:
        loop = one(server, "Email/set", create={"e": draft(server, **{
            "header:Received:all": [" from x by y; Thu, 3 Dec 2026 10:00:00 +0000"] * 101})})["created"]["e"]["id"]
        answer = one(server, "EmailSubmission/set", create={"l": {"identityId": identity(server), "emailId": loop}})
        assert answer["notCreated"]["l"]["type"] == "forbiddenToSend"
        made = one(server, "Email/set", create={"e": draft(server, to=[{"email": BOB[0]}], subject="at once")})
        sent = one(server, "EmailSubmission/set", create={"s": {"identityId": identity(server),
                                                                "emailId": made["created"]["e"]["id"]}})
        assert sent["created"]["s"]["undoStatus"] == "final"
        assert imapFetch(server, BOB, "INBOX", "at once") is not None  # stored before the answer
    finally:
        server.stop()


def test_created_draft_survives_kill_9(tmp_path, sink):
    server = makeServer(tmp_path / "crash", sink)
    try:
        made = one(server, "Email/set", create={"d": draft(server, subject="durable draft")})["created"]["d"]
        server.kill()  # SIGKILL right after the answer
        server.start()
        got = one(server, "Email/get", ids=[made["id"]], properties=["subject", "size", "keywords"])["list"]
        assert got == [{"id": made["id"], "subject": "durable draft", "size": made["size"],
                        "keywords": {"$draft": True, "$seen": True}}]
        flags, raw = imapFetch(server, ALICE, "Drafts", "durable draft")
        assert b"\\Draft" in flags and len(raw) == made["size"]
    finally:
        server.stop()


def test_journey_smtp_in_jmap_reply_queue_out_sent_over_imap(server, sink):
    """Issue 14: mail arrives by SMTP, is read and answered over JMAP, the answer reaches the peer."""
    original = (f"From: Carol <carol@remote.test>\r\nTo: {ALICE[0]}\r\nSubject: Lunch?\r\n"
                f"Message-ID: <lunch.{time.time_ns()}@remote.test>\r\nReferences: <plan.1@remote.test>\r\n"
                f"Date: Thu, 03 Dec 2026 11:00:00 +0000\r\n\r\nLunch on Friday?\r\n")
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as smtp:
        smtp.sendmail("carol@remote.test", [ALICE[0]], original.encode())
    found = waitFor(lambda: one(server, "Email/query", filter={"subject": "Lunch?"})["ids"], timeout=20)
    [mail] = one(server, "Email/get", ids=found[:1], properties=["messageId", "references", "from", "subject",
                                                                 "bodyValues", "textBody"],
                 fetchTextBodyValues=True)["list"]
    assert mail["bodyValues"][mail["textBody"][0]["partId"]]["value"] == "Lunch on Friday?\n"
    boxes = mailboxes(server)
    reply = draft(server, to=mail["from"], subject="Re: " + mail["subject"], inReplyTo=mail["messageId"],
                  references=mail["references"] + mail["messageId"],
                  bodyValues={"t": {"value": "Yes, at noon.\n"}})
    answers = api(server,
                  ("Email/set", {"create": {"r": reply}}),
                  ("EmailSubmission/set", {
                      "create": {"s": {"identityId": identity(server), "emailId": "#r"}},
                      "onSuccessUpdateEmail": {"#s": {f"mailboxIds/{boxes['Drafts']}": None,
                                                      f"mailboxIds/{boxes['Sent']}": True,
                                                      "keywords/$draft": None}}}),
                  ("Email/set", {"update": {mail["id"]: {"keywords/$answered": True}}}))
    assert [a[0] for a in answers] == ["Email/set", "EmailSubmission/set", "Email/set", "Email/set"]
    [remote] = waitFor(lambda: sinkMessages(sink, "Re: Lunch?"), timeout=40, what="the reply at the peer")
    assert remote["rcpts"] == ["carol@remote.test"]
    assert remote["message"]["In-Reply-To"] == "<" + mail["messageId"][0] + ">"
    assert remote["message"]["References"].split() == ["<plan.1@remote.test>", "<" + mail["messageId"][0] + ">"]
    assert remote["message"].get_body(("plain",)).get_content().replace("\r\n", "\n") == "Yes, at noon.\n"
    flags, raw = imapFetch(server, ALICE, "Sent", "Re: Lunch?")
    assert b"In-Reply-To: <" + mail["messageId"][0].encode() + b">" in raw and b"\\Draft" not in flags
    flags, _ = imapFetch(server, ALICE, "INBOX", "Lunch?")
    assert b"\\Answered" in flags


def test_import_parse_and_download_a_part_of_an_attached_message(server):
    inner = (b"From: Dave <dave@remote.test>\r\nTo: carol@remote.test\r\nSubject: the original\r\n"
             b"Message-ID: <orig.9@remote.test>\r\nMIME-Version: 1.0\r\n"
             b"Content-Type: multipart/mixed; boundary=I\r\n\r\n--I\r\nContent-Type: text/plain\r\n\r\nInner.\r\n"
             b"--I\r\nContent-Type: application/octet-stream; name=d.bin\r\nContent-Transfer-Encoding: base64\r\n"
             b"Content-Disposition: attachment; filename=d.bin\r\n\r\nAAECAwQF\r\n--I--\r\n")
    outer = (b"From: Carol <carol@remote.test>\r\nTo: alice@example.test\r\nSubject: Fwd: imported\r\n"
             b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=O\r\n\r\n--O\r\n"
             b"Content-Type: text/plain\r\n\r\nSee below.\r\n--O\r\nContent-Type: message/rfc822\r\n\r\n" + inner +
             b"--O--\r\n")
    blobId = upload(server, outer, "message/rfc822")
    answer = one(server, "Email/import", emails={"i": {"blobId": blobId, "mailboxIds": {mailboxes(server)["Archive"]:
                                                                                          True},
                                                      "keywords": {"$seen": True}}})
    emailId = answer["created"]["i"]["id"]
    flags, raw = imapFetch(server, ALICE, "Archive", "Fwd: imported")
    assert raw == outer and b"\\Seen" in flags
    [attached] = one(server, "Email/get", ids=[emailId], properties=["attachments"])["list"][0]["attachments"]
    parsed = one(server, "Email/parse", blobIds=[attached["blobId"]])["parsed"][attached["blobId"]]
    assert parsed["subject"] == "the original" and parsed["messageId"] == ["orig.9@remote.test"]
    part = parsed["attachments"][0]["blobId"]
    connection = http.client.HTTPConnection("127.0.0.1", server.port("http"), timeout=30)
    auth = base64.b64encode(f"{ALICE[0]}:{ALICE[1]}".encode()).decode()
    connection.request("GET", f"/jmap/download/{accountIdFor(ALICE[0])}/{part}/d.bin?type=application/octet-stream",
                       headers={"Authorization": "Basic " + auth})
    response = connection.getresponse()
    assert response.status == 200 and response.read() == bytes(range(6))
    connection.close()
    copy = api(server, ("Email/copy", {"fromAccountId": accountIdFor(ALICE[0]), "create": {"c": {"id": emailId}}}))
    assert copy[0][:2] == ["error", {"type": "invalidArguments", "description": copy[0][1]["description"]}]


def test_held_submissions_survive_kill_9_and_a_canceled_one_stays_canceled(tmp_path, sink):
    server = makeServer(tmp_path / "heldcrash", sink, jmap={"submission_hold": 3})
    try:
        me = identity(server)
        kept = one(server, "Email/set", create={"k": draft(server, subject="held across a crash")})["created"]["k"]
        gone = one(server, "Email/set", create={"g": draft(server, subject="canceled before a crash")})["created"]
        answers = api(server, ("EmailSubmission/set", {"create": {
                          "k": {"identityId": me, "emailId": kept["id"]},
                          "g": {"identityId": me, "emailId": gone["g"]["id"]}}}),
                      ("EmailSubmission/set", {"update": {"#g": {"undoStatus": "canceled"}}}))
        keptId = answers[0][1]["created"]["k"]["id"]
        server.kill()  # SIGKILL within the hold
        assert sinkMessages(sink, "held across a crash") == []
        server.start()
        # Restored and sent when due (already past after the restart).
        waitFor(lambda: sinkMessages(sink, "held across a crash"), timeout=40, what="the held message")
        assert waitFor(lambda: one(server, "EmailSubmission/get", ids=[keptId])["list"][0]["undoStatus"] == "final",
                       timeout=20)
        # The one canceled before the crash is not sent: the next message sent arrives, it does not.
        later = one(server, "Email/set", create={"l": draft(server, subject="after the crash")})["created"]["l"]
        one(server, "EmailSubmission/set", create={"l": {"identityId": me, "emailId": later["id"]}})
        waitFor(lambda: sinkMessages(sink, "after the crash"), timeout=40, what="the later message")
        assert sinkMessages(sink, "canceled before a crash") == []
        assert len(sinkMessages(sink, "held across a crash")) == 1
        assert os.listdir(os.path.join(server.dataDir, "jmap", "outbox")) == []
    finally:
        server.stop()


def test_delayed_send_survives_kill_9_and_is_sent_once_at_its_time(tmp_path, sink):
    # RFC 8621 s7 sendAt with FUTURERELEASE's HOLDFOR, sent by jmaplib (which checks the hold against the
    # advertised maxDelayedSend): pending, durable across kill -9, sent once when due.
    pytest.importorskip("jmap", reason="jmaplib is in the test extra (pyproject.toml)")
    import ssl

    import httpx
    from jmap.client import JMAPClient
    from jmap.core.errors import JMAPError

    server = makeServer(tmp_path / "delayed", sink, jmap={"max_delayed_send": 3600})
    proxy = TLSProxy(server.port("http"), server.certFile, os.path.join(server.dataDir, "tls", "key.pem"))
    verify = ssl.create_default_context(cafile=os.path.join(server.dataDir, "tls", "dev-ca.pem"))
    client = JMAPClient.connect(f"https://localhost:{proxy.port}/.well-known/jmap", auth=httpx.BasicAuth(*ALICE),
                                http=httpx.Client(verify=verify, timeout=30))
    try:
        me = identity(server)
        emailId = one(server, "Email/set", create={"e": draft(server, subject="see you later")})["created"]["e"]["id"]

        def submission(hold):
            return {"identityId": me, "emailId": emailId,
                    "envelope": {"mailFrom": {"email": ALICE[0], "parameters": {"HOLDFOR": hold}},
                                 "rcptTo": [{"email": "carol@remote.test", "parameters": None}]}}

        # jmaplib read maxDelayedSend from the session and refuses a longer hold itself.
        with pytest.raises(JMAPError):
            with client.batch() as batch:
                batch.submission.email_submission.set(create={"t": submission("3601")})
        before = time.time()
        with client.batch() as batch:
            handle = batch.submission.email_submission.set(create={"s": submission("8")})
        created = handle.result.created["s"]
        created = created if isinstance(created, dict) else created.model_dump(by_alias=True, mode="json")
        assert created["undoStatus"] == "pending"
        sendAt = calendar.timegm(time.strptime(created["sendAt"], "%Y-%m-%dT%H:%M:%SZ"))
        assert before + 7 <= sendAt <= time.time() + 9
        # The server refuses it too, for a client that does not check.
        too = one(server, "EmailSubmission/set", create={"t": submission("3601")})
        assert too["notCreated"]["t"]["type"] == "invalidProperties"
        server.kill()
        server.start()
        got = one(server, "EmailSubmission/get", ids=[created["id"]])["list"][0]
        assert got["sendAt"] == created["sendAt"]
        waitFor(lambda: sinkMessages(sink, "see you later"), timeout=60, what="the delayed message")
        waitFor(lambda: one(server, "EmailSubmission/get", ids=[created["id"]])["list"][0]["undoStatus"] == "final",
                timeout=30, what="final")
        assert len(sinkMessages(sink, "see you later")) == 1
    finally:
        client.close()
        proxy.close()
        server.stop()

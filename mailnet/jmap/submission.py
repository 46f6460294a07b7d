"""
RFC 8621 s7: EmailSubmission, sending an Email.  Pure: the message is read
from the store through the call's account, the addresses are checked by
the submission rules (:class:`~mailnet.jmap.identity.SendRules`, the same
as SMTP's), and the bytes go to ``send`` given by the server
(``services["outbox"]``, an :class:`Outbox`): the SMTP submission path into
the store and the outbound queue (mailnet/queue/submit.py), so DKIM
signing, local delivery and relaying are SMTP's.

Undo send: a submission waits ``hold`` seconds (``[jmap] submission_hold``)
with ``undoStatus`` ``pending``; an update to ``canceled`` in that time
stops it; then it is sent and ``final``.  The bytes to send are read when
the submission is created (Bcc removed), so moving or destroying the Email
(``onSuccessUpdateEmail``/``onSuccessDestroyEmail``, applied at once as
the RFC asks) does not change what is sent.  A held submission is written
to a journal (:class:`IOutboxJournal`, durable) before the /set answers, and
taken out once it is sent or canceled; at start the server restores what
the journal holds, so a restart or crash during the hold loses nothing
(a crash just after the send may send it twice, like SMTP).

Delayed send (RFC 8621 s7, FUTURERELEASE of RFC 4865): the envelope's
``mailFrom`` may carry ``HOLDFOR`` (seconds) or ``HOLDUNTIL`` (an RFC 3339
date-time) when ``maxDelayedSend`` (``[jmap] max_delayed_send``) is above
0; the submission is then held the same way, with ``sendAt`` the release
time, ``pending`` (cancelable) until then, at most ``maxDelayedSend``
seconds ahead.  The parameters are not passed on: mailnet releases the
message itself, then it goes as any other.  Final
submissions are kept in memory for ``keep`` seconds; a restart forgets
those.
"""

from __future__ import annotations

import dataclasses
import secrets
import time

from zope.interface import Interface

from mailnet.jmap import email as emailType
from mailnet.jmap import mailstore, standard
from mailnet.jmap.dispatch import Call
from mailnet.jmap.errors import MethodError, ServerUnavailable, SetError
from mailnet.jmap.identity import SUBMISSION, Identities
from mailnet.jmap.mailbox import MAIL, checkFilter, evaluate
from mailnet.mail import compose
from mailnet.mail.summary import addresses as parseAddresses
from mailnet.logs import Logger

log = Logger()

PROPERTIES = ("id", "identityId", "emailId", "threadId", "envelope", "sendAt", "undoStatus", "deliveryStatus",
              "dsnBlobIds", "mdnBlobIds")
FILTERS = {"identityIds", "emailIds", "threadIds", "undoStatus", "before", "after"}
CHANGES_KEPT = 1000
MAX_PENDING = 100  # submissions one user may have waiting (each holds its message in memory)
MAX_KEPT = 1000  # submissions kept per user; the oldest final ones go first


def utcDate(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(seconds)))


@dataclasses.dataclass
class Outcome:
    """What ``send`` reports: the SMTP-style reply, and which recipients were local."""

    code: int
    text: str
    local: tuple = ()

    @property
    def ok(self):
        return 200 <= self.code < 300


class IOutboxJournal(Interface):
    """Where held submissions wait durably (the server's: mailnet/http/userdata.py ``OutboxJournal``)."""

    def save(submissionId, entry, data):
        """
        Keep ``entry`` (a JSON-able dict) and the message ``data`` under
        ``submissionId``; a Deferred firing once both are on stable storage.
        """

    def remove(submissionId):
        """Forget one (a Deferred); unknown ids are ignored."""

    def load():
        """A Deferred firing with ``[(entry, data)]``: what was saved and not removed."""


@dataclasses.dataclass
class Pending:
    record: dict
    mailFrom: str
    rcptTo: list
    data: bytes
    timer: object = None
    peer: str | None = None  # the client's address, for the Received field (None: the sender's default)


class Outbox:
    """
    The submissions of every user of one server (in memory) and their
    hold.

    @param send: ``send(username, mailFrom, rcptTo, data)`` -> (a Deferred
        of) an :class:`Outcome`; the server's goes through SMTP's path.
        Given ``peer=`` too (the client's address) when the request had one.
    @param clock: ``callLater``/``seconds`` (the reactor).
    @param hold: seconds a submission stays ``pending`` (undo send).
    @param maxRecipients: RCPTs of one submission (``[limits] smtp_recipients``).
    @param messageSize: largest message (``[limits] message_size``).
    @param resolve: ``resolve(address)`` -> Resolution or None (an unknown local
        address), ``Directory.resolve``; None: every address goes.
    @param keep: seconds a final submission stays visible.
    """

    def __init__(self, send, clock, hold=5.0, maxRecipients=100, messageSize=35_000_000, resolve=None,
                 keep=86400, runner=None, journal=None, maxDelayedSend=0):
        self.send = send
        self.clock = clock
        self.hold = hold
        self.maxRecipients = maxRecipients
        self.messageSize = messageSize
        self.resolve = resolve
        self.keep = keep
        self.users = {}  # username -> {"counter", "records": {id: Pending}, "changes": [[n, id, kind]]}
        # How a held submission's send is run (a Deferred-aware runner: ensureDeferred).
        self.runner = runner
        self.journal = journal  # IOutboxJournal, or None (held submissions in memory only)
        self.maxDelayedSend = maxDelayedSend  # seconds a FUTURERELEASE may hold a submission (0: none)

    def user(self, username):
        return self.users.setdefault(username.lower(), {"counter": 0, "records": {}, "changes": []})

    def changed(self, username, i, kind):
        u = self.user(username)
        u["counter"] += 1
        u["changes"] = (u["changes"] + [[u["counter"], i, kind]])[-CHANGES_KEPT:]

    def expire(self, username):
        u = self.user(username)
        now = self.clock.seconds()
        final = [(p.record.get("_finalAt", now), i) for i, p in u["records"].items()
                 if p.record["undoStatus"] != "pending"]
        final.sort()
        excess = len(u["records"]) - MAX_KEPT
        for n, (finalAt, i) in enumerate(final):
            if finalAt + self.keep < now or n < excess:
                del u["records"][i]
                self.changed(username, i, "destroyed")

    def pending(self, username) -> int:
        return sum(1 for p in self.user(username)["records"].values() if p.record["undoStatus"] == "pending")

    async def sendNow(self, username, pending):
        """Send one submission; its record becomes final with the delivery status."""
        # Final from now on: the message is on its way, a cancel now is cannotUnsend.
        pending.record["undoStatus"] = "final"
        try:
            extra = {"peer": pending.peer} if pending.peer else {}
            outcome = self.send(username, pending.mailFrom, pending.rcptTo, pending.data, **extra)
            if hasattr(outcome, "__await__") or hasattr(outcome, "addCallback"):
                outcome = await outcome
        except Exception as e:  # a store or spool failure: reported in deliveryStatus
            outcome = Outcome(451, f"4.3.0 {type(e).__name__}")
        record = pending.record
        reply = f"{outcome.code} {outcome.text}"
        local = {a.lower() for a in outcome.local}
        record["deliveryStatus"] = {
            r: {"smtpReply": reply,
                "delivered": ("yes" if r.lower() in local else "queued") if outcome.ok else "no",
                "displayed": "unknown"}
            for r in pending.rcptTo}
        record["undoStatus"] = "final"
        record["_finalAt"] = self.clock.seconds()
        pending.data = b""
        self.changed(username, record["id"], "updated")
        self._forget(record["id"])  # after the outcome: the copies are durable (or refused)
        return outcome

    async def hold_(self, username, pending, delay=None):
        """Keep a new submission ``delay`` seconds (default ``hold``): in the journal first (durable), then a timer."""
        delay = self.hold if delay is None else delay
        if self.journal is not None:
            entry = {"username": username, "mailFrom": pending.mailFrom, "rcptTo": pending.rcptTo,
                     "peer": pending.peer,
                     "due": self.clock.seconds() + delay, "record": _public(pending.record)}
            try:
                await _await(self.journal.save(pending.record["id"], entry, pending.data))
            except Exception as e:
                log.error("jmap: a held submission could not be saved: {why}", why=str(e)[:200])
                raise ServerUnavailable("the outbox cannot be written") from None
        self.schedule(username, pending, delay)

    def schedule(self, username, pending, delay):
        def due():
            pending.timer = None
            if pending.record["undoStatus"] == "pending":
                self.runner(self.sendNow(username, pending))

        pending.timer = self.clock.callLater(max(0, delay), due)

    def restore(self, entries):
        """What the journal held at start (``[(entry, data)]``): pending again, sent when due."""
        now = self.clock.seconds()
        for entry, data in entries:
            username, record = entry["username"], dict(entry["record"])
            pending = Pending(record, entry["mailFrom"], list(entry["rcptTo"]), data, peer=entry.get("peer"))
            self.user(username)["records"][record["id"]] = pending
            self.changed(username, record["id"], "created")
            self.schedule(username, pending, entry["due"] - now)
        return len(entries)

    def _forget(self, submissionId):
        """Take a submission out of the journal; returns what to await (None without a journal)."""
        if self.journal is None:
            return None
        d = self.journal.remove(submissionId)
        if hasattr(d, "addErrback"):
            d.addErrback(lambda f: log.error("jmap: a submission could not be taken out of the outbox "
                                             "journal: {why}", why=str(f.value)[:200]))
        return d

    def cancel(self, username, pending):
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        pending.timer = None
        pending.data = b""
        pending.record["undoStatus"] = "canceled"
        pending.record["_finalAt"] = self.clock.seconds()
        return self._forget(pending.record["id"])


async def _await(value):
    if hasattr(value, "__await__") or hasattr(value, "addCallback"):
        return await value
    return value


def _public(record):
    return {k: v for k, v in record.items() if not k.startswith("_")}


class Submissions:
    """The EmailSubmission data type of one call."""

    name = "EmailSubmission"
    properties = PROPERTIES
    defaultProperties = PROPERTIES
    # /queryChanges is always cannotCalculateChanges (queryAt keeps no old results), so /query says so
    # (RFC 8620 s5.5 canCalculateChanges).
    canCalculateQueryChanges = False

    def __init__(self, call):
        self.call = call
        self.username = call.context.username
        self.outbox = call.context.services.get("outbox")
        if self.outbox is None:
            raise MethodError("forbidden", "sending is not set up on this server")
        self.identities = Identities(call)
        self.rules = self.identities.rules

    def _user(self):
        self.outbox.expire(self.username)
        return self.outbox.user(self.username)

    def state(self, account):
        return str(self._user()["counter"])

    def allIds(self, account):
        return list(self._user()["records"])

    def read(self, account, ids):
        records = self._user()["records"]
        return {i: _public(records[i].record) for i in ids if i in records}

    def changes(self, account, sinceState, maxChanges):
        u = self._user()
        if not sinceState.isdigit():
            raise MethodError("cannotCalculateChanges")
        created, updated, destroyed, upTo = standard.changesFromLog(u["changes"], int(sinceState), u["counter"],
                                                                    maxChanges)
        # RFC 8620 s5.2: cut by maxChanges, newState is the intermediate state reached.
        return standard.Changes(sinceState, str(upTo), upTo < u["counter"], created, updated, destroyed)

    def query(self, account, filter, sort):
        checkFilter(filter, FILTERS)
        records = [p.record for p in self._user()["records"].values()]

        def matches(r, condition):
            for key, value in condition.items():
                if key in ("identityIds", "emailIds", "threadIds"):
                    if not isinstance(value, list):
                        raise MethodError("invalidArguments", f"{key} must be an array of ids")
                    if r[key[:-1]] not in value:
                        return False
                elif key == "undoStatus":
                    if r["undoStatus"] != value:
                        return False
                elif key in ("before", "after"):
                    if not isinstance(value, str):
                        raise MethodError("invalidArguments", f"{key} must be a UTCDate")
                    if (r["sendAt"] < value) != (key == "before"):
                        return False
            return True

        found = [r for r in records if evaluate(filter, lambda c, r=r: matches(r, c))]
        keys = {"emailId": "emailId", "threadId": "threadId", "sentAt": "sendAt"}
        for comparator in reversed(sort or [{"property": "sentAt"}]):
            prop = comparator["property"]
            if prop not in keys:
                raise MethodError("unsupportedSort", f"{prop[:60]} cannot be sorted on")
            found.sort(key=lambda r: (r[keys[prop]], r["id"]), reverse=not comparator.get("isAscending", True))
        return str(self._user()["counter"]), [r["id"] for r in found]

    def queryAt(self, account, filter, sort, queryState):
        return None

    # /set

    async def create(self, account, record):
        unknown = [k for k in record if k not in ("identityId", "emailId", "envelope")]
        if unknown:
            raise SetError("invalidProperties", "only identityId, emailId and envelope can be set",
                           properties=unknown[:20])
        identities = await self.identities.records()
        identityId = record.get("identityId")
        identity = identities.get(identityId) if isinstance(identityId, str) else None
        if identity is None:
            raise SetError("invalidProperties", "no such Identity", properties=["identityId"])
        if not self.rules.mayUse(self.username, identity["email"]):
            raise SetError("forbiddenFrom", "you may not send as this Identity's address")
        emailId = record.get("emailId")
        try:
            emailId = self.call.resolveId(emailId) if isinstance(emailId, str) else None
        except MethodError:
            emailId = None
        data, summary = await self._message(account, emailId)
        header = _header(data)
        senders = parseAddresses(header.get("from", b""))
        if not senders or any(not a for _, a in senders):
            raise SetError("invalidEmail", "the Email has no From address", properties=["from"])
        bad = [a for _, a in senders if not self.rules.mayUse(self.username, a)]
        if bad:
            # RFC 8621 s7.5: forbiddenFrom, a From the user may not use.
            raise SetError("forbiddenFrom", f"you may not send as {bad[0][:200]}")
        mailFrom, rcptTo, release = self._envelope(record.get("envelope"), header, senders)
        if not self.rules.mayUse(self.username, mailFrom):
            raise SetError("forbiddenMailFrom", f"you may not use {mailFrom[:200]} as the envelope sender")
        if not rcptTo:
            raise SetError("noRecipients", "the Email has no recipients")
        if len(rcptTo) > self.outbox.maxRecipients:
            raise SetError("tooManyRecipients", f"at most {self.outbox.maxRecipients} recipients",
                           maxRecipients=self.outbox.maxRecipients)
        invalid = [r for r in rcptTo if not _plausible(r) or
                   (self.outbox.resolve is not None and self.outbox.resolve(r) is None)]
        if invalid:
            raise SetError("invalidRecipients", "these recipients cannot receive mail", invalidRecipients=invalid)
        outbox = self.outbox
        now = outbox.clock.seconds()
        delay = outbox.hold
        if release is not None:
            delay = self._delay(release, now)
        if delay > 0 and outbox.pending(self.username) >= MAX_PENDING:
            raise SetError("forbiddenToSend", f"{MAX_PENDING} messages are waiting to be sent; try again shortly")
        i = "S" + secrets.token_hex(10)
        rec = {"id": i, "identityId": identity["id"], "emailId": emailId,
               "threadId": summary.threadId or emailId,
               "envelope": {"mailFrom": {"email": mailFrom, "parameters": None},
                            "rcptTo": [{"email": r, "parameters": None} for r in rcptTo]},
               "sendAt": utcDate(now + delay), "undoStatus": "pending", "deliveryStatus": None,
               "dsnBlobIds": [], "mdnBlobIds": []}
        # RFC 8621 s7.5: Bcc is not sent (its recipients are in the envelope).
        pending = Pending(rec, mailFrom, rcptTo, compose.stripFields(data, ["Bcc"]),
                          peer=self.call.context.services.get("clientAddress"))
        if release is not None:
            rec["envelope"]["mailFrom"]["parameters"] = record["envelope"]["mailFrom"]["parameters"]
        if delay > 0:
            await outbox.hold_(self.username, pending, delay)
            self._user()["records"][i] = pending
            outbox.changed(self.username, i, "created")
        else:
            self._user()["records"][i] = pending
            outbox.changed(self.username, i, "created")
            outcome = await outbox.sendNow(self.username, pending)
            if not outcome.ok and outcome.code >= 500:
                del self._user()["records"][i]
                raise SetError("forbiddenToSend", f"refused: {outcome.code} {outcome.text}"[:300])
        serverSet = {k: rec[k] for k in ("threadId", "sendAt", "undoStatus", "deliveryStatus", "dsnBlobIds",
                                         "mdnBlobIds")}
        if record.get("envelope") is None:
            serverSet["envelope"] = rec["envelope"]
        return i, serverSet

    async def _message(self, account, emailId):
        if emailId is None:
            raise SetError("invalidProperties", "emailId must be an Email id", properties=["emailId"])
        found = (await mailstore.wait(mailstore.need(account, "emailSummaries")([emailId]))).get(emailId)
        if found is None:
            raise SetError("invalidProperties", "no such Email", properties=["emailId"])
        if found.size > self.outbox.messageSize:
            raise SetError("tooLarge", f"the message is larger than {self.outbox.messageSize} octets",
                           maxSize=self.outbox.messageSize)
        folder = await mailstore.openFolder(account, found.folder)
        try:
            f = await mailstore.wait(folder.openMessage(found.uid))
        finally:
            folder.close()
        try:
            data = f.read(self.outbox.messageSize + 1)
        finally:
            f.close()
        return data, found

    def _envelope(self, envelope, header, senders):
        if envelope is None:
            # RFC 8621 s7: mailFrom from Sender, else From; rcptTo from To, Cc, Bcc, without duplicates.
            sender = parseAddresses(header.get("sender", b""))
            mailFrom = (sender or senders)[0][1]
            rcptTo = []
            for name in ("to", "cc", "bcc"):
                for _, a in parseAddresses(header.get(name, b"")):
                    if a and a.lower() not in {r.lower() for r in rcptTo}:
                        rcptTo.append(a)
            return mailFrom, rcptTo, None
        if not isinstance(envelope, dict) or not isinstance(envelope.get("mailFrom"), dict) or \
                not isinstance(envelope.get("rcptTo"), list):
            raise SetError("invalidProperties", "envelope must have mailFrom and rcptTo", properties=["envelope"])
        addresses = [envelope["mailFrom"]] + envelope["rcptTo"]
        for a in addresses:
            if not isinstance(a, dict) or not isinstance(a.get("email"), str):
                raise SetError("invalidProperties", "envelope addresses are {email, parameters}",
                               properties=["envelope"])
        for a in envelope["rcptTo"]:
            if a.get("parameters"):
                # submissionExtensions has no RCPT parameter.
                raise SetError("invalidProperties", "rcptTo addresses take no parameters", properties=["envelope"])
        release = _release(envelope["mailFrom"].get("parameters"), self.outbox.maxDelayedSend)
        rcptTo = []
        for a in envelope["rcptTo"]:
            if a["email"].lower() not in {r.lower() for r in rcptTo}:
                rcptTo.append(a["email"])
        return envelope["mailFrom"]["email"], rcptTo, release

    def _delay(self, release, now):
        """Seconds to hold for a FUTURERELEASE (``("for", seconds)`` or ``("until", epoch)``)."""
        kind, value = release
        delay = value if kind == "for" else value - now
        if delay > self.outbox.maxDelayedSend:
            # RFC 4865 s4: a release beyond the maximum interval is refused.
            raise SetError("invalidProperties", f"the release is more than {self.outbox.maxDelayedSend} seconds ahead "
                           "(maxDelayedSend)", properties=["envelope"])
        # Never less than the undo hold; a HOLDUNTIL in the past releases after it (RFC 4865 s4: at once).
        return max(delay, self.outbox.hold)

    async def update(self, account, i, patch):
        pending = self._user()["records"].get(i)
        if pending is None:
            raise SetError("notFound")
        if set(patch) != {"undoStatus"} or patch["undoStatus"] != "canceled":
            raise SetError("invalidProperties", "only undoStatus can be changed, to canceled",
                           properties=[k for k in patch if k != "undoStatus"] or ["undoStatus"])
        if pending.record["undoStatus"] != "pending":
            # RFC 8621 s7.5: too late to cancel.
            raise SetError("cannotUnsend", "the message has been sent")
        # Out of the journal before the answer: a canceled message never comes back after a crash.
        forgotten = self.outbox.cancel(self.username, pending)
        self.outbox.changed(self.username, i, "updated")
        await _await(forgotten)
        return None

    async def destroy(self, account, i):
        records = self._user()["records"]
        pending = records.get(i)
        if pending is None:
            raise SetError("notFound")
        if pending.record["undoStatus"] == "pending":
            await _await(self.outbox.cancel(self.username, pending))
        records.pop(i, None)
        self.outbox.changed(self.username, i, "destroyed")


def _release(parameters, maxDelayedSend):
    """
    The FUTURERELEASE parameters of a mailFrom (RFC 4865 s3: ``HOLDFOR`` delta
    seconds or ``HOLDUNTIL`` an RFC 3339 date-time, not both): None when none,
    else ``("for", seconds)`` or ``("until", epoch seconds)``.
    """
    if parameters is None:
        return None
    if not isinstance(parameters, dict) or not all(isinstance(k, str) and (v is None or isinstance(v, str))
                                                   for k, v in parameters.items()):
        raise SetError("invalidProperties", "parameters must map names to strings or null", properties=["envelope"])
    names = {k.upper(): v for k, v in parameters.items()}
    unknown = set(names) - {"HOLDFOR", "HOLDUNTIL"}
    if unknown or (names and maxDelayedSend <= 0):
        raise SetError("invalidProperties", "the only mailFrom parameters are HOLDFOR and HOLDUNTIL (FUTURERELEASE)"
                       if maxDelayedSend > 0 else "this server takes no SMTP parameters (maxDelayedSend is 0)",
                       properties=["envelope"])
    if not names:
        return None
    if len(names) > 1:
        raise SetError("invalidProperties", "HOLDFOR and HOLDUNTIL cannot both be given", properties=["envelope"])
    if "HOLDFOR" in names:
        value = names["HOLDFOR"]
        if not isinstance(value, str) or not value.isascii() or not value.isdigit() or len(value) > 10:
            raise SetError("invalidProperties", "HOLDFOR must be a number of seconds", properties=["envelope"])
        return ("for", int(value))
    when = _rfc3339(names["HOLDUNTIL"])
    if when is None:
        raise SetError("invalidProperties", "HOLDUNTIL must be an RFC 3339 date-time", properties=["envelope"])
    return ("until", when)


def _rfc3339(value):
    """Epoch seconds of an RFC 3339 date-time (``Z`` or an offset), or None."""
    import datetime

    if not isinstance(value, str) or len(value) > 40 or "T" not in value.upper():
        return None
    try:
        when = datetime.datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
        if when.tzinfo is None:
            return None  # RFC 3339 s5.6: an offset is required
        return when.timestamp()
    except (ValueError, OverflowError):
        return None


def _plausible(address):
    local, at, domain = address.rpartition("@")
    return bool(at and local and domain and ("." in domain or domain.startswith("["))) and \
        not any(c in address for c in " <>,;\r\n\t\"\\")


def _header(data):
    """The top-level fields (name lower case -> raw bytes, the last of each)."""
    end = data.find(b"\r\n\r\n")
    out = {}
    for line in _fields(data if end < 0 else data[:end]):
        name, _, value = line.partition(b":")
        out[name.strip().lower().decode("ascii", "replace")] = value
    return out


def _fields(header: bytes):
    current = None
    for line in header.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and current is not None:
            current += b"\r\n" + line
            continue
        if current is not None:
            yield current
        current = line if b":" in line else None
    if current is not None:
        yield current


async def emailSubmissionSet(call):
    """RFC 8621 s7.5: the standard /set, then onSuccessUpdateEmail / onSuccessDestroyEmail as an Email/set."""
    args = call.arguments
    onUpdate = args.get("onSuccessUpdateEmail")
    onDestroy = args.get("onSuccessDestroyEmail")
    if onUpdate is not None and not (isinstance(onUpdate, dict) and all(isinstance(v, dict)
                                                                         for v in onUpdate.values())):
        raise MethodError("invalidArguments", "onSuccessUpdateEmail must map ids to PatchObjects")
    if onDestroy is not None and not (isinstance(onDestroy, list) and all(isinstance(v, str) for v in onDestroy)):
        raise MethodError("invalidArguments", "onSuccessDestroyEmail must be an array of ids")
    dataType = Submissions(call)
    result = await standard.standardSet(call, dataType)
    succeeded = {}
    for creationId, made in (result.get("created") or {}).items():
        succeeded["#" + creationId] = made["id"]
    for i in list(result.get("updated") or {}) + list(result.get("destroyed") or []):
        succeeded[i] = i
    records = dataType._user()["records"]

    def emailOf(key):
        i = succeeded.get(key)
        if i is None:
            return None
        p = records.get(i)
        return p.record["emailId"] if p is not None else None

    update, destroy = {}, []
    for key, patch in (onUpdate or {}).items():
        e = emailOf(key)
        if e is not None:
            update[e] = patch
    for key in onDestroy or []:
        e = emailOf(key)
        if e is not None:
            destroy.append(e)
    if not update and not destroy:
        return result
    sub = Call("Email/set", {"accountId": result["accountId"], "update": update or None,
                             "destroy": destroy or None}, call.callId, call.context, MAIL, True)
    emails = await standard.standardSet(sub, emailType.Emails(resolveId=sub.resolveId))
    return [("EmailSubmission/set", result), ("Email/set", emails)]


def register(registry):
    registry.method("EmailSubmission/get", lambda call: standard.standardGet(call, Submissions(call)), SUBMISSION)
    registry.method("EmailSubmission/changes", lambda call: standard.standardChanges(call, Submissions(call)),
                    SUBMISSION)
    registry.method("EmailSubmission/query", lambda call: standard.standardQuery(call, Submissions(call)),
                    SUBMISSION)
    registry.method("EmailSubmission/queryChanges",
                    lambda call: standard.standardQueryChanges(call, Submissions(call)), SUBMISSION)
    registry.method("EmailSubmission/set", emailSubmissionSet, SUBMISSION, mutates=True)

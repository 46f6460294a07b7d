"""
The vacation response (RFC 8621 s8) of each user, kept durably, and the
auto-reply it sends (RFC 3834) after a local delivery.

* :class:`IVacationStore` is what JMAP's VacationResponse
  (mailnet/jmap/vacation.py) and the responder read and write; the one here,
  :class:`FileVacationStore`, keeps one JSON file per user under
  ``<data_dir>/vacation/`` (settings, and when each sender last got a
  reply), written atomically and fsynced (mailnet/durable.py) in a worker
  thread.
* :class:`Responder` is the local delivery hook
  (:func:`mailnet.localdelivery.setDeliveryHook`): told after a message is
  durably in the store (the 250 is not waiting for it), it decides with
  :mod:`mailnet.mail.autoreply` and puts the reply in the outbound queue
  (null sender, RFC 3834 s3.3), at most once per sender per
  ``[jmap] vacation_period``, only when the message names one of the
  user's addresses (their own, ``user+tag``, or an alias of the aliases file
  that delivers to them; not a catch-all) in To/Cc/Bcc or their Resent-
  forms (RFC 5230 s4.5), and DKIM-signed with the keys of the user's
  domain, once, before it is spooled (:mod:`mailnet.mailauth.ownmail`).
"""

from __future__ import annotations

import calendar
import hashlib
import json
import os
import time

from twisted.internet import defer, threads
from zope.interface import Interface, implementer

from mailnet.durable import readJSONObject, writeAtomically
from mailnet.logs import Logger
from mailnet.mail import autoreply

log = Logger()

SETTINGS = ("isEnabled", "fromDate", "toDate", "subject", "textBody", "htmlBody")
DEFAULT = {"isEnabled": False, "fromDate": None, "toDate": None, "subject": None, "textBody": None, "htmlBody": None}
MAX_FILE = 4 * 1024 * 1024  # a settings file larger than this is corrupt
MAX_SENDERS = 10_000  # senders remembered per user (the oldest forgotten first)


class IVacationStore(Interface):
    def get(username):
        """Deferred firing with the user's settings (a dict of :data:`SETTINGS`; :data:`DEFAULT` when never set)."""

    def set(username, settings):
        """Replace the user's settings (a dict of :data:`SETTINGS`), durably; Deferred firing when on disk."""

    def claimReply(username, sender, now, period):
        """
        Whether ``sender`` may get an auto-reply now (none in the last
        ``period`` seconds); if so, remembered durably before the Deferred
        fires True (RFC 3834 s2: at most one per period; a crash after this
        loses a reply rather than sending two).  A change of the settings
        forgets every sender (a new vacation answers everyone again).
        """


def _fileName(username: str) -> str:
    # No user name in a path: a hash of the lower-cased name.
    return hashlib.sha256(username.lower().encode("utf-8")).hexdigest()[:32] + ".json"


def parseUTCDate(value):
    """RFC 3339 ``YYYY-MM-DDTHH:MM:SSZ`` (a UTCDate) to epoch seconds, None for None or a bad one."""
    if not isinstance(value, str):
        return None
    try:
        return calendar.timegm(time.strptime(value[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None


def active(settings: dict, now: float) -> bool:
    """RFC 8621 s8: enabled, and now within [fromDate, toDate) where given."""
    if not settings.get("isEnabled"):
        return False
    start, end = parseUTCDate(settings.get("fromDate")), parseUTCDate(settings.get("toDate"))
    if start is not None and now < start:
        return False
    if end is not None and now >= end:
        return False
    return True


@implementer(IVacationStore)
class FileVacationStore:
    """
    @param root: ``<data_dir>/vacation``.
    @param runInThread: ``f(callable, *args) -> Deferred`` (tests: at once).
    """

    def __init__(self, root, runInThread=None):
        self.root = root
        self.runInThread = runInThread or threads.deferToThread
        self.cache = {}  # username -> document (this process is the only writer)
        self.locks = {}

    def _path(self, username):
        return os.path.join(self.root, _fileName(username))

    def _read(self, path):
        try:
            return readJSONObject(path, MAX_FILE) or {}
        except ValueError as e:
            log.error("vacation: a settings file was unreadable ({why}); set aside as .corrupt", why=str(e)[:100])
            return {}

    def _write(self, path, document):
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        writeAtomically(path, json.dumps(document, sort_keys=True).encode("utf-8"), mode=0o600)

    async def _document(self, username):
        key = username.lower()
        document = self.cache.get(key)
        if document is None:
            document = await self.runInThread(self._read, self._path(username))
            self.cache[key] = document
        return document

    def _locked(self, username, work):
        key = username.lower()
        lock = self.locks.setdefault(key, defer.DeferredLock())

        def release(result):
            if not lock.locked and not lock.waiting:
                self.locks.pop(key, None)
            return result

        return lock.run(lambda: defer.ensureDeferred(work())).addBoth(release)

    def get(self, username):
        async def work():
            document = await self._document(username)
            return dict(DEFAULT, **{k: v for k, v in document.get("settings", {}).items() if k in SETTINGS})
        return defer.ensureDeferred(work())

    def set(self, username, settings):
        async def work():
            document = {"settings": {k: settings.get(k, DEFAULT[k]) for k in SETTINGS}, "replied": {}}
            await self.runInThread(self._write, self._path(username), document)
            self.cache[username.lower()] = document
        return self._locked(username, work)

    def claimReply(self, username, sender, now, period):
        async def work():
            document = await self._document(username)
            replied = {s: t for s, t in document.get("replied", {}).items() if now - t < period}
            key = sender.lower()
            if key in replied:
                return False
            replied[key] = now
            if len(replied) > MAX_SENDERS:
                replied = dict(sorted(replied.items(), key=lambda item: item[1])[-MAX_SENDERS:])
            new = dict(document, replied=replied)
            await self.runInThread(self._write, self._path(username), new)
            self.cache[username.lower()] = new
            return True
        return self._locked(username, work)


class Responder:
    """
    The local delivery hook that sends vacation auto-replies.

    @param store: an :class:`IVacationStore`.
    @param spool: the outbound :class:`~mailnet.queue.spool.Spool`.
    @param period: seconds between two replies to one sender (``[jmap] vacation_period``).
    @param directory: the :class:`~mailnet.auth.Directory` (the user's aliases), or None (only their own address).
    @param signer: an :class:`~mailnet.mailauth.ownmail.OwnMailSigner`, or None (unsigned).
    @param runInThread: ``f(callable, *args) -> Deferred`` for the signing (tests: at once).
    """

    def __init__(self, store, spool, period, hostname, clock=None, directory=None, signer=None, runInThread=None):
        self.store = store
        self.spool = spool
        self.period = period
        self.hostname = hostname
        self.clock = clock or time
        self.directory = directory
        self.signer = signer
        self.runInThread = runInThread or threads.deferToThread
        self.pending = set()  # the Deferreds of replies being worked out (tests wait on them)

    def __call__(self, usernames, sender, header):
        """After a durable local delivery: work out the replies in the background; never raises."""
        try:
            found = autoreply.fields(header)
        except Exception:
            log.failure("vacation: the header could not be read")
            return
        for username in usernames:
            d = defer.ensureDeferred(self._one(username, sender, found))
            d.addErrback(lambda failure: log.failure("vacation: an auto-reply failed", failure))
            self.pending.add(d)
            d.addBoth(lambda result, d=d: self.pending.discard(d))

    def isOwn(self, username, address) -> bool:
        """
        Whether ``address`` is one of ``username``'s: their own, with or
        without a ``+tag``, or an address of the aliases file that delivers
        to them.  Not a domain's catch-all: mail to any made-up address
        would get a reply.
        """
        address, username = address.strip().lower(), username.lower()
        if address == username:
            return True
        directory = self.directory
        if directory is None:
            return False
        local, _, domain = address.rpartition("@")
        separator = directory.separator
        base = local.split(separator, 1)[0] + "@" + domain if separator and separator in local else address
        if base == username:
            return True
        if not (directory.aliases.get(address) or directory.aliases.get(base)):
            return False
        return directory.mayUseSender(username, address)

    async def _one(self, username, sender, found):
        settings = await self.store.get(username)
        now = self.clock.time()
        if not active(settings, now):
            return
        why = autoreply.refusal(sender, found, isOwn=lambda address: self.isOwn(username, address))
        if why is not None:
            log.debug("vacation: no auto-reply for {user}: {why}", user=username, why=why)
            return
        if not await self.store.claimReply(username, sender, now, self.period):
            log.debug("vacation: {user} already answered that sender this period", user=username)
            return
        data = autoreply.buildReply(username, sender, found, settings.get("subject"), settings.get("textBody"),
                                    settings.get("htmlBody"), self.hostname, now)
        if self.signer is not None:
            # Issue 16: From the user, so signed with the keys of the user's domain (or its nearest
            # parent with keys), like their own mail; once, here, so the queue's retries send these bytes.
            keys = self.signer.keysFor(username.rpartition("@")[2])
            if keys:
                data = await self.runInThread(self.signer.sign, data, keys)
        # RFC 3834 s3.3: the null reverse-path, so that nothing answers the answer.
        writer = self.spool.newMessage("", [{"address": sender}], smtputf8=not sender.isascii(),
                                       body="8BITMIME" if any(b >= 0x80 for b in data) else "7BIT")
        try:
            writer.write(data)
            queueId = await writer.commit()
        except Exception:
            writer.abort()
            raise
        log.info("vacation: auto-reply for {user} queued as {id}", user=username, id=queueId)

"""
Local delivery: one message into the store for some local users, with the
Return-Path and trace fields, and the one mapping of a storage failure to a
:class:`~mailnet.errors.DeliveryError`.

Two callers: the SMTP server (:class:`mailnet.smtp.delivery.MessageDelivery`,
which streams the body in as it arrives) and the queue (a spooled message for
a recipient the queue delivers itself: NOTIFY=SUCCESS, aliases, bounces to a
local sender; :func:`deliverFile`).
"""

from __future__ import annotations

import errno
import weakref

from twisted.internet import defer

from mailnet.errors import DeliveryError, temporaryFailure
from mailnet.logs import Logger
from mailnet.metrics import DISCARD, Timer
from mailnet.store.interfaces import INBOX, NoSuchFolder, StorageFull, StoreError, TemporaryStoreError

log = Logger()

CHUNK = 64 * 1024  # bytes read from a spooled message at a time

# RFC 3463 X.3.1 "mail system full"; the same text as smtp.replies.MAIL_SYSTEM_FULL.
_FULL = (452, "4.3.1", "Mail system full; try again later")

HOOK_HEADER = 64 * 1024  # bytes of the message a delivery hook is given (its header section)
_hooks = weakref.WeakKeyDictionary()  # store -> hook


def setDeliveryHook(store, hook):
    """
    Call ``hook(usernames, sender, header)`` after each local delivery into
    ``store`` is durable (once the copies are safe; the reply to the client
    does not wait for it, and its exceptions are logged, never raised):
    ``usernames`` the users who got it, ``sender`` the envelope sender,
    ``header`` the start of the message after the Return-Path and trace
    fields (its own header section), at most :data:`HOOK_HEADER` bytes.  The vacation responder (mailnet/vacation.py)
    is the one hook; None removes it.
    """
    if hook is None:
        _hooks.pop(store, None)
    else:
        _hooks[store] = hook


class LocalDelivery:
    """
    One message on its way into the store (:meth:`IMailStore.newDelivery`
    underneath): ``write`` the message in pieces, then ``commit`` or
    ``abort``.

    @param store: the ``IMailStore``.
    @param usernames: the local accounts that get a copy (INBOX).
    @param sender: the envelope sender (``""`` for the null sender).
    @param trace: trace fields (a ``Received`` header) to put after the
        Return-Path, CRLF-terminated; empty for none.
    @param folder: the folder instead of INBOX (Junk), when the user has it.
    @param metrics: the server's :class:`~mailnet.metrics.Metrics` (the
        latency to a durable commit, store errors), counted as ``source``.
    @raise Exception: whatever the store raises; the store delivery is
        aborted first, so nothing is left behind.
    """

    def __init__(self, store, usernames, sender: str, trace: bytes = b"", folder=None, metrics=None, source="smtp"):
        if metrics is None:
            metrics = DISCARD
        self._latency = metrics.storeLatency.labels(source=source)
        self._errors = metrics.storeErrors.labels(source=source)
        delivery = store.newDelivery()
        try:
            for name in usernames:
                _addRecipient(delivery, name, folder)
            # RFC 5321 s4.4: the final delivery adds Return-Path.
            delivery.write(b"Return-Path: <" + sender.encode("utf-8") + b">\r\n" + trace)
        except Exception:
            self._errors.inc()
            _abortQuietly(delivery)
            raise
        self._delivery = delivery
        self._usernames = list(usernames)
        self._sender = sender
        try:
            self._hook = _hooks.get(store)
        except TypeError:  # a store that cannot be weakly referenced has no hook
            self._hook = None
        if self._hook is None:
            # The store's own method: SMTP calls this for every piece of a body.
            self.write = delivery.write
        else:
            self._header = b""

    def write(self, data):
        """(With a delivery hook: the header is kept for it as it passes.)"""
        if len(self._header) < HOOK_HEADER and b"\r\n\r\n" not in self._header:
            self._header += data[:HOOK_HEADER - len(self._header)]
        self._delivery.write(data)

    def writeFile(self, f):
        """Copy the rest of the open file ``f`` in, :data:`CHUNK` bytes at a time."""
        write = self.write
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                break
            write(chunk)

    def commit(self, internalDate=None) -> defer.Deferred:
        """
        Make the copies durable and visible.
        @param internalDate: the arrival time to record (None: now).
        @return: Deferred firing once every copy is on stable storage, or
            failing with the store's exception (map it with :func:`storeFailure`).
        """
        self._timer = Timer(self._latency)
        if internalDate is None:
            d = defer.maybeDeferred(self._delivery.commit)
        else:
            d = defer.maybeDeferred(self._delivery.commit, internalDate)
        return d.addCallbacks(self._committed, self._failed)

    def _committed(self, result):
        self._timer.done()
        if self._hook is not None:
            try:
                self._hook(self._usernames, self._sender, self._header)
            except Exception:
                log.failure("local delivery: the delivery hook failed")
        return result

    def _failed(self, failure):
        self._errors.inc()
        return failure

    def abort(self):
        """Throw the copies away; exceptions from the store are the caller's."""
        self._delivery.abort()


@defer.inlineCallbacks
def deliverFile(store, usernames, sender: str, openData, arrival=None, metrics=None):
    """
    Deliver a message file into the store for ``usernames`` (the queue's
    local delivery).

    @param openData: callable returning the open message file (CRLF form).
    @param arrival: the internal date the copies get (the spool arrival time).
    @return: Deferred firing with None once the copies are durable, or
        failing with the store's (or the file's) exception after the store
        delivery was aborted; map it with :func:`storeFailure`.
    """
    delivery = LocalDelivery(store, usernames, sender, metrics=metrics, source="queue")
    try:
        with openData() as f:
            delivery.writeFile(f)
        yield delivery.commit(arrival)
    except Exception:
        _abortQuietly(delivery)
        raise


def _addRecipient(delivery, name, folder):
    """INBOX, or ``folder`` (Junk for mail a DMARC policy quarantines) when the user has it."""
    if folder:
        try:
            return delivery.addRecipient(name, folder)
        except NoSuchFolder:
            pass  # removed by the user: INBOX rather than nothing
    delivery.addRecipient(name, INBOX)


def _abortQuietly(delivery):
    """Abort after a failure: the first exception is the one that counts."""
    try:
        delivery.abort()
    except Exception:
        pass


def diskProblem(e) -> str | None:
    """
    One line about a failure of the disk or the store under us (no path, no
    traceback), or None when ``e`` is something else (a bug, worth a
    traceback in the log).
    """
    if isinstance(e, OSError):
        return (errno.errorcode.get(e.errno, "") + f" ({e.strerror or type(e).__name__})").strip()
    if isinstance(e, TemporaryStoreError):
        return str(e).strip()
    return None


def storeFailure(e, perRecipient: bool = False) -> DeliveryError:
    """
    The :class:`DeliveryError` for an exception from a local delivery (the
    store, or the disk under the store or the spool).

    The two callers answer different questions, so the replies differ:

    * SMTP (``perRecipient=False``) answers the client for the whole
      message, and a local failure is always worth a retry by the client:
      a full disk (:class:`StorageFull`, ENOSPC, EDQUOT) is 452 4.3.1
      (RFC 3463 X.3.1 "mail system full"), anything else 451 4.3.0.
    * The queue (``perRecipient=True``) records the outcome of one recipient
      and decides from ``temporary`` alone whether to retry or to bounce: a
      store that refuses for good (a :class:`StoreError` that is not
      temporary, e.g. no such account) is 550 5.2.0, anything else (disk,
      bug) 451 4.2.0, RFC 3463 X.2.x "mailbox status".

    A :class:`DeliveryError` is returned as it is.
    """
    if isinstance(e, DeliveryError):
        return e
    if perRecipient:
        temporary = isinstance(e, (TemporaryStoreError, OSError)) or not isinstance(e, StoreError)
        if not temporary:
            return DeliveryError(550, "5.2.0", f"mailbox error: {e}", False)
        return DeliveryError(451, "4.2.0", f"mailbox temporarily unavailable: {type(e).__name__}", True)
    if isinstance(e, StorageFull) or (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)):
        return DeliveryError(*_FULL)
    return temporaryFailure()

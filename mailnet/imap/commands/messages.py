"""
Commands that add or change messages: APPEND (with MULTIAPPEND, RFC 3502, and CATENATE, RFC 4469:
commands/catenate.py), COPY, MOVE (RFC 6851),
STORE (with CONDSTORE's UNCHANGEDSINCE, RFC 7162 s3.1.3).

On the protocol shape (docs/design.md): the store's methods are yielded
``StoreCall`` effects, the binary re-encoding of a large APPEND an
``InThread``, the pauses of a long STORE answer ``Drain``; a folder opened
here is closed by a ``CloseFolder`` effect, in order.
"""

from __future__ import annotations

from mailnet.imap import serialize
from mailnet.imap.commands.common import bad, no, reasonOf
from mailnet.imap.effects import InThread, StoreCall
from mailnet.mail.binary import encodeBinaryParts
from mailnet.mail.lines import canonicalFile
from mailnet.logs import Logger
from mailnet.store.interfaces import InvalidFolderName, NoSuchFolder

log = Logger()

# A binary APPEND bigger than this has its parts encoded in a worker thread.
_INLINE_BINARY = 256 * 1024


class MessageCommands:
    """Message commands of :class:`mailnet.imap.session.IMAPSession` (a mixin)."""

    def cmdAppend(self, cmd):
        name = self.decodeName(cmd.mailbox)
        messages = cmd.messages
        # Every message is checked before any is stored (RFC 3502 s6.3.11:
        # if one cannot be appended, none is).
        limit = self.appendLimit()
        for n, m in enumerate(messages, 1):
            which = "Message %d " % n if len(messages) > 1 else "Message "
            if m.parts is not None:
                # RFC 4469: CATENATE; built here, checked below like any message.
                yield from self.buildCatenated(m, limit, which)
            if len(m.message) > limit:
                raise no(which + "too big (limit %d bytes)" % limit, b"TOOBIG")
            if len(m.message) == 0:
                raise no("Empty message" if len(messages) == 1 else which + "is empty")
            _checkStorable(m.flags)
            if not self.utf8:
                # RFC 6855 s4: before ENABLE UTF8=ACCEPT, no UTF8 item and no
                # 8-bit character in the header fields (MUST, with NO).
                if m.utf8:
                    raise no("APPEND UTF8 needs ENABLE UTF8=ACCEPT first", b"CANNOT")
                if _eightBitHeader(m.message):
                    raise no(which + "has 8-bit characters in its header fields; ENABLE UTF8=ACCEPT first",
                             b"CANNOT")
        # RFC 9208 s5: NO [OVERQUOTA] before anything is stored.
        yield from self.checkQuota(sum(len(m.message) for m in messages), len(messages))
        folder = yield from self._openTarget(name)
        uids = []
        try:
            try:
                for m in messages:
                    source = yield from self._appendSource(m.message)
                    uids.append((yield StoreCall(folder, "append", (source, m.flags, m.date))))
            except GeneratorExit:
                raise  # the connection is gone: nothing more can be waited for
            except BaseException:
                if uids:
                    # RFC 3502 s6.3.11: all or none.  The store appends one
                    # message at a time, so the ones stored are taken out
                    # again (docs/imap.md, MULTIAPPEND).
                    yield from self._undoAppend(folder, uids)
                raise
            validity = folder.uidValidity
        finally:
            self.closeFolder(folder)
        # RFC 4315 s3: APPENDUID; for MULTIAPPEND a uid-set in the order of the messages.
        return ("OK", "APPEND completed", b"APPENDUID %d %s" % (validity, serialize.seqset(uids)))

    def _appendSource(self, message):
        """The file to store for one APPEND literal (canonical CRLF; binary parts kept)."""
        source = message.open()
        if message.binary:
            # RFC 3516 s4.4: a literal8's binary parts are kept byte for
            # byte, base64-encoded (as Dovecot does) so that BODY fetches
            # can send them in an ordinary literal (RFC 3501 s9: no NUL).
            settings = self.shared.settings
            if len(message) > _INLINE_BINARY:
                source = yield InThread(encodeBinaryParts, (source, settings.mimeParts, settings.mimeDepth))
            else:
                source = encodeBinaryParts(source, settings.mimeParts, settings.mimeDepth)
        return canonicalFile(source)

    def _undoAppend(self, folder, uids):
        """Take out the messages a failed MULTIAPPEND stored before it failed."""
        try:
            yield StoreCall(folder, "expunge", (uids,))
        except Exception as e:
            log.error("imap: {user}: MULTIAPPEND failed and {n} of its messages could not be removed: {e}",
                      user=self.username, n=len(uids), e=type(e).__name__)
            raise no("APPEND failed after storing %d of the messages, which could not be removed" % len(uids),
                     b"SERVERBUG")
        log.info("imap: {user}: MULTIAPPEND failed, its {n} stored messages were removed", user=self.username,
                 n=len(uids))

    def _openTarget(self, name):
        """The mailbox APPEND, COPY or MOVE adds to; RFC 3501 s6.3.11, s6.4.7: [TRYCREATE] when it does not exist."""
        try:
            return (yield StoreCall(self.account, "openFolder", (name,)))
        except NoSuchFolder:
            raise no("Mailbox does not exist", b"TRYCREATE")
        except InvalidFolderName as e:
            raise no("Invalid mailbox name: %s" % reasonOf(e), b"CANNOT")

    def cmdCopy(self, cmd):
        return (yield from self._copyOrMove(cmd, move=False))

    def cmdMove(self, cmd):
        if self.view.readOnly:
            raise no("Mailbox is read-only", b"READ-ONLY")
        return (yield from self._copyOrMove(cmd, move=True))

    def _copyOrMove(self, cmd, move):
        view = self.view
        pairs = self._resolve(cmd.seqset, cmd.uid)
        name = self.decodeName(cmd.mailbox)
        dest = yield from self._openTarget(name)
        try:
            uids = [uid for _, uid in pairs if uid not in view.pendingExpunged]
            if not uids:
                if pairs and not cmd.uid:
                    raise no("Some of the requested messages no longer exist", b"EXPUNGEISSUED")
                return ("OK", "No messages to %s" % ("move" if move else "copy"), None)
            if not move:  # a MOVE stays in the account: its usage does not change
                infos = [view.folder.get(uid) for uid in uids]
                yield from self.checkQuota(sum(i.size for i in infos if i is not None), len(uids))
            mapping = yield StoreCall(view.folder, "moveTo" if move else "copyTo", (uids, dest))
            validity = dest.uidValidity
        finally:
            self.closeFolder(dest)
        if not mapping:
            if cmd.uid:
                # Expunged by another session while we worked: RFC 3501
                # s6.4.8 (RFC 9051 s6.4.9) ignores a UID that no longer
                # exists, "UID COPY/MOVE ... OK without performing any
                # operations"; the EXPUNGE goes with the answer.
                return ("OK", "No messages to %s" % ("move" if move else "copy"), None)
            raise no("The messages no longer exist", b"EXPUNGEISSUED")
        code = b"COPYUID %d %s %s" % (validity, serialize.seqset([s for s, _ in mapping]), serialize.seqset([d for _, d in mapping]))
        if move:
            # RFC 6851 s4.3: COPYUID in an untagged OK, then the expunges.
            self.send(b"* OK [" + code + b"] Moved\r\n")
            self._flush(cmd)
            return ("OK", "MOVE completed", None)
        return ("OK", "COPY completed", code)

    def cmdStore(self, cmd):
        view = self.view
        if view.readOnly:
            raise no("Mailbox is read-only", b"READ-ONLY")
        _checkStorable(cmd.flags)
        flags = list(cmd.flags)
        if cmd.unchangedSince is not None:
            self._enableCondstore()
        pairs = self._resolve(cmd.seqset, cmd.uid)
        get = view.folder.get
        uids = [uid for _, uid in pairs]
        changed, failed = yield StoreCall(view.folder, "setFlags", (uids, flags, cmd.mode, cmd.unchangedSince))
        for info in changed:
            for f in info.flags:
                if f[0] != "\\":
                    view.keywords.add(f)
        # RFC 3501 s7.2.6: a new keyword in FLAGS before the FETCHes that show it.
        self.sendLines(view.keywordLines())
        changedUids = {i.uid for i in changed}
        failedSet = set(failed)
        out = []
        for msn, uid in pairs:
            if uid in failedSet:
                continue
            info = get(uid)
            if info is None:
                # Expunged by another session, not announced yet: its number
                # stays addressable and the STORE does nothing to it, answered
                # OK as Dovecot does (RFC 2180 s4.2.1 allows NO, which clients
                # take for an error); the EXPUNGE goes out at the next command
                # that may carry it (RFC 3501 s7.4.1).
                continue
            if cmd.silent and not (self.condstore and uid in changedUids):
                view.pendingFlags.pop(uid, None)
                continue
            if cmd.silent:
                # RFC 7162 s3.1.3: MODSEQ even for .SILENT.
                parts = [b"UID %d" % uid] if cmd.uid else []
                parts.append(b"MODSEQ (%d)" % info.modseq)
            else:
                parts = [b"UID %d" % uid] if cmd.uid else []
                parts.append(b"FLAGS " + serialize.flags(view.flagsFor(info)))
                if self.condstore:
                    parts.append(b"MODSEQ (%d)" % info.modseq)
            view.pendingFlags.pop(uid, None)
            out.append(b"* %d FETCH (" % msn + b" ".join(parts) + b")\r\n")
            if len(out) >= 1000:
                self.sendLines(out)
                out = []
                yield from self.drainEffect()
        self.sendLines(out)
        if failed:
            if cmd.uid:
                modified = serialize.seqset(failed)
            else:
                modified = serialize.seqset([view.msnOf(u) for u in failed if view.msnOf(u)])
            return ("OK", "Conditional STORE failed for some messages", b"MODIFIED " + modified)


def _eightBitHeader(literal) -> bool:
    """Whether the header fields of an APPEND literal have a byte over 127 (read up to the blank line)."""
    f = literal.open()
    prev = b""
    first = True
    while True:
        chunk = f.read(65536)
        if not chunk:
            return False
        data = prev + chunk
        if first and data[:1] in (b"\n", b"\r") and (data.startswith(b"\r\n") or data.startswith(b"\n")):
            return False  # no header at all
        first = False
        ends = [i for i in (data.find(b"\r\n\r\n"), data.find(b"\n\n")) if i >= 0]
        if ends:
            return not data[:min(ends)].isascii()
        if not chunk.isascii():
            return True
        prev = data[-3:]


def _checkStorable(flags):
    """A client may set keywords and the system flags but \\Recent (RFC 3501 s2.3.2): BAD for another \\flag."""
    for flag in flags:
        if flag.startswith("\\") and flag not in _STORABLE_SYSTEM_FLAGS:
            raise bad("Flag %s cannot be stored" % flag)


_STORABLE_SYSTEM_FLAGS = {"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"}

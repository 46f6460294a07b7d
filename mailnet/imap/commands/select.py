"""
Selecting a mailbox and leaving it: SELECT/EXAMINE (with QRESYNC, RFC
7162 s3.2.5), IDLE (RFC 2177), CHECK, CLOSE, UNSELECT, EXPUNGE.

On the protocol shape (docs/design.md): the store's Deferred-returning
methods (openFolder, refresh, listFolders, expunge) are yielded
``StoreCall`` effects; its synchronous index calls (messages, get,
claimRecent, listeners: "synchronous, no I/O" in the store contract) are
made here; a handle or view given up is closed by a ``CloseFolder`` effect,
in order.  IDLE waits for DONE with ``ReadLine`` (the session holds the
input) and has the runner poll the folder (``StartPolling``/``StopPolling``);
the changes other sessions make reach the view as store events, which the
session writes out at once (its ``_wake`` asks the runner for ``TimerFired("wake")``).
"""

from __future__ import annotations

from mailnet.imap import serialize
from mailnet.imap.commands.common import AUTHENTICATED, SELECTED, bad, no
from mailnet.imap.commands.context import WAKE
from mailnet.imap.commands.fetchlines import isObjectId
from mailnet.imap.effects import KeepFolder, ReadLine, StartPolling, StopPolling, StoreCall
from mailnet.imap.mailbox import SelectedMailbox
from mailnet.logs import Logger

log = Logger()


class SelectCommands:
    """Select commands of :class:`mailnet.imap.session.IMAPSession` (a mixin)."""

    def cmdSelect(self, cmd):
        readOnly = cmd.name == "EXAMINE"
        name = self.decodeName(cmd.mailbox)
        if cmd.qresync is not None and not self.qresync:
            raise bad("QRESYNC parameter requires ENABLE QRESYNC first")
        if self.view is not None:
            self._deselect()
            self.state = AUTHENTICATED
            if self.qresync or self.rev2:
                # RFC 7162 s3.2.11 / RFC 9051 s7.1: the old mailbox is closed.
                self.send(b"* OK [CLOSED] Previous mailbox closed\r\n")
        if cmd.condstore:
            self._enableCondstore()
        folder = yield StoreCall(self.account, "openFolder", (name,))
        try:
            yield StoreCall(folder, "refresh")
        except Exception:
            self.closeFolder(folder)
            raise
        key = (self.username, folder.name)
        snapshot = self.shared.keeper.snapshot(key, folder)
        view = SelectedMailbox(folder, folder.name, readOnly, key, self.shared.recent, self._wake, snapshot)
        # The keeper holds the folder open a while, with the view's snapshot
        # for the next SELECT when it had none.
        self.emit(KeepFolder(key, self.account, folder.name, view.snapshot if snapshot is None else None))
        if self.rev2:
            view.showRecent = False  # RFC 9051 has no \Recent
        self.view = view
        self.state = SELECTED
        out = [
            b"* FLAGS " + view.flagsList() + b"\r\n",
            b"* %d EXISTS\r\n" % len(view),
        ]
        if not self.rev2:
            out.append(b"* %d RECENT\r\n" % len(view.recent))
            if view.firstUnseen is not None:
                out.append(b"* OK [UNSEEN %d] First unseen\r\n" % view.firstUnseen)
        out += [
            b"* OK [UIDVALIDITY %d] UIDs valid\r\n" % folder.uidValidity,
            b"* OK [UIDNEXT %d] Predicted next UID\r\n" % folder.uidNext,
            b"* OK [PERMANENTFLAGS " + view.permanentFlags() + b"] Flags permitted\r\n",
            b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % folder.highestModSeq,
        ]
        mailboxId = getattr(folder, "mailboxId", None)
        if isObjectId(mailboxId):
            # RFC 8474 s4.1 (none from a store without mailbox ids)
            out.append(b"* OK [MAILBOXID (" + mailboxId.encode("ascii") + b")] Ok\r\n")
        if self.rev2:
            # RFC 9051 s6.3.2: a LIST response with the mailbox name.
            attrs = yield from self._attributesOf(folder.name)
            out.append(b"* LIST (" + b" ".join(attrs) + b') "/" ' + self.encodeName(folder.name) + b"\r\n")
        self.sendLines(out)
        if cmd.qresync is not None:
            yield from self._qresyncSelect(view, cmd.qresync)
        return ("OK", "%s completed" % cmd.name, b"READ-ONLY" if readOnly else b"READ-WRITE")

    def _attributesOf(self, name):
        folders = yield StoreCall(self.account, "listFolders")
        attrs = []
        children = any(f.name.startswith(name + "/") for f in folders)
        attrs.append(b"\\HasChildren" if children else b"\\HasNoChildren")
        for f in folders:
            if f.name == name and f.specialUse:
                attrs.append(f.specialUse.encode())
        return attrs

    def _qresyncSelect(self, view, params):
        # RFC 7162 s3.2.5
        validity, modseq, known, match = params
        folder = view.folder
        if validity != folder.uidValidity:
            return
        knownUids = None
        if known is not None:
            knownUids = known.resolve(max(view.maxUid(), folder.uidNext - 1))
        expunged = folder.expungedSince(modseq)
        out = []
        present = set(view.uids)
        if expunged is None:
            # Not remembered: everything in the client's range that is not here.
            ranges = knownUids or [(1, folder.uidNext - 1)]
            gone = []
            for lo, hi in ranges:
                gone.extend(u for u in range(lo, min(hi, folder.uidNext - 1) + 1) if u not in present)
                if len(gone) > 1000000:
                    break
        else:
            gone = [u for u in expunged if u not in present]
            if knownUids is not None:
                gone = [u for u in gone if any(lo <= u <= hi for lo, hi in knownUids)]
        if gone:
            out.append(b"* VANISHED (EARLIER) " + serialize.seqset(gone) + b"\r\n")
        get = folder.get
        for msn, uid in enumerate(view.uids, 1):
            info = get(uid)
            if info is not None and info.modseq > modseq:
                out.append(b"* %d FETCH (UID %d FLAGS %s MODSEQ (%d))\r\n" % (
                    msn, uid, serialize.flags(view.flagsFor(info)), info.modseq))
                if len(out) > 2000:
                    self.sendLines(out)
                    out = []
                    yield from self.drainEffect()
        self.sendLines(out)

    def _deselect(self):
        view, self.view = self.view, None
        if view is not None:
            self.closeFolder(view)


    def cmdIdle(self, cmd):
        # RFC 2177
        self.send(b"+ idling\r\n")
        self.idling = True
        self._flush()
        if self.view is not None and self.settings.idlePoll:
            # Changes by other programs (another MDA writing the Maildir):
            # the runner refreshes the folder every idlePoll seconds; what
            # the refresh finds reaches the view, and _wake says it.
            self._polling = True
            self.emit(StartPolling(self.view.folder, self.settings.idlePoll))
        try:
            yield from self._idleContexts()
            while True:
                line = yield ReadLine()
                if line is not WAKE:
                    break
                # Store events reached kept search results (RFC 5267 s4.3).
                yield from self._idleContexts()
        finally:
            self._stopIdle()
        if line.strip().upper() != b"DONE":
            raise bad("Expected DONE to end IDLE")
        return ("OK", "IDLE terminated", None)

    def _stopIdle(self):
        self.idling = False
        if self._polling:
            self._polling = False
            if self._effects is not None:
                self.emit(StopPolling())
            # else the connection is gone: the runner has stopped polling

    # Selected state

    def cmdCheck(self, cmd):
        pass

    def cmdClose(self, cmd):
        view = self.view
        if not view.readOnly:
            # RFC 3501 s6.4.2: expunge silently.
            view.folder.removeListener(view)
            uids = view.deletedUids()
            if uids:
                yield StoreCall(view.folder, "expunge", (uids,))
        self._deselect()
        self.state = AUTHENTICATED

    def cmdUnselect(self, cmd):
        self._deselect()
        self.state = AUTHENTICATED

    def cmdExpunge(self, cmd):
        view = self.view
        if view.readOnly:
            raise no("Mailbox is read-only", b"READ-ONLY")
        within = None
        if cmd.uid:
            within = [uid for _, uid in self._resolve(cmd.seqset, True)]
        uids = view.deletedUids(within)
        if uids:
            yield StoreCall(view.folder, "expunge", (uids,))
        if self.condstore:
            return ("OK", "EXPUNGE completed", b"HIGHESTMODSEQ %d" % view.folder.highestModSeq)

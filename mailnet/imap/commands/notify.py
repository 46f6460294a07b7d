"""
NOTIFY (RFC 5465): the command, and the notifications of a session that
set it.

How the session learns of changes (no polling): for every mailbox other
than the selected one whose event group asks for message events, the
session holds an open folder handle with a :class:`MailboxWatch` as its
``IFolderListener`` (the store tells every handle of a folder of each
change, deliveries included: docs/store.md); a change only marks the
mailbox, and the ``STATUS`` is made when it is said, from the folder's
in-memory index, so a burst of deliveries is one response.  Mailbox
events (``MailboxName``, ``SubscriptionChange``) made by another IMAP
session of the same user are handed to this one by that session
(:meth:`NotifyCommands._tellMailboxEvent`).  The selected mailbox is the
view's business (:mod:`mailnet.imap.mailbox`), as without NOTIFY.

When the notifications go out (s5): in IDLE at once; between commands
at once too (the session asks its runner for a turn, ``wake()``), except
that an ``EXPUNGE`` of the selected mailbox goes out between commands
only under ``SELECTED`` (``SELECTED-DELAYED`` keeps RFC 3501 s7.4.1's
rule); during a command, at its end.  A client that does not read does
not make the server buffer: the runner gives the session its turn only
once the transport has room, changes meanwhile are merged into one
``STATUS`` per mailbox, and past ``[limits] imap_notify_queue`` mailbox
events waiting the session says ``[NOTIFICATIONOVERFLOW]`` and stops
notifying (s5.8).
"""

from __future__ import annotations

from zope.interface import implementer

from mailnet.imap import notifyspec
from mailnet.imap.commands.common import CommandError, no
from mailnet.imap.commands.fetchlines import lineMaker
from mailnet.imap.effects import Failed, Look, StoreCall
from mailnet.store.interfaces import IAccountListener, IFolderListener, NoSuchFolder


@implementer(IFolderListener)
class MailboxWatch:
    """The listener on a watched mailbox's handle: marks the mailbox changed, nothing more."""

    def __init__(self, name, flags, changed):
        self.name = name
        self.flags = flags  # FlagChange asked for
        self.changed = changed

    def messagesAdded(self, folder, infos):
        self.changed(self.name)

    def messagesExpunged(self, folder, uids):
        self.changed(self.name)

    def flagsChanged(self, folder, infos):
        if self.flags:
            self.changed(self.name)


@implementer(IAccountListener)
class AccountWatch:
    """
    The account listener of a session whose NOTIFY asks for mailbox events:
    the account's mailboxes changed (maybe through JMAP, the webmail or
    another program), so the session lists them again on its next turn.
    """

    def __init__(self, changed):
        self.changed = changed

    def accountChanged(self, account, state, types):
        if "Mailbox" in types:
            self.changed()


class NotifyCommands:
    """NOTIFY of :class:`mailnet.imap.session.IMAPSession` (a mixin)."""

    def cmdNotify(self, cmd):
        if cmd.none:
            self._endNotify()
            return ("OK", "NOTIFY completed", None)
        try:
            notifyspec.check(cmd.groups)
        except notifyspec.NotifyError as e:
            # The notifications in force stay as they were.
            raise CommandError(e.kind, e.text, e.code)
        others = [(g.filter, tuple(self.decodeName(n) for n in g.mailboxes), g)
                  for g in cmd.groups if g.filter not in notifyspec.SELECTED_FILTERS]
        folders = yield StoreCall(self.account, "listFolders")
        state = notifyspec.NotifyState(cmd.groups, others, self.settings.notifyQueue)
        state.known = {f.name: f.subscribed for f in folders}
        watched = [name for name in state.known if self._watchWanted(state, name) is not None]
        if len(watched) > self.settings.notifyMailboxes:
            raise no("NOTIFY would watch %d mailboxes, more than the limit of %d"
                     % (len(watched), self.settings.notifyMailboxes), b"LIMIT")
        # The new set replaces the old one (s3) once it is known to be good.
        self._endNotify()
        self.notify = state
        try:
            for name in watched:
                try:
                    folder = yield StoreCall(self.account, "openFolder", (name,))
                except NoSuchFolder:
                    continue  # deleted meanwhile
                if self.notify is not state:
                    folder.close()
                    return
                self._attachWatch(state, name, folder)
        except BaseException:
            if self.notify is state:
                self._endNotify()
            raise
        if state.wantsMailboxEvents() and getattr(self.account, "addListener", None) is not None:
            state.accountWatch = AccountWatch(self._notifyAccountChanged)
            self.account.addListener(state.accountWatch)
        if cmd.status:
            # s3: STATUS for each mailbox of the message-event groups, now.
            out = []
            selected = self.view.name if self.view is not None else None
            for name, (folder, _) in state.watches.items():
                if name != selected:
                    out.append(self._statusLine(name, state.lastStatus[name]))
            self.sendLines(out)
        return ("OK", "NOTIFY completed", None)

    # Watches

    def _watchWanted(self, state, name):
        """The group whose message events mailbox ``name`` gets (not SELECTED), or None."""
        group = notifyspec.groupFor(state.others, name, state.known.get(name, False))
        if group is not None and "MessageNew" in group.events:
            return group
        return None

    def _attachWatch(self, state, name, folder):
        group = self._watchWanted(state, name)
        if group is None or name in state.watches:
            folder.close()
            return
        watch = MailboxWatch(name, "FlagChange" in group.events, self._notifyChanged)
        folder.addListener(watch)
        state.watches[name] = (folder, watch)
        state.lastStatus[name] = notifyspec.statusValues(folder, self.condstore)

    def _dropWatch(self, state, name):
        held = state.watches.pop(name, None)
        state.pendingStatus.pop(name, None)
        state.lastStatus.pop(name, None)
        if held is not None:
            folder, watch = held
            folder.removeListener(watch)
            self.closeFolder(folder)

    def _endNotify(self):
        state, self.notify = self.notify, None
        if state is not None:
            if state.accountWatch is not None:
                self.account.removeListener(state.accountWatch)
                state.accountWatch = None
            for name in list(state.watches):
                self._dropWatch(state, name)

    def _notifyChanged(self, name):
        state = self.notify
        if state is not None and name in state.watches:
            state.pendingStatus[name] = None
            self._wake()

    def _notifyAccountChanged(self):
        state = self.notify
        if state is not None:
            state.listDirty = True
            self._wake(force=True)

    def _notifyLooked(self, event):
        """A folder opened for a watch (a :class:`Look` ``("open", name)``), or the mailbox list, has come."""
        outcome = event.outcome
        state = self.notify
        if event.key[0] == "list":
            if state is not None:
                state.listing = False
                if state.listStale:
                    # Changes came meanwhile another way: list again.
                    state.listStale = False
                    state.listDirty = True
                elif type(outcome) is not Failed:
                    self._notifyListed(state, outcome)
                if state.listDirty:
                    self._wake(force=True)
            return
        name = event.key[1]
        if type(outcome) is Failed:
            return
        if state is None or self.closed:
            outcome.close()
            return
        self._attachWatch(state, name, outcome)
        values = state.lastStatus.get(name)
        if values is not None and values[0]:
            # Messages came before the watch was in place (or the mailbox
            # was renamed here with its messages): say how it stands.
            del state.lastStatus[name]
            state.pendingStatus[name] = None
            self._wake()

    # Mailbox events of the user's other sessions

    def _tellMailboxEvent(self, kind, name, old=None):
        """This session changed the user's mailboxes: tell the user's other sessions that set NOTIFY."""
        if self.notify is not None:
            # Not told to itself, but known from now on (its account
            # listener will not make it news).
            self._mailboxEvent(kind, name, old, tell=False)
        for session in list(self.shared.sessions):
            if session is not self and session.notify is not None and session.username == self.username:
                session._mailboxEvent(kind, name, old)

    def _mailboxEvent(self, kind, name, old, tell=True, listed=False):
        """
        A change of the user's mailboxes: told (``tell``) as a LIST
        response when the client asked for it, and the watches follow.
        ``listed``: found by listing the mailboxes, else handed over by an
        IMAP session (a listing on its way is then out of date).
        """
        state = self.notify
        if not listed and state.listing:
            state.listStale = True
        if not tell:
            state = _Quiet(state)
        known = state.known
        enc = self.encodeName
        if kind == "created":
            known[name] = known.get(name, False)
            state.subscribedOnly.discard(name)
            if state.wantsMailboxEvent(name, "MailboxName"):
                state.addLine(b'* LIST () "/" ' + enc(name) + b"\r\n")
        elif kind == "deleted":
            told = state.wantsMailboxEvent(name, "MailboxName")
            known.pop(name, None)
            if told:
                state.addLine(b'* LIST (\\NonExistent) "/" ' + enc(name) + b"\r\n")
        elif kind == "renamed":
            # The children go with it (the store renames them too).
            told = state.wantsMailboxEvent(old, "MailboxName")
            moved = [n for n in known if n == old or n.startswith(old + "/")]
            for n in moved:
                known[name + n[len(old):]] = known.pop(n)
            told = told or state.wantsMailboxEvent(name, "MailboxName")
            if told:
                # s5.4: the new name with the old one as OLDNAME (RFC 5258 mbox-list-extended).
                state.addLine(b'* LIST () "/" ' + enc(name) + b' ("OLDNAME" (' + enc(old) + b"))\r\n")
            for n in list(state.watches):
                if n == old or n.startswith(old + "/"):
                    self._dropWatch(state, n)
        elif kind in ("subscribed", "unsubscribed"):
            # A name may be subscribed without a mailbox (RFC 3501 s6.3.6).
            if name not in known:
                state.subscribedOnly.add(name)
            known[name] = kind == "subscribed"
            if state.wantsMailboxEvent(name, "SubscriptionChange"):
                attrs = b"(\\Subscribed)" if kind == "subscribed" else b"()"
                state.addLine(b"* LIST " + attrs + b' "/" ' + enc(name) + b"\r\n")
        state = self.notify
        # Which mailboxes are watched may have changed (a new one, SUBSCRIBED).
        for n in [n for n in state.watches if self._watchWanted(state, n) is None or n not in known]:
            self._dropWatch(state, n)
        for n in known:
            if n not in state.watches and n not in state.opening and self._watchWanted(state, n) is not None:
                if len(state.watches) + len(state.opening) < self.settings.notifyMailboxes:
                    state.opening.add(n)
        self._wake(force=True)

    def _notifyListed(self, state, folders):
        """
        The account's mailboxes as listed after a change told by the account
        listener: what this session was not told by another IMAP session
        (a change made through JMAP, the webmail, another program).  A
        rename is seen as a deletion and a creation.
        """
        listed = {f.name: f.subscribed for f in folders}
        known = state.known
        for name in [n for n in known if n not in listed and n not in state.subscribedOnly]:
            self._mailboxEvent("deleted", name, None, listed=True)
            if self.notify is not state:
                return
        for name, subscribed in listed.items():
            if name not in known:
                self._mailboxEvent("created", name, None, listed=True)
            if self.notify is not state:
                return
            if known.get(name, False) != subscribed:
                self._mailboxEvent("subscribed" if subscribed else "unsubscribed", name, None, listed=True)

    def _notifyOpens(self):
        """Open the folders of new watches, list the mailboxes again (on the session's turn: the runner does the I/O)."""
        state = self.notify
        if state is None:
            return
        if state.listDirty and not state.listing:
            state.listDirty = False
            state.listing = True
            self._aside(Look(self.account, "listFolders", (), ("list",)))
        if not state.opening:
            return
        names, state.opening = state.opening, set()
        for name in sorted(names):
            self._aside(Look(self.account, "openFolder", (name,), ("open", name)))

    # Output

    def _statusLine(self, name, values):
        return b"* STATUS " + self.encodeName(name) + b" " + notifyspec.statusItems(values) + b"\r\n"

    def _notifyLines(self):
        """The notifications of other mailboxes waiting (LIST, then STATUS), as lines; the state is updated."""
        state = self.notify
        if state.overflowed:
            # s5.8: said once, and the notifications stop until the next NOTIFY.
            self._endNotify()
            return [b"* OK [NOTIFICATIONOVERFLOW] Too many notifications waiting; NOTIFY again to resume\r\n"]
        out, state.pendingLines = state.pendingLines, []
        if state.pendingStatus:
            pending, state.pendingStatus = state.pendingStatus, {}
            selected = self.view.name if self.view is not None else None
            for name in pending:
                held = state.watches.get(name)
                if held is None or name == selected:
                    continue
                values = notifyspec.statusValues(held[0], self.condstore)
                if state.lastStatus.get(name) == values:
                    continue
                state.lastStatus[name] = values
                out.append(self._statusLine(name, values))
        return out

    def _notifyNewLines(self, view, uids):
        """s5.2: ``FETCH`` with MessageNew's attributes for new messages of the selected mailbox."""
        make = lineMaker(self.notify.fetchNames, view.recent if view.showRecent else None)
        get = view.folder.get
        out = []
        for uid in uids:
            msn = view.msnOf(uid)
            info = get(uid)
            if msn is not None and info is not None:
                out.append(make(msn, info))
        return out


class _Quiet:
    """A NotifyState seen by a session's own mailbox change: it learns, but tells nothing."""

    def __init__(self, state):
        self._state = state

    def __getattr__(self, name):
        return getattr(self._state, name)

    def addLine(self, line):
        return True

    def wantsMailboxEvent(self, name, event):
        return False

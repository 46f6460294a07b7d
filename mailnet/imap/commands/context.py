"""
RFC 5267 contexts in the session: ``RETURN (UPDATE)`` of SEARCH and SORT
keeps the result (:class:`mailnet.imap.context.Context`, on the selected
view), CANCELUPDATE drops it, and the session brings the kept results up
to date where RFC 5267 s4.3 lets it speak: where an EXPUNGE may be sent
(RFC 3501 s7.4.1: at the end of a command other than FETCH, STORE, SEARCH,
SORT and THREAD, of any UID command, and in IDLE), after the EXISTS and
FETCH responses that make the new messages known; a REMOVEFROM for an
expunged message goes before its EXPUNGE (RFC 5267 s4.3.4).

The messages that changed (arrived, re-flagged: ``SelectedMailbox.changed``)
are looked at again with the context's search program (the SEARCH code:
index keys on the reactor thread, message content in worker threads); a
SORT context is ordered again from the shared sort cache (new messages'
header read once).  Updates are generators of effects like the commands.
"""

from __future__ import annotations

from mailnet.imap import sort
from mailnet.imap.commands.common import CommandError, bad
from mailnet.imap.context import Context, _quotedTag
from mailnet.logs import Logger
from mailnet.store.interfaces import StoreError

log = Logger()

# What IDLE's ReadLine is handed when contexts have changes to look at.
WAKE = object()
# IDLE brings contexts up to date at most this many times in a row before
# it waits for the client again (changes keep coming: the next wake-up).
IDLE_ROUNDS = 4


class ContextCommands:
    """RFC 5267 contexts of :class:`mailnet.imap.session.IMAPSession` (a mixin)."""

    _updatingContexts = False

    def _checkUpdate(self, cmd):
        """Before a SEARCH or SORT with UPDATE runs: a tag in use is BAD; changes are recorded from now."""
        if "UPDATE" not in (cmd.returns or ()):
            return
        view = self.view
        if cmd.tag in view.contexts:
            # RFC 5267 s4.3: updates are told apart by the tag of their command.
            raise bad("Tag %s already names a search kept up to date (CANCELUPDATE it, or use another tag)"
                      % cmd.tag)
        if view.changed is None:
            view.changed = set()
        # Messages that came before and are not announced yet are not in
        # the result (the search looks at the known ones): looked at later.
        view.changed.update(view.pendingNew)

    def _keepContext(self, cmd, program, criteria, options, uids):
        """Keep the result of ``cmd`` up to date, or say why not (``* NO [NOUPDATE "tag"]``, RFC 5267 s4.3.1)."""
        view = self.view
        limit = self.settings.searchContexts
        if len(view.contexts) >= limit:
            self.send(b'* NO [NOUPDATE "' + _quotedTag(cmd.tag) + b'"] Too many searches kept up to date '
                      b"(at most %d; CANCELUPDATE one)\r\n" % limit)
            if not view.contexts:
                view.changed = None
            return
        view.contexts[cmd.tag] = Context(cmd.tag, cmd.uid, program, criteria, options, uids)

    def _numberOf(self, ctx):
        if ctx.uid:
            return int
        return self.view.msnOf

    def cmdCancelupdate(self, cmd):
        # RFC 5267 s4.3.5: a tag without a context is BAD; then nothing is cancelled.
        view = self.view
        for tag in cmd.tags:
            if tag not in view.contexts:
                raise bad("No search or sort is kept up to date under tag %s" % tag)
        for tag in cmd.tags:
            view.contexts.pop(tag, None)
        if not view.contexts:
            view.changed = None
        return ("OK", "CANCELUPDATE completed", None)

    # Updates

    def _contextExpunges(self):
        """REMOVEFROM lines for the pending expunges (before the EXPUNGEs that announce them)."""
        view = self.view
        gone = view.pendingExpunged
        lines = []
        for ctx in view.contexts.values():
            line = ctx.expunged(gone, self._numberOf(ctx))
            if line is not None:
                lines.append(line)
        return lines

    def _contextsDirty(self):
        view = self.view
        return view is not None and bool(view.contexts) and bool(view.changed)

    def _contextUpdates(self):
        """
        (``yield from``) Look at the messages that changed again, for every
        context, and send the ADDTO / REMOVEFROM updates.  Only messages the
        client knows (EXISTS sent) are looked at; the others wait.  A
        context that cannot be brought up to date (the store failed) is
        dropped with ``* NO [NOUPDATE "tag"]``.
        """
        view = self.view
        if not self._contextsDirty():
            return
        pending = view.pendingExpunged
        coming = set(view.pendingNew)
        known = []
        done = []
        for uid in sorted(view.changed):
            msn = view.msnOf(uid)
            if msn is not None and uid not in pending:
                known.append((msn, uid))
            elif uid not in coming:
                done.append(uid)  # gone (its REMOVEFROM goes with its EXPUNGE) or never shown
        view.changed.difference_update(done)
        if not known:
            return
        view.changed.difference_update(uid for _, uid in known)
        checked = [uid for _, uid in known]
        for ctx in list(view.contexts.values()):
            try:
                matched = yield from self._runSearch(ctx.program, known)
                if self.closed or self.view is not view:
                    return
                if ctx.sorted:
                    line = yield from self._sortContext(ctx, checked, matched)
                else:
                    line = ctx.searchUpdate(checked, {uid for _, uid, _ in matched}, self._numberOf(ctx))
            except ConnectionError:
                return
            except Exception as e:
                if isinstance(e, (StoreError, OSError, CommandError)):
                    log.warn("imap: {user}: search context {tag} dropped: {error}", user=self.username, tag=ctx.tag,
                             error=getattr(e, "text", None) or type(e).__name__)
                else:
                    log.failure("imap: {user}: search context {tag} dropped", user=self.username, tag=ctx.tag)
                view.contexts.pop(ctx.tag, None)
                self.send(b'* NO [NOUPDATE "' + _quotedTag(ctx.tag) + b'"] This result cannot be kept up to date now\r\n')
                continue
            if self.closed or self.view is not view:
                return
            if line is not None:
                self.send(line)
        if not view.contexts:
            view.changed = None

    def _sortContext(self, ctx, checked, matched):
        """(``yield from``) A SORT context: its new order over the old result and the messages looked at again."""
        view = self.view
        checkedSet = set(checked)
        matchedSet = {uid for _, uid, _ in matched}
        if all((uid in matchedSet) == (uid in ctx.members) for uid in checkedSet):
            return None  # the same messages (re-flagged, still matching): the order stands
        members = {uid for uid in ctx.uids if uid not in checkedSet}
        members.update(matchedSet)
        get = view.folder.get
        results = []
        for uid in sorted(members):
            msn = view.msnOf(uid)
            info = get(uid)
            if msn is not None and info is not None:
                results.append((msn, uid, info))
        keys = {key for key, _ in ctx.criteria} & sort.HEADER_KEYS
        if keys:
            records, _ = yield from self._sortRecords(results, keys)
        else:
            records = [sort.EMPTY] * len(results)
        positions = sort.order([info for _, _, info in results], records, ctx.criteria)
        return ctx.sortUpdate([results[i][1] for i in positions], self._numberOf(ctx))

    def _idleContexts(self):
        """(``yield from``) In IDLE: bring the contexts up to date, with what else is pending."""
        self._updatingContexts = True
        try:
            for _ in range(IDLE_ROUNDS):
                if not self._contextsDirty():
                    break
                yield from self._contextUpdates()
                self._flush()
        finally:
            self._updatingContexts = False
        if self.idling and self._contextsDirty() and not self._wakeAsked and not self.closed:
            # Changes kept coming: the rest at the next turn (wake-ups were
            # ignored while this ran).
            self._wakeAsked = True
            self.out.wake()

"""
Commands on mailboxes by name: CREATE, DELETE, RENAME, SUBSCRIBE,
UNSUBSCRIBE, LIST (RFC 5258, 5819, 6154), LSUB, STATUS.

On the protocol shape (docs/design.md): each store call is a yielded
``StoreCall`` on the account or a folder; its outcome (or its error,
raised at the ``yield``) comes back from the runner.
"""

from __future__ import annotations

from mailnet.imap import serialize
from mailnet.imap.commands.common import bad, no, reasonOf
from mailnet.imap.commands.fetchlines import isObjectId
from mailnet.imap.effects import ForgetFolder, KeepFolder, StoreCall
from mailnet.store.interfaces import DELETED, INBOX, SEEN, FolderExists, InvalidFolderName, NoSuchFolder, StoreError


class FolderCommands:
    """Folder commands of :class:`mailnet.imap.session.IMAPSession` (a mixin)."""

    def cmdCreate(self, cmd):
        name = self.decodeName(cmd.mailbox)
        # RFC 3501 s6.3.3: a trailing separator only declares intent.
        name = name.rstrip("/") if name.rstrip("/") else name
        if name == INBOX:
            raise no("INBOX exists already", b"ALREADYEXISTS")
        try:
            yield StoreCall(self.account, "createFolder", (name,))
        except FolderExists:
            raise no("Mailbox exists already", b"ALREADYEXISTS")
        except InvalidFolderName as e:
            raise no("Invalid mailbox name: %s" % reasonOf(e), b"CANNOT")
        self._tellMailboxEvent("created", name)  # RFC 5465 MailboxName
        # RFC 8474 s4.1: the new mailbox's id in the tagged OK (none from a store without ids).
        mailboxId = yield from self._mailboxIdOf(name)
        if mailboxId is not None:
            return ("OK", "CREATE completed", b"MAILBOXID (" + mailboxId.encode("ascii") + b")")

    def _mailboxIdOf(self, name):
        """The mailbox id of folder ``name``, or None (a store without ids, or the folder gone meanwhile)."""
        try:
            folder = yield StoreCall(self.account, "openFolder", (name,))
        except (StoreError, OSError):
            return None
        try:
            mailboxId = getattr(folder, "mailboxId", None)
        finally:
            self.closeFolder(folder)
        return mailboxId if isObjectId(mailboxId) else None

    def cmdDelete(self, cmd):
        name = self.decodeName(cmd.mailbox)
        if name == INBOX:
            raise no("INBOX cannot be deleted", b"CANNOT")
        self.emit(ForgetFolder(self.username, name))
        try:
            yield StoreCall(self.account, "deleteFolder", (name,))
        except InvalidFolderName as e:
            raise no("Invalid mailbox name: %s" % reasonOf(e), b"CANNOT")
        self._tellMailboxEvent("deleted", name)  # RFC 5465 MailboxName

    def cmdRename(self, cmd):
        old = self.decodeName(cmd.old)
        new = self.decodeName(cmd.new)
        self.emit(ForgetFolder(self.username, old))
        try:
            yield StoreCall(self.account, "renameFolder", (old, new))
        except FolderExists:
            raise no("Target mailbox exists already", b"ALREADYEXISTS")
        except InvalidFolderName as e:
            raise no("Invalid mailbox name: %s" % reasonOf(e), b"CANNOT")
        self._tellMailboxEvent("renamed", new, old)  # RFC 5465 MailboxName

    def cmdSubscribe(self, cmd):
        name = self.decodeName(cmd.mailbox)
        try:
            yield StoreCall(self.account, "setSubscribed", (name, cmd.name == "SUBSCRIBE"))
        except InvalidFolderName as e:
            raise no("Invalid mailbox name: %s" % reasonOf(e), b"CANNOT")
        # RFC 5465 SubscriptionChange
        self._tellMailboxEvent("subscribed" if cmd.name == "SUBSCRIBE" else "unsubscribed", name)

    def cmdList(self, cmd):
        yield from self._list(cmd, lsub=False)

    def cmdLsub(self, cmd):
        cmd.selection = ["SUBSCRIBED"]
        cmd.returns = []
        cmd.statusItems = None
        cmd.extended = False
        yield from self._list(cmd, lsub=True)

    def _list(self, cmd, lsub):
        reference = self.decodeName(cmd.reference) if cmd.reference else ""
        patterns = []
        for raw in cmd.patterns:
            try:
                pattern = serialize.decodeMailbox(raw) if not (self.rev2 or self.utf8) else raw.decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                # Valid syntax (list-mailbox) that names no mailbox: it
                # matches nothing, the command is still OK.
                continue
            patterns.append(pattern)
        selection = set(cmd.selection)
        returns = set(cmd.returns)
        for option in selection:
            if option not in ("SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"):
                raise bad("Unknown LIST selection option %s" % option)
        if "RECURSIVEMATCH" in selection and not selection - {"RECURSIVEMATCH", "REMOTE"}:
            # RFC 5258 s3.1: not as the only selection option, nor only with REMOTE.
            raise bad("RECURSIVEMATCH needs another selection option than REMOTE")
        for option in returns:
            if option not in ("SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"):
                raise bad("Unknown LIST return option %s" % option)
        keyword = b"LSUB" if lsub else b"LIST"
        if not cmd.extended and len(patterns) == 1 and patterns[0] == "":
            # RFC 3501 s6.3.8: the hierarchy delimiter and the root name.
            root = reference.split("/")[0] + "/" if "/" in reference else ""
            self.send(b"* " + keyword + b' (\\Noselect) "/" ' + self.encodeName(root) + b"\r\n")
            return
        folders = yield StoreCall(self.account, "listFolders")
        existing = {f.name: f for f in folders}
        subscribed = {f.name for f in folders if f.subscribed}
        names = list(existing)
        listSubscriptions = getattr(self.account, "listSubscriptions", None)
        if listSubscriptions is not None and (lsub or "SUBSCRIBED" in selection or "SUBSCRIBED" in returns):
            # RFC 3501 s6.3.9, RFC 5258 s3: subscribed names whose folder is
            # gone are still listed (\Noselect in LSUB, \NonExistent in LIST).
            subscribed = set((yield StoreCall(self.account, "listSubscriptions")))
            if lsub or "SUBSCRIBED" in selection:
                names += [n for n in subscribed if n not in existing]
        implied = set()
        for n in list(existing):
            parts = n.split("/")
            for i in range(1, len(parts)):
                parent = "/".join(parts[:i])
                if parent not in existing:
                    implied.add(parent)
        hasChildren = set()
        for n in set(existing) | implied:  # not from names that only are subscribed
            if "/" in n:
                hasChildren.add(n.rsplit("/", 1)[0])
        subscribedParents = set()
        for n in subscribed:
            parts = n.split("/")
            for i in range(1, len(parts)):
                subscribedParents.add("/".join(parts[:i]))
        candidates = set(names) | implied
        if lsub or "RECURSIVEMATCH" in selection:
            # RFC 3501 s6.3.9, RFC 5258 s3.1: the parents of subscribed
            # names are listed even where no folder has their name.
            candidates |= subscribedParents
        allNames = sorted(candidates, key=lambda n: (n != INBOX and not n.startswith(INBOX + "/"), n))
        regexes = [_patternRegex(reference + p) for p in patterns]
        # LSUB: the patterns with "%", whose match stops at a level.
        percentRegexes = [r for r, p in zip(regexes, patterns) if "%" in reference + p]
        out = []
        statusFor = []
        for n in allNames:
            if not any(r.fullmatch(n) for r in regexes):
                continue
            info = existing.get(n)
            onlyParent = False
            if "SUBSCRIBED" in selection:
                if n not in subscribed:
                    if "RECURSIVEMATCH" in selection and n in subscribedParents:
                        pass
                    elif lsub and n in subscribedParents and any(r.fullmatch(n) for r in percentRegexes):
                        # RFC 3501 s6.3.9: "foo/bar" subscribed, "foo" not:
                        # LSUB "%" MUST return foo, flagged \Noselect.
                        onlyParent = True
                    else:
                        continue
            if "SPECIAL-USE" in selection and (info is None or not info.specialUse):
                continue
            attrs = []
            if info is None:
                attrs.append(b"\\NonExistent" if (self.rev2 or cmd.extended) and not lsub else b"\\Noselect")
            elif onlyParent:
                attrs.append(b"\\Noselect")
            if not lsub:
                attrs.append(b"\\HasChildren" if n in hasChildren else b"\\HasNoChildren")
            if info is not None and info.specialUse and (not cmd.extended or "SPECIAL-USE" in returns
                                                         or "SPECIAL-USE" in selection or not returns):
                attrs.append(info.specialUse.encode())
            if not lsub and ("SUBSCRIBED" in returns or "SUBSCRIBED" in selection) and n in subscribed:
                attrs.append(b"\\Subscribed")
            line = b"* " + keyword + b" (" + b" ".join(attrs) + b') "/" ' + self.encodeName(n)
            if "RECURSIVEMATCH" in selection and n in subscribedParents:
                line += b' ("CHILDINFO" ("SUBSCRIBED"))'
            out.append(line + b"\r\n")
            if "STATUS" in returns and info is not None:
                statusFor.append((len(out), n))
        if statusFor:
            # RFC 5819: STATUS right after the LIST line of each mailbox.
            merged = []
            index = 0
            for position, n in statusFor:
                merged.extend(out[index:position])
                index = position
                try:
                    items = yield from self._status(n, cmd.statusItems)
                    merged.append(b"* STATUS " + self.encodeName(n) + b" " + items + b"\r\n")
                except NoSuchFolder:
                    pass
            merged.extend(out[index:])
            out = merged
        self.sendLines(out)

    def cmdStatus(self, cmd):
        name = self.decodeName(cmd.mailbox)
        items = yield from self._status(name, cmd.items)
        self.send(b"* STATUS " + self.encodeName(name) + b" " + items + b"\r\n")

    def _status(self, name, items):
        if "HIGHESTMODSEQ" in items:
            self.condstore = True  # RFC 7162 s3.1: a CONDSTORE enabling command
        folder = yield StoreCall(self.account, "openFolder", (name,))
        try:
            yield StoreCall(folder, "refresh")
            self.emit(KeepFolder((self.username, folder.name), self.account, folder.name))
            need = set(items)
            infos = folder.messages() if need & {"MESSAGES", "UNSEEN", "SIZE", "DELETED", "RECENT"} else []
            values = []
            for item in items:
                if item == "MESSAGES":
                    values.append(b"MESSAGES %d" % len(infos))
                elif item == "RECENT":
                    uids = [m.uid for m in infos]
                    values.append(b"RECENT %d" % len(self.shared.recent.peek((self.username, folder.name), uids, folder)))
                elif item == "UIDNEXT":
                    values.append(b"UIDNEXT %d" % folder.uidNext)
                elif item == "UIDVALIDITY":
                    values.append(b"UIDVALIDITY %d" % folder.uidValidity)
                elif item == "UNSEEN":
                    values.append(b"UNSEEN %d" % sum(1 for m in infos if SEEN not in m.flags))
                elif item == "HIGHESTMODSEQ":
                    values.append(b"HIGHESTMODSEQ %d" % folder.highestModSeq)
                elif item == "SIZE":
                    values.append(b"SIZE %d" % sum(m.size for m in infos))
                elif item == "DELETED":
                    values.append(b"DELETED %d" % sum(1 for m in infos if DELETED in m.flags))
                elif item == "APPENDLIMIT":
                    values.append(b"APPENDLIMIT %d" % self.appendLimit())
                elif item == "MAILBOXID":
                    # RFC 8474 s4.2; left out by a store without mailbox ids (the syntax has no NIL).
                    mailboxId = getattr(folder, "mailboxId", None)
                    if isObjectId(mailboxId):
                        values.append(b"MAILBOXID (" + mailboxId.encode("ascii") + b")")
            return b"(" + b" ".join(values) + b")"
        finally:
            self.closeFolder(folder)


def _patternRegex(pattern):
    """A LIST pattern as a regex: ``*`` anything, ``%`` anything but the separator."""
    import re

    head = pattern[:5]
    if head.upper() == INBOX and (len(pattern) == 5 or pattern[5] in "/*%"):
        pattern = INBOX + pattern[5:]
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "%":
            out.append("[^/]*")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)

"""
IMAP NOTIFY (RFC 5465) without I/O: the grammar of the NOTIFY command
(s8), the checks the RFC asks for (s3, s5), which event group a mailbox
falls under (s6), and the per-session record of what is waiting to be
said (:class:`NotifyState`), bounded.

:func:`parse` takes the recursive-descent parser of
:mod:`mailnet.imap.parser`, which dispatches ``NOTIFY`` to it; the
command itself is :mod:`mailnet.imap.commands.notify`.
"""

from __future__ import annotations

from mailnet.imap import fetchitems
from mailnet.store.interfaces import INBOX, SEEN

# The events of RFC 5465 s5, by their upper-case name -> canonical name.
EVENTS = {
    b"MESSAGENEW": "MessageNew",
    b"MESSAGEEXPUNGE": "MessageExpunge",
    b"FLAGCHANGE": "FlagChange",
    b"ANNOTATIONCHANGE": "AnnotationChange",
    b"MAILBOXNAME": "MailboxName",
    b"SUBSCRIPTIONCHANGE": "SubscriptionChange",
    b"MAILBOXMETADATACHANGE": "MailboxMetadataChange",
    b"SERVERMETADATACHANGE": "ServerMetadataChange",
}
# What this server gives (the rest: NO [BADEVENT], s3).
SUPPORTED = ("MessageNew", "MessageExpunge", "FlagChange", "MailboxName", "SubscriptionChange")
MESSAGE_EVENTS = frozenset({"MessageNew", "MessageExpunge", "FlagChange", "AnnotationChange"})
MAILBOX_EVENTS = frozenset({"MailboxName", "SubscriptionChange", "MailboxMetadataChange"})

# Filters (s6).  The selected mailbox's two, and the others in the order
# in which a mailbox matched by several takes its events: the most
# specific filter first.
SELECTED_FILTERS = ("SELECTED", "SELECTED-DELAYED")
OTHER_FILTERS = ("MAILBOXES", "SUBTREE", "SUBSCRIBED", "INBOXES", "PERSONAL")
_WITH_MAILBOXES = ("MAILBOXES", "SUBTREE")

# MessageNew's fetch attributes (s5.2) this server sends: the items of the
# index (no message is read for a notification).
FETCH_ITEMS = ("UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "MODSEQ")


class NotifyError(Exception):
    """A NOTIFY the server refuses: ``kind`` "BAD" or "NO", with a response code."""

    def __init__(self, kind, text, code=None):
        Exception.__init__(self, text)
        self.kind = kind
        self.text = text
        self.code = code


class EventGroup:
    """
    One ``(filter events)`` of NOTIFY SET.

    @ivar filter: one of SELECTED_FILTERS or OTHER_FILTERS.
    @ivar mailboxes: the raw names (bytes) of MAILBOXES / SUBTREE, else ().
    @ivar events: frozenset of canonical event names (empty for NONE).
    @ivar fetchAtts: MessageNew's fetch attributes (parser FetchAtts), or None.
    """

    def __init__(self, filter, mailboxes, events, fetchAtts):
        self.filter = filter
        self.mailboxes = mailboxes
        self.events = events
        self.fetchAtts = fetchAtts

    def __repr__(self):
        return "<EventGroup %s %r %s>" % (self.filter, self.mailboxes, sorted(self.events))


# Grammar (RFC 5465 s8)

def parse(p, uid):
    """``NOTIFY NONE`` / ``NOTIFY SET [STATUS] event-group *(SP event-group)``: the command's fields."""
    p.sp()
    word = p.atom("SET or NONE").upper()
    if word == b"NONE":
        return {"none": True, "status": False, "groups": []}
    if word != b"SET":
        p.fail("Expected SET or NONE after NOTIFY")
    p.sp()
    status = False
    if p.peek() != 0x28:
        if p.atom("STATUS or an event group").upper() != b"STATUS":
            p.fail("Expected STATUS or an event group")
        status = True
        p.sp()
    groups = [_group(p)]
    while not p.atEnd():
        p.sp()
        groups.append(_group(p))
    return {"none": False, "status": status, "groups": groups}


def _group(p):
    p.expect(b"(", "'(' to open an event group")
    word = p.atom("a mailbox filter").upper()
    name = word.decode("ascii", "replace")
    if name not in SELECTED_FILTERS and name not in OTHER_FILTERS:
        p.fail("Unknown NOTIFY mailbox filter %s" % name[:40])
    mailboxes = ()
    if name in _WITH_MAILBOXES:
        p.sp()
        if p.peek() == 0x28:
            mailboxes = tuple(p.parenList(p.mailbox))
            if not mailboxes:
                p.fail("Expected at least one mailbox")
        else:
            mailboxes = (p.mailbox(),)
    p.sp()
    events, fetchAtts = _events(p)
    p.expect(b")", "')' to close an event group")
    return EventGroup(name, mailboxes, events, fetchAtts)


def _events(p):
    if p.peek() != 0x28:
        if p.atom("an event list or NONE").upper() != b"NONE":
            p.fail("Expected an event list or NONE")
        return frozenset(), None
    p.expect(b"(")
    events = []
    fetchAtts = None
    while True:
        raw = p.atom("an event")
        event = EVENTS.get(raw.upper())
        if event is None:
            event = raw.decode("ascii", "replace")  # event-ext: NO [BADEVENT] later
        if event == "MessageNew" and p.peek() == 0x20 and p.s[p.i + 1:p.i + 2] == b"(":
            p.sp()
            fetchAtts = p.parenList(lambda: fetchitems.fetchAtt(p))
            if not fetchAtts:
                p.fail("Expected at least one fetch attribute after MessageNew")
        events.append(event)
        if p.maybe(b")"):
            break
        p.sp()
    return frozenset(events), fetchAtts


def check(groups):
    """
    The rules of RFC 5465 s5 and s6 over parsed groups; raises
    :class:`NotifyError` (BAD for what the RFC calls an error, NO
    [BADEVENT] for events this server does not give, NO [CANNOT] for fetch
    attributes it cannot send in a notification).
    """
    seen = set()
    for g in groups:
        if g.filter in SELECTED_FILTERS:
            if seen & set(SELECTED_FILTERS):
                raise NotifyError("BAD", "SELECTED given twice")
        elif g.filter not in _WITH_MAILBOXES and g.filter in seen:
            raise NotifyError("BAD", "Filter %s given twice" % g.filter)
        seen.add(g.filter)
        events = g.events
        # s5: MessageNew and MessageExpunge go together; FlagChange and
        # AnnotationChange need both.
        if ("MessageNew" in events) != ("MessageExpunge" in events):
            raise NotifyError("BAD", "MessageNew and MessageExpunge must be given together")
        if events & {"FlagChange", "AnnotationChange"} and "MessageNew" not in events:
            raise NotifyError("BAD", "FlagChange and AnnotationChange need MessageNew and MessageExpunge")
        if g.fetchAtts is not None and g.filter not in SELECTED_FILTERS:
            # s5.1: fetch attributes only for the selected mailbox.
            raise NotifyError("BAD", "MessageNew fetch attributes are only for SELECTED")
        if g.filter in SELECTED_FILTERS and events & MAILBOX_EVENTS:
            raise NotifyError("BAD", "SELECTED takes message events only")
    unsupported = set()
    for g in groups:
        unsupported |= {e for e in g.events if e not in SUPPORTED}
    if unsupported:
        # s3: NO [BADEVENT (the events the server supports)].
        raise NotifyError("NO", "Event(s) not supported: %s" % " ".join(sorted(unsupported)),
                          b"BADEVENT (" + " ".join(SUPPORTED).encode("ascii") + b")")
    for g in groups:
        if g.fetchAtts:
            for att in g.fetchAtts:
                if att.name not in FETCH_ITEMS:
                    raise NotifyError("NO", "MessageNew can carry only %s here; FETCH the rest" % " ".join(FETCH_ITEMS),
                                      b"CANNOT")


def fetchNames(atts):
    """The distinct item names of MessageNew's fetch attributes, UID first (always sent)."""
    names = ["UID"]
    for att in atts or ():
        if att.name not in names:
            names.append(att.name)
    return tuple(names)


# Which group a mailbox is under

def groupFor(groups, name, subscribed):
    """
    The event group (not SELECTED) that mailbox ``name`` (store form) falls
    under, or None.  ``groups``: (filter, names, group) with the names of
    MAILBOXES / SUBTREE decoded; ``subscribed``: whether it is subscribed.
    A mailbox several filters match takes the most specific one's events.
    """
    best = None
    for filter, names, group in groups:
        if filter == "MAILBOXES":
            hit = name in names
        elif filter == "SUBTREE":
            hit = any(name == n or name.startswith(n + "/") for n in names)
        elif filter == "SUBSCRIBED":
            hit = subscribed
        elif filter == "INBOXES":
            hit = name == INBOX  # the only mailbox mail is delivered to by default
        else:  # PERSONAL: every mailbox of the user
            hit = True
        if hit and (best is None or OTHER_FILTERS.index(filter) < OTHER_FILTERS.index(best[0])):
            best = (filter, group)
    return best[1] if best else None


def statusValues(folder, condstore):
    """The values of a notification's STATUS (s5.2, s5.4): MESSAGES UIDNEXT UNSEEN [HIGHESTMODSEQ]."""
    infos = folder.messages()
    unseen = 0
    for m in infos:
        if SEEN not in m.flags:
            unseen += 1
    values = (len(infos), folder.uidNext, unseen)
    if condstore:
        values += (folder.highestModSeq,)
    return values


def statusItems(values):
    text = b"MESSAGES %d UIDNEXT %d UNSEEN %d" % values[:3]
    if len(values) > 3:
        text += b" HIGHESTMODSEQ %d" % values[3]
    return b"(" + text + b")"


class NotifyState:
    """
    A session's NOTIFY: the groups in force, the mailboxes it watches and
    what waits to be said.  Bounded: at most ``maxPending`` mailbox events
    (LIST responses) wait; past that the notifications stop with
    ``[NOTIFICATIONOVERFLOW]`` (s5.8) and the client must NOTIFY again.
    STATUS waits as one mark per watched mailbox (so at most as many as it
    watches), whatever the number of changes.
    """

    def __init__(self, groups, others, maxPending):
        self.groups = groups
        self.selected = next((g for g in groups if g.filter in SELECTED_FILTERS), None)
        self.others = others  # [(filter, decoded names, group)]
        self.maxPending = maxPending
        self.watches = {}  # name -> (folder, MailboxWatch)
        self.opening = set()  # names whose folder is to be opened for a watch
        self.accountWatch = None  # the IAccountListener while mailbox events are asked for
        self.listDirty = False  # the account's mailboxes changed: list them again
        self.listing = False  # a listFolders is on its way
        self.listStale = False  # that listFolders started before a change told another way
        self.subscribedOnly = set()  # names told subscribed that had no mailbox
        self.pendingStatus = {}  # name -> None, in order of change
        self.pendingLines = []  # LIST responses (bytes)
        self.lastStatus = {}  # name -> the values last sent
        self.known = {}  # name -> subscribed: the user's mailboxes as this session knows them
        self.overflowed = False
        self.fetchNames = fetchNames(self.selected.fetchAtts) if self.selected and self.selected.fetchAtts else None

    def selectedEvents(self):
        return self.selected.events if self.selected is not None else frozenset()

    def expungeAnyTime(self):
        """s5.3 / s6: SELECTED with MessageExpunge tells of expunges also between commands; SELECTED-DELAYED not."""
        s = self.selected
        return s is not None and s.filter == "SELECTED" and "MessageExpunge" in s.events

    def wantsMailboxEvents(self):
        return any(g.events & {"MailboxName", "SubscriptionChange"} for _, _, g in self.others)

    def wantsMailboxEvent(self, name, event):
        group = groupFor(self.others, name, self.known.get(name, False))
        return group is not None and event in group.events

    def addLine(self, line):
        """A LIST response waits; False once the bound is passed (the caller stops notifying)."""
        if self.overflowed:
            return False
        if len(self.pendingLines) >= self.maxPending:
            self.overflowed = True
            self.pendingLines = []
            self.pendingStatus = {}
            return False
        self.pendingLines.append(line)
        return True

    def hasPending(self):
        return bool(self.pendingLines or self.pendingStatus or self.overflowed)

"""
RFC 5267 contexts (CONTEXT=SEARCH, CONTEXT=SORT), without I/O: the
PARTIAL window of a result, and the live result of a ``SEARCH`` or
``SORT`` given ``RETURN (UPDATE)``, with the ``ADDTO`` / ``REMOVEFROM``
updates its changes make.

A context holds its result as UIDs (in ascending order for SEARCH, in
sort order for SORT); numbers are made when an update is written, so a
context of message sequence numbers stays right across EXPUNGEs.  Which
messages match now is worked out by the session (the search program over
the messages that changed, content read in worker threads,
mailnet/imap/commands/context.py); this module only compares results.

Positions (RFC 5267 s4.3.2-s4.3.4): a SEARCH result has no order, its
updates carry position 0; a SORT update carries the 1-based position in
the sorted result, REMOVEFROM counted on the result as it shrinks (the
client applies the items in order), ADDTO the position each added message
has in the new result, runs of consecutive positions as one set.
"""

from __future__ import annotations

from mailnet.imap import serialize, sort

# Options that ask for data in the ESEARCH response (RFC 4731 s3.1, RFC 5267 s4.4).
DATA_OPTIONS = frozenset(("MIN", "MAX", "ALL", "COUNT", "SAVE", "PARTIAL"))


def dataOptions(returns):
    """
    The set of options of a RETURN (...) that ask for data: an empty one
    (``RETURN ()``, or only ``CONTEXT`` / ``UPDATE``) means ALL (RFC 4731
    s3.1).
    """
    options = {r for r in returns if r in DATA_OPTIONS}
    return options or {"ALL"}


def partialSlice(partial, count):
    """
    (start, stop) indices into a result of ``count`` items for the PARTIAL
    range ``partial`` ((first, last), 1-based; negative counts from the
    end, RFC 9394 s4.4); empty (start == stop) when the range is past the
    result.
    """
    first, last = partial
    if first > 0:
        start, stop = first - 1, last
    else:
        # -1:-3 is the last three: positions count - 3 .. count - 1.
        start, stop = count + last, count + first + 1
    start = min(max(start, 0), count)
    stop = min(max(stop, start), count)
    return start, stop


def partialItem(partial, numbers, formatSet):
    """``PARTIAL (first:last set)``, or ``NIL`` when the window is empty (RFC 5267 s4.4)."""
    start, stop = partialSlice(partial, len(numbers))
    window = numbers[start:stop]
    body = formatSet(window) if window else b"NIL"
    return b"PARTIAL (%d:%d %s)" % (partial[0], partial[1], body)


class Context:
    """
    One live result (RFC 5267 s4.3).

    @ivar tag: the tag of the command that made it (its TAG correlator).
    @ivar uid: UIDs (``UID SEARCH``/``UID SORT``) or sequence numbers.
    @ivar program: the search program (as the search code evaluates it).
    @ivar criteria: the sort criteria, or None for a SEARCH.
    @ivar options: the data options it was asked for (MIN MAX COUNT...).
    @ivar uids: the result: a list of UIDs, ascending for a SEARCH, in
        sort order for a SORT.
    """

    def __init__(self, tag, uid, program, criteria, options, uids):
        self.tag = tag
        self.uid = uid
        self.program = program
        self.criteria = criteria
        self.options = options
        self.uids = list(uids)
        self.members = set(self.uids)

    @property
    def sorted(self):
        return self.criteria is not None

    # Changes

    def expunged(self, gone, number):
        """
        Messages ``gone`` (a set of UIDs) are expunged and about to be
        announced: the ``* ESEARCH ... REMOVEFROM`` line for those in the
        result (RFC 5267 s4.3.4: before the EXPUNGE responses, numbered as
        the client still knows them), or None.
        """
        if not self.members & gone:
            return None
        removed = []
        kept = []
        for uid in self.uids:
            if uid in gone:
                removed.append((len(kept) + 1 if self.sorted else 0, uid))
            else:
                kept.append(uid)
        self.uids = kept
        self.members.difference_update(gone)
        return self.line(removed, [], number)

    def searchUpdate(self, checked, matched, number):
        """
        A SEARCH context: ``checked`` UIDs were looked at again and
        ``matched`` (a set) of them match now.  The update line, or None.
        """
        members = self.members
        removed = [(0, uid) for uid in checked if uid in members and uid not in matched]
        added = [(0, uid) for uid in checked if uid in matched and uid not in members]
        if not removed and not added:
            return None
        gone = {uid for _, uid in removed}
        members.difference_update(gone)
        members.update(uid for _, uid in added)
        self.uids = sorted(members)
        return self.line(removed, added, number)

    def sortUpdate(self, order, number):
        """
        A SORT context: ``order`` is the new result in sort order.  The
        update line, or None.  The messages that stay keep their order
        (a message's sort keys never change), so the new result is the old
        one less REMOVEFROM plus ADDTO.
        """
        new = set(order)
        removed = []
        kept = 0
        for uid in self.uids:
            if uid in new:
                kept += 1
            else:
                removed.append((kept + 1, uid))
        members = self.members
        added = [(i + 1, uid) for i, uid in enumerate(order) if uid not in members]
        self.uids = list(order)
        self.members = new
        if not removed and not added:
            return None
        return self.line(removed, added, number)

    # Output

    def line(self, removed, added, number):
        """
        ``* ESEARCH (TAG "t") [UID] REMOVEFROM (...) ADDTO (...)`` (as
        Dovecot, no new MIN, MAX or COUNT: the client works them out).
        ``removed`` and ``added`` are [(position, uid)] in the order the
        client is to apply them; ``number`` maps a UID to what the client
        is told (itself, or its sequence number).
        """
        parts = [b'* ESEARCH (TAG "' + _quotedTag(self.tag) + b'")']
        if self.uid:
            parts.append(b"UID")
        if removed:
            parts.append(b"REMOVEFROM (" + self._groups(removed, number, True) + b")")
        if added:
            parts.append(b"ADDTO (" + self._groups(added, number, False) + b")")
        return b" ".join(parts) + b"\r\n"

    def _groups(self, items, number, removal):
        """``position set`` pairs: consecutive items of one run as one set."""
        groups = []
        for position, uid in items:
            if groups:
                last = groups[-1]
                if position == 0 and last[0] == 0:
                    last[1].append(uid)
                    continue
                if position and last[0] and position == (last[0] if removal else last[0] + len(last[1])):
                    last[1].append(uid)
                    continue
            groups.append([position, [uid]])
        out = []
        for position, uids in groups:
            numbers = [number(uid) for uid in uids]
            out.append(b"%d %s" % (position, sort.orderedSet(numbers) if position else serialize.seqset(numbers)))
        return b" ".join(out)


def _quotedTag(tag):
    return tag.encode("ascii").replace(b"\\", b"\\\\").replace(b'"', b'\\"')

"""
SEARCH (with ESEARCH, RFC 4731, and SEARCHRES, RFC 5182): index keys on
the reactor thread, content keys in worker threads.  SORT (RFC 5256,
RFC 5957, ESORT of RFC 5267) on the same search, with the sort keys of
mailnet.imap.sort.

On the protocol shape (docs/design.md): generators of effects.  Messages
are opened ahead (``Start``-ed ``StoreCall``s, the
:class:`~mailnet.imap.commands.reading.Opener`) and each batch is read and
matched in a worker thread (a ``Start``-ed ``InThread``) while the next
batch is being opened; ``Wait`` takes the batch's matches.
"""

from __future__ import annotations

from mailnet.imap import context, search, serialize, sort
from mailnet.imap.commands.common import bad, no
from mailnet.imap.commands.reading import Opener, readHeaderBytes, readRange, seekable
from mailnet.imap.effects import InThread, NextTurn, StoreCall
from mailnet.logs import Logger
from mailnet.store.interfaces import NoSuchMessage, StoreError, messageBytes

log = Logger()

# SEARCH reads and matches this many messages per worker-thread call, or
# fewer when they add up to SEARCH_BATCH_BYTES (a store may hand over small
# messages already read into memory).
SEARCH_BATCH = 64
SEARCH_BATCH_BYTES = 1024 * 1024
# Index keys over a large mailbox: this long (seconds) on the reactor, then let others in.
SEARCH_TURN = 0.02
# SORT makes the string keys of cached records this many per worker-thread
# call (a quarter of it or fewer inline).
COMPLETE_BATCH = 512


def checkUtf8Charset(session, charset, mandatory):
    """
    RFC 6855 s3 and its erratum 4029: after ENABLE UTF8=ACCEPT, a SEARCH
    names no charset, and SORT and THREAD (whose charset is mandatory)
    name UTF-8; either is BAD (the strings are UTF-8, whatever the label).
    """
    if not session.utf8 or charset is None:
        return
    if not mandatory:
        raise bad("No CHARSET in SEARCH after ENABLE UTF8=ACCEPT (RFC 6855 s3)")
    if charset not in ("UTF-8", "UTF8"):
        raise bad("Charset %s after ENABLE UTF8=ACCEPT; only UTF-8 (RFC 6855 s3)" % charset[:40])


class SearchCommands:
    """Search commands of :class:`mailnet.imap.session.IMAPSession` (a mixin)."""

    def _searchProgram(self, cmd):
        """(program, uses MODSEQ) of a SEARCH or SORT command: charset checked, strings decoded."""
        charset = cmd.charset
        checkUtf8Charset(self, charset, cmd.name != "SEARCH")
        if charset is not None and charset not in ("UTF-8", "US-ASCII", "UTF8"):
            raise no("Charset %s is not supported" % charset, b"BADCHARSET (UTF-8 US-ASCII)")
        try:
            program = search.decodeStrings(cmd.keys, "utf-8" if charset != "US-ASCII" else "ascii")
        except search.SearchError as e:
            raise no(str(e), e.code)
        modseq = search.usesModseq(program)
        if modseq:
            self._enableCondstore()
        return program, modseq

    def cmdSearch(self, cmd):
        view = self.view
        program, modseq = self._searchProgram(cmd)
        self._checkUpdate(cmd)
        results = yield from self._runSearch(program)
        returns = cmd.returns
        if returns is None and self.rev2:
            returns = ["ALL"]
        numbers = [uid if cmd.uid else msn for msn, uid, _ in results]
        if returns is None:
            line = b"* SEARCH" + _numbers(numbers)
            if modseq and results:
                # RFC 7162 s3.1.5: the highest mod-sequence of all the messages returned.
                line += b" (MODSEQ %d)" % max(info.modseq for _, _, info in results)
            self.send(line + b"\r\n")
            return
        # RFC 4731 ESEARCH / RFC 5182 SAVE / RFC 5267 s4 PARTIAL, UPDATE
        options = context.dataOptions(returns)
        if "UPDATE" in returns:
            self._keepContext(cmd, program, None, options, [uid for _, uid, _ in results])
        if options == {"SAVE"}:
            view.savedSearch = [uid for _, uid, _ in results]
            return
        if "SAVE" in options:
            if options & {"MIN", "MAX"} and not options & {"ALL", "COUNT", "PARTIAL"}:
                chosen = []
                if results and "MIN" in options:
                    chosen.append(results[0][1])
                if results and "MAX" in options and results[-1][1] not in chosen:
                    chosen.append(results[-1][1])
                view.savedSearch = chosen
            else:
                view.savedSearch = [uid for _, uid, _ in results]
        self.send(esearchLine(cmd, options, numbers, [info for _, _, info in results], modseq,
                              serialize.seqset) + b"\r\n")

    def cmdSort(self, cmd):
        """
        SORT and UID SORT (RFC 5256 s3, RFC 5957 DISPLAYFROM/DISPLAYTO), and
        ESORT's RETURN (...) (RFC 5267 s3): the search program as for
        SEARCH, then the matches ordered; header keys come from the sort
        cache, and only messages not in it are read.
        """
        view = self.view
        program, modseq = self._searchProgram(cmd)
        self._checkUpdate(cmd)
        results = yield from self._runSearch(program)
        criteria = sort.effective(cmd.criteria)
        cache = self.shared.sortKeys
        folderKey = (self.username, view.name, view.uidValidity)
        uids = [uid for _, uid, _ in results]
        positions = cache.order(folderKey, criteria, uids)
        if positions is None:
            complete = True
            keys = {key for key, _ in criteria} & sort.HEADER_KEYS
            if keys:
                records, complete = yield from self._sortRecords(results, keys)
            else:
                records = [sort.EMPTY] * len(results)
            positions = sort.order([info for _, _, info in results], records, criteria)
            if complete:
                cache.keepOrder(folderKey, criteria, uids, positions)
        entries = [results[i] for i in positions]
        numbers = [e[1] if cmd.uid else e[0] for e in entries]
        if cmd.returns is None:
            line = b"* SORT" + _numbers(numbers)
            if modseq and entries:
                # RFC 7162 s3.1.5: the highest mod-sequence of all the messages returned.
                line += b" (MODSEQ %d)" % max(e[2].modseq for e in entries)
            self.send(line + b"\r\n")
            return
        # RFC 5267 s3.1 (ESORT): MIN and MAX are the first and last in sort order.
        options = context.dataOptions(cmd.returns)
        if "UPDATE" in cmd.returns:
            # RFC 5267 s4.3 (CONTEXT=SORT)
            self._keepContext(cmd, program, tuple(cmd.criteria), options, [e[1] for e in entries])
        if "SAVE" in options:
            # RFC 5182: the saved result is a set (ascending UIDs), whatever the order.
            if options & {"MIN", "MAX"} and not options & {"ALL", "COUNT", "PARTIAL"} and entries:
                chosen = set()
                if "MIN" in options:
                    chosen.add(entries[0][1])
                if "MAX" in options:
                    chosen.add(entries[-1][1])
                view.savedSearch = sorted(chosen)
            else:
                view.savedSearch = sorted(e[1] for e in entries)
            if options == {"SAVE"}:
                return
        self.send(esearchLine(cmd, options, numbers, [e[2] for e in entries], modseq, sort.orderedSet) + b"\r\n")

    def _sortRecords(self, results, keys):
        """
        (records, complete): the sort records of ``results`` ([(msn, uid,
        info)]), in the same order, with ``keys`` made: from the shared
        cache, the others read (the header only) and made in worker
        threads, SEARCH_BATCH messages at a time, while the next ones are
        being opened; ``complete`` is false when a message could not be
        read (its keys are empty).
        """
        records, complete = yield from self._loadRecords(results, keys)
        need = [r for r in records if not r.has(keys)]
        # Keys not made yet in cached records (a first SORT by another key):
        # made in worker threads too when there are many.
        for i in range(0, len(need), COMPLETE_BATCH):
            batch = need[i:i + COMPLETE_BATCH]
            if len(need) <= COMPLETE_BATCH // 4:
                _completeRecords(batch, keys)
            else:
                yield InThread(_completeRecords, (batch, keys))
                if self.closed:
                    raise ConnectionError("closed")
        return records, complete

    def _loadRecords(self, results, keys):
        """_sortRecords' first half: the records, read where the cache has none."""
        view = self.view
        cache = self.shared.sortKeys
        key = (self.username, view.name, view.uidValidity)
        known = cache.folder(key)
        if len(known) > 2 * len(view) + 1000:
            cache.prune(key, set(view.uids))
        missing = [(uid, info.internalDate) for _, uid, info in results if uid not in known]
        if missing:
            found = {}
            opener = Opener(self, view.folder, [uid for uid, _ in missing], window=16)
            batch = []
            running = None
            try:
                for uid, internalDate in missing:
                    try:
                        f = yield from opener.next(uid)
                    except NoSuchMessage:
                        continue
                    batch.append((uid, internalDate, f))
                    if len(batch) >= SEARCH_BATCH:
                        if running is not None:
                            found.update((yield from self.waitFor(running)))
                            running = None
                        if self.closed:
                            raise ConnectionError("closed")
                        running = self.startEffect(InThread(_readRecords, (batch, keys)))
                        batch = []
                if running is not None:
                    found.update((yield from self.waitFor(running)))
                    running = None
                if batch:
                    found.update((yield InThread(_readRecords, (batch, keys))))
                    batch = []
            finally:
                opener.close()
                if running is not None:
                    self.discard((running,))
                for _, _, f in batch:
                    f.close()
            cache.store(key, found)
            get = found.get
            records = [known.get(uid) or get(uid) for _, uid, _ in results]
            if None in records:
                # Unreadable now (gone, or an I/O error): empty keys, this time.
                return [r or sort.EMPTY for r in records], False
            return records, True
        return [known[uid] for _, uid, _ in results], True

    def _objectIdProgram(self, program):
        """RFC 8474 s6: the program with its EMAILID / THREADID keys looked up once, for the whole mailbox."""
        kinds = search.objectIdKinds(program)
        if not kinds:
            return program
        folder = self.view.folder
        uids = list(self.view.uids)
        ids = {}
        emailIds = getattr(folder, "emailIds", None)
        if "EMAILID" in kinds and emailIds is not None:
            ids["EMAILID"] = emailIds(uids)
        if "THREADID" in kinds and getattr(folder, "threadIds", None) is not None:
            try:
                ids["THREADID"] = yield StoreCall(folder, "threadIds", (uids,))
            except (StoreError, OSError) as e:
                log.warn("thread ids unavailable: {error}",
                         error=(e.strerror if isinstance(e, OSError) else str(e))[:200])
                raise no("Thread ids are unavailable now", b"UNAVAILABLE")
            if self.closed:
                raise ConnectionError("closed")
        return search.resolveObjectIds(program, ids)

    def _runSearch(self, program, only=None):
        """
        (``yield from``) [(msn, uid, info)] of matching messages, ascending;
        of the mailbox, or of ``only`` ([(msn, uid)], ascending: the
        messages an RFC 5267 context looks at again).
        """
        program = yield from self._objectIdProgram(program)
        view = self.view
        folder = view.folder
        get = folder.get
        meta, content = search.split(program)
        meta = [key for key in meta if key != ("ALL",)]
        messages = enumerate(view.uids, 1) if only is None else only
        if not meta and not content:
            # SEARCH ALL, SORT ... ALL (a webmail's list view): no key to
            # evaluate, only the messages still there.
            results = []
            for msn, uid in messages:
                info = get(uid)
                if info is not None:
                    results.append((msn, uid, info))
            return results
        searcher = search.Searcher(program, len(view), view.maxUid(), set(view.savedSearch or ()),
                                   self.shared.settings.mimeParts)
        recent = view.recent
        results = []
        todo = []
        match = searcher.match
        clock = self.clock
        turnStart = clock.seconds()
        for msn, uid in messages:
            if not msn & 1023 and clock.seconds() - turnStart > SEARCH_TURN:
                # Index keys over a large mailbox: let other sessions in.
                yield NextTurn()
                turnStart = clock.seconds()
                if self.closed:
                    raise ConnectionError("closed")
            info = get(uid)
            if info is None:
                continue
            c = search.Candidate(msn, uid, info, uid in recent)
            ok = True
            for key in meta:
                if not match(c, key):
                    ok = False
                    break
            if not ok:
                continue
            if content:
                todo.append(c)
            else:
                results.append((msn, uid, info))
        if todo:
            opener = Opener(self, folder, [c.uid for c in todo], window=16)
            try:
                results = yield from self._searchContent(program, todo, content, match, opener)
            finally:
                opener.close()
        return results

    def _searchContent(self, program, todo, content, match, opener):
        """
        Read and match the candidates in a worker thread, 64 at a time (or
        1 MB), while the next ones are being opened: the reactor thread
        stays free for other sessions.  (The Maildir store reads small
        messages whole when it opens them, on the reactor thread; large
        ones are still read here.)
        """
        matched = []
        batch = []
        batchBytes = 0
        running = None
        try:
            for c in todo:
                try:
                    f = yield from opener.next(c.uid)
                except NoSuchMessage:
                    continue
                batch.append((c, f))
                batchBytes += c.info.size
                if len(batch) >= SEARCH_BATCH or batchBytes >= SEARCH_BATCH_BYTES:
                    if running is not None:
                        matched.extend((yield from self.waitFor(running)))
                        running = None
                    if self.closed:
                        raise ConnectionError("closed")
                    running = self.startEffect(InThread(_matchBatch, (batch, content, match, program)))
                    batch = []
                    batchBytes = 0
            if running is not None:
                matched.extend((yield from self.waitFor(running)))
                running = None
            if batch:
                matched.extend((yield InThread(_matchBatch, (batch, content, match, program))))
                batch = []
        finally:
            for _, f in batch:
                f.close()
            if running is not None:
                self.discard((running,))
        return matched


def _numbers(numbers):
    """`` 1 2 3`` (a space before each): the numbers of a SEARCH or SORT response."""
    if not numbers:
        return b""
    return (" " + " ".join(map(str, numbers))).encode("ascii")


def esearchLine(cmd, options, numbers, infos, modseq, formatAll):
    """
    The ``* ESEARCH`` response (RFC 4731 s3.1; RFC 5267 s3.2 for ESORT)
    for ``numbers`` (MSNs or UIDs) in the order they are to be reported
    (ascending for SEARCH, sort order for SORT) and their MessageInfo
    ``infos``; MIN is the first, MAX the last.  ``formatAll`` writes the
    ALL set.
    """
    parts = [b'* ESEARCH (TAG "' + cmd.tag.encode("ascii") + b'")']
    if cmd.uid:
        parts.append(b"UID")
    if numbers:
        if "MIN" in options:
            parts.append(b"MIN %d" % numbers[0])
        if "MAX" in options:
            parts.append(b"MAX %d" % numbers[-1])
        if "ALL" in options:
            parts.append(b"ALL " + formatAll(numbers))
    partial = getattr(cmd, "partial", None)
    if partial is not None:
        # RFC 5267 s4.4: the window of the result (in sort order for SORT)
        parts.append(context.partialItem(partial, numbers, formatAll))
    if "COUNT" in options:
        parts.append(b"COUNT %d" % len(numbers))
    if modseq and numbers:
        if options & {"MIN", "MAX"} and not options & {"ALL", "COUNT", "PARTIAL"}:
            # RFC 4731 s3.2: with MIN and/or MAX alone, the mod-sequence of
            # the message(s) returned, not of every match.
            returned = []
            if "MIN" in options:
                returned.append(infos[0])
            if "MAX" in options:
                returned.append(infos[-1])
        else:
            returned = infos
        parts.append(b"MODSEQ %d" % max(info.modseq for info in returned))
    return b" ".join(parts)


def _completeRecords(records, keys):
    """(In a worker thread, or inline for a few.) Make ``keys`` in each record."""
    for record in records:
        record.complete(keys)


def _readRecords(batch, keys):
    """
    (In a worker thread.) {uid: SortRecord} of the opened messages in
    ``batch`` ([(uid, internal date, file)]), with ``keys`` made.
    """
    out = {}
    for uid, internalDate, f in batch:
        try:
            data = messageBytes(f)
            if data is None:
                data = readHeaderBytes(f)
            out[uid] = sort.recordFromHeader(data, internalDate, keys)
        except (OSError, ValueError):
            pass  # not kept: read again next time
        finally:
            f.close()
    return out


def _matchBatch(batch, content, match, program):
    """(In a worker thread.) Read each message of ``batch`` and keep those that match."""
    out = []
    for c, f in batch:
        try:
            if c.info.size <= search.DECODE_LIMIT:
                c.data = readRange(f, 0, c.info.size)
            else:
                f = seekable(f, c.info.size)
                c.data = readHeaderBytes(f)
                f.seek(0)
                c.huge = search.hugeMatch(f, program)
        except (OSError, ValueError):
            c.data = None
        finally:
            f.close()
        if c.data is not None and all(match(c, key) for key in content):
            out.append((c.msn, c.uid, c.info))
        c.data = None
    return out

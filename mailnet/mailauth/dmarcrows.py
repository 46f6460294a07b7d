"""
The rows of DMARC aggregate reports (RFC 7489 s7.2), as the MX records
them: one JSON line per message evaluated by DMARC whose From domain's
record has ``rua=``, appended to ``data_dir/dmarc/<YYYY-MM-DD>.jsonl``
(the UTC day the message came).  :mod:`.dmarcrpt` makes the reports.

The reactor never waits for the disk: rows are held in memory and written
in a thread every :data:`FLUSH_SECONDS` or every :data:`BATCH` rows,
appended without fsync.  A crash loses the rows of those last seconds
(the page cache's, on a power cut): statistics, never mail.

A file ``<day>.<end>.jsonl`` is a part of a day closed at ``<end>`` (POSIX
seconds) by ``mailnet dmarc report --now``; the day's file that follows
starts with ``{"begin": <end + 1>}``.  A line ``{"dropped": n}`` counts
rows left out by the limits.
"""

from __future__ import annotations

import json
import os
import re
import threading

from twisted.internet import defer, threads

from mailnet import durable
from mailnet.logs import Logger
from mailnet.mailauth.reports import DAY, dayOf, dayStart

log = Logger()

FLUSH_SECONDS = 5.0  # rows wait in memory at most this long
BATCH = 1000  # ... or until this many are waiting
_FILE = re.compile(r"(\d{4}-\d{2}-\d{2})(?:\.(\d+))?\.jsonl\Z")

SPF_RESULTS = ("none", "neutral", "pass", "fail", "softfail", "temperror", "permerror")
DKIM_RESULTS = ("none", "pass", "fail", "policy", "neutral", "temperror", "permerror")


def disposition(verdict, result, junk) -> str:
    """RFC 7489 s7.2.1's disposition: what we did (reject, quarantine in ``junk``, or none)."""
    if result is None or result.result != "fail":
        return "none"
    if verdict.reply is not None and verdict.reply.code >= 500:
        return "reject"
    return "quarantine" if verdict.folder == junk else "none"


def row(now, envelope, fromDomain, policyDomain, policy, spf, dkims, applied) -> dict:
    """One message's row: what Appendix C's ``record`` says of it."""
    from mailnet.mailauth.dmarc import aligned

    sender = envelope.sender or ""
    envelopeFrom = (sender.rpartition("@")[2] if sender else envelope.helo or "").lower()
    to = envelope.recipients[0].address.rpartition("@")[2].lower() if envelope.recipients else ""
    spfAligned = spf is not None and spf.result == "pass" and aligned(spf.domain, fromDomain, policy.aspf)
    dkimAligned = any(d.result == "pass" and aligned(d.domain, fromDomain, policy.adkim) for d in dkims)
    return {
        "t": int(now), "source_ip": envelope.peer, "policy_domain": policyDomain, "header_from": fromDomain,
        "envelope_from": envelopeFrom, "envelope_to": to, "disposition": applied,
        "dkim": "pass" if dkimAligned else "fail", "spf": "pass" if spfAligned else "fail",
        "dkim_results": [{"domain": d.domain.lower(), "selector": d.selector,
                          "result": d.result if d.result in DKIM_RESULTS else "permerror"}
                         for d in dkims if d.domain],
        "spf_results": [{"domain": (spf.domain if spf is not None else envelopeFrom).lower(), "scope": "mfrom",
                         "result": spf.result if spf is not None and spf.result in SPF_RESULTS else "none"}],
    }


class _Day:
    __slots__ = ("rows", "domains", "dropped", "logged")

    def __init__(self):
        self.rows = 0
        self.domains = set()
        self.dropped = 0  # rows left out, not written yet
        self.logged = False


class DMARCRows:
    """
    The rows on disk.  :meth:`record` is called on the reactor thread; the
    file writes run in the reactor's thread pool (``reactor.callInThread``;
    on a test clock without threads, at once).

    @param directory: ``data_dir/dmarc``.
    @param maxRows: rows stored per day; beyond, counted as dropped.
    @param maxDomains: policy domains (reports) per day; rows of more, dropped.
    """

    def __init__(self, directory, reactor, maxRows=1_000_000, maxDomains=10_000):
        self.directory = directory
        self.reactor = reactor
        self.maxRows = maxRows
        self.maxDomains = maxDomains
        self._pending = []
        self._timer = None
        self._days = {}  # day -> _Day (this process's counts; the day's file read once)
        self._lock = threading.Lock()  # one writer of the files at a time (thread pool, cut, rewrite)
        self._writing = set()  # the Deferreds of writes under way

    # -- recording (reactor) --

    def _day(self, day):
        state = self._days.get(day)
        if state is None:
            for old in [d for d in self._days if d < day]:
                del self._days[old]  # yesterday's counts are not needed once today has begun
            state = self._days[day] = _Day()
            # After a restart the rows already stored count too.  The file can
            # hold a million rows (seconds to read): its first `size` bytes (all
            # there is now; this process's own rows come after) are counted in
            # a thread, and added when done.  Until then the limits see fewer.
            path = self._path(day)
            try:
                size = os.stat(path).st_size
            except OSError:
                size = 0
            if size:
                if hasattr(self.reactor, "getThreadPool"):
                    d = threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), _count, path, size)
                    d.addCallback(lambda found: _add(state, found))
                    d.addErrback(lambda f: log.error("dmarc: cannot count the stored report rows: {e}",
                                                     e=f.getErrorMessage()))
                else:
                    _add(state, _count(path, size))
        return state

    def record(self, entry: dict):
        """One row (:func:`row`); written within :data:`FLUSH_SECONDS`."""
        day = dayOf(entry["t"])
        state = self._day(day)
        domain = entry["policy_domain"]
        if state.rows >= self.maxRows or (domain not in state.domains and len(state.domains) >= self.maxDomains):
            state.dropped += 1
            if not state.logged:
                state.logged = True
                log.warn("dmarc: the limit of rows ([mailauth] dmarc_rows_per_day) or of reporting domains "
                         "([mailauth] dmarc_report_domains) is reached for {day}; more rows are counted as dropped",
                         day=day)
            self._schedule()
            return
        state.rows += 1
        state.domains.add(domain)
        self._pending.append(entry)
        if len(self._pending) >= BATCH:
            self.flush()
        else:
            self._schedule()

    def _schedule(self):
        if self._timer is None:
            self._timer = self.reactor.callLater(FLUSH_SECONDS, self.flush)

    def _take(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        batch, self._pending = self._pending, []
        for day, state in self._days.items():
            if state.dropped:
                batch.append({"t": dayStart(day), "dropped": state.dropped})
                state.dropped = 0
        return batch

    def flush(self) -> defer.Deferred:
        """Write the rows held now, in a thread; the Deferred fires once they are written."""
        batch = self._take()
        if not batch:
            return defer.succeed(None)
        if hasattr(self.reactor, "getThreadPool"):
            d = threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), self._write, batch)
            self._writing.add(d)
            d.addBoth(lambda result: (self._writing.discard(d), result)[1])
            return d
        self._write(batch)
        return defer.succeed(None)

    def sync(self) -> defer.Deferred:
        """Fires once every row recorded so far is in its file (:meth:`flush` and the writes under way)."""
        return defer.DeferredList([self.flush(), *self._writing], consumeErrors=True)

    def close(self):
        """At stop: write what is held, on this thread."""
        self._write(self._take())

    def _write(self, batch):
        byDay = {}
        for entry in batch:
            byDay.setdefault(dayOf(entry["t"]), []).append(entry)
        with self._lock:
            try:
                os.makedirs(self.directory, mode=0o700, exist_ok=True)
                for day, entries in byDay.items():
                    data = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in entries).encode()
                    fd = os.open(self._path(day), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                    try:
                        durable.writeAll(fd, data)  # no fsync: see the module's docstring
                    finally:
                        os.close(fd)
            except OSError as e:
                log.error("dmarc: cannot store report rows: {e}", e=e.strerror)

    def _path(self, day, end=None):
        return os.path.join(self.directory, f"{day}.jsonl" if end is None else f"{day}.{end}.jsonl")

    # -- for the reporter --

    def cut(self, now):
        """
        Close today's rows at ``now`` (``report --now``): the file becomes a
        part ``<day>.<now>.jsonl``, ready to report; the day goes on in a new
        file beginning at ``now + 1``.  Call after :meth:`flush` has written.
        """
        day = dayOf(now)
        with self._lock:
            try:
                os.replace(self._path(day), self._path(day, int(now)))
            except FileNotFoundError:
                return
            with open(self._path(day), "ab") as f:
                f.write(json.dumps({"t": int(now) + 1, "begin": int(now) + 1}).encode() + b"\n")

    def ready(self, now) -> list[tuple[str, str, int]]:
        """The files to report now: ``(name, day, end)``, days before today's and closed parts."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        today = dayOf(now)
        found = []
        for name in names:
            m = _FILE.match(name)
            if not m:
                continue
            day, end = m.group(1), m.group(2)
            if end is not None:
                found.append((name, day, int(end)))
            elif day < today:
                found.append((name, day, dayStart(day) + DAY - 1))
        return sorted(found, key=lambda f: (f[1], f[2]))

    def load(self, name) -> tuple[int | None, list[dict], int]:
        """``(begin or None, rows, dropped)`` of a file."""
        begin, rows, dropped = None, [], 0
        for entry in readLines(os.path.join(self.directory, name)):
            if "begin" in entry:
                begin = entry["begin"]
            elif "dropped" in entry:
                dropped += entry["dropped"]
            elif "policy_domain" in entry:
                rows.append(entry)
        return begin, rows, dropped

    def rewrite(self, name, begin, rows):
        """Keep only ``rows`` (those not reported yet) in a file; none: the file goes."""
        path = os.path.join(self.directory, name)
        with self._lock:
            if not rows:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
                return
            lines = ([{"t": begin, "begin": begin}] if begin is not None else []) + rows
            durable.writeAtomically(path, "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in lines).encode(),
                                    mode=0o600)


def _count(path, size):
    """(rows, policy domains) in the first ``size`` bytes of a day's file (a thread)."""
    rows, domains = 0, set()
    for entry in readLines(path, size):
        if "policy_domain" in entry:
            rows += 1
            domains.add(entry["policy_domain"])
    return rows, domains


def _add(state, found):
    rows, domains = found
    state.rows += rows
    state.domains |= domains


def readLines(path, size=None):
    """The JSON objects of a file's lines; a damaged line (a crash mid-write) is skipped."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    with f:
        read = 0
        for line in f:
            read += len(line)
            if size is not None and read > size:
                break  # written after the count began
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                yield entry


def show(config, out, day=None) -> int:
    """``mailnet dmarc show [DAY]``: the rows not reported yet, per day and policy domain."""
    store = DMARCRows(os.path.join(config.server.data_dir, "dmarc"), None)
    try:
        names = sorted(n for n in os.listdir(store.directory) if _FILE.match(n))
    except FileNotFoundError:
        names = []
    if day:
        names = [n for n in names if n.startswith(day)]
    if not names:
        print("no DMARC report rows stored (none pending)", file=out)
        return 0
    for name in names:
        _, rows, dropped = store.load(name)
        m = _FILE.match(name)
        label = m.group(1) + (f" (part up to {m.group(2)})" if m.group(2) else "")
        domains = {}
        for r in rows:
            d = domains.setdefault(r["policy_domain"], {"rows": 0, "pass": 0, "fail": 0, "ips": set(), "disp": {}})
            d["rows"] += 1
            d["pass" if "pass" in (r.get("dkim"), r.get("spf")) else "fail"] += 1
            d["ips"].add(r.get("source_ip"))
            d["disp"][r.get("disposition")] = d["disp"].get(r.get("disposition"), 0) + 1
        for domain, d in sorted(domains.items()):
            disp = ", ".join(f"{k} {v}" for k, v in sorted(d["disp"].items()))
            print(f"{label} {domain}: {d['rows']} messages ({d['pass']} dmarc pass, {d['fail']} fail) "
                  f"from {len(d['ips'])} addresses; disposition: {disp}", file=out)
        if dropped:
            print(f"{label}: {dropped} rows dropped (limits)", file=out)
    return 0

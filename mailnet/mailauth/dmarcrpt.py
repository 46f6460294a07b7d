"""
DMARC aggregate reports (RFC 7489 s7.2) of the mail our MX received: once
a UTC day is over, for each policy domain whose record asked for them
(``rua=``), the rows :mod:`.dmarcrows` stored, grouped into Appendix C's
XML ``feedback``, gzipped, and mailed through the queue to the record's
``rua=mailto:`` addresses (:class:`Reporter`, on :class:`~.reports.DailyReporter`).

* Only ``mailto:`` URIs: RFC 7489 s6.2 defines no other scheme for
  aggregate reports (``https:`` belongs to TLS-RPT, RFC 8460).
* ``!size`` (s6.2: ``mailto:r@example.com!10m``): a destination whose limit
  the report message exceeds is skipped.
* s7.1: an address outside the policy domain's organizational domain gets
  the report only when ``<policy-domain>._report._dmarc.<its domain>``
  publishes a ``v=DMARC1`` TXT record.
* ``policy_published`` is the record as found when the report is made.
* Failure reports (``ruf=``, s7.3) are not sent: they carry the message's
  headers (and often more) to a third party, and most large receivers do
  not send them either.
"""

from __future__ import annotations

import email.message
import email.policy
import email.utils
import gzip
import os
import re
import secrets
import time
import xml.etree.ElementTree as ET

from twisted.internet import defer, threads

from mailnet.logs import Logger
from mailnet.mailauth import dnsquery, reports
from mailnet.mailauth.dmarc import orgDomain, recordFrom
from mailnet.mailauth.dmarcrows import DMARCRows

log = Logger()

KEEP_DAYS = 7  # rows whose report could not be sent (DNS trouble) are tried again this long
_SIZE = re.compile(r"(\d+)([kmgt]?)\Z")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parseRua(rua: str) -> list[tuple[str, int | None]]:
    """
    ``(address, size limit or None)`` of each ``mailto:`` URI of a ``rua``
    tag (RFC 7489 s6.2, s6.3: comma-separated URIs, each with an optional
    ``!<size>[kmgt]``); other schemes are logged and left out.
    """
    out = []
    for uri in rua.split(","):
        uri = uri.strip()
        if not uri:
            continue
        limit = None
        if "!" in uri:
            uri, _, size = uri.rpartition("!")
            m = _SIZE.match(size.strip().lower())
            if m is None:
                continue  # a damaged size: s6.3 leaves no way to guess what was meant
            limit = int(m.group(1)) * _UNITS[m.group(2)]
        if not uri.lower().startswith("mailto:"):
            log.info("dmarc: rua {uri} is not supported (only mailto:)", uri=uri[:80])
            continue
        address = uri[7:].split("?")[0]
        if "@" in address and not any(c in address for c in " <>\r\n\",;") and len(address) <= 254:
            out.append((address, limit))
    return out


def groupRows(rows) -> list[tuple[dict, int]]:
    """Rows with identical source, results and identifiers as one record with its count, most frequent first."""
    counts = {}
    first = {}
    for r in rows:
        key = (r["source_ip"], r["disposition"], r["dkim"], r["spf"], r.get("envelope_to", ""),
               r.get("envelope_from", ""), r["header_from"],
               tuple((d["domain"], d.get("selector", ""), d["result"]) for d in r.get("dkim_results", ())),
               tuple((s["domain"], s.get("scope", "mfrom"), s["result"]) for s in r.get("spf_results", ())))
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, r)
    return sorted(((first[k], n) for k, n in counts.items()), key=lambda rn: (-rn[1], rn[0]["source_ip"]))


def _sub(parent, name, text=None):
    element = ET.SubElement(parent, name)
    if text is not None:
        element.text = str(text)
    return element


def buildReport(policyDomain, policy, grouped, hostname, email_, reportId, begin, end, errors=()) -> bytes:
    """
    RFC 7489 Appendix C: the ``feedback`` document (UTF-8 XML), its
    elements in the schema's order.

    @param policy: the :class:`~.dmarc.Policy` published by ``policyDomain``.
    @param grouped: :func:`groupRows`'s ``(row, count)`` list.
    """
    root = ET.Element("feedback")
    _sub(root, "version", "1.0")
    meta = _sub(root, "report_metadata")
    _sub(meta, "org_name", hostname)
    _sub(meta, "email", email_)
    _sub(meta, "report_id", reportId)
    dates = _sub(meta, "date_range")
    _sub(dates, "begin", int(begin))
    _sub(dates, "end", int(end))
    for error in errors:
        _sub(meta, "error", error)
    published = _sub(root, "policy_published")
    _sub(published, "domain", policyDomain)
    _sub(published, "adkim", policy.adkim)
    _sub(published, "aspf", policy.aspf)
    _sub(published, "p", policy.p)
    _sub(published, "sp", policy.sp or policy.p)  # s6.3: sp defaults to p
    _sub(published, "pct", policy.pct)
    _sub(published, "fo", policy.fo)
    for r, count in grouped:
        record = _sub(root, "record")
        row = _sub(record, "row")
        _sub(row, "source_ip", r["source_ip"])
        _sub(row, "count", count)
        evaluated = _sub(row, "policy_evaluated")
        _sub(evaluated, "disposition", r["disposition"])
        _sub(evaluated, "dkim", r["dkim"])
        _sub(evaluated, "spf", r["spf"])
        ids = _sub(record, "identifiers")
        if r.get("envelope_to"):
            _sub(ids, "envelope_to", r["envelope_to"])
        _sub(ids, "envelope_from", r.get("envelope_from", ""))
        _sub(ids, "header_from", r["header_from"])
        results = _sub(record, "auth_results")
        for d in r.get("dkim_results", ()):
            dkim = _sub(results, "dkim")
            _sub(dkim, "domain", d["domain"])
            if d.get("selector"):
                _sub(dkim, "selector", d["selector"])
            _sub(dkim, "result", d["result"])
        for s in r.get("spf_results", ()):
            spf = _sub(results, "spf")
            _sub(spf, "domain", s["domain"])
            _sub(spf, "scope", s.get("scope", "mfrom"))
            _sub(spf, "result", s["result"])
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def fileName(hostname, policyDomain, begin, end) -> str:
    """RFC 7489 s7.2.1.1: ``receiver "!" policy-domain "!" begin-timestamp "!" end-timestamp "." extension``."""
    return f"{hostname}!{policyDomain}!{int(begin)}!{int(end)}.xml.gz"


def reportMessage(policyDomain, xml, reportId, hostname, sender, to, begin, end, now) -> bytes:
    """RFC 7489 s7.2.1.1: the message carrying one report, gzipped (CRLF)."""
    msg = email.message.EmailMessage(policy=email.policy.SMTP.clone(max_line_length=998))  # an unfolded Subject
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Date"] = email.utils.formatdate(now)
    msg["Message-ID"] = email.utils.make_msgid(domain=hostname)
    msg["Subject"] = f"Report Domain: {policyDomain} Submitter: {hostname} Report-ID: <{reportId}>"
    msg.set_content(f"DMARC aggregate report for {policyDomain} from {hostname} (RFC 7489),\n"
                    f"covering {email.utils.formatdate(begin, usegmt=True)} to "
                    f"{email.utils.formatdate(end, usegmt=True)}.\n")
    msg.add_attachment(gzip.compress(xml, mtime=0), maintype="application", subtype="gzip",
                       filename=fileName(hostname, policyDomain, begin, end))
    return msg.as_bytes()


class Reporter(reports.DailyReporter):
    """
    Sends the DMARC reports of finished days (and of parts closed by
    ``mailnet dmarc report --now``: :meth:`reportNow`).

    @param rows: the :class:`~.dmarcrows.DMARCRows` (the files; and, in the
        server, the recorder whose rows are written first).
    @param resolver: an ``IResolver`` (TXT).
    @param sender: the From address of the reports.
    @param maxRecords: ``record`` elements per report; the most frequent kept.
    """

    logName = "dmarc"

    def __init__(self, reactor, config, rows, resolver, spool, signer=None, sender=None, maxRecords=10_000,
                 interval=reports.CHECK_SECONDS):
        super().__init__(reactor, config, spool, signer, interval)
        self.rows = rows
        self.resolver = resolver
        self.sender = sender or f"MAILER-DAEMON@{self.hostname}"
        self.maxRecords = maxRecords
        self.timeout = config.dns.timeout

    def stopped(self):
        self.rows.close()

    def reportNow(self):
        """
        Close today's rows so far and send every report due (``mailnet dmarc
        report --now``); Deferred of the number of reports queued.
        """
        @defer.inlineCallbacks
        def work():
            yield self.rows.sync()
            self.rows.cut(self.reactor.seconds())
            sent = yield self.sendDue()
            return sent
        return self.run(work)

    @defer.inlineCallbacks
    def sendDue(self):
        """Send what is due; returns the number of reports queued."""
        yield self.rows.sync()
        now = self.reactor.seconds()
        oldest = reports.dayOf(now - KEEP_DAYS * reports.DAY)
        sent = 0
        for name, day, end in self.rows.ready(now):
            # a day's rows can be many (up to dmarc_rows_per_day): read and grouped in a thread
            begin, byDomain, dropped = yield self._inThread(self._prepare, name)
            begin = begin if begin is not None else reports.dayStart(day)
            if dropped:
                log.warn("dmarc: {n} rows of {day} were left out by the limits", n=dropped, day=day)
            left = []
            for domain in sorted(byDomain):
                if day < oldest:
                    log.warn("dmarc: the report of {domain} for {day} could not be sent within {n} days; dropped",
                             domain=domain, day=day, n=KEEP_DAYS)
                    continue
                domainRows, grouped = byDomain[domain]
                try:
                    done = yield self._send(domain, len(domainRows), grouped, begin, end)
                except Exception as e:
                    log.warn("dmarc: the report of {domain} for {day} is not sent yet: {e}", domain=domain, day=day, e=e)
                    done = False
                if done is False:
                    left += domainRows
                elif done:
                    sent += 1
            yield self._inThread(self.rows.rewrite, name, begin, left)
        return sent

    def _inThread(self, f, *args):
        if hasattr(self.reactor, "getThreadPool"):
            return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), f, *args)
        return defer.maybeDeferred(f, *args)  # a test clock

    def _prepare(self, name):
        """(begin or None, {domain: (rows, groupRows(rows))}, dropped) of a file."""
        begin, rows, dropped = self.rows.load(name)
        byDomain = {}
        for r in rows:
            byDomain.setdefault(r["policy_domain"], []).append(r)
        return begin, {d: (rs, groupRows(rs)) for d, rs in byDomain.items()}, dropped

    @defer.inlineCallbacks
    def _txt(self, name):
        """The TXT strings of ``name`` ([] when none); None on a temporary failure."""
        try:
            records = yield dnsquery.lookupTXT(self.resolver, name, self.timeout)
        except dnsquery.DNSTemporary as e:
            log.info("dmarc: {name}: {e}; trying again later", name=name, e=e)
            return None
        return [r.decode("utf-8", "replace") for r in records]

    @defer.inlineCallbacks
    def _send(self, domain, count, grouped, begin, end):
        """True once the report is queued; None when none is wanted; False to try again later."""
        records = yield self._txt(f"_dmarc.{domain}")
        if records is None:
            return False
        policy = recordFrom(records)
        destinations = parseRua(policy.rua) if policy is not None else []
        if not destinations:
            log.info("dmarc: {domain} publishes no rua=mailto: now; its report is dropped", domain=domain)
            return None
        to = []
        for address, limit in destinations:
            where = address.rpartition("@")[2].lower().rstrip(".")
            if orgDomain(where) != orgDomain(domain):
                # s7.1: the destination's domain must say it takes reports about this domain
                answer = yield self._txt(f"{domain}._report._dmarc.{where}")
                if answer is None:
                    return False
                if not any(t.startswith("v=DMARC1") for t in answer):
                    log.info("dmarc: {where} does not accept reports for {domain} (no {domain}._report._dmarc."
                             "{where} record); not sent there", where=where, domain=domain)
                    continue
            to.append((address, limit))
        errors = []
        if len(grouped) > self.maxRecords:
            log.warn("dmarc: the report of {domain} has {n} records; the {m} most frequent are sent",
                     domain=domain, n=len(grouped), m=self.maxRecords)
            errors.append(f"{len(grouped) - self.maxRecords} records left out (size limit)")
            grouped = grouped[:self.maxRecords]
        reportId = f"{domain}.{int(begin)}.{secrets.token_hex(6)}"
        xml = buildReport(domain, policy, grouped, self.hostname, f"postmaster@{self.hostname}", reportId,
                          begin, end, errors)
        while to:
            message = reportMessage(domain, xml, reportId, self.hostname, self.sender, [a for a, _ in to],
                                    begin, end, time.time())
            small = [(a, limit) for a, limit in to if limit is None or len(message) <= limit]
            if len(small) == len(to):
                break
            for address, limit in to:
                if (address, limit) not in small:
                    log.info("dmarc: the report of {domain} ({size} bytes) is larger than {address}'s limit "
                             "({limit}); not sent there", domain=domain, size=len(message), address=address,
                             limit=limit)
            to = small
        if not to:
            return None
        queueId = yield self.spoolMessage(message, [a for a, _ in to])
        log.info("dmarc: report of {domain} ({n} messages, {r} records) queued as {id}, to {to}", domain=domain,
                 n=count, r=len(grouped), id=queueId, to=", ".join(a for a, _ in to))
        return True


def makeReporter(reactor, config, spool, resolver, rows=None):
    """The daily DMARC reports (``[mailauth] inbound`` and ``dmarc_reports``), or None."""
    s = config.mailauth
    if not (s.inbound and s.dmarc_reports):
        return None
    from mailnet.mailauth.ownmail import OwnMailSigner

    if rows is None:
        rows = DMARCRows(os.path.join(config.server.data_dir, "dmarc"), reactor, s.dmarc_rows_per_day,
                         s.dmarc_report_domains)
    return Reporter(reactor, config, rows, resolver, spool, OwnMailSigner(config, reactor),
                    sender=s.dmarc_report_from or None, maxRecords=s.dmarc_report_rows)


def makeRows(reactor, config):
    """The recorder of the MX's checks, or None."""
    s = config.mailauth
    if not (s.inbound and s.dmarc_reports):
        return None
    return DMARCRows(os.path.join(config.server.data_dir, "dmarc"), reactor, s.dmarc_rows_per_day,
                     s.dmarc_report_domains)

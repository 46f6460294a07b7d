"""
SMTP TLS Reporting (RFC 8460) for the mail we send: per policy domain and
day, the TLS sessions that worked and those that failed (with RFC 8460's
result types), kept durably in ``data_dir/tlsrpt/<YYYY-MM-DD>.json``; once
a day is over, one aggregate report per domain (JSON, gzip, s4 and s5)
mailed through the queue to the ``rua=mailto:`` addresses of the domain's
``_smtp._tls`` TXT record, and POSTed to its ``rua=https:`` URIs
(:mod:`.tlsrptpost`).

Every session the relay opens to a domain's MX hosts is counted: under
the domain's MTA-STS policy (enforce or testing), or as "no-policy-found"
when it has none or its policy could not be fetched.
"""

from __future__ import annotations

import datetime
import email.message
import email.policy
import email.utils
import gzip
import hashlib
import json
import os
import re
import time

from twisted.internet import defer

from mailnet import durable
from mailnet.logs import Logger
from mailnet.mailauth import dnsquery, reports

log = Logger()

_DAY_FILE = re.compile(r"(\d{4}-\d{2}-\d{2})\.json\Z")
KEEP_DAYS = 7  # a day whose report could not be sent (DNS trouble) is retried this long
MAX_FAILURE_ROWS = 1000  # failure-details rows per policy and day (bounded disk and memory)
MAX_NO_POLICY_DOMAINS = 10000  # domains without a policy counted per day (every domain we send to could be one)
CHECK_SECONDS = reports.CHECK_SECONDS  # how often finished days are looked for
FLUSH_SECONDS = 2.0  # counts are written at most this often (one durable write, not one per session)

# RFC 8460 s4.3: the result types.
RESULT_TYPES = ("starttls-not-supported", "certificate-host-mismatch", "certificate-expired",
                "certificate-not-trusted", "validation-failure", "tlsa-invalid", "dnssec-invalid",
                "dane-required", "sts-policy-fetch-error", "sts-policy-invalid", "sts-webpki-invalid")


def resultType(error) -> str:
    """The RFC 8460 s4.3 result type of a failed session's :class:`~mailnet.errors.DeliveryError`."""
    text = error.message.lower()
    if error.enhanced == "4.7.10" and "starttls" in text:
        return "starttls-not-supported"
    if error.enhanced == "4.7.5" or getattr(error, "tlsFailed", False):
        if "expired" in text:
            return "certificate-expired"
        if "verificationerror" in text or "hostname" in text or "doesn't match" in text or "does not match" in text:
            return "certificate-host-mismatch"
        if "certificate verify failed" in text or "self-signed" in text or "unable to get" in text:
            return "certificate-not-trusted"
    return "validation-failure"


def policyEntry(policyType, domain, policy=None):
    """RFC 8460 s4.4's "policy" object."""
    entry = {"policy-type": policyType, "policy-domain": domain}
    if policy is not None:
        entry["policy-string"] = policy.lines()
        entry["mx-host"] = list(policy.mx)
    return entry


dayOf = reports.dayOf


class TLSResults:
    """
    The counts, one file per day (UTC).  Reactor thread only.  Changes are
    written within :data:`FLUSH_SECONDS` (and by :meth:`flush` at stop), so
    a crash loses at most those seconds of statistics, never mail.

    @param directory: ``data_dir/tlsrpt``.
    @param clock: ``IReactorTime``.
    """

    def __init__(self, directory, clock):
        self.directory = directory
        self.clock = clock
        self._pending = {}  # day -> its counts, changed and not written yet
        self._timer = None

    def flush(self):
        """Write the changed days now."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        pending, self._pending = self._pending, {}
        for day, data in pending.items():
            try:
                self.save(day, data)
            except OSError as e:
                log.error("tls-rpt: cannot record TLS results: {e}", e=e.strerror)

    def _path(self, day):
        return os.path.join(self.directory, day + ".json")

    def load(self, day) -> dict:
        """``{domain: {policyKey: {"policy", "success", "failure", "details"}}}``; damaged: logged, {}."""
        try:
            with open(self._path(day), "rb") as f:
                data = json.loads(f.read())
            if not isinstance(data, dict):
                raise ValueError("not an object")
            return data
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            log.error("tls-rpt: {day}.json is damaged ({e}); set aside", day=day, e=e)
            try:
                os.replace(self._path(day), self._path(day) + ".corrupt")
            except OSError:
                pass
            return {}

    def save(self, day, data):
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        if data:
            durable.writeAtomically(self._path(day), json.dumps(data, indent=1, sort_keys=True).encode(), mode=0o600)
        else:
            try:
                os.unlink(self._path(day))
                durable.fsyncDirectory(self.directory)
            except FileNotFoundError:
                pass

    def days(self) -> list[str]:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(m.group(1) for m in map(_DAY_FILE.match, names) if m)

    def _record(self, policy, success, detail=None):
        day = dayOf(self.clock.seconds())
        data = self._pending.get(day)
        if data is None:
            data = self._pending[day] = self.load(day)
        domain = policy["policy-domain"]
        if domain not in data and policy["policy-type"] == "no-policy-found" and len(data) >= MAX_NO_POLICY_DOMAINS:
            return  # bounded: the day's file does not grow with every domain ever mailed
        key = hashlib.sha256(json.dumps(policy, sort_keys=True).encode()).hexdigest()[:16]
        entry = data.setdefault(domain, {}).setdefault(key, {"policy": policy, "success": 0, "failure": 0, "details": []})
        if success:
            entry["success"] += 1
        else:
            entry["failure"] += 1
            for row in entry["details"]:
                if all(row.get(k) == v for k, v in detail.items()):
                    row["failed-session-count"] += 1
                    break
            else:
                if len(entry["details"]) < MAX_FAILURE_ROWS:
                    entry["details"].append(dict(detail, **{"failed-session-count": 1}))
        if self._timer is None:
            self._timer = self.clock.callLater(FLUSH_SECONDS, self.flush)

    def success(self, policy):
        """One TLS session that met the policy (``policy``: :func:`policyEntry`)."""
        self._record(policy, True)

    def failure(self, policy, kind, mxHost=None, ip=None, reason="", sendingIp=None):
        """
        One failed session: ``kind`` one of :data:`RESULT_TYPES`; ``ip``
        the receiving MX's address, ``sendingIp`` ours, the address the
        queue connected from (RFC 8460 s4.3 ``sending-mta-ip``; None when
        no connection was made, as for a policy fetch failure).
        """
        detail = {"result-type": kind}
        if sendingIp:
            detail["sending-mta-ip"] = sendingIp
        if mxHost:
            detail["receiving-mx-hostname"] = mxHost
        if ip:
            detail["receiving-ip"] = ip
        if reason:
            detail["failure-reason-code"] = reason[:200]
        self._record(policy, False, detail)


def buildReport(day, domain, entries, hostname, reportId) -> dict:
    """RFC 8460 s4.4: the aggregate report of one policy domain for one UTC day."""
    policies = []
    for entry in entries.values():
        policies.append({
            "policy": entry["policy"],
            "summary": {"total-successful-session-count": entry["success"],
                        "total-failure-session-count": entry["failure"]},
            "failure-details": entry["details"],
        })
    return {
        "organization-name": hostname,
        "date-range": {"start-datetime": f"{day}T00:00:00Z", "end-datetime": f"{day}T23:59:59Z"},
        "contact-info": f"postmaster@{hostname}",
        "report-id": reportId,
        "policies": policies,
    }


def parseRecord(records) -> list[str]:
    """The ``mailto:`` addresses of a ``_smtp._tls`` TXT (RFC 8460 s3): ``v=TLSRPTv1; rua=...``."""
    return parseDestinations(records)[0]


def parseDestinations(records) -> tuple[list[str], list[str]]:
    """
    ``(mailto addresses, https URIs)`` of a ``_smtp._tls`` TXT (RFC 8460 s3):
    ``v=TLSRPTv1; rua=mailto:...,https://...``.  Exactly one record starting
    with ``v=TLSRPTv1`` counts; other schemes are logged and left out.
    """
    from mailnet.mailauth.tlsrptpost import parseURI

    found = [r for r in records if r.startswith("v=TLSRPTv1")]
    if len(found) != 1:
        return [], []
    addresses, uris = [], []
    for part in found[0].split(";"):
        key, _, value = part.strip().partition("=")
        if key.strip() != "rua":
            continue
        for uri in value.split(","):
            uri = uri.strip()
            if uri.lower().startswith("mailto:"):
                address = uri[7:].split("?")[0]
                if "@" in address and not any(c in address for c in " <>\r\n"):
                    addresses.append(address)
            elif uri.lower().startswith("https:") and parseURI(uri) is not None:
                uris.append(uri)
            elif uri:
                log.info("tls-rpt: rua {uri} is not supported (only mailto: and https:)", uri=uri[:80])
    return addresses, uris


def reportData(report) -> bytes:
    """The report as sent: JSON, gzip (RFC 8460 s5.3, application/tlsrpt+gzip)."""
    return gzip.compress(json.dumps(report, indent=1).encode(), mtime=0)


def reportMessage(day, domain, report, hostname, to, now) -> bytes:
    """RFC 8460 s5.3: the report as a multipart/report message (CRLF)."""
    start = int(datetime.datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=datetime.timezone.utc).timestamp())
    msg = email.message.EmailMessage(policy=email.policy.SMTP.clone(max_line_length=998))  # an unfolded Subject
    msg["From"] = f"MAILER-DAEMON@{hostname}"
    msg["To"] = ", ".join(to)
    msg["Date"] = email.utils.formatdate(now)
    msg["Message-ID"] = email.utils.make_msgid(domain=hostname)
    msg["Subject"] = f"Report Domain: {domain} Submitter: {hostname} Report-ID: <{report['report-id']}>"
    msg["TLS-Report-Domain"] = domain
    msg["TLS-Report-Submitter"] = hostname
    msg.set_content(f"TLS report for {domain} for {day} (UTC) from {hostname} (RFC 8460).\n")
    data = reportData(report)
    name = f"{hostname}!{domain}!{start}!{start + 86399}.json.gz"
    msg.add_attachment(data, maintype="application", subtype="tlsrpt+gzip", filename=name)
    msg.replace_header("Content-Type", msg.get("Content-Type").replace("multipart/mixed", "multipart/report"))
    msg.set_param("report-type", "tlsrpt")
    return msg.as_bytes()


class Reporter(reports.DailyReporter):
    """
    Sends the reports of finished days, at start and every hour
    (:class:`~.reports.DailyReporter`).

    @param spool: the queue's :class:`~mailnet.queue.spool.Spool`.
    @param resolver: an ``IResolver`` (TXT).
    @param signer: an :class:`~mailnet.mailauth.ownmail.OwnMailSigner` or None.
    @param poster: a :class:`~mailnet.mailauth.tlsrptpost.ReportPoster` for
        ``rua=https:`` URIs, or None (then only mailto: is served).
    """

    logName = "tls-rpt"

    def __init__(self, reactor, config, results, resolver, spool, signer=None, poster=None):
        super().__init__(reactor, config, spool, signer, CHECK_SECONDS)
        self.results = results
        self.resolver = resolver
        self.poster = poster

    def stopped(self):
        self.results.flush()

    def sendDue(self):
        return self._run()

    @defer.inlineCallbacks
    def _run(self):
        self.results.flush()
        today = dayOf(self.reactor.seconds())
        oldest = dayOf(self.reactor.seconds() - KEEP_DAYS * 86400)
        for day in self.results.days():
            if day >= today:
                continue
            data = self.results.load(day)
            for domain in sorted(data):
                if day < oldest:
                    log.warn("tls-rpt: the report of {domain} for {day} could not be sent within {n} days; dropped",
                             domain=domain, day=day, n=KEEP_DAYS)
                    del data[domain]
                    continue
                try:
                    done = yield self._send(day, domain, data[domain])
                except Exception as e:
                    log.warn("tls-rpt: the report of {domain} for {day} is not sent yet: {e}", domain=domain, day=day, e=e)
                    done = False
                if done:
                    del data[domain]
                    self.results.save(day, data)
            self.results.save(day, data)

    @defer.inlineCallbacks
    def _send(self, day, domain, entries):
        """True once the report is spooled (or none is wanted); False to try again later."""
        try:
            records = yield dnsquery.lookupTXT(self.resolver, f"_smtp._tls.{domain}", self.config.dns.timeout)
        except dnsquery.DNSTemporary as e:
            log.info("tls-rpt: _smtp._tls.{domain}: {e}; trying again later", domain=domain, e=e)
            return False
        to, uris = parseDestinations([r.decode("utf-8", "replace") for r in records])
        if self.poster is None and uris:
            log.info("tls-rpt: {domain}: https: rua not served here; only mailto:", domain=domain)
            uris = []
        if not to and not uris:
            log.info("tls-rpt: {domain} publishes no TLS-RPT address we can use; the report of {day} is dropped",
                     domain=domain, day=day)
            return True
        reportId = f"{day}.{domain}.{hashlib.sha256(os.urandom(8)).hexdigest()[:12]}@{self.hostname}"
        report = buildReport(day, domain, entries, self.hostname, reportId)
        delivered = False
        if to:
            yield self._spool(day, domain, report, to)
            delivered = True
        for uri in uris:
            # RFC 8460 s5.3: POST application/tlsrpt+gzip, the receiver's certificate checked.
            try:
                code = yield self.poster.post(uri, reportData(report))
            except Exception as e:
                log.warn("tls-rpt: the report of {domain} for {day} was not accepted: {e}", domain=domain, day=day, e=e)
                continue
            log.info("tls-rpt: report of {domain} for {day} posted to {uri} ({code})", domain=domain, day=day,
                     uri=uri.split("?", 1)[0][:100], code=code)
            delivered = True
        # Done once one destination has it; only when every https: POST failed (and no mailto:) is
        # the report tried again at the next run (up to KEEP_DAYS), so a mailto: copy is never sent twice.
        return delivered

    @defer.inlineCallbacks
    def _spool(self, day, domain, report, to):
        data = reportMessage(day, domain, report, self.hostname, to, time.time())
        queueId = yield self.spoolMessage(data, to)
        log.info("tls-rpt: report of {domain} for {day} queued as {id}, to {to}", domain=domain, day=day,
                 id=queueId, to=", ".join(to))


def show(config, out) -> int:
    """``mailnet tlsrpt show``: the counts not reported yet."""
    results = TLSResults(os.path.join(config.server.data_dir, "tlsrpt"), None)
    days = results.days()
    if not days:
        print("no TLS results recorded (none pending)", file=out)
        return 0
    for day in days:
        for domain, entries in sorted(results.load(day).items()):
            success = sum(e["success"] for e in entries.values())
            failure = sum(e["failure"] for e in entries.values())
            print(f"{day} {domain}: {success} successful, {failure} failed", file=out)
            for entry in entries.values():
                for row in entry["details"]:
                    where = row.get("receiving-mx-hostname", "")
                    print(f"    {row['result-type']} {where} x{row['failed-session-count']}"
                          + (f": {row['failure-reason-code']}" if row.get("failure-reason-code") else ""), file=out)
    return 0

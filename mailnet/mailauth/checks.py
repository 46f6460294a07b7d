"""
The inbound checks of one message (RFC 7208 SPF, RFC 6376 DKIM, RFC 7489
DMARC) and the verdict: the Authentication-Results field, and whether the
message is refused, put in Junk or only labelled (``[mailauth]`` policy).

Runs on the reactor; the blocking parts (pyspf, DKIM hashing) go to a
bounded thread pool.  DNS failures and time limits give ``temperror``
results, never an exception: :meth:`Checker.check` always fires.
"""

from __future__ import annotations

import dataclasses
import threading

from twisted.internet import defer, threads

from mailnet.logs import Logger
from mailnet.mail.reply import Reply
from mailnet.mailauth import arccheck, dkimcheck, dmarc, dmarcrows, headers, results, spfcheck
from mailnet.mailauth.dnsquery import BlockingDNS, CacheMiss, CacheOnlyDNS, DNSTemporary, cachedTXT, prefetchTXT

log = Logger()

JUNK = "Junk"
SPF_RESULTS = 10000  # SPF results kept (bounded memory): _rememberSPF


@dataclasses.dataclass
class Verdict:
    """What the message filter tells SMTP's delivery."""

    header: bytes = b""  # fields to put before the message (after our Received)
    reply: Reply | None = None  # a refusal (the message is not stored)
    folder: str | None = None  # None = INBOX; "Junk" for quarantine
    summary: str = ""  # for the delivery's log line
    # SPF passed for the MAIL FROM identity: the return path is the client's to use (RFC 7208),
    # so SMTP honours its NOTIFY=SUCCESS/DELAY (a report there is not backscatter)
    senderVerified: bool = False
    seal: bytes = b""  # an ARC set for the spool's copy alone (forwarded mail: arcseal.py)


def _isLocal(domain, localDomains):
    domain = (domain or "").lower().rstrip(".")
    return any(domain == d or domain.endswith("." + d) for d in localDomains)


class Checker:
    """
    @param config: the :class:`~mailnet.config.Config` (``[mailauth]``,
        ``[dns]``, ``[domains]``).
    @param resolver: a twisted.names ``IResolver``.
    @param pool: the thread pool (twisted ``ThreadPool``) for blocking work.
    """

    def __init__(self, config, reactor, resolver, pool):
        self.config = config
        self.settings = config.mailauth
        self.reactor = reactor
        self.resolver = resolver
        self.pool = pool
        self.authservId = self.settings.authserv_id or config.server.hostname
        self.localDomains = [d.lower() for d in config.domains.local]
        self.dnsTimeout = config.dns.timeout
        self.stopping = threading.Event()  # set at shutdown: threads stop asking DNS
        self.spfResults = {}  # (ip, sender, helo) -> (expiry, (mail from result, helo result)): _rememberSPF
        self.sample = dmarc.sampled  # RFC 7489 pct= sampling: sample(pct) -> bool (tests give their own)
        # DMARC aggregate reports (RFC 7489 s7.2): a :class:`~.dmarcrpt.DMARCRows` that records
        # one row per message whose From domain's record asks for them (rua=), or None.
        self.recorder = None

    def _inThread(self, f, *args):
        d = threads.deferToThreadPool(self.reactor, self.pool, f, *args)
        return d

    def _limited(self, d, fallback):
        """``d``, or ``fallback()`` once the per-message limit passes or on an error."""
        if not d.called:  # an answer already there (from the caches) needs no timer
            d.addTimeout(self.settings.check_timeout, self.reactor)

        def failed(failure):
            if not failure.check(defer.TimeoutError, defer.CancelledError, DNSTemporary):
                log.failure("mail check failed", failure)
            return fallback()
        return d.addErrback(failed)

    def localSpoof(self, envelope, header: bytes) -> Reply | None:
        """
        Mail without login that claims one of our local domains in MAIL FROM
        or From: our users send through submission with a login, so this is
        a forgery (``[mailauth] local_spoofing``).
        """
        if self.settings.local_spoofing != "reject" or envelope.auth:
            return None
        claimed = [envelope.sender.rpartition("@")[2]] if envelope.sender else []
        claimed += list(headers.fromDomains(header))
        for domain in claimed:
            if _isLocal(domain, self.localDomains):
                return Reply(550, "5.7.1", f"{domain} is a local domain here: log in to send as it")
        return None

    def check(self, envelope, header: bytes, readMessage, tooLarge: bool = False, inline: bool = False):
        """
        Deferred firing with the :class:`Verdict` (never failing).

        @param header: the message's header section (CRLF form).
        @param readMessage: callable returning the whole message (bytes).
        @param inline: verify DKIM on this thread (a small message: see
            ``[mailauth] inline_size``), not in a worker thread.
        """
        try:
            return self._start(envelope, header, readMessage, tooLarge, inline)
        except Exception:  # a bug on hostile input: the caller's errback, as before (never raised here)
            return defer.fail()

    def _start(self, envelope, header, readMessage, tooLarge, inline):
        refusal = self.localSpoof(envelope, header)
        if refusal is not None:
            return defer.succeed(Verdict(reply=refusal, summary="refused: local domain without login"))
        froms, fromDomain, names, dmarcNames, arcNames, arcHere = prepared = self._prepare(header, tooLarge)
        if inline and arcHere and arccheck.heavy(header):
            inline = False  # a long ARC chain: verified in a worker thread
        if (inline or not (names or arcHere)) and not tooLarge and hasattr(self.resolver, "peekEntry"):
            # The common case, a sender seen lately: its SPF results kept and every DKIM key and
            # DMARC record in the cache.  The verdict now, with the same steps as _check but
            # without its Deferreds and time limits (nothing here waits).
            known = self.spfResults.get((envelope.peer, envelope.sender, envelope.helo))
            if known is not None and known[0] > self.reactor.seconds():
                answers = cachedTXT(self.resolver, list(dict.fromkeys(names + dmarcNames + arcNames)))
                if answers is not None:
                    dkims, arc = self._verify(readMessage, answers, names, arcHere)
                    spf, helo = known[1]
                    return defer.succeed(self._conclude(envelope.peer, froms, fromDomain, dmarcNames, answers,
                                                        spf, helo, dkims, arc, envelope))
        return self._check(envelope, header, readMessage, tooLarge, inline, *prepared)

    def _verify(self, readMessage, answers, names, arcHere):
        """The DKIM results and the ARC result (None: ARC off), from the fetched answers (blocking)."""
        message = readMessage() if names or arcHere else b""
        dkims = dkimcheck.verifyAll(message, answers, self.settings.dkim_signatures) if names else []
        arc = None
        if self.settings.arc:
            arc = arccheck.verify(message, answers) if arcHere else arccheck.ARCResult("none")
        return dkims, arc

    def _prepare(self, header, tooLarge):
        """The From domains, the one From domain (or None), the DKIM key names, the DMARC names,
        the ARC key names and whether the message has ARC fields (to verify)."""
        froms = sorted(set(headers.fromDomains(header)))
        fromDomain = froms[0] if len(froms) == 1 else None
        names = [] if tooLarge else dkimcheck.keyNames(header, self.settings.dkim_signatures)
        dmarcNames = []
        if fromDomain:
            dmarcNames.append("_dmarc." + fromDomain)
            org = dmarc.orgDomain(fromDomain)
            if org != fromDomain:
                dmarcNames.append("_dmarc." + org)
        arcHere = self.settings.arc and not tooLarge and arccheck.present(header)
        arcNames = arccheck.keyNames(header) if arcHere else []
        return froms, fromDomain, names, dmarcNames, arcNames, arcHere

    @defer.inlineCallbacks
    def _check(self, envelope, header, readMessage, tooLarge, inline, froms, fromDomain, names, dmarcNames,
               arcNames, arcHere):
        ip = envelope.peer
        s = self.settings

        def spfWork(lookup=None):
            if lookup is None:
                lookup = BlockingDNS(self.resolver, self.reactor, self.dnsTimeout, self.stopping)
            mailFrom = spfcheck.checkSPF(ip, envelope.sender, envelope.helo, lookup, s.spf_time_limit)
            helo = spfcheck.checkHELO(ip, envelope.helo, lookup, s.spf_time_limit)
            return mailFrom, helo

        spfD = None
        spfKey = (ip, envelope.sender, envelope.helo)
        known = self.spfResults.get(spfKey)
        if known is not None and known[0] > self.reactor.seconds():
            spfD = defer.succeed(known[1])
        elif hasattr(self.resolver, "peek"):
            # every answer cached (a sender seen lately): pyspf here, no thread
            cached = CacheOnlyDNS(self.resolver)
            try:
                found = spfWork(cached)
                if not cached.missed:
                    spfD = defer.succeed(found)
                    self._rememberSPF(spfKey, cached.expires, found)
            except CacheMiss:
                pass
        if spfD is None:
            senderDomain = (envelope.sender.rpartition("@")[2] if envelope.sender else envelope.helo).lower()
            spfD = self._limited(self._inThread(spfWork), lambda: (
                spfcheck.SPFResult("temperror", senderDomain, "time limit"), None))

        wanted = list(dict.fromkeys(names + dmarcNames + arcNames))
        prefetch = self._limited(prefetchTXT(self.resolver, wanted, self.dnsTimeout),
                                 lambda: {n: DNSTemporary("time limit") for n in wanted})
        answers = yield prefetch
        if tooLarge:
            dkims = [dkimcheck.DKIMResult("neutral", reason="message too large to verify")] if \
                dkimcheck.signatures(header, 1) else []
            # ARC: a chain there is not verified, so no result (fail would say it is broken)
            arc = arccheck.ARCResult("none") if s.arc and not arccheck.present(header) else None
        elif (names or arcHere) and not inline:
            dkims, arc = yield self._limited(
                self._inThread(self._verify, readMessage, answers, names, arcHere),
                lambda: ([dkimcheck.DKIMResult("temperror", reason="time limit")] if names else [],
                         arccheck.ARCResult("fail", "time limit") if arcHere else None))
        else:
            dkims, arc = self._verify(readMessage, answers, names, arcHere)
        spf, helo = yield spfD
        return self._conclude(ip, froms, fromDomain, dmarcNames, answers, spf, helo, dkims, arc, envelope)

    def _conclude(self, ip, froms, fromDomain, dmarcNames, answers, spf, helo, dkims, arc=None,
                  envelope=None) -> Verdict:
        """DMARC, the Authentication-Results field and the policy, from every other result."""
        dmarcResult = policy = None
        if fromDomain:
            dmarcResult, policy, policyDomain = self._dmarc(fromDomain, answers, dmarcNames, spf, dkims)
        elif froms:
            dmarcResult = dmarc.DMARCResult("permerror", ",".join(froms)[:60], "none", "several From domains")
        field = results.header(self.authservId, spf, helo, dkims, dmarcResult, ip, arc)
        verdict = self._policy(field, dmarcResult, spf, dkims)
        if arc is not None and arc.result != "none":
            verdict.summary += f" arc={arc.result}"
        if self.recorder is not None and policy is not None and policy.rua and envelope is not None:
            # RFC 7489 s7.2: a row of the policy domain's aggregate report (stored in batches, no wait)
            applied = dmarcrows.disposition(verdict, dmarcResult, JUNK)
            self.recorder.record(dmarcrows.row(self.reactor.seconds(), envelope, fromDomain, policyDomain, policy,
                                               spf, dkims, applied))
        return verdict

    def _rememberSPF(self, key, expires, found):
        """
        The SPF results of (client address, MAIL FROM, HELO) are a function
        of the DNS answers pyspf read, so they are kept until the first of
        those answers leaves the cache (a sender sending again and again
        costs pyspf's evaluation once per TTL).  Results that hit a
        time or lookup limit are not kept.
        """
        if expires is None or any(r is not None and r.result == "temperror" for r in found):
            return
        if len(self.spfResults) >= SPF_RESULTS:
            self.spfResults.pop(next(iter(self.spfResults)))
        self.spfResults[key] = (expires, found)

    def _dmarc(self, fromDomain, answers, names, spf, dkims):
        """(the :class:`~.dmarc.DMARCResult`, the policy found or None, the domain it was found at)."""
        first = answers.get(names[0])
        if isinstance(first, DNSTemporary):
            return dmarc.evaluate(fromDomain, None, False, spf, dkims, temporary=True, sample=self.sample), None, None
        policy = dmarc.recordFrom(first or [])
        isSub = False
        where = fromDomain
        if policy is None and len(names) > 1:  # RFC 7489 s6.6.3: the organizational domain's record
            org = answers.get(names[1])
            if isinstance(org, DNSTemporary):
                return (dmarc.evaluate(fromDomain, None, True, spf, dkims, temporary=True, sample=self.sample),
                        None, None)
            policy = dmarc.recordFrom(org or [])
            isSub = policy is not None
            where = names[1][len("_dmarc."):]
        return dmarc.evaluate(fromDomain, policy, isSub, spf, dkims, sample=self.sample), policy, where

    def _policy(self, field, result, spf, dkims) -> Verdict:
        s = self.settings
        dkimText = ",".join(d.result for d in dkims) or "none"
        summary = f"spf={spf.result} dkim={dkimText} dmarc={result.result if result else 'none'}"
        if result is not None and result.requested:  # RFC 7489 s6.6.4: not sampled, the weaker policy
            summary += f" (p={result.requested} pct={result.pct} not sampled: {result.policy})"
        verdict = Verdict(header=field, summary=summary, senderVerified=spf is not None and spf.result == "pass")
        if result is None:
            return verdict
        if result.result == "fail":
            action = {"reject": s.dmarc_reject, "quarantine": s.dmarc_quarantine}.get(result.policy, "label")
            if action == "reject":
                verdict.reply = Reply(550, "5.7.1", f"Message refused: DMARC policy of {result.domain} "
                                                    f"({result.reason})")
            elif action == "junk":
                verdict.folder = JUNK
        elif result.result == "temperror" and s.dns_failure == "defer":
            verdict.reply = Reply(451, "4.7.0", f"Cannot check the DMARC policy of {result.domain} now; "
                                                f"try again later")
        return verdict

"""
The breakdown for bench/mailauth_bench.py: what each part of the checks
and of signing costs in process, as CPU time (``time.process_time``) per
call, median of a few rounds, measured in the benchmark's own run so that
it can be set against the server's figures of that run.

* ``openssl speed rsa2048``: the RSA-2048 private-key operation in C,
  without Python (the floor of any RSA-2048 signer);
* the same operation through ``cryptography`` (what dkimown calls), and
  Ed25519's;
* signing a 4 KB message: RSA-2048, Ed25519, both (``dkimsign.sign``);
* the inbound check's parts: SPF (pyspf's evaluation of MAIL FROM and
  HELO, answered from a dictionary: what the server pays once per DNS
  TTL), DKIM verification, DMARC, the Authentication-Results field, and
  the whole :meth:`Checker.check` with every DNS answer cached (what the
  server pays per message).

Each figure is given twice: *hot*, the same call again and again (caches
warm, the least it can cost), and *cold*, each call after 8 MB of other
memory was read, so that the CPU's caches hold none of the call's code
and data (the most it costs).  In the server, each message's check or
signature runs between the rest of that message's work (SMTP, the store)
and, on a shared machine, other processes: its cost lies in between, and
nearer the cold one the busier the machine.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import subprocess
import time


def perCall(f, n=300, rounds=5):
    """Median CPU µs per call of ``f()`` (``rounds`` rounds of ``n`` calls)."""
    f()  # warm (imports, caches)
    out = []
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(n):
            f()
        out.append((time.process_time() - start) / n * 1e6)
    return statistics.median(out)


_EVICT = bytearray(8 << 20)


def coldPerCall(f, n=150):
    """Median CPU µs of one call of ``f()`` made after 8 MB of other memory was read."""
    f()
    out = []
    for _ in range(n):
        bytes(_EVICT).count(b"x")  # the caches now hold this, not f's code and data
        start = time.process_time()
        f()
        out.append(time.process_time() - start)
    return statistics.median(out) * 1e6


def opensslRSA2048() -> float | None:
    """µs per RSA-2048 signature from ``openssl speed`` (None if it cannot say)."""
    try:
        out = subprocess.run(["openssl", "speed", "-seconds", "2", "-mr", "rsa2048"], capture_output=True,
                             text=True, timeout=120).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.splitlines():
        if line.startswith("+F2:"):  # +F2:<n>:<bits>:<sign/s>:<verify/s> (OpenSSL 3)
            return 1e6 / float(line.split(":")[3])
    return None


class _FakeResolver:
    """twisted.names-shaped TXT answers from a zone dictionary, at once."""

    def __init__(self, zone):
        self.zone = zone

    def lookupText(self, name, timeout=None):
        from twisted.internet import defer
        from twisted.names import dns, error

        texts = self.zone.get(name.lower().rstrip("."), {}).get("TXT")
        if not texts:
            return defer.fail(error.DomainError(name))
        answers = [dns.RRHeader(name, dns.TXT, ttl=3600, payload=dns.Record_TXT(t.encode(), ttl=3600))
                   for t in texts]
        return defer.succeed((answers, [], []))

    def __getattr__(self, method):
        if not method.startswith("lookup"):
            raise AttributeError(method)
        from twisted.internet import defer
        from twisted.names import error

        return lambda name, timeout=None: defer.fail(error.DomainError(name))


def breakdown(keyDir, zone, signed: bytes, plain: bytes) -> dict:
    """Every figure, in µs of CPU per call (see the module's docstring)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, utils
    from twisted.internet import task

    from mailnet.config import fromDict
    from mailnet.mailauth import dkimcheck, dkimown, dkimsign, dmarc, headers, keys, results, spfcheck
    from mailnet.mailauth.checks import Checker
    from mailnet.mailauth.dnsquery import CachingResolver

    out = {"openssl speed rsa2048 sign": opensslRSA2048()}
    found = keys.loadAll(os.path.dirname(os.path.dirname(keyDir)))["a.test"]
    rsa = [k for k in found if k.algorithm == "rsa"]
    ed = [k for k in found if k.algorithm == "ed25519"]
    digest = hashlib.sha256(b"x").digest()
    rsaKey = dkimown._privateRSA(rsa[0].private)
    edKey = dkimown._privateEd25519(ed[0].private)
    out["RSA-2048 sign (cryptography)"] = perCall(
        lambda: rsaKey.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())))
    out["Ed25519 sign (cryptography)"] = perCall(lambda: edKey.sign(digest))
    out["DKIM sign 4 KB, RSA-2048"] = perCall(lambda: dkimsign.sign(plain, rsa))
    out["DKIM sign 4 KB, Ed25519"] = perCall(lambda: dkimsign.sign(plain, ed))
    out["DKIM sign 4 KB, both"] = perCall(lambda: dkimsign.sign(plain, rsa + ed))

    def lookup(name, qtype, strict=True, timeout=None):
        return [((name, qtype), (v.encode(),) if qtype == "TXT" else v)
                for v in zone.get(name.lower().rstrip("."), {}).get(qtype, [])]

    out["SPF evaluation, MAIL FROM + HELO (once per TTL)"] = perCall(lambda: (
        spfcheck.checkSPF("127.0.0.1", "alice@a.test", "client.a.test", lookup),
        spfcheck.checkHELO("127.0.0.1", "client.a.test", lookup)), n=100)
    header = signed.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    names = dkimcheck.keyNames(header, 5)
    answers = {n: zone[n]["TXT"] for n in names}
    out["DKIM verify 4 KB (one RSA signature)"] = perCall(lambda: dkimcheck.verifyAll(signed, answers))
    dkims = dkimcheck.verifyAll(signed, answers)
    spf = spfcheck.SPFResult("pass", "a.test")
    record = [zone["_dmarc.a.test"]["TXT"][0].encode()]
    dmarc.orgDomain("a.test")  # the Public Suffix List, parsed once

    def dmarcOnce():
        return dmarc.evaluate("a.test", dmarc.recordFrom(record), False, spf, dkims)
    out["DMARC (record, org domain, evaluation)"] = perCall(lambda: (dmarc.orgDomain("a.test"), dmarcOnce()))
    verdict = dmarcOnce()
    out["Authentication-Results field"] = perCall(
        lambda: results.header("mx.b.test", spf, None, dkims, verdict, "127.0.0.1"))
    out["header scans (From domains, our A-R removed)"] = perCall(
        lambda: (headers.fromDomains(header), headers.withoutOurResults(header, "mx.b.test")))

    # The whole check, every answer cached, as in the server after the first message.
    clock = task.Clock()
    clock.advance(1000)
    config = fromDict({"domains": {"local": ["b.test"]}, "server": {"hostname": "mx.b.test"},
                       "mailauth": {"inbound": True}})
    resolver = CachingResolver(_FakeResolver(zone), clock)
    checker = Checker(config, clock, resolver, pool=None)

    class Envelope:
        sender, auth, helo, peer = "alice@a.test", None, "client.a.test", "127.0.0.1"

    def whole():
        box = []
        checker.check(Envelope, header, lambda: signed, False, inline=True).addCallback(box.append)
        return box[0]
    # Fill the cache as the first message does: pyspf asks, each missing name is looked up.
    from mailnet.mailauth.dnsquery import _LOOKUPS, CacheMiss, CacheOnlyDNS

    for name in list(names) + ["_dmarc.a.test"]:
        resolver.lookupText(name)
    for _ in range(20):
        cached = CacheOnlyDNS(resolver)
        asked = []

        def noting(name, qtype, strict=True, timeout=None):
            try:
                return cached(name, qtype, strict, timeout)
            except CacheMiss:
                asked.append((name, qtype))
                raise
        try:
            spfcheck.checkSPF("127.0.0.1", "alice@a.test", "client.a.test", noting)
            spfcheck.checkHELO("127.0.0.1", "client.a.test", noting)
        except CacheMiss:
            pass
        if not asked:
            break
        for name, qtype in asked:
            getattr(resolver, _LOOKUPS[qtype])(name).addErrback(lambda f: None)
    v = whole()
    assert b"dkim=pass" in v.header and b"dmarc=pass" in v.header, v.header
    out["whole check, answers cached (per message)"] = perCall(whole)
    cold = {}
    for name, f in [("RSA-2048 sign (cryptography)", lambda: rsaKey.sign(digest, padding.PKCS1v15(),
                                                                          utils.Prehashed(hashes.SHA256()))),
                    ("Ed25519 sign (cryptography)", lambda: edKey.sign(digest)),
                    ("DKIM sign 4 KB, RSA-2048", lambda: dkimsign.sign(plain, rsa)),
                    ("DKIM sign 4 KB, Ed25519", lambda: dkimsign.sign(plain, ed)),
                    ("DKIM sign 4 KB, both", lambda: dkimsign.sign(plain, rsa + ed)),
                    ("DKIM verify 4 KB (one RSA signature)", lambda: dkimcheck.verifyAll(signed, answers)),
                    ("whole check, answers cached (per message)", whole)]:
        cold[name] = coldPerCall(f)
    checker.spfResults.clear()
    return out, cold

"""
The checks' DNS layer without a network: TXT lookups and their errors, the
answer cache (TTL, negative answers, bounded), and the blocking adapter
pyspf runs in a thread.
"""

from __future__ import annotations

import threading

import pytest
from twisted.internet import defer, task
from twisted.names import dns, error as dnserror

from mailnet.mailauth import dnsquery


class FakeResolver:
    def __init__(self, records, ttl=60):
        self.records = records  # name -> list of TXT strings, or an exception class
        self.ttl = ttl
        self.asked = []

    def lookupText(self, name, timeout=None):
        self.asked.append(name)
        value = self.records.get(name.lower().rstrip("."))
        if value is None:
            return defer.fail(dnserror.DomainError(name))
        if isinstance(value, type):
            return defer.fail(value(name))
        answers = [dns.RRHeader(name, dns.TXT, dns.IN, self.ttl, dns.Record_TXT(*[v.encode() for v in chunk]))
                   for chunk in value]
        return defer.succeed((answers, [], []))


def _result(d):
    out = []
    d.addBoth(out.append)
    return out[0]


def test_lookup_txt_joins_strings_and_maps_errors():
    resolver = FakeResolver({"a.test": [["v=spf1 ", "-all"], ["other"]], "t.test": defer.TimeoutError,
                             "s.test": dnserror.DNSServerError})
    assert _result(dnsquery.lookupTXT(resolver, "a.test", 1)) == [b"v=spf1 -all", b"other"]
    assert _result(dnsquery.lookupTXT(resolver, "none.test", 1)) == []
    for name in ("t.test", "s.test"):
        failure = _result(dnsquery.lookupTXT(resolver, name, 1))
        assert failure.check(dnsquery.DNSTemporary)
    got = _result(dnsquery.prefetchTXT(resolver, ["a.test", "t.test", "a.test"], 1))
    assert got["a.test"] == [b"v=spf1 -all", b"other"] and isinstance(got["t.test"], dnsquery.DNSTemporary)


def test_cache_keeps_answers_for_their_ttl_and_never_timeouts():
    clock = task.Clock()
    fake = FakeResolver({"a.test": [["x"]], "t.test": dnserror.DNSServerError}, ttl=30)
    cache = dnsquery.CachingResolver(fake, clock, maxEntries=2, negativeTTL=10)
    for _ in range(3):
        assert _result(dnsquery.lookupTXT(cache, "A.test.", 1)) == [b"x"]
    assert fake.asked == ["A.test."]
    clock.advance(31)
    _result(dnsquery.lookupTXT(cache, "a.test", 1))
    assert len(fake.asked) == 2
    for _ in range(2):
        _result(dnsquery.lookupTXT(cache, "none.test", 1))  # NXDOMAIN: kept 10 s
        _result(dnsquery.lookupTXT(cache, "t.test", 1))  # SERVFAIL: asked again
    assert fake.asked[2:] == ["none.test", "t.test", "t.test"]
    clock.advance(11)
    _result(dnsquery.lookupTXT(cache, "none.test", 1))
    assert fake.asked[-1] == "none.test"
    assert len(cache.entries) <= 2  # bounded


def test_blocking_adapter_answers_pyspf_from_a_thread():
    """BlockingDNS waits for the reactor's answer; a reactor that never runs the
    call (stopping) costs a bounded wait, then temperror."""
    from spf import TempError

    class Reactor:
        def __init__(self):
            self.calls = []

        def callFromThread(self, f, *a):
            self.calls.append(f)
            if self.run:
                f(*a)

    reactor = Reactor()
    reactor.run = True
    fake = FakeResolver({"a.test": [["v=spf1 -all"]], "s.test": dnserror.DNSServerError})
    lookup = dnsquery.BlockingDNS(fake, reactor, timeout=0.2)
    out = []
    t = threading.Thread(target=lambda: out.append(lookup("a.test", "TXT")))
    t.start()
    t.join(5)
    assert out == [[(("a.test", "TXT"), (b"v=spf1 -all",))]]
    assert lookup("none.test", "TXT") == []
    with pytest.raises(TempError):  # SERVFAIL is temperror, not "no record"
        lookup("s.test", "TXT")
    reactor.run = False  # a reactor that does not get to it
    with pytest.raises(TempError):
        lookup("a.test", "TXT")
    stopping = threading.Event()
    stopping.set()
    with pytest.raises(TempError):
        dnsquery.BlockingDNS(fake, reactor, 0.2, stopping)("a.test", "TXT")


def test_cache_only_adapter_for_inline_spf():
    """SPF on the reactor when every answer is cached; a miss says so (then a thread does it)."""
    from mailnet.mailauth import spfcheck

    clock = task.Clock()
    fake = FakeResolver({"a.test": [["v=spf1 ip4:192.0.2.1 -all"]]})
    cache = dnsquery.CachingResolver(fake, clock)
    cached = dnsquery.CacheOnlyDNS(cache)
    with pytest.raises(dnsquery.CacheMiss):
        spfcheck.checkSPF("192.0.2.1", "x@a.test", "a.test", cached)
    assert cached.missed
    _result(dnsquery.lookupTXT(cache, "a.test", 1))  # as the threaded check's lookups fill it
    _result(dnsquery.lookupTXT(cache, "none.test", 1))
    again = dnsquery.CacheOnlyDNS(cache)
    assert spfcheck.checkSPF("192.0.2.1", "x@a.test", "a.test", again).result == "pass"
    assert spfcheck.checkSPF("192.0.2.9", "x@a.test", "a.test", again).result == "fail"
    assert not again.missed and len(fake.asked) == 2
    assert again("none.test", "TXT") == []  # a kept "no such name"


def test_spf_results_are_kept_as_long_as_the_answers_they_came_from():
    """A sender seen again: its SPF results without running pyspf, until an answer they used expires."""
    import types

    from mailnet.config import fromDict
    from mailnet.mailauth import checks, spfcheck

    clock = task.Clock()
    clock.advance(1000)
    fake = FakeResolver({"a.test": [["v=spf1 ip4:192.0.2.1 -all"]], "_dmarc.a.test": [["v=DMARC1; p=none"]]}, ttl=60)
    cache = dnsquery.CachingResolver(fake, clock)
    config = fromDict({"domains": {"local": ["b.test"]}, "server": {"hostname": "mx.b.test"}, "mailauth": {"inbound": True}})
    checker = checks.Checker(config, clock, cache, pool=None)
    for name in ("a.test", "_dmarc.a.test"):
        _result(dnsquery.lookupTXT(cache, name, 1))  # as a first, threaded check would have
    runs = []
    real = spfcheck.checkSPF

    def counted(*args, **kw):
        runs.append(args[1])
        return real(*args, **kw)

    checks.spfcheck.checkSPF = counted
    try:
        header = b"From: x@a.test\r\nSubject: s\r\n\r\n"
        envelope = types.SimpleNamespace(peer="192.0.2.1", sender="x@a.test", helo="a.test", auth=None)

        def check(peer="192.0.2.1"):
            envelope.peer = peer
            return _result(checker.check(envelope, header, lambda: header + b"body\r\n", inline=True))

        first = check()
        assert b"spf=pass" in first.header and len(runs) == 2  # MAIL FROM and HELO
        assert check().header == first.header and len(runs) == 2  # the same results, pyspf not run again
        assert b"spf=fail" in check("192.0.2.9").header and len(runs) == 4  # another client: its own
        # The record changes; once the answer expires (60 s), the new one decides.
        fake.records["a.test"] = [["v=spf1 -all"]]
        clock.advance(30)
        assert b"spf=pass" in check().header and len(runs) == 4
        clock.advance(31)
        _result(dnsquery.lookupTXT(cache, "a.test", 1))
        assert b"spf=fail" in check().header and len(runs) == 6
    finally:
        checks.spfcheck.checkSPF = real

"""
SPF (RFC 7208) through mailnet.mailauth.spfcheck, on the RFC 7208 test
suite (the openspf.org YAML that ships with pyspf's source; vendored in
tests/mailauth/data with its licence).  Each scenario's zone answers the
lookups through the same per-thread DNS hook the server uses.
"""

from __future__ import annotations

import os

import pytest

from mailnet.mailauth import spfcheck

yaml = pytest.importorskip("yaml", reason="PyYAML (the test extra) reads the RFC 7208 test suite")

SUITE = os.path.join(os.path.dirname(__file__), "data", "rfc7208-tests.yml")


def _records(entries):
    """A scenario's records for one name: [(type, value)] or "TIMEOUT"; SPF
    records are served as TXT too when the name has no TXT of its own."""
    out, spfs, hasTXT = [], [], False
    for entry in entries:
        if entry == "TIMEOUT":
            out.append(("TIMEOUT", None))
            continue
        for kind, value in entry.items():
            if kind in ("TXT", "SPF") and isinstance(value, str):
                value = [value]
            if kind == "TXT":
                hasTXT = True
            if kind == "SPF":
                spfs.append(value)
            if value != ["NONE"]:
                out.append((kind, value))
    if not hasTXT:
        out += [("TXT", v) for v in spfs if v != ["NONE"]]
    return out


def _zone(data):
    return {name.lower(): _records(entries) for name, entries in (data.get("zonedata") or {}).items()}


class ZoneLookup:
    """The ``lookup(name, qtype, strict, timeout)`` the server's BlockingDNS provides."""

    def __init__(self, zone):
        self.zone = zone

    def __call__(self, name, qtype, strict=True, timeout=None, depth=0):
        name = name.rstrip(".")
        if any(len(label) > 63 for label in name.split(".")):
            raise spfcheck.spf.TempError("DNS label too long")
        records = self.zone.get(name.lower())
        if records is None:
            return []
        found, out = False, []
        for kind, value in records:
            if kind == "TIMEOUT":
                if not found:
                    raise spfcheck.spf.TempError("DNS timeout")
                return out
            if kind == qtype:
                found = True
            if value == "TIMEOUT":
                if kind == qtype:
                    raise spfcheck.spf.TempError("DNS timeout")
                continue
            if kind in ("TXT", "SPF"):
                value = tuple(s.encode("utf-8") for s in value)
            elif kind == "MX":
                value = (value[0], value[1])
            out.append(((name, kind), value))
            if kind == "CNAME" and depth == 0:
                out += self(value, qtype, strict, timeout, 1)
        return out


def _cases():
    with open(SUITE, "rb") as f:
        scenarios = list(yaml.safe_load_all(f))
    for scenario in scenarios:
        zone = _zone(scenario)
        for name, test in scenario["tests"].items():
            yield pytest.param(zone, test, id=name)


@pytest.mark.parametrize("zone,test", list(_cases()))
def test_rfc7208_suite(zone, test):
    expected = test["result"]
    expected = [expected] if isinstance(expected, str) else expected
    got = spfcheck.checkSPF(test["host"], test.get("mailfrom", ""), test.get("helo", ""), ZoneLookup(zone))
    assert got.result in expected, (test.get("description"), test.get("spec"), got)


def test_lookup_hook_is_per_thread():
    """Two checks at once in two threads each see their own zone."""
    import threading

    results = {}
    zones = {
        "pass": {"a.test": [("TXT", ["v=spf1 +all"])]},
        "fail": {"a.test": [("TXT", ["v=spf1 -all"])]},
    }
    barrier = threading.Barrier(2)

    def run(which):
        lookup = ZoneLookup(zones[which])

        def slow(*args, **kw):
            barrier.wait(5)
            return lookup(*args, **kw)
        results[which] = spfcheck.checkSPF("192.0.2.1", "x@a.test", "a.test", slow).result

    threads = [threading.Thread(target=run, args=(w,)) for w in zones]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == {"pass": "pass", "fail": "fail"}


def test_dns_timeout_is_temperror():
    def timeout(*args, **kw):
        raise spfcheck.spf.TempError("DNS timeout")
    assert spfcheck.checkSPF("192.0.2.1", "x@a.test", "a.test", timeout).result == "temperror"


def test_void_lookup_limit():
    """RFC 7208 s4.6.4: more than two void lookups is a permerror."""
    zone = {"a.test": [("TXT", ["v=spf1 a:n1.a.test a:n2.a.test a:n3.a.test -all"])]}
    assert spfcheck.checkSPF("192.0.2.1", "x@a.test", "a.test", ZoneLookup(zone)).result == "permerror"

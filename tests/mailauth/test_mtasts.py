"""
MTA-STS (RFC 8461) in process: the TXT record and policy parsers
(table tests and Hypothesis), MX matching, the policy we serve, and the
fetcher's cache rules (s5.1) with a fake resolver and a fake fetch.
"""

from __future__ import annotations

import json
import os
import types

import pytest
from hypothesis import given, settings, strategies as st
from twisted.internet import defer, task
from twisted.names import dns, error as dnserror

from mailnet.errors import DeliveryError
from mailnet.mailauth import mtasts, mtastsfetch, tlsrpt
from mailnet.queue.mx import Host

GOOD = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n"


def test_txt_record():
    assert mtasts.parseTXT(["v=STSv1; id=20160831085700Z;"]) == "20160831085700Z"
    assert mtasts.parseTXT(["v=spf1 -all", "v=STSv1;id=abc; ext=1"]) == "abc"
    assert mtasts.parseTXT(["v=spf1 -all"]) is None
    assert mtasts.parseTXT([]) is None
    for bad in (["v=STSv1; id=1", "v=STSv1; id=2"], ["v=STSv1;"], ["v=STSv1; id=a-b"], ["v=STSv1; id=" + "a" * 33],
                ["v=STSv1; id"]):
        with pytest.raises(mtasts.PolicyError):
            mtasts.parseTXT(bad)


def test_policy_parse():
    p = mtasts.parsePolicy(GOOD)
    assert (p.mode, p.mx, p.max_age) == ("enforce", ("mail.example.com", "*.example.net"), 604800)
    assert p.lines() == ["version: STSv1", "mode: enforce", "mx: mail.example.com", "mx: *.example.net", "max_age: 604800"]
    # LF lines, unknown keys ignored, the first of a repeated key wins
    p = mtasts.parsePolicy("version: STSv1\nmode: testing\nmode: enforce\nmx: MX.Example.COM.\nfoo_bar: x\nmax_age: 0\n")
    assert (p.mode, p.mx, p.max_age) == ("testing", ("mx.example.com",), 0)
    assert mtasts.parsePolicy("version: STSv1\nmode: none\nmax_age: 10\n").mx == ()


@pytest.mark.parametrize("text", [
    "mode: enforce\nmx: a.test\nmax_age: 1\n",  # no version
    "version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1\n",
    "version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1\n",
    "version: STSv1\nmode: enforce\nmax_age: 1\n",  # no mx
    "version: STSv1\nmode: enforce\nmx: a.test\n",  # no max_age
    "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 31557601\n",
    "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: -1\n",
    "version: STSv1\nmode: enforce\nmx: a..test\nmax_age: 1\n",
    "version: STSv1\nmode: enforce\nmx: a.*.test\nmax_age: 1\n",
    "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 1\n<html>\n",
    "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 1\n" + "x: y\n" * 20000,  # over 64 KB
])
def test_policy_errors(text):
    with pytest.raises(mtasts.PolicyError):
        mtasts.parsePolicy(text)


def test_mx_matching_rfc8461_s4_1():
    assert mtasts.mxMatches("mail.example.com", "MAIL.example.com.")
    assert not mtasts.mxMatches("mail.example.com", "mail2.example.com")
    assert mtasts.mxMatches("*.example.com", "mx1.example.com")
    assert not mtasts.mxMatches("*.example.com", "example.com")
    assert not mtasts.mxMatches("*.example.com", "a.b.example.com")
    assert not mtasts.mxMatches("*.example.com", ".example.com")


def test_served_policy_round_trips_and_its_id_follows_the_text():
    text = mtasts.policyText("testing", ["mx.example.org", "*.example.org"], 604800)
    assert mtasts.parsePolicy(text).mx == ("mx.example.org", "*.example.org")
    assert mtasts.parseTXT([f"v=STSv1; id={mtasts.policyId(text)}"]) == mtasts.policyId(text)
    assert mtasts.policyId(text) != mtasts.policyId(text.replace("testing", "enforce"))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_parsers_never_fail_otherwise(text):
    for parse in (mtasts.parsePolicy, lambda t: mtasts.parseTXT([t])):
        try:
            parse(text)
        except mtasts.PolicyError:
            pass


label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(st.lists(label, min_size=1, max_size=4), st.lists(label, min_size=1, max_size=3),
       st.sampled_from(MODES := ("enforce", "testing")), st.integers(0, mtasts.MAX_AGE_LIMIT))
def test_generated_policies_parse_and_match(labels, hostLabels, mode, age):
    domain = ".".join(labels)
    text = mtasts.policyText(mode, [domain, "*." + domain], age)
    p = mtasts.parsePolicy(text)
    assert (p.mode, p.max_age) == (mode, age)
    assert p.matches(domain.upper())
    assert p.matches(hostLabels[0] + "." + domain)
    assert p.matches(".".join(hostLabels) + "." + domain) == (len(hostLabels) == 1)


# -- The fetcher's cache rules (RFC 8461 s5.1) --------------------------------


class FakeResolver:
    def __init__(self):
        self.txt = {}

    def lookupText(self, name, timeout=None):
        value = self.txt.get(name)
        if value is None:
            return defer.fail(dnserror.DomainError(name))
        if isinstance(value, type):
            return defer.fail(value(name))
        return defer.succeed(([dns.RRHeader(name, dns.TXT, dns.IN, 60, dns.Record_TXT(value.encode()))], [], []))


def makeFetcher(tmp_path):
    clock = task.Clock()
    clock.advance(1_000_000)
    config = types.SimpleNamespace(server=types.SimpleNamespace(data_dir=str(tmp_path)),
                                   mtasts=types.SimpleNamespace(fetch_timeout=5, https_port=443))
    resolver = FakeResolver()
    fetcher = mtastsfetch.PolicyFetcher(clock, config, resolver, None)
    fetcher.served = {}  # domain -> policy text or FetchError
    fetcher.fetches = []

    def fetch(domain):
        fetcher.fetches.append(domain)
        value = fetcher.served.get(domain)
        if isinstance(value, Exception):
            return defer.fail(value)
        return defer.succeed(mtasts.parsePolicy(value))

    fetcher.fetch = fetch
    return fetcher, resolver, clock


def result(d):
    out = []
    d.addBoth(out.append)
    return out[0]


def policyText(mx, mode="enforce", age=86400):
    return f"version: STSv1\nmode: {mode}\nmx: {mx}\nmax_age: {age}\n"


def test_cache_refetches_when_the_id_changes_and_keeps_a_policy_when_fetching_fails(tmp_path):
    fetcher, resolver, clock = makeFetcher(tmp_path)
    resolver.txt["_mta-sts.a.test"] = "v=STSv1; id=one"
    fetcher.served["a.test"] = policyText("mx1.a.test")
    got = result(fetcher.policyFor("a.test"))
    assert got.policy.mx == ("mx1.a.test",) and not got.cached and fetcher.fetches == ["a.test"]
    with open(tmp_path / "mtasts" / "a.test.json") as f:
        assert json.load(f)["id"] == "one"
    assert oct(os.stat(tmp_path / "mtasts" / "a.test.json").st_mode & 0o777) == "0o600"
    # the same id: the cache, no fetch
    got = result(fetcher.policyFor("a.test"))
    assert got.cached and fetcher.fetches == ["a.test"]
    # a new id: fetched again
    resolver.txt["_mta-sts.a.test"] = "v=STSv1; id=two"
    fetcher.served["a.test"] = policyText("mx2.a.test")
    got = result(fetcher.policyFor("a.test"))
    assert got.policy.mx == ("mx2.a.test",) and not got.cached and len(fetcher.fetches) == 2
    # a newer id whose fetch fails: the cached policy (s5.1), and the error for TLS-RPT
    resolver.txt["_mta-sts.a.test"] = "v=STSv1; id=three"
    fetcher.served["a.test"] = mtastsfetch.FetchError("sts-policy-fetch-error", "connection refused")
    got = result(fetcher.policyFor("a.test"))
    assert got.policy.mx == ("mx2.a.test",) and got.cached and got.error == "sts-policy-fetch-error"
    # the failure is remembered for a while: the next connections do not wait for the policy host again
    fetched = len(fetcher.fetches)
    clock.advance(mtastsfetch.RETRY_FAILED - 1)
    assert result(fetcher.policyFor("a.test")).error == "sts-policy-fetch-error" and len(fetcher.fetches) == fetched
    clock.advance(2)
    fetcher.served["a.test"] = policyText("mx4.a.test")
    assert result(fetcher.policyFor("a.test")).policy.mx == ("mx4.a.test",) and len(fetcher.fetches) == fetched + 1
    resolver.txt["_mta-sts.a.test"] = "v=STSv1; id=four"
    fetcher.served["a.test"] = mtastsfetch.FetchError("sts-policy-fetch-error", "connection refused")
    assert result(fetcher.policyFor("a.test")).policy.mx == ("mx4.a.test",)
    # the TXT record gone or failing: the cached policy still applies
    resolver.txt["_mta-sts.a.test"] = dnserror.DNSServerError
    assert result(fetcher.policyFor("a.test")).policy.mx == ("mx4.a.test",)
    del resolver.txt["_mta-sts.a.test"]
    assert result(fetcher.policyFor("a.test")).policy.mx == ("mx4.a.test",)
    # ...until it expires
    clock.advance(86401)
    got = result(fetcher.policyFor("a.test"))
    assert got.policy is None and got.error is None


def test_no_record_no_policy_and_a_failed_first_fetch_is_reported(tmp_path):
    fetcher, resolver, clock = makeFetcher(tmp_path)
    assert result(fetcher.policyFor("none.test")).policy is None and fetcher.fetches == []
    resolver.txt["_mta-sts.b.test"] = "v=STSv1; id=1"
    fetcher.served["b.test"] = mtastsfetch.FetchError("sts-policy-invalid", "bad mode")
    got = result(fetcher.policyFor("b.test"))
    assert got.policy is None and got.error == "sts-policy-invalid"
    assert not os.path.exists(tmp_path / "mtasts" / "b.test.json")


def test_cache_refreshes_in_the_background_after_half_its_age(tmp_path):
    fetcher, resolver, clock = makeFetcher(tmp_path)
    resolver.txt["_mta-sts.a.test"] = "v=STSv1; id=one"
    fetcher.served["a.test"] = policyText("mx1.a.test", age=1000)
    result(fetcher.policyFor("a.test"))
    clock.advance(600)
    fetcher.served["a.test"] = policyText("mx3.a.test", age=1000)
    assert result(fetcher.policyFor("a.test")).policy.mx == ("mx1.a.test",)  # answered from the cache...
    assert len(fetcher.fetches) == 2  # ...and refreshed
    assert result(fetcher.policyFor("a.test")).policy.mx == ("mx3.a.test",)


def test_damaged_cache_file_is_removed_not_fatal(tmp_path):
    fetcher, resolver, clock = makeFetcher(tmp_path)
    os.makedirs(tmp_path / "mtasts")
    (tmp_path / "mtasts" / "a.test.json").write_text("{not json")
    resolver.txt["_mta-sts.a.test"] = "v=STSv1; id=one"
    fetcher.served["a.test"] = policyText("mx1.a.test")
    assert result(fetcher.policyFor("a.test")).policy.mx == ("mx1.a.test",)
    assert json.loads((tmp_path / "mtasts" / "a.test.json").read_text())["id"] == "one"


# -- The relay's plan (s5) ----------------------------------------------------


class Results:
    def __init__(self):
        self.events = []
        self.sources = []

    def success(self, entry):
        self.events.append(("ok", entry["policy-domain"]))

    def failure(self, entry, kind, host=None, ip=None, reason="", sendingIp=None):
        self.events.append((kind, host))
        self.sources.append(sendingIp)


def plan(mode, hosts, error=None):
    lookup = mtastsfetch.Lookup(mtasts.parsePolicy(policyText("*.a.test", mode)), error=error)
    results = Results()
    return mtastsfetch.Plan("a.test", lookup, [Host(h, 10, ["127.0.0.1"]) for h in hosts], results), results


def test_plan_enforce_keeps_listed_hosts_and_verifies_them():
    p, results = plan("enforce", ["mx.a.test", "backup.b.test"])
    assert [h.name for h in p.hosts] == ["mx.a.test"]
    assert p.tlsMode(p.hosts[0], "opportunistic") == "required"
    p.succeeded("mx.a.test", "127.0.0.1", "required")
    error = DeliveryError(451, "4.7.10", "TLS is required, but mx.a.test does not offer STARTTLS", True)
    p.failed("mx.a.test", "127.0.0.1", "required", error)
    assert not p.fallBack("required", error)
    assert results.events == [("ok", "a.test"), ("starttls-not-supported", "mx.a.test")]
    p, results = plan("enforce", ["mx.b.test"])
    assert p.hosts == [] and p.noHost().enhanced == "4.7.5" and results.events == [("validation-failure", "mx.b.test")]


def test_plan_testing_falls_back_and_reports():
    p, results = plan("testing", ["mx.a.test", "backup.b.test"])
    assert len(p.hosts) == 2
    error = DeliveryError(421, "4.7.5", "TLS with mx.a.test failed: certificate verify failed", True)
    p.failed("mx.a.test", "127.0.0.1", "required", error)
    assert p.fallBack("required", error)
    assert not p.fallBack("required", DeliveryError(451, "4.4.1", "connection refused", True))
    assert p.tlsMode(p.hosts[1], "opportunistic") == "opportunistic"
    p.succeeded("backup.b.test", "127.0.0.1", "opportunistic")
    assert results.events == [("certificate-not-trusted", "mx.a.test"), ("validation-failure", "backup.b.test")]


def test_plan_reports_the_address_we_connected_from():
    # RFC 8460 s4.3 sending-mta-ip: from the failed session's error, or the session set up
    p, results = plan("testing", ["mx.a.test", "backup.b.test"])
    error = DeliveryError(421, "4.7.5", "TLS with mx.a.test failed: certificate has expired", True)
    error.sendingIp = "127.0.0.5"
    p.failed("mx.a.test", "127.0.0.1", "required", error)
    p.succeeded("backup.b.test", "127.0.0.1", "opportunistic", source="127.0.0.6")
    p.failed("mx.a.test", "127.0.0.1", "required", DeliveryError(451, "4.7.10", "no STARTTLS", True))
    assert results.events == [("certificate-expired", "mx.a.test"), ("validation-failure", "backup.b.test"),
                              ("starttls-not-supported", "mx.a.test")]
    assert results.sources == ["127.0.0.5", "127.0.0.6", None]


def test_plan_counts_a_fetch_error_once():
    failed = mtastsfetch.Lookup(None, error="sts-policy-fetch-error", reason="timeout")
    results = Results()
    mtastsfetch.Plan("a.test", failed, [Host("mx.a.test", 10, ["127.0.0.1"])], results)
    assert results.events == [("sts-policy-fetch-error", None)]
    # with a cached policy, the session is judged by it (one result per session)
    p, results = plan("enforce", ["mx.a.test"], error="sts-policy-fetch-error")
    p.succeeded("mx.a.test", "127.0.0.1", "required")
    assert results.events == [("ok", "a.test")]


def test_plan_none_mode_is_no_policy():
    lookup = mtastsfetch.Lookup(mtasts.parsePolicy("version: STSv1\nmode: none\nmax_age: 5\n"))
    p = mtastsfetch.Plan("a.test", lookup, [Host("x.b.test", 10, ["127.0.0.1"])], Results())
    assert p.policy is None and len(p.hosts) == 1 and p.tlsMode(p.hosts[0], "opportunistic") == "opportunistic"


def test_result_types_rfc8460_s4_3():
    def kind(enhanced, text):
        return tlsrpt.resultType(DeliveryError(421, enhanced, text, True))

    assert kind("4.7.10", "TLS is required, but x does not offer STARTTLS") == "starttls-not-supported"
    assert kind("4.7.5", "TLS with x failed: VerificationError(errors=[DNSMismatch(mismatched_id=...)])") == "certificate-host-mismatch"
    assert kind("4.7.5", "TLS with x failed: [('SSL routines', '', 'certificate verify failed')]") == "certificate-not-trusted"
    assert kind("4.7.5", "TLS with x failed: certificate has expired") == "certificate-expired"
    assert kind("4.7.5", "TLS with x failed: handshake failure") == "validation-failure"


def test_plan_counts_sessions_to_a_domain_without_a_policy():
    # RFC 8460 s4.4 "no-policy-found": how mail reaches a domain that has only a _smtp._tls record
    results = Results()
    p = mtastsfetch.Plan("a.test", mtastsfetch.Lookup(None), [Host("mx.a.test", 10, ["127.0.0.1"])], results)
    assert p.tlsMode(p.hosts[0], "opportunistic") == "opportunistic" and p.entry["policy-type"] == "no-policy-found"
    p.succeeded("mx.a.test", "127.0.0.1", "opportunistic", tls=True)
    p.succeeded("mx.a.test", "127.0.0.1", "opportunistic", tls=False)
    error = DeliveryError(421, "4.7.5", "TLS with mx.a.test failed: certificate has expired", True)
    error.tlsFailed = True
    p.failed("mx.a.test", "127.0.0.1", "opportunistic", error)
    p.failed("mx.a.test", "127.0.0.1", "opportunistic", DeliveryError(451, "4.4.1", "connection refused", True))
    assert results.events == [("ok", "a.test"), ("starttls-not-supported", "mx.a.test"),
                              ("certificate-expired", "mx.a.test")]
    # reports off: nothing counted
    p = mtastsfetch.Plan("a.test", mtastsfetch.Lookup(None), [Host("mx.a.test", 10, ["127.0.0.1"])], None)
    p.succeeded("mx.a.test", "127.0.0.1", "opportunistic", tls=True)

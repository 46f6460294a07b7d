"""
TLS-RPT (RFC 8460) in process: the daily counts on disk, the rua record,
the report (s4.4) and its message (s5.3), and the reporter's day handling
with a fake resolver and a fake spool.
"""

from __future__ import annotations

import email
import email.policy
import gzip
import io
import json
import os
import types

from twisted.internet import defer, task
from twisted.names import dns, error as dnserror

from mailnet.mailauth import mtasts, tlsrpt

POLICY = mtasts.parsePolicy("version: STSv1\nmode: testing\nmx: mx.b.test\nmax_age: 86400\n")
DAY = 86400


def results(tmp_path, seconds=20 * DAY + 100):
    clock = task.Clock()
    clock.advance(seconds)
    return tlsrpt.TLSResults(str(tmp_path / "tlsrpt"), clock), clock


def test_counts_per_day_policy_and_failure_kind(tmp_path):
    store, clock = results(tmp_path)
    entry = tlsrpt.policyEntry("sts", "b.test", POLICY)
    store.success(entry)
    store.success(entry)
    for _ in range(3):
        store.failure(entry, "starttls-not-supported", "mx.b.test", "192.0.2.1", "no STARTTLS")
    store.failure(entry, "certificate-expired", "mx.b.test", "192.0.2.1")
    assert store.days() == []  # written within FLUSH_SECONDS, not at each session
    clock.advance(DAY)
    store.failure(tlsrpt.policyEntry("no-policy-found", "c.test"), "sts-policy-fetch-error", reason="timeout")
    clock.advance(tlsrpt.FLUSH_SECONDS)
    assert store.days() == ["1970-01-21", "1970-01-22"]
    [(key, day1)] = store.load("1970-01-21")["b.test"].items()
    assert (day1["success"], day1["failure"]) == (2, 4)
    assert day1["details"][0] == {"result-type": "starttls-not-supported", "receiving-mx-hostname": "mx.b.test",
                                  "receiving-ip": "192.0.2.1", "failure-reason-code": "no STARTTLS",
                                  "failed-session-count": 3}
    assert oct(os.stat(tmp_path / "tlsrpt" / "1970-01-21.json").st_mode & 0o777) == "0o600"
    out = io.StringIO()
    tlsrpt.show(types.SimpleNamespace(server=types.SimpleNamespace(data_dir=str(tmp_path))), out)
    assert "1970-01-21 b.test: 2 successful, 4 failed\n    starttls-not-supported mx.b.test x3: no STARTTLS\n" in out.getvalue()
    assert "1970-01-22 c.test: 0 successful, 1 failed" in out.getvalue()


def test_failure_details_name_the_sending_mta_ip(tmp_path):
    # RFC 8460 s4.3: sending-mta-ip, the address the sending MTA connected from; rows differ by it
    store, clock = results(tmp_path)
    entry = tlsrpt.policyEntry("sts", "b.test", POLICY)
    store.failure(entry, "certificate-expired", "mx.b.test", "192.0.2.1", "expired", sendingIp="198.51.100.7")
    store.failure(entry, "certificate-expired", "mx.b.test", "192.0.2.1", "expired", sendingIp="198.51.100.7")
    store.failure(entry, "certificate-expired", "mx.b.test", "192.0.2.1", "expired", sendingIp="2001:db8::7")
    store.failure(entry, "sts-policy-fetch-error", reason="timeout")  # no connection: no sending address
    clock.advance(tlsrpt.FLUSH_SECONDS)
    [(key, day)] = store.load("1970-01-21")["b.test"].items()
    report = tlsrpt.buildReport("1970-01-21", "b.test", {key: day}, "mx.a.test", "id")
    details = report["policies"][0]["failure-details"]
    assert details[0] == {"result-type": "certificate-expired", "sending-mta-ip": "198.51.100.7",
                          "receiving-mx-hostname": "mx.b.test", "receiving-ip": "192.0.2.1",
                          "failure-reason-code": "expired", "failed-session-count": 2}
    assert details[1]["sending-mta-ip"] == "2001:db8::7" and details[1]["failed-session-count"] == 1
    assert "sending-mta-ip" not in details[2]


def test_a_damaged_day_file_is_set_aside(tmp_path):
    store, clock = results(tmp_path)
    os.makedirs(tmp_path / "tlsrpt")
    (tmp_path / "tlsrpt" / "1970-01-21.json").write_text("[1, 2")
    assert store.load("1970-01-21") == {}
    assert os.path.exists(tmp_path / "tlsrpt" / "1970-01-21.json.corrupt")
    store.success(tlsrpt.policyEntry("sts", "b.test", POLICY))  # and counting goes on
    store.flush()
    assert store.load("1970-01-21")["b.test"]


def test_rua_record():
    assert tlsrpt.parseRecord(["v=TLSRPTv1; rua=mailto:a@b.test,https://r.test/x, mailto:c@d.test"]) == ["a@b.test", "c@d.test"]
    assert tlsrpt.parseRecord(["v=TLSRPTv1;rua=mailto:a@b.test?subject=x"]) == ["a@b.test"]
    assert tlsrpt.parseRecord(["v=spf1 -all"]) == []
    assert tlsrpt.parseRecord(["v=TLSRPTv1; rua=mailto:a@b.test", "v=TLSRPTv1; rua=mailto:c@d.test"]) == []
    assert tlsrpt.parseRecord(["v=TLSRPTv1; rua=mailto:<x>@b.test"]) == []


def test_report_and_message_rfc8460():
    entries = {"k": {"policy": tlsrpt.policyEntry("sts", "b.test", POLICY), "success": 5, "failure": 1,
                     "details": [{"result-type": "validation-failure", "failed-session-count": 1}]}}
    report = tlsrpt.buildReport("2026-12-02", "b.test", entries, "mx.a.test", "rid-1@mx.a.test")
    assert report["date-range"] == {"start-datetime": "2026-12-02T00:00:00Z", "end-datetime": "2026-12-02T23:59:59Z"}
    assert report["policies"][0]["summary"] == {"total-successful-session-count": 5, "total-failure-session-count": 1}
    assert report["policies"][0]["policy"]["policy-string"] == ["version: STSv1", "mode: testing", "mx: mx.b.test", "max_age: 86400"]
    data = tlsrpt.reportMessage("2026-12-02", "b.test", report, "mx.a.test", ["r@b.test"], 1_764_720_000)
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg["Subject"] == "Report Domain: b.test Submitter: mx.a.test Report-ID: <rid-1@mx.a.test>"
    assert msg["TLS-Report-Submitter"] == "mx.a.test" and msg["To"] == "r@b.test"
    assert msg.get_content_type() == "multipart/report" and msg.get_param("report-type") == "tlsrpt"
    part = [p for p in msg.iter_attachments() if p.get_content_type() == "application/tlsrpt+gzip"][0]
    assert part.get_filename() == "mx.a.test!b.test!1796169600!1796255999.json.gz"  # s5.1
    assert json.loads(gzip.decompress(part.get_content())) == report


class FakeSpool:
    def __init__(self):
        self.items = []

    def newMessage(self, sender, recipients, **kw):
        spool = self

        class Writer:
            data = b""

            def write(self, data):
                self.data += data

            def commit(self):
                spool.items.append((sender, [r["address"] for r in recipients], self.data))
                return defer.succeed(f"id{len(spool.items)}")

            def abort(self):
                pass

        return Writer()


class FakeResolver:
    def __init__(self, txt):
        self.txt = txt

    def lookupText(self, name, timeout=None):
        value = self.txt.get(name)
        if value is None:
            return defer.fail(dnserror.DomainError(name))
        if isinstance(value, type):
            return defer.fail(value(name))
        return defer.succeed(([dns.RRHeader(name, dns.TXT, dns.IN, 60, dns.Record_TXT(value.encode()))], [], []))


def test_reporter_sends_finished_days_keeps_failed_lookups_and_drops_old_ones(tmp_path):
    store, clock = results(tmp_path, seconds=20 * DAY + 100)  # 1970-01-21
    for domain in ("b.test", "c.test", "d.test"):
        store.success(tlsrpt.policyEntry("sts", domain, POLICY))
    clock.advance(DAY)  # today 1970-01-22: the 21st is over; today's counts wait
    store.success(tlsrpt.policyEntry("sts", "b.test", POLICY))
    resolver = FakeResolver({"_smtp._tls.b.test": "v=TLSRPTv1; rua=mailto:r@b.test", "_smtp._tls.c.test": dnserror.DNSServerError})
    spool = FakeSpool()
    config = types.SimpleNamespace(server=types.SimpleNamespace(hostname="mx.a.test"), dns=types.SimpleNamespace(timeout=2))
    reporter = tlsrpt.Reporter(clock, config, store, resolver, spool)
    reporter.run()
    [(sender, to, data)] = spool.items
    assert sender == "" and to == ["r@b.test"] and b"Report Domain: b.test" in data
    # c.test (DNS failure) is kept for the next run; d.test (no record) is done.
    assert sorted(store.load("1970-01-21")) == ["c.test"] and "b.test" in store.load("1970-01-22")
    clock.advance(tlsrpt.KEEP_DAYS * DAY)
    reporter.run()
    assert store.days() == [] and len(spool.items) == 2  # the 22nd sent; c.test dropped after KEEP_DAYS


def test_rua_https_uris():
    record = ["v=TLSRPTv1; rua=mailto:a@b.test,https://r.test/x, https://s.test:8443/y?k=1 ,http://t.test/z,https://"]
    assert tlsrpt.parseDestinations(record) == (["a@b.test"], ["https://r.test/x", "https://s.test:8443/y?k=1"])
    assert tlsrpt.parseDestinations(["v=TLSRPTv1; rua=https://user:pw@r.test/x"]) == ([], [])


class FakePoster:
    def __init__(self, answers):
        self.answers = answers  # uri -> status, or an exception to fail with
        self.posts = []

    def post(self, uri, data):
        self.posts.append((uri, data))
        answer = self.answers.get(uri, 200)
        if isinstance(answer, Exception):
            return defer.fail(answer)
        return defer.succeed(answer)


def test_reporter_posts_to_https_and_tries_a_refused_report_again(tmp_path):
    from mailnet.mailauth.tlsrptpost import PostError

    store, clock = results(tmp_path)
    for domain in ("b.test", "c.test", "d.test"):
        store.success(tlsrpt.policyEntry("sts", domain, POLICY))
    clock.advance(DAY)
    resolver = FakeResolver({"_smtp._tls.b.test": "v=TLSRPTv1; rua=https://r.b.test/tlsrpt",
                             "_smtp._tls.c.test": "v=TLSRPTv1; rua=https://r.c.test/tlsrpt",
                             "_smtp._tls.d.test": "v=TLSRPTv1; rua=mailto:r@d.test,https://r.c.test/tlsrpt"})
    poster = FakePoster({"https://r.c.test/tlsrpt": PostError("r.c.test answered 500")})
    spool = FakeSpool()
    config = types.SimpleNamespace(server=types.SimpleNamespace(hostname="mx.a.test"), dns=types.SimpleNamespace(timeout=2))
    reporter = tlsrpt.Reporter(clock, config, store, resolver, spool, poster=poster)
    reporter.run()
    posted = {uri: json.loads(gzip.decompress(data)) for uri, data in poster.posts}
    report = posted["https://r.b.test/tlsrpt"]
    assert report["policies"][0]["policy"]["policy-domain"] == "b.test"
    assert report["policies"][0]["summary"]["total-successful-session-count"] == 1
    # d.test: mailed (its https: copy refused): done; c.test: only a refused https: copy, kept for later.
    assert [to for _, to, _ in spool.items] == [["r@d.test"]]
    assert sorted(store.load("1970-01-21")) == ["c.test"]
    poster.answers = {}
    reporter.run()
    assert store.days() == [] and len(spool.items) == 1
    assert [uri for uri, _ in poster.posts].count("https://r.c.test/tlsrpt") == 3  # c twice, d once


def test_domains_without_a_policy_are_counted_up_to_a_bound(tmp_path, monkeypatch):
    monkeypatch.setattr(tlsrpt, "MAX_NO_POLICY_DOMAINS", 3)
    store, clock = results(tmp_path)
    store.success(tlsrpt.policyEntry("sts", "b.test", POLICY))
    for n in range(5):
        store.success(tlsrpt.policyEntry("no-policy-found", f"n{n}.test"))
    store.failure(tlsrpt.policyEntry("no-policy-found", "n0.test"), "starttls-not-supported", "mx.n0.test")
    store.success(tlsrpt.policyEntry("sts", "c.test", POLICY))  # sessions under a policy are always counted
    store.flush()
    data = store.load(tlsrpt.dayOf(clock.seconds()))
    assert sorted(data) == ["b.test", "c.test", "n0.test", "n1.test"]
    [entry] = data["n0.test"].values()
    assert entry["policy"] == {"policy-type": "no-policy-found", "policy-domain": "n0.test"}
    assert (entry["success"], entry["failure"]) == (1, 1)

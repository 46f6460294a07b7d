"""
DMARC aggregate reports (RFC 7489 s7.2) in process: the rows the MX's
checks record (batched, limited), their grouping, the XML against Appendix
C's structure, the message and its file name (s7.2.1.1), ``!size`` (s6.2),
the external destination check (s7.1), and the reporter's days with a fake
resolver and a fake spool.
"""

from __future__ import annotations

import email
import email.policy
import gzip
import io
import threading
import time
import types
from unittest import mock
import xml.etree.ElementTree as ET

from twisted.internet import task
from twisted.python.threadpool import ThreadPool
from twisted.names import error as dnserror

from mailnet.config import fromDict
from mailnet.mailauth import dmarcrows, dmarcrpt
from mailnet.mailauth.checks import JUNK, Checker
from mailnet.mailauth.dkimcheck import DKIMResult
from mailnet.mailauth.dmarc import parseRecord
from mailnet.mailauth.spfcheck import SPFResult
from tests.mailauth.test_tlsrpt import FakeResolver, FakeSpool

DAY = 86400
START = 20 * DAY + 100  # 1970-01-21 00:01:40

# RFC 7489 Appendix C: each complex element's children, in the schema's order ("?" optional, "*" any number).
SCHEMA = {
    "feedback": ["version", "report_metadata", "policy_published", "record*"],
    "report_metadata": ["org_name", "email", "extra_contact_info?", "report_id", "date_range", "error*"],
    "date_range": ["begin", "end"],
    "policy_published": ["domain", "adkim?", "aspf?", "p", "sp", "pct", "fo"],
    "record": ["row", "identifiers", "auth_results"],
    "row": ["source_ip", "count", "policy_evaluated"],
    "policy_evaluated": ["disposition", "dkim", "spf", "reason*"],
    "identifiers": ["envelope_to?", "envelope_from", "header_from"],
    "auth_results": ["dkim*", "spf", "spf*"],
    "auth_results/dkim": ["domain", "selector?", "result", "human_result?"],
    "auth_results/spf": ["domain", "scope", "result"],
}


def checkStructure(element, path="feedback"):
    """Fails unless ``element``'s children follow :data:`SCHEMA` (names, order, occurrences)."""
    parent = path.rpartition("/")[0].rpartition("/")[2]
    expected = SCHEMA.get(f"{parent}/{element.tag}", SCHEMA.get(element.tag))
    children = list(element)
    if expected is None:
        assert not children and element.text, f"{path}: a leaf with text expected"
        return
    i = 0
    for spec in expected:
        name, many, optional = spec.rstrip("?*"), spec.endswith("*"), spec.endswith("?") or spec.endswith("*")
        count = 0
        while i < len(children) and children[i].tag == name and (many or count == 0):
            checkStructure(children[i], f"{path}/{name}")
            i += 1
            count += 1
        assert count or optional, f"{path}: <{name}> missing (children {[c.tag for c in children]})"
    assert i == len(children), f"{path}: unexpected <{children[i].tag}> (children {[c.tag for c in children]})"


def rows(tmp_path, seconds=START, **kw):
    clock = task.Clock()
    clock.advance(seconds)
    return dmarcrows.DMARCRows(str(tmp_path / "dmarc"), clock, **kw), clock


def envelope(sender="alice@a.test", peer="192.0.2.1", to="bob@b.test"):
    return types.SimpleNamespace(sender=sender, helo="mx.a.test", peer=peer,
                                 recipients=[types.SimpleNamespace(address=to)])


POLICY = parseRecord("v=DMARC1; p=reject; rua=mailto:dmarc@a.test")


def passing(now, peer="192.0.2.1"):
    return dmarcrows.row(now, envelope(peer=peer), "a.test", "a.test", POLICY, SPFResult("pass", "a.test"),
                         [DKIMResult("pass", "a.test", "rsa1")], "none")


def forged(now):
    return dmarcrows.row(now, envelope("x@evil.test", "192.0.2.66"), "a.test", "a.test", POLICY,
                         SPFResult("pass", "evil.test"), [], "reject")


def test_rows_are_written_in_batches_not_per_message(tmp_path):
    store, clock = rows(tmp_path)
    store.record(passing(clock.seconds()))
    assert store.ready(clock.seconds() + DAY) == []  # in memory: the reactor did not wait for the disk
    clock.advance(dmarcrows.FLUSH_SECONDS)
    [(name, day, end)] = store.ready(clock.seconds() + DAY)
    assert (name, day, end) == ("1970-01-21.jsonl", "1970-01-21", 21 * DAY - 1)
    begin, [row], dropped = store.load(name)
    assert begin is None and dropped == 0
    assert row["source_ip"] == "192.0.2.1" and row["dkim"] == row["spf"] == "pass"
    assert row["dkim_results"] == [{"domain": "a.test", "selector": "rsa1", "result": "pass"}]
    assert row["spf_results"] == [{"domain": "a.test", "scope": "mfrom", "result": "pass"}]
    assert (row["envelope_from"], row["envelope_to"], row["header_from"]) == ("a.test", "b.test", "a.test")
    for _ in range(dmarcrows.BATCH):  # a full batch goes at once, without waiting for the timer
        store.record(passing(clock.seconds()))
    assert len(store.load(name)[1]) == 1 + dmarcrows.BATCH


def test_row_and_domain_limits_count_what_is_dropped(tmp_path):
    store, clock = rows(tmp_path, maxRows=3, maxDomains=1)
    other = dict(passing(clock.seconds()), policy_domain="c.test")
    store.record(other)  # c.test is the day's one domain
    store.record(passing(clock.seconds()))  # a second domain: dropped
    store.record(other)
    store.record(other)
    store.record(other)  # the fourth row: dropped
    store.close()
    _, kept, dropped = store.load("1970-01-21.jsonl")
    assert len(kept) == 3 and dropped == 2
    out = io.StringIO()
    config = types.SimpleNamespace(server=types.SimpleNamespace(data_dir=str(tmp_path)))
    dmarcrows.show(config, out)
    assert "1970-01-21 c.test: 3 messages (3 dmarc pass, 0 fail)" in out.getvalue()
    assert "2 rows dropped" in out.getvalue()
    # after a restart, the stored rows still count against the limit
    again = dmarcrows.DMARCRows(store.directory, clock, maxRows=3)
    again.record(other)
    again.close()
    assert len(again.load("1970-01-21.jsonl")[1]) == 3


def test_grouping_counts_identical_rows():
    now = START
    grouped = dmarcrpt.groupRows([passing(now), forged(now), passing(now + 5), passing(now, peer="192.0.2.2")])
    assert [(r["source_ip"], n) for r, n in grouped] == [("192.0.2.1", 2), ("192.0.2.2", 1), ("192.0.2.66", 1)]


def test_report_xml_follows_appendix_c():
    grouped = dmarcrpt.groupRows([passing(START), forged(START), passing(START)])
    xml = dmarcrpt.buildReport("a.test", POLICY, grouped, "mx.b.test", "postmaster@mx.b.test", "rid-1",
                               20 * DAY, 21 * DAY - 1, ["1 records left out (size limit)"])
    assert xml.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    root = ET.fromstring(xml)
    assert root.tag == "feedback"
    checkStructure(root)
    assert root.findtext("report_metadata/org_name") == "mx.b.test"
    assert root.findtext("report_metadata/date_range/begin") == str(20 * DAY)
    assert root.findtext("report_metadata/date_range/end") == str(21 * DAY - 1)
    published = root.find("policy_published")
    assert [(e.tag, e.text) for e in published] == [("domain", "a.test"), ("adkim", "r"), ("aspf", "r"), ("p", "reject"),
                                                    ("sp", "reject"), ("pct", "100"), ("fo", "0")]
    first, second = root.findall("record")
    assert first.findtext("row/count") == "2" and first.findtext("row/policy_evaluated/disposition") == "none"
    assert first.findtext("auth_results/dkim/selector") == "rsa1"
    assert second.findtext("row/source_ip") == "192.0.2.66"
    assert second.findtext("row/policy_evaluated/disposition") == "reject"
    assert (second.findtext("row/policy_evaluated/dkim"), second.findtext("row/policy_evaluated/spf")) == ("fail", "fail")
    assert second.findtext("identifiers/envelope_from") == "evil.test"
    assert second.find("auth_results/dkim") is None and second.findtext("auth_results/spf/result") == "pass"


def test_checker_catches_a_misordered_report():
    """The structure check itself can fail (a test that cannot fail is a defect)."""
    bad = ET.fromstring("<feedback><report_metadata/><version>1.0</version></feedback>")
    try:
        checkStructure(bad)
    except AssertionError:
        return
    raise AssertionError("accepted")


def test_message_subject_and_file_name():
    xml = dmarcrpt.buildReport("a.test", POLICY, dmarcrpt.groupRows([passing(START)]), "mx.b.test",
                               "postmaster@mx.b.test", "rid-1", 20 * DAY, 21 * DAY - 1)
    data = dmarcrpt.reportMessage("a.test", xml, "rid-1", "mx.b.test", "MAILER-DAEMON@mx.b.test", ["dmarc@a.test"],
                                  20 * DAY, 21 * DAY - 1, START)
    assert b"\n" not in data.replace(b"\r\n", b"")
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg["Subject"] == "Report Domain: a.test Submitter: mx.b.test Report-ID: <rid-1>"  # s7.2.1.1
    [part] = [p for p in msg.iter_attachments() if p.get_content_type() == "application/gzip"]
    assert part.get_filename() == f"mx.b.test!a.test!{20 * DAY}!{21 * DAY - 1}.xml.gz"
    assert gzip.decompress(part.get_content()) == xml


def test_rua_mailto_and_size():
    assert dmarcrpt.parseRua("mailto:a@a.test, mailto:b@r.test!10k,https://r.test/x, mailto:c@a.test!2m,mailto:d@a.test!x") \
        == [("a@a.test", None), ("b@r.test", 10240), ("c@a.test", 2 << 20)]


def reporter(tmp_path, txt, **kw):
    store, clock = rows(tmp_path)
    store.record(passing(clock.seconds()))
    store.record(forged(clock.seconds()))
    clock.advance(DAY)  # the 21st is over
    store.record(passing(clock.seconds()))  # today's: waits
    spool = FakeSpool()
    config = types.SimpleNamespace(server=types.SimpleNamespace(hostname="mx.b.test"), dns=types.SimpleNamespace(timeout=2))
    return dmarcrpt.Reporter(clock, config, store, FakeResolver(txt), spool, **kw), store, spool, clock


def sentReport(data):
    msg = email.message_from_bytes(data, policy=email.policy.default)
    [part] = [p for p in msg.iter_attachments() if p.get_content_type() == "application/gzip"]
    return msg, ET.fromstring(gzip.decompress(part.get_content()))


def test_reporter_sends_finished_days_to_the_rua(tmp_path):
    r, store, spool, clock = reporter(tmp_path, {"_dmarc.a.test": "v=DMARC1; p=reject; rua=mailto:dmarc@a.test"})
    r.run()
    [(sender, to, data)] = spool.items
    assert sender == "" and to == ["dmarc@a.test"]
    msg, root = sentReport(data)
    assert msg["From"] == "MAILER-DAEMON@mx.b.test"
    assert sorted((e.findtext("row/source_ip"), e.findtext("row/count")) for e in root.findall("record")) == \
        [("192.0.2.1", "1"), ("192.0.2.66", "1")]
    assert [n for n, _, _ in store.ready(clock.seconds())] == []  # the 21st is done; today's rows wait
    assert len(store.load("1970-01-22.jsonl")[1]) == 1
    # report --now: today's rows so far, then the rest of the day from the cut on
    done = []
    r.reportNow().addCallback(done.append)
    assert done == [1] and len(spool.items) == 2
    _, root = sentReport(spool.items[1][2])
    assert root.findtext("report_metadata/date_range/begin") == str(21 * DAY)
    assert root.findtext("report_metadata/date_range/end") == str(int(clock.seconds()))
    store.record(passing(clock.seconds() + 10))
    clock.advance(DAY)
    r.run()
    _, root = sentReport(spool.items[2][2])
    assert root.findtext("report_metadata/date_range/begin") == str(int(clock.seconds() - DAY) + 1)


def test_dns_trouble_keeps_the_rows_and_no_rua_drops_them(tmp_path):
    r, store, spool, clock = reporter(tmp_path, {"_dmarc.a.test": dnserror.DNSServerError})
    r.run()
    assert spool.items == [] and len(store.load("1970-01-21.jsonl")[1]) == 2
    r.resolver.txt = {"_dmarc.a.test": "v=DMARC1; p=reject"}  # the domain no longer asks for reports
    r.run()
    assert spool.items == [] and store.ready(clock.seconds()) == []


def test_external_destination_needs_its_report_record(tmp_path):
    record = "v=DMARC1; p=reject; rua=mailto:dmarc@a.test,mailto:r@reports.test,mailto:x@other.test"
    r, store, spool, clock = reporter(tmp_path, {"_dmarc.a.test": record,
                                                 "a.test._report._dmarc.reports.test": "v=DMARC1"})
    r.run()
    [(_, to, _)] = spool.items
    assert to == ["dmarc@a.test", "r@reports.test"]  # other.test did not say it takes a.test's reports


def test_a_destination_whose_size_limit_is_too_small_is_skipped(tmp_path):
    record = "v=DMARC1; p=reject; rua=mailto:small@a.test!1k,mailto:big@a.test!1m"
    r, store, spool, clock = reporter(tmp_path, {"_dmarc.a.test": record})
    r.run()
    [(_, to, data)] = spool.items
    assert to == ["big@a.test"] and 1024 < len(data) < 1 << 20
    assert b"small@a.test" not in data


def test_too_many_records_keeps_the_most_frequent(tmp_path):
    r, store, spool, clock = reporter(tmp_path, {"_dmarc.a.test": "v=DMARC1; p=none; rua=mailto:d@a.test"},
                                      maxRecords=1)
    r.run()
    _, root = sentReport(spool.items[0][2])
    assert len(root.findall("record")) == 1 and "1 records left out" in root.findtext("report_metadata/error")


class Recorder:
    def __init__(self):
        self.rows = []

    def record(self, row):
        self.rows.append(row)


def test_the_checker_records_messages_of_domains_with_rua():
    config = fromDict({"domains": {"local": ["b.test"]}, "server": {"hostname": "mx.b.test"},
                       "mailauth": {"inbound": True}})
    clock = task.Clock()
    clock.advance(START)
    c = Checker(config, reactor=clock, resolver=None, pool=None)
    c.recorder = Recorder()
    names = ["_dmarc.a.test"]
    spf = SPFResult("pass", "evil.test")
    forgedTo = envelope("x@evil.test", "192.0.2.66")
    v = c._conclude("192.0.2.66", ["a.test"], "a.test", names, {names[0]: [b"v=DMARC1; p=reject; rua=mailto:d@a.test"]},
                    spf, None, [], envelope=forgedTo)
    assert v.reply.code == 550
    [row] = c.recorder.rows
    assert (row["disposition"], row["dkim"], row["spf"], row["policy_domain"]) == ("reject", "fail", "fail", "a.test")
    assert row["t"] == START
    c._conclude("192.0.2.66", ["q.test"], "q.test", ["_dmarc.q.test"],
                {"_dmarc.q.test": [b"v=DMARC1; p=quarantine; rua=mailto:d@q.test"]}, spf, None, [],
                envelope=envelope("x@evil.test", "192.0.2.66"))
    assert c.recorder.rows[-1]["disposition"] == "quarantine" and JUNK
    c._conclude("192.0.2.66", ["n.test"], "n.test", ["_dmarc.n.test"], {"_dmarc.n.test": [b"v=DMARC1; p=none"]},
                spf, None, [], envelope=forgedTo)
    assert len(c.recorder.rows) == 2  # no rua=: nothing recorded
    # a subdomain's mail under its organizational domain's record: reported to that domain
    c._conclude("192.0.2.66", ["mail.a.test"], "mail.a.test", ["_dmarc.mail.a.test", "_dmarc.a.test"],
                {"_dmarc.mail.a.test": [], "_dmarc.a.test": [b"v=DMARC1; p=none; rua=mailto:d@a.test"]},
                spf, None, [], envelope=forgedTo)
    assert (c.recorder.rows[-1]["policy_domain"], c.recorder.rows[-1]["header_from"]) == ("a.test", "mail.a.test")


def test_after_a_restart_the_stored_rows_are_counted_in_a_thread(tmp_path):
    """The day's file is counted off the reactor thread (it can hold a million rows), then the limits hold."""
    store, clock = rows(tmp_path)
    other = dict(passing(clock.seconds()), policy_domain="c.test")
    for _ in range(3):
        store.record(other)
    store.close()
    seen = []

    calls = []

    class ThreadedClock(task.Clock):
        def getThreadPool(self):
            return pool

        def callFromThread(self, f, *args, **kw):
            calls.append((f, args, kw))

    real = dmarcrows._count

    def counting(path, size):
        seen.append(threading.current_thread() is not threading.main_thread())
        return real(path, size)

    pool = ThreadPool(1, 1)
    pool.start()
    try:
        clock2 = ThreadedClock()
        clock2.advance(clock.seconds())
        again = dmarcrows.DMARCRows(store.directory, clock2, maxRows=3)
        with mock.patch.object(dmarcrows, "_count", counting):
            state = again._day("1970-01-21")
            deadline = time.monotonic() + 10
            while state.rows < 3 and time.monotonic() < deadline:
                time.sleep(0.01)  # the result comes back through callFromThread, run here
                while calls:
                    f, args, kw = calls.pop(0)
                    f(*args, **kw)
    finally:
        pool.stop()
    assert seen == [True]
    assert state.rows == 3 and state.domains == {"c.test"}

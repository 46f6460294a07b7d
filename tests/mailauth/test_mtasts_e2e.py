"""
MTA-STS (RFC 8461) and TLS-RPT (RFC 8460) end to end, all on 127.0.0.1:
the real mailnet process relays mail from its spool, finding MX hosts and
``_mta-sts`` / ``_smtp._tls`` records through the test DNS server
(twisted.names), fetching policies from a local HTTPS server whose
certificate a test CA signs, and delivering to aiosmtpd peers: one with
STARTTLS and a certificate for the right name (127.0.0.1), one without
STARTTLS (127.0.0.2), one with a certificate for another name (127.0.0.3).
"""

from __future__ import annotations

import datetime
import gzip
import http.server
import json
import os
import re
import ssl
import threading
import time

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mailnet import tls
from tests.harness import MailServer, freePort
from tests.mailauth.helpers import ZoneServer
from tests.queue.e2e import Sink, SinkHandler, waitFor
from tests.queue.test_relay_e2e import ask, put

pytestmark = pytest.mark.slow

# name -> (the MX's address, the policy file the policy host serves: (status, content type, body))
POLICY_OK = "version: STSv1\r\nmode: enforce\r\nmx: mx.sts-ok.test\r\nmax_age: 86400\r\n"
DOMAINS = {
    "sts-ok": ("127.0.0.1", (200, "text/plain", POLICY_OK)),
    "sts-badmx": ("127.0.0.1", (200, "text/plain", "version: STSv1\nmode: enforce\nmx: mx.other.test\nmax_age: 86400\n")),
    "sts-notls": ("127.0.0.2", (200, "text/plain", "version: STSv1\nmode: enforce\nmx: *.sts-notls.test\nmax_age: 86400\n")),
    "sts-wrongcert": ("127.0.0.3", (200, "text/plain", "version: STSv1\nmode: enforce\nmx: mx.sts-wrongcert.test\nmax_age: 86400\n")),
    "sts-testing": ("127.0.0.2", (200, "text/plain; charset=utf-8", "version: STSv1\nmode: testing\nmx: mx.sts-testing.test\nmax_age: 86400\n")),
    "sts-redirect": ("127.0.0.1", (302, "text/plain", "")),
    "sts-big": ("127.0.0.1", (200, "text/plain", "version: STSv1\nmode: enforce\nmx: mx.sts-big.test\nmax_age: 86400\n" + "x: " + "y" * 70000 + "\n")),
    "sts-ctype": ("127.0.0.1", (200, "text/html", "version: STSv1\nmode: enforce\nmx: mx.sts-ctype.test\nmax_age: 86400\n")),
    "sts-slow": ("127.0.0.1", (200, "sleep", "version: STSv1\nmode: enforce\nmx: mx.sts-slow.test\nmax_age: 86400\n")),
    "sts-badweb": ("127.0.0.1", (200, "text/plain", "version: STSv1\nmode: enforce\nmx: mx.sts-badweb.test\nmax_age: 86400\n")),
}
NOT_IN_THE_POLICY_CERT = {"sts-badweb"}


def zone(webPort):
    records = {}
    for name, (ip, _) in DOMAINS.items():
        records[f"{name}.test"] = {"MX": [[10, f"mx.{name}.test"]]}
        records[f"mx.{name}.test"] = {"A": [ip]}
        records[f"_mta-sts.{name}.test"] = {"TXT": ["v=STSv1; id=20261203a"]}
        records[f"mta-sts.{name}.test"] = {"A": ["127.0.0.1"]}
    # RFC 8460 s3: a mailto: and an https: destination; the https: host's certificate is valid (test CA)
    records["_smtp._tls.sts-testing.test"] = {"TXT": [
        f"v=TLSRPTv1; rua=mailto:tls-reports@reports.test,https://tlsrpt.reports.test:{webPort}/v1/tlsrpt"]}
    records["tlsrpt.reports.test"] = {"A": ["127.0.0.1"]}
    # no MTA-STS record at all; its MX offers no STARTTLS
    records["nopolicy.test"] = {"MX": [[10, "mx.nopolicy.test"]]}
    records["mx.nopolicy.test"] = {"A": ["127.0.0.2"]}
    # only an https: destination whose certificate is not valid for its name: never posted there
    records["_smtp._tls.sts-ok.test"] = {"TXT": [f"v=TLSRPTv1; rua=https://mta-sts.sts-badweb.test:{webPort}/v1/tlsrpt"]}
    records["reports.test"] = {"MX": [[10, "mx.reports.test"]]}
    records["mx.reports.test"] = {"A": ["127.0.0.1"]}
    return records


def leaf(certPath, keyPath, names, caCert, caKey):
    """A certificate for several DNS names, signed by the test CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(caCert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(caKey, hashes.SHA256()))
    with open(keyPath, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(certPath, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))


class PolicyServer:
    """HTTPS on 127.0.0.1 serving ``/.well-known/mta-sts.txt`` per Host header, and
    taking TLS-RPT reports by POST (kept in ``posts``)."""

    def __init__(self, certFile, keyFile, policies):
        self.policies = policies
        self.requests = []
        self.posts = []  # (host, path, content type, body)
        self.stopped = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                host = self.headers.get("Host", "").split(":")[0]
                outer.requests.append((host, self.path))
                status, contentType, body = outer.policies.get(host, (404, "text/plain", "no such policy"))
                if contentType == "sleep":  # longer than [mtasts] fetch_timeout
                    outer.stopped.wait(12)
                    contentType = "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", contentType)
                if status in (301, 302):
                    self.send_header("Location", f"https://{host}/elsewhere.txt")
                if len(body) < 65536:  # a large one without Content-Length: read until the limit
                    self.send_header("Content-Length", str(len(body.encode())))
                self.end_headers()
                self.wfile.write(body.encode())

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.posts.append((self.headers.get("Host", ""), self.path, self.headers.get("Content-Type"), body))
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certFile, keyFile)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.stopped.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class HostSink(Sink):
    """An aiosmtpd peer on another loopback address."""

    def __init__(self, host, **kw):
        super().__init__(**kw)
        self.host = host

    def start(self):
        kwargs = {}
        if self.certFile:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.certFile, self.keyFile)
            kwargs["tls_context"] = context
        self.controller = Controller(self.handler, hostname=self.host, port=self.port, decode_data=False, **kwargs)
        self.controller.start()
        return self


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("sts")
    caFile, caKeyFile = str(d / "ca.pem"), str(d / "ca.key")
    caCert, caKey = tls.makeDevelopmentCA(caFile, caKeyFile, "mailnet test CA")
    leaf(str(d / "policy.pem"), str(d / "policy.key"), [f"mta-sts.{n}.test" for n in DOMAINS if n not in NOT_IN_THE_POLICY_CERT] + ["tlsrpt.reports.test"], caCert, caKey)
    leaf(str(d / "mx.pem"), str(d / "mx.key"), ["mx.sts-ok.test", "mx.sts-redirect.test", "mx.sts-big.test",
                                                 "mx.sts-ctype.test", "mx.reports.test"], caCert, caKey)
    leaf(str(d / "other.pem"), str(d / "other.key"), ["mx.elsewhere.test"], caCert, caKey)
    policies = {f"mta-sts.{n}.test": p for n, (_, p) in DOMAINS.items()}
    web = PolicyServer(str(d / "policy.pem"), str(d / "policy.key"), policies)
    dns = ZoneServer(d, zone(web.port))
    port = freePort()
    handler = SinkHandler()  # one handler: every peer's messages in one list
    sinks = [HostSink("127.0.0.1", port=port, handler=handler, certFile=str(d / "mx.pem"), keyFile=str(d / "mx.key")),
             HostSink("127.0.0.2", port=port, handler=handler),
             HostSink("127.0.0.3", port=port, handler=handler, certFile=str(d / "other.pem"), keyFile=str(d / "other.key"))]
    for sink in sinks:
        sink.start()
    server = MailServer(d / "mailnet", config={
        "relay": {"mx_port": port, "connect_timeout": 3, "reply_timeout": 10, "tls_ca_file": caFile},
        "dns": {"nameservers": [f"127.0.0.1:{dns.port}"], "timeout": 2},
        "queue": {"retry_initial": 600, "retry_max": 600, "delay_warning": 0},
        "store": {"backend": "memory"},
        "mtasts": {"enabled": True, "ca_file": caFile, "https_port": web.port, "fetch_timeout": 5},
    })
    server.start()
    world = type("World", (), dict(server=server, sinks=sinks, handler=handler, web=web, dns=dns, dir=d))
    yield world
    server.stop()
    for sink in sinks:
        sink.stop()
    web.stop()
    dns.stop()


def tlsrptShow(world):
    return world.server.mailnet("tlsrpt", "show").stdout


def outcome(server, qid, rcpt):
    return server.waitForLog(f"queue {qid}: to=<{rcpt}>", timeout=30)


def arrived(world, rcpt):
    return waitFor(lambda: [m for m in world.handler.messages if rcpt in m["rcpts"]], what=f"{rcpt} delivered")[0]


def test_enforce_with_a_listed_mx_and_valid_tls_delivers(world):
    qid = put(world.server, ["a@sts-ok.test"])
    ask(world.server, "flush")
    m = arrived(world, "a@sts-ok.test")
    assert m["tls"] is True
    assert "relayed (250" in outcome(world.server, qid, "a@sts-ok.test")
    line = world.server.waitForLog("mta-sts: policy of sts-ok.test")
    assert "mode enforce" in line and "mx.sts-ok.test" in line
    assert os.path.exists(os.path.join(world.server.dataDir, "mtasts", "sts-ok.test.json"))
    waitFor(lambda: re.search(r"sts-ok.test: \d+ successful, 0 failed", tlsrptShow(world)), what="counted")


@pytest.mark.parametrize("domain, reason, reported", [
    ("sts-badmx", "451 4.7.5 MTA-STS policy of sts-badmx.test (enforce) lists none of its MX hosts",
     "validation-failure mx.sts-badmx.test x1: MX host not listed in the MTA-STS policy"),
    ("sts-notls", "451 4.7.10 MTA-STS policy of sts-notls.test (enforce): TLS is required, but mx.sts-notls.test does not offer STARTTLS",
     "starttls-not-supported mx.sts-notls.test x1"),
    ("sts-wrongcert", "421 4.7.5 MTA-STS policy of sts-wrongcert.test (enforce): TLS with mx.sts-wrongcert.test[127.0.0.3]",
     "certificate-host-mismatch mx.sts-wrongcert.test x1"),
])
def test_enforce_defers_what_the_policy_does_not_allow(world, domain, reason, reported):
    rcpt = f"b@{domain}.test"
    qid = put(world.server, [rcpt])
    ask(world.server, "flush")
    line = outcome(world.server, qid, rcpt)
    assert "deferred" in line and reason in line, line
    assert not [m for m in world.handler.messages if rcpt in m["rcpts"]]
    # Counted for TLS-RPT (each flush of a later test tries the mail again: x1 or more).
    shown = waitFor(lambda: re.search(rf"{domain}.test: 0 successful, \d+ failed", s := tlsrptShow(world)) and s,
                    what="counted")
    assert reported.replace("x1", "x") in re.sub(r" x\d+", " x", shown), shown


def test_after_the_lifetime_the_bounce_says_why(world):
    # An item older than [queue] lifetime (5 days) fails at its next attempt; its sender is remote
    # (reports.test's peer), so the DSN arrives there.
    qid = put(world.server, ["g@sts-badmx.test"], sender="sender@reports.test", arrival=time.time() - 6 * 86400)
    ask(world.server, "flush")
    line = outcome(world.server, qid, "g@sts-badmx.test")
    assert "bounced: gave up after" in line and "MTA-STS policy of sts-badmx.test" in line, line
    dsn = arrived(world, "sender@reports.test")
    assert dsn["sender"] == ""
    text = dsn["data"].decode()
    assert "Action: failed" in text and "Status: 4.7.5" in text, text
    assert "MTA-STS policy of sts-badmx.test (enforce) lists none of its MX hosts" in " ".join(text.split()), text


def test_testing_mode_delivers_and_records_the_failure(world):
    qid = put(world.server, ["c@sts-testing.test"])
    ask(world.server, "flush")
    m = arrived(world, "c@sts-testing.test")
    assert m["tls"] is False  # the peer at 127.0.0.2, without STARTTLS
    assert qid
    shown = waitFor(lambda: "sts-testing.test: " in (s := tlsrptShow(world)) and s, what="the TLS-RPT failure")
    assert re.search(r"sts-testing.test: 0 successful, [1-9]\d* failed", shown), shown
    assert re.search(r"starttls-not-supported mx.sts-testing.test x[1-9]", shown), shown


@pytest.mark.parametrize("domain, reason", [
    ("sts-redirect", "answered 302: a redirect (not followed, RFC 8461 s3.3)"),
    ("sts-big", "the policy is larger than 64 KB"),
    ("sts-ctype", "the policy's Content-Type is not text/plain (RFC 8461 s3.3): text/html"),
    ("sts-slow", "no policy within 5 seconds"),
    ("sts-badweb", "TLS with mta-sts.sts-badweb.test failed"),
])
def test_a_bad_policy_fetch_is_an_error_and_mail_goes_as_before(world, domain, reason):
    rcpt = f"d@{domain}.test"
    put(world.server, [rcpt])
    ask(world.server, "flush")
    line = world.server.waitForLog(f"mta-sts: the policy of {domain}.test could not be fetched", timeout=30)
    assert reason in line, line
    arrived(world, rcpt)  # RFC 8461 s4.1 (no cached policy): delivered as if the domain had none
    assert not os.path.exists(os.path.join(world.server.dataDir, "mtasts", f"{domain}.test.json"))
    kind = "sts-webpki-invalid" if domain == "sts-badweb" else "sts-policy-fetch-error"
    shown = waitFor(lambda: f"{domain}.test: 0 successful" in (s := tlsrptShow(world)) and s, what="counted")
    assert f"{kind}  x" in shown, shown


def test_sessions_to_a_domain_without_a_policy_are_counted(world):
    # RFC 8460 s4.4 "no-policy-found": delivered as before (no TLS offered), and counted.
    put(world.server, ["n@nopolicy.test"])
    ask(world.server, "flush")
    assert arrived(world, "n@nopolicy.test")["tls"] is False
    shown = waitFor(lambda: "nopolicy.test: " in (s := tlsrptShow(world)) and s, what="counted")
    assert "nopolicy.test: 0 successful, 1 failed\n    starttls-not-supported mx.nopolicy.test x1" in shown, shown


def test_daily_report_is_mailed_to_the_rua(world):
    # A session counted today (testing mode, no STARTTLS); a report is sent once the day is over.
    # And one to sts-ok.test, whose report cannot be posted (below): this test does not rely on
    # another test of the module having counted it first.
    put(world.server, ["e@sts-testing.test", "f@sts-ok.test"])
    ask(world.server, "flush")
    arrived(world, "e@sts-testing.test")
    arrived(world, "f@sts-ok.test")
    waitFor(lambda: "sts-testing.test: " in (s := tlsrptShow(world)) and "sts-ok.test: " in s, what="counted")
    world.server.stop()
    directory = os.path.join(world.server.dataDir, "tlsrpt")
    today = datetime.datetime.now(datetime.timezone.utc).date()
    yesterday = (today - datetime.timedelta(days=1)).isoformat()
    os.replace(os.path.join(directory, f"{today.isoformat()}.json"), os.path.join(directory, f"{yesterday}.json"))
    world.server.start()
    m = arrived(world, "tls-reports@reports.test")
    message = m["message"]
    assert message["Subject"].startswith("Report Domain: sts-testing.test Submitter: mx.example.test Report-ID: <")
    assert message["TLS-Report-Domain"] == "sts-testing.test"
    assert message.get_content_type() == "multipart/report" and message.get_param("report-type") == "tlsrpt"
    part = [p for p in message.iter_attachments() if p.get_content_type() == "application/tlsrpt+gzip"][0]
    assert part.get_filename().startswith("mx.example.test!sts-testing.test!") and part.get_filename().endswith(".json.gz")
    report = json.loads(gzip.decompress(part.get_content()))
    # RFC 8460 s4.4
    assert report["organization-name"] == "mx.example.test"
    assert report["date-range"] == {"start-datetime": f"{yesterday}T00:00:00Z", "end-datetime": f"{yesterday}T23:59:59Z"}
    assert report["contact-info"] and report["report-id"]
    [policy] = report["policies"]
    assert policy["policy"]["policy-type"] == "sts" and policy["policy"]["policy-domain"] == "sts-testing.test"
    assert policy["policy"]["policy-string"] == ["version: STSv1", "mode: testing", "mx: mx.sts-testing.test", "max_age: 86400"]
    assert policy["policy"]["mx-host"] == ["mx.sts-testing.test"]
    assert policy["summary"]["total-failure-session-count"] >= 1
    detail = policy["failure-details"][0]
    assert detail["result-type"] == "starttls-not-supported" and detail["receiving-mx-hostname"] == "mx.sts-testing.test"
    assert detail["receiving-ip"] == "127.0.0.2" and detail["failed-session-count"] >= 1
    assert detail["sending-mta-ip"] == "127.0.0.1"  # s4.3: where the queue connected from
    # The same report, POSTed to the https: rua (RFC 8460 s5.3), over TLS checked with the test CA.
    [(host, path, contentType, body)] = [p for p in world.web.posts if p[0].startswith("tlsrpt.reports.test")]
    assert (host, path, contentType) == (f"tlsrpt.reports.test:{world.web.port}", "/v1/tlsrpt", "application/tlsrpt+gzip")
    assert json.loads(gzip.decompress(body)) == report
    # sts-ok.test's only rua is an https: host whose certificate is for other names: nothing is posted
    # there, and its report stays for the next run.
    world.server.waitForLog("tls-rpt: the report of sts-ok.test for", timeout=30)
    assert not [p for p in world.web.posts if "badweb" in p[0]]
    # Reported domains are gone from the day's file (those without a _smtp._tls record are dropped).
    shown = waitFor(lambda: "sts-testing" not in (s := tlsrptShow(world)) and s, what="sent")
    assert f"{yesterday} sts-ok.test: " in shown, shown


class PortZone:
    """tests/queue/dnsserver.py on a port we choose, so that it can be restarted with other records."""

    def __init__(self, directory, port):
        self.directory, self.port, self.process = str(directory), port, None

    def serve(self, zone):
        import subprocess
        import sys

        from tests.mailauth.helpers import DNSSERVER

        self.stop()
        path = os.path.join(self.directory, "zone2.json")
        with open(path, "w") as f:
            json.dump(zone, f)
        self.process = subprocess.Popen([sys.executable, DNSSERVER, path, str(self.port)], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        line = self.process.stdout.readline()
        assert line.startswith("PORT "), line + self.process.stdout.read()

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def test_cache_id_change_refetches_and_a_failed_fetch_keeps_the_cached_policy(tmp_path):
    caFile, caKeyFile = str(tmp_path / "ca.pem"), str(tmp_path / "ca.key")
    caCert, caKey = tls.makeDevelopmentCA(caFile, caKeyFile, "mailnet test CA")
    leaf(str(tmp_path / "policy.pem"), str(tmp_path / "policy.key"), ["mta-sts.sts-ok.test"], caCert, caKey)
    leaf(str(tmp_path / "mx.pem"), str(tmp_path / "mx.key"), ["mx.sts-ok.test"], caCert, caKey)
    policies = {"mta-sts.sts-ok.test": (200, "text/plain", POLICY_OK)}
    web = PolicyServer(str(tmp_path / "policy.pem"), str(tmp_path / "policy.key"), policies)
    sink = HostSink("127.0.0.1", port=freePort(), certFile=str(tmp_path / "mx.pem"), keyFile=str(tmp_path / "mx.key")).start()
    dns = PortZone(tmp_path, freePort())
    server = None

    def zoneWith(policyId):
        records = {k: v for k, v in zone(web.port).items() if "sts-ok" in k}
        records["_mta-sts.sts-ok.test"] = {"TXT": [f"v=STSv1; id={policyId}"]}
        return records

    def send(n):
        rcpt = f"u{n}@sts-ok.test"
        qid = put(server, [rcpt])
        ask(server, "flush")
        return outcome(server, qid, rcpt)

    try:
        dns.serve(zoneWith("one"))
        server = MailServer(tmp_path / "mailnet", config={
            # One message per connection: a kept session was opened under the policy of its time, and the
            # test is about the policy each new delivery looks up.
            "relay": {"mx_port": sink.port, "connect_timeout": 3, "reply_timeout": 10, "tls_ca_file": caFile,
                      "messages_per_connection": 1},
            "dns": {"nameservers": [f"127.0.0.1:{dns.port}"], "timeout": 2},
            "queue": {"retry_initial": 600, "retry_max": 600, "delay_warning": 0},
            "store": {"backend": "memory"},
            "mtasts": {"enabled": True, "ca_file": caFile, "https_port": web.port, "fetch_timeout": 5},
        }).start()
        assert "relayed (250" in send(1) and len(web.requests) == 1
        # The policy host now serves another policy, but the id is the same: the cache is used, nothing fetched.
        policies["mta-sts.sts-ok.test"] = (200, "text/plain", POLICY_OK.replace("mx.sts-ok.test", "mx.other.test"))
        assert "relayed (250" in send(2) and len(web.requests) == 1
        # A new id: fetched again, and the new policy no longer lists the MX host.
        dns.serve(zoneWith("two"))
        line = send(3)
        assert "deferred" in line and "lists none of its MX hosts (policy mx: mx.other.test)" in line, line
        assert len(web.requests) == 2
        # Another id whose fetch fails: the cached policy still applies (without it, the mail would go).
        policies["mta-sts.sts-ok.test"] = (500, "text/plain", "")
        dns.serve(zoneWith("three"))
        line = send(4)
        assert "deferred" in line and "lists none of its MX hosts (policy mx: mx.other.test)" in line, line
        assert len(web.requests) == 3
        assert "answered 500" in server.waitForLog("mta-sts: the policy of sts-ok.test could not be fetched")
        assert [m["rcpts"] for m in sink.handler.messages] == [["u1@sts-ok.test"], ["u2@sts-ok.test"]]
    finally:
        if server is not None:
            server.stop()
        dns.stop()
        sink.stop()
        web.stop()

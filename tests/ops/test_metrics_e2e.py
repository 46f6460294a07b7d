"""
The ``metrics`` listener of a real server: /metrics scraped before and after
real traffic (SMTP delivery, IMAP logins, a relay through the queue to an
aiosmtpd sink, a bounce and its DSN, JMAP), /healthz up and with the store
broken.
"""

from __future__ import annotations

import imaplib
import json
import os
import shutil
import smtplib
import ssl
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.queue.e2e import Sink, waitFor

ALICE, BOB = ("alice@example.test", "alice-pw"), ("bob@example.test", "bob-pw")


def scrape(server) -> dict:
    """{(sample name, sorted labels): value} of one scrape."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port('metrics')}/metrics", timeout=30) as r:
        assert r.status == 200
        assert r.headers["content-type"].startswith("text/plain")
        text = r.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def moved(before, after, name, **labels):
    return value(after, name, **labels) - value(before, name, **labels)


def healthz(server):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port('metrics')}/healthz", timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def tlsContext(server):
    context = ssl.create_default_context(cafile=server.certFile)
    context.check_hostname = False
    return context


@pytest.fixture
def sink():
    s = Sink().start()
    yield s
    s.stop()


def test_counters_move_with_real_traffic(make_server, sink):
    server = make_server(config={"relay": {"smarthost": f"127.0.0.1:{sink.port}",
                                           "smarthost_tls": "opportunistic"},
                                 "queue": {"retry_initial": 3600}})
    for user in (ALICE, BOB):
        server.addUser(*user)
    before = scrape(server)

    # Two messages to a local user over the MX listener, and one refused at
    # the end of DATA by the delivery (a mail loop: 554 5.4.6, network).
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as c:
        c.sendmail("someone@remote.test", [BOB[0]], b"Subject: one\r\n\r\nhello\r\n")
        c.sendmail("someone@remote.test", [BOB[0]], b"Subject: two\r\n\r\n" + (b"x" * 50 + b"\r\n") * 100)
        with pytest.raises(smtplib.SMTPDataError):
            c.sendmail("someone@remote.test", [BOB[0]], b"Received: from a by b\r\n" * 101 + b"\r\nloop\r\n")
    # IMAP: a failed login, then a good one (over STARTTLS: one TLS handshake).
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    imap.starttls(tlsContext(server))
    with pytest.raises(imaplib.IMAP4.error):
        imap.login(BOB[0], "wrong")
    imap.login(*BOB)
    imap.logout()
    # Submission: one message relayed through the queue to the sink, one
    # recipient the sink refuses (bounced: a DSN back to alice, delivered
    # by the queue into her mailbox).
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=30) as c:
        c.starttls(context=tlsContext(server))
        c.login(*ALICE)
        c.sendmail(ALICE[0], ["carol@ok.test"], b"Subject: out\r\n\r\nrelayed\r\n")
        c.sendmail(ALICE[0], ["nobody@reject.test"], b"Subject: bounce\r\n\r\nrefused\r\n")
    sink.handler.wait(1)
    waitFor(lambda: server.messageFiles(ALICE[0]), what="the DSN in alice's INBOX")

    def settled():
        now = scrape(server)
        return now if moved(before, now, "mailnet_queue_delivery_attempts_total", outcome="sent") >= 2 else None
    after = waitFor(settled, what="the queue's attempts counted")

    assert moved(before, after, "mailnet_connections_opened_total", listener="smtp") == 1
    assert moved(before, after, "mailnet_connections_opened_total", listener="imap") == 1
    assert moved(before, after, "mailnet_connections_opened_total", listener="submission") == 1
    assert value(after, "mailnet_sessions_open", listener="smtp") == 0
    assert value(after, "mailnet_sessions_open", listener="metrics") == 1  # this scrape
    assert moved(before, after, "mailnet_auth_attempts_total", protocol="imap", outcome="failure") == 1
    assert moved(before, after, "mailnet_auth_attempts_total", protocol="imap", outcome="success") == 1
    assert moved(before, after, "mailnet_auth_attempts_total", protocol="smtp", outcome="success") == 1
    assert moved(before, after, "mailnet_smtp_messages_accepted_total", origin="mx") == 2
    assert moved(before, after, "mailnet_smtp_messages_rejected_total", reason="permanent_network") == 1
    assert moved(before, after, "mailnet_smtp_messages_accepted_total", origin="submission") == 2
    assert moved(before, after, "mailnet_smtp_message_size_bytes_count") == 4
    assert moved(before, after, "mailnet_smtp_message_size_bytes_bucket", le="1000.0") == 3
    assert moved(before, after, "mailnet_store_delivery_seconds_count", source="smtp") == 2
    # The DSN: queued from the null sender and delivered into the store by the queue.
    assert moved(before, after, "mailnet_store_delivery_seconds_count", source="queue") == 1
    # relayed to the sink, and the DSN delivered locally
    assert moved(before, after, "mailnet_queue_delivery_attempts_total", outcome="sent") == 2
    assert moved(before, after, "mailnet_queue_delivery_attempts_total", outcome="bounced") == 1
    assert moved(before, after, "mailnet_queue_dsns_sent_total", kind="failure") == 1
    assert moved(before, after, "mailnet_tls_handshakes_total", version="TLSv1.3") == 2
    assert value(after, "mailnet_store_errors_total", source="smtp") == 0
    assert value(after, "mailnet_queue_items", state="active") + value(after, "mailnet_queue_items", state="deferred") == 0

    # A refused message: the sink greylists, so the item waits in the queue
    # (deferred, retry in an hour) and the oldest age grows.
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=30) as c:
        c.starttls(context=tlsContext(server))
        c.login(*ALICE)
        c.sendmail(ALICE[0], ["later@grey.test"], b"Subject: grey\r\n\r\nwait\r\n")

    def deferred():
        now = scrape(server)
        return now if value(now, "mailnet_queue_items", state="deferred") == 1 else None
    later = waitFor(deferred, what="a deferred queue item")
    assert moved(after, later, "mailnet_queue_delivery_attempts_total", outcome="deferred") == 1
    assert value(later, "mailnet_queue_oldest_age_seconds") >= 0


def test_jmap_calls_by_method(make_server):
    server = make_server()
    server.addUser(*ALICE)
    before = scrape(server)
    import base64
    request = urllib.request.Request(server.url("/jmap/api/"), method="POST", data=json.dumps({
        "using": ["urn:ietf:params:jmap:core"],
        "methodCalls": [["Core/echo", {"hello": 1}, "0"], ["Nothing/here", {}, "1"]],
    }).encode(), headers={"Content-Type": "application/json", "Authorization": "Basic " + base64.b64encode(
        f"{ALICE[0]}:{ALICE[1]}".encode()).decode()})
    with urllib.request.urlopen(request, timeout=30) as r:
        assert r.status == 200
    after = scrape(server)
    assert moved(before, after, "mailnet_jmap_method_calls_total", method="Core/echo") == 1
    assert moved(before, after, "mailnet_jmap_method_calls_total", method="unknown") == 1


def test_openmetrics_when_asked(make_server):
    server = make_server()
    request = urllib.request.Request(f"http://127.0.0.1:{server.port('metrics')}/metrics",
                                     headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    with urllib.request.urlopen(request, timeout=30) as r:
        assert r.headers["content-type"].startswith("application/openmetrics-text")
        assert r.read().decode().endswith("# EOF\n")


def test_healthz(make_server):
    server = make_server()
    assert healthz(server) == (200, "ok\n")
    # Break the store: its root becomes a file (permissions would not stop
    # root, which runs these tests in CI).
    mail = os.path.join(server.dataDir, "mail")
    shutil.rmtree(mail)
    with open(mail, "w") as f:
        f.write("not a directory")
    status, body = healthz(server)
    assert status == 503
    assert body.startswith("store: not answering")
    assert server.dataDir not in body and "/" not in body.replace("text/plain", "")
    os.unlink(mail)
    os.makedirs(mail)
    assert healthz(server) == (200, "ok\n")

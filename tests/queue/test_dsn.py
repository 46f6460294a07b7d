"""RFC 3464 DSNs: checked against an expected message, parsed back with the email package."""

import email
import email.policy

from mailnet.queue import dsn

ENVELOPE = {
    "id": "18c0a1b2c3d4e5f6", "sender": "alice@example.test", "envid": "QQ314159", "ret": "HDRS",
    "arrival": 1700000000, "client": "client.example.test",
}
ORIGINAL = (b"From: alice@example.test\r\nTo: bob@remote.test\r\nSubject: hello\r\n"
            b"Message-ID: <1@example.test>\r\n\r\nHello there\r\n.leading dot\r\n")
REPORTS = [
    dsn.RecipientReport("bob@remote.test", "failed", "5.1.1", "550 5.1.1 <bob@remote.test>: Recipient address rejected",
                        "mx.remote.test", "rfc822;bob+2Bold@remote.test", 1700000100),
    dsn.RecipientReport("carol@nowhere.test", "failed", "5.1.2",
                        "550 5.1.2 domain nowhere.test does not exist (DNS: no such domain)", None, None, 1700000100),
]

EXPECTED_HDRS = """\
From: Mail Delivery System <MAILER-DAEMON@mx.example.test>
To: <alice@example.test>
Subject: Undelivered Mail Returned to Sender
Date: Tue, 14 Nov 2023 22:16:40 +0000
Message-ID: <18c0a1b2c3d4e5f6.failure@mx.example.test>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type="delivery-status"; boundary="B/mx.example.test"

--B/mx.example.test
Content-Type: text/plain; charset="us-ascii"
Content-Transfer-Encoding: 7bit
Content-Description: Notification

This is the mail system at mx.example.test.

Your message could not be delivered to one or more recipients.
The details are below; the message's header is attached.

<bob@remote.test>: host mx.remote.test said: 550 5.1.1 <bob@remote.test>: Recipient address rejected
<carol@nowhere.test>: 550 5.1.2 domain nowhere.test does not exist (DNS: no such domain)

--B/mx.example.test
Content-Description: Delivery report
Content-Type: message/delivery-status

Original-Envelope-Id: QQ314159
Reporting-MTA: dns; mx.example.test
X-Mailnet-Queue-ID: 18c0a1b2c3d4e5f6
Received-From-MTA: dns; client.example.test
Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0000

Original-Recipient: rfc822; bob+old@remote.test
Final-Recipient: rfc822; bob@remote.test
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.remote.test
Diagnostic-Code: smtp; 550 5.1.1 <bob@remote.test>: Recipient address rejected
Last-Attempt-Date: Tue, 14 Nov 2023 22:15:00 +0000

Final-Recipient: rfc822; carol@nowhere.test
Action: failed
Status: 5.1.2
Diagnostic-Code: X-mailnet; 550 5.1.2 domain nowhere.test does not exist (DNS: no such domain)
Last-Attempt-Date: Tue, 14 Nov 2023 22:15:00 +0000

--B/mx.example.test
Content-Description: Message Headers
Content-Type: text/rfc822-headers

From: alice@example.test
To: bob@remote.test
Subject: hello
Message-ID: <1@example.test>

--B/mx.example.test--
"""


def build(kind="failure", envelope=ENVELOPE, reports=REPORTS, original=ORIGINAL, **kw):
    return dsn.build(kind, envelope, reports, original, reportingMTA="mx.example.test", date=1700000200,
                     messageId=f"<{envelope['id']}.{kind}@mx.example.test>", boundary="B/mx.example.test", **kw)


def test_failure_with_headers_matches_expected_message():
    out = build()
    assert out == EXPECTED_HDRS.replace("\n", "\r\n").encode()


def test_parses_back_with_the_email_package():
    msg = email.message_from_bytes(build(), policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["From"].addresses[0].addr_spec == "MAILER-DAEMON@mx.example.test"
    human, status, headers = msg.iter_parts()
    assert human.get_content_type() == "text/plain"
    assert "could not be delivered" in human.get_content()
    assert status.get_content_type() == "message/delivery-status"
    perMessage, bob, carol = status.get_payload()
    assert perMessage["Reporting-MTA"] == "dns; mx.example.test"
    assert perMessage["Arrival-Date"] == "Tue, 14 Nov 2023 22:13:20 +0000"
    assert perMessage["Original-Envelope-Id"] == "QQ314159"
    assert bob["Final-Recipient"] == "rfc822; bob@remote.test"
    assert bob["Original-Recipient"] == "rfc822; bob+old@remote.test"
    assert (bob["Action"], bob["Status"]) == ("failed", "5.1.1")
    assert bob["Remote-MTA"] == "dns; mx.remote.test"
    assert bob["Diagnostic-Code"].startswith("smtp; 550 5.1.1")
    assert carol["Remote-MTA"] is None
    assert carol["Diagnostic-Code"].startswith("X-mailnet; ")
    assert headers.get_content_type() == "text/rfc822-headers"
    assert "Subject: hello" in headers.get_payload()
    assert "Hello there" not in headers.get_payload()


def test_ret_full_returns_the_whole_message_unchanged():
    env = dict(ENVELOPE, ret="FULL")
    out = build(envelope=env)
    assert ORIGINAL in out  # byte for byte, dot line included
    msg = email.message_from_bytes(out, policy=email.policy.default)
    returned = list(msg.iter_parts())[2]
    assert returned.get_content_type() == "message/rfc822"
    inner = returned.get_payload()[0]
    assert inner["Subject"] == "hello"
    assert inner.get_content().replace("\r\n", "\n") == "Hello there\n.leading dot\n"


def test_no_ret_means_full():
    env = dict(ENVELOPE, ret=None)
    assert b"Content-Type: message/rfc822" in build(envelope=env)


def test_eight_bit_original_is_labelled_and_kept():
    original = b"From: a@example.test\r\nSubject: caf\xc3\xa9\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nd\xc3\xa9j\xc3\xa0 vu\r\n"
    out = build(envelope=dict(ENVELOPE, ret="FULL"), original=original)
    assert original in out
    assert b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n" in out


def test_multipart_original_survives():
    original = (b"From: a@example.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
                b"preamble\r\n--XX\r\nContent-Type: text/plain\r\n\r\none\r\n--XX\r\nContent-Type: text/plain\r\n\r\ntwo\r\n--XX--\r\n")
    out = build(envelope=dict(ENVELOPE, ret="FULL"), original=original)
    assert original in out
    email.message_from_bytes(out, policy=email.policy.default)


def test_large_original_returns_headers_only():
    out = build(envelope=dict(ENVELOPE, ret="FULL"), returnLimit=len(ORIGINAL) - 1)
    assert b"text/rfc822-headers" in out and b"Hello there" not in out
    assert b"too large to return whole" in out
    assert b"Subject: hello\r\n" in out


def test_default_return_limit_is_postfix_bounce_size_limit():
    assert dsn.RETURN_LIMIT == 50_000


def test_huge_header_is_cut_to_the_limit_in_whole_lines():
    # The backscatter case of issue 10: 1,000 long header lines asked to come back.
    header = b"".join(b"X-Filler-%04d: %s\r\n" % (n, b"y" * 700) for n in range(1000))
    original = header + b"\r\nbody\r\n"
    reports = [dsn.RecipientReport("bob@example.test", "delivered", "2.0.0", None, None, None, 1700000100)]
    for kind, ret in (("success", "HDRS"), ("failure", "FULL"), ("delay", "FULL")):
        out = build(kind, envelope=dict(ENVELOPE, ret=ret), reports=reports, original=original[:50_001])
        assert len(out) < 50_000 + 5_000, kind
        msg = email.message_from_bytes(out, policy=email.policy.default)
        human, status, headers = msg.iter_parts()
        assert headers.get_content_type() == "text/rfc822-headers"
        returned = headers.get_payload(decode=True)
        assert 49_000 < len(returned) <= 50_000 and returned.endswith(b"\r\n")
        assert returned.startswith(b"X-Filler-0000: ") and b"X-Filler-0999" not in returned
        assert "larger than 50000 bytes" in human.get_content()
        assert b"body" not in out


def test_small_limit_with_one_huge_line_returns_no_header_part():
    original = b"X-Long: " + b"x" * 5000 + b"\r\n\r\nbody\r\n"
    out = build(envelope=dict(ENVELOPE, ret="FULL"), original=original, returnLimit=1024)
    msg = email.message_from_bytes(out, policy=email.policy.default)
    assert len(list(msg.iter_parts())) == 2 and b"xxxx" not in out


def test_delay_report():
    reports = [dsn.RecipientReport("bob@remote.test", "delayed", "4.4.1", "451 4.4.1 connect to mx.remote.test[127.0.0.1]:25: connection refused",
                                   None, None, 1700014400, willRetryUntil=1700432000)]
    out = build("delay", envelope=dict(ENVELOPE, ret="FULL"), reports=reports)
    msg = email.message_from_bytes(out, policy=email.policy.default)
    assert msg["Subject"] == "Delayed Mail (still being retried)"
    human, status, headers = msg.iter_parts()
    assert "only a warning" in human.get_content()
    block = status.get_payload()[1]
    assert (block["Action"], block["Status"]) == ("delayed", "4.4.1")
    assert block["Will-Retry-Until"] == "Sun, 19 Nov 2023 22:13:20 +0000"  # arrival + 5 days
    # Delay reports never carry the whole message (RFC 3461 s4.3 RET is for failures).
    assert headers.get_content_type() == "text/rfc822-headers"


def test_success_report():
    reports = [dsn.RecipientReport("bob@remote.test", "relayed", "2.0.0", None, None, None, 1700000100)]
    msg = email.message_from_bytes(build("success", reports=reports), policy=email.policy.default)
    assert msg["Subject"] == "Successful Mail Delivery Report"
    block = list(msg.iter_parts())[1].get_payload()[1]
    assert (block["Action"], block["Status"]) == ("relayed", "2.0.0")
    assert block["Diagnostic-Code"] is None


def test_crlf_only_and_lines_short():
    out = build(envelope=dict(ENVELOPE, ret="FULL"))
    assert b"\n" not in out.replace(b"\r\n", b"")
    assert max(len(line) for line in out.split(b"\r\n")) <= 998


def test_orcpt_xtext_decoded():
    # RFC 3464 s2.3.1: Original-Recipient is the ORCPT with its xtext decoded.
    assert dsn._typed("rfc822;a+2Bb+3Dc@x.test") == "rfc822; a+b=c@x.test"
    assert dsn._typed("plain@x.test") == "rfc822; plain@x.test"


def test_no_original_available():
    out = build(original=None)
    msg = email.message_from_bytes(out, policy=email.policy.default)
    assert len(list(msg.iter_parts())) == 2


from hypothesis import given, settings, strategies as st  # noqa: E402

LINES = st.sampled_from([b"From: a@example.test", b"Subject: \xc3\xa9t\xc3\xa9", b"Content-Type: multipart/mixed; boundary=Z",
                         b"--Z", b"--Z--", b"", b"body line", b".", b"\xff\xfe", b"Content-Transfer-Encoding: base64",
                         b"X-Long: " + b"x" * 1200, b"=?utf-8?q?bad", b"MIME-Version: 1.0", b" folded"])


@settings(max_examples=100, deadline=None)
@given(st.lists(LINES, max_size=20), st.sampled_from(["FULL", "HDRS"]), st.sampled_from(["failure", "delay", "success"]))
def test_fuzz_any_original_gives_a_parseable_report(lines, ret, kind):
    original = b"\r\n".join(lines) + b"\r\n"
    out = build(kind, envelope=dict(ENVELOPE, ret=ret), original=original)
    msg = email.message_from_bytes(out, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    parts = list(msg.iter_parts())
    assert parts[1].get_content_type() == "message/delivery-status"
    assert b"\n" not in out.replace(b"\r\n", b"")
    if kind == "failure" and ret == "FULL":
        assert original in out  # returned byte for byte, whatever its MIME
        assert len(parts) == 3


def test_boundary_never_occurs_in_the_returned_message():
    original = b"From: a@example.test\r\n\r\n--B/mx.example.test\r\nnot a boundary of ours\r\n"
    out = build(envelope=dict(ENVELOPE, ret="FULL"), original=original)
    msg = email.message_from_bytes(out, policy=email.policy.default)
    assert msg.get_boundary() != "B/mx.example.test"
    parts = list(msg.iter_parts())
    assert len(parts) == 3 and original in out


@settings(max_examples=60, deadline=None)
@given(st.lists(LINES, max_size=200), st.sampled_from(["FULL", "HDRS"]), st.sampled_from(["failure", "delay", "success"]),
       st.integers(min_value=1024, max_value=4096))
def test_fuzz_report_size_is_bounded_by_the_limit(lines, ret, kind, limit):
    original = b"\r\n".join(lines) + b"\r\n"
    out = build(kind, envelope=dict(ENVELOPE, ret=ret), original=original[: limit + 1], returnLimit=limit)
    # The report's own parts are a few KB; what comes from the original is at most the limit.
    assert len(out) <= len(build(kind, envelope=dict(ENVELOPE, ret=ret), original=None)) + limit + 600
    email.message_from_bytes(out, policy=email.policy.default)

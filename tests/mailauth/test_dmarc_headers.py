"""
The pure parts of the inbound checks: DMARC records, alignment and results
(RFC 7489), the From domain, and removing Authentication-Results fields
that claim our authserv-id (RFC 8601 s5).
"""

from __future__ import annotations

from mailnet.mailauth import dmarc, headers, results
from mailnet.mailauth.dkimcheck import DKIMResult
from mailnet.mailauth.spfcheck import SPFResult


def test_record_parsing():
    p = dmarc.parseRecord(b"v=DMARC1; p=reject; sp=quarantine; adkim=s; aspf=r; pct=50; rua=mailto:x@a.test")
    assert (p.p, p.sp, p.adkim, p.aspf, p.pct) == ("reject", "quarantine", "s", "r", 50)
    assert dmarc.parseRecord("v=spf1 -all") is None
    assert dmarc.parseRecord("p=reject; v=DMARC1") is None  # v= must come first (s6.4)
    assert dmarc.parseRecord("v=DMARC1; p=bogus") is None  # s6.6.3: no valid p, no rua: ignored
    assert dmarc.parseRecord("v=DMARC1; p=bogus; rua=mailto:x@a.test").p == "none"
    assert dmarc.recordFrom([b"v=DMARC1; p=reject", b"v=DMARC1; p=none"]) is None  # two records: none
    assert dmarc.recordFrom([b"unrelated", b"v=DMARC1; p=none"]).p == "none"


def test_alignment():
    assert dmarc.orgDomain("mail.a.test") == "a.test"
    assert dmarc.orgDomain("x.example.co.uk") == "example.co.uk"
    assert dmarc.aligned("mail.a.test", "a.test", "r")
    assert not dmarc.aligned("mail.a.test", "a.test", "s")
    assert not dmarc.aligned("a.test", "b.test", "r")
    assert not dmarc.aligned("example.co.uk", "other.co.uk", "r")


def test_evaluate():
    policy = dmarc.parseRecord("v=DMARC1; p=reject; sp=none; adkim=s")
    spfPass = SPFResult("pass", "bounces.a.test")
    assert dmarc.evaluate("a.test", policy, False, spfPass, []).result == "pass"  # relaxed SPF
    dkimSub = DKIMResult("pass", "mail.a.test")
    failed = dmarc.evaluate("a.test", policy, False, SPFResult("fail", "a.test"), [dkimSub])
    assert (failed.result, failed.policy) == ("fail", "reject")  # adkim=s: mail.a.test is not a.test
    assert dmarc.evaluate("a.test", policy, False, None, [DKIMResult("pass", "a.test")]).result == "pass"
    sub = dmarc.evaluate("x.a.test", policy, True, SPFResult("none", "x.a.test"), [])
    assert (sub.result, sub.policy) == ("fail", "none")  # sp= for subdomains
    assert dmarc.evaluate("a.test", None, False, spfPass, []).result == "none"
    assert dmarc.evaluate("a.test", None, False, spfPass, [], temporary=True).result == "temperror"


HEADER = (b"Authentication-Results: mx.b.test; dkim=pass\r\n"
          b"Received: from x\r\n\tby y; Thu, 3 Dec 2026 10:00:00 +0000\r\n"
          b"Authentication-Results: (forged\r\n (nested)) MX.B.Test;\r\n spf=pass\r\n"
          b"Authentication-Results: mx.b.test.example; spf=pass\r\n"
          b"authentication-results: mx.b.test 1; none\r\n"
          b"From: \"Alice, A.\" <alice@Mail.A.test>\r\n"
          b"To: bob@b.test\r\n")


def test_authserv_id_and_removal():
    assert headers.authservId(b"Authentication-Results: (c) mx.b.test (d) 1; none\r\n") == "mx.b.test"
    kept, removed = headers.withoutOurResults(HEADER, "mx.b.test")
    assert removed == 3
    assert kept == (b"Received: from x\r\n\tby y; Thu, 3 Dec 2026 10:00:00 +0000\r\n"
                    b"Authentication-Results: mx.b.test.example; spf=pass\r\n"
                    b"From: \"Alice, A.\" <alice@Mail.A.test>\r\nTo: bob@b.test\r\n")
    assert headers.withoutOurResults(kept, "mx.b.test") == (kept, 0)


def test_from_domains():
    assert headers.fromDomains(HEADER) == ("mail.a.test",)
    assert headers.fromDomains(b"From: a@x.test, b@y.test\r\n") == ("x.test", "y.test")
    assert headers.fromDomains(b"Subject: none\r\n") == ()
    assert headers.fromDomains(b"From: undisclosed:;\r\n") == ()


def test_results_field():
    field = results.header("mx.b.test", SPFResult("pass", "a.test"), SPFResult("none", "client.example"),
                           [DKIMResult("fail", "a.test", "s1", 'body hash "mismatch" (x)', "AbCdEfGh", "rsa-sha256")],
                           dmarc.DMARCResult("pass", "a.test", "reject", "SPF aligned"), ip="192.0.2.1")
    assert field.endswith(b"\r\n") and field.count(b"\r\n\t") == 3
    text = field.decode().replace("\r\n\t", " ")
    assert text.startswith("Authentication-Results: mx.b.test; spf=pass (192.0.2.1 is permitted) smtp.mailfrom=a.test;")
    assert 'dkim=fail reason="body hash mismatch x" header.d=a.test' in text
    assert "header.b=AbCdEfGh" in text and "dmarc=pass" in text and "policy.dmarc=reject" in text
    assert "smtp.helo" not in text  # a HELO result of none says nothing
    import authres
    parsed = authres.AuthenticationResultsHeader.parse(field.decode().replace("\r\n\t", " ").strip())
    assert parsed.authserv_id == "mx.b.test" and [r.method for r in parsed.results] == ["spf", "dkim", "dmarc"]


def test_the_public_suffix_list_is_parsed_once_when_two_threads_ask(monkeypatch):
    """The server parses the list in a thread at start; a check meanwhile waits for it, not parsing it again."""
    import threading

    import publicsuffixlist

    from mailnet.mailauth import dmarc

    monkeypatch.setattr(dmarc, "_psl", None)
    dmarc.orgDomain.cache_clear()
    made, second = [], threading.Event()
    real = publicsuffixlist.PublicSuffixList.__init__

    def init(self, *args, **kw):
        made.append(self)
        if len(made) == 1:
            second.wait(2)  # a slow parse: room for the other thread to ask (a second parse would end the wait)
        else:
            second.set()
        real(self, *args, **kw)

    monkeypatch.setattr(publicsuffixlist.PublicSuffixList, "__init__", init)
    out = []
    first = threading.Thread(target=lambda: out.append(dmarc.orgDomain("mail.example.com")))
    first.start()
    while not made:
        threading.Event().wait(0.01)
    other = threading.Thread(target=lambda: out.append(dmarc.orgDomain("a.b.example.org")))
    other.start()
    first.join(10)
    other.join(10)
    dmarc.orgDomain.cache_clear()
    assert sorted(out) == ["example.com", "example.org"] and len(made) == 1


def test_the_field_is_kept_per_results_and_equal_to_authres_own(monkeypatch):
    """The same results again: authres is not asked again, and each message's header.b is its own."""
    import authres

    made = []
    real = authres.AuthenticationResultsHeader

    def counted(*args, **kw):
        made.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(authres, "AuthenticationResultsHeader", counted)
    results._field.cache_clear()
    spf, helo = SPFResult("pass", "a.test", "x"), SPFResult("none", "client.example")
    dm = dmarc.DMARCResult("pass", "a.test", "reject", "SPF aligned")
    bs = ["AbCdEfGh", "ab/cd+ef", 'q"u\\o@t', "", "x=y", "zz", "b1", "b2", "b3", "b4", "b5", "b6"]
    seen = []
    for n, b in enumerate(bs):
        dkims = [DKIMResult("pass", "a.test", "rsa1", "", b, "rsa-sha256")]
        if n >= 5:  # eleven signatures: marks 1 and 10 must not mix
            dkims = [DKIMResult("fail", "a.test", f"s{i}", "body hash mismatch", (bs[(n + i) % len(bs)] or "e") + str(i),
                                "rsa-sha256")
                     for i in range(11)]
        field = results.header("mx.b.test", spf, helo, dkims, dm, "192.0.2.1")
        assert field == results._build("mx.b.test", spf, helo, dkims, dm, "192.0.2.1").encode()
        seen.append(field)
    assert len(set(seen)) == len(seen)
    # authres made the field once per distinct results without header.b (the _build checks above add theirs)
    assert len(made) - len(bs) == 3  # with b, without b (""), and the eleven signatures

"""
ARC validation (RFC 8617 s5.2) in process: chains sealed by dkimpy's
``arc_sign`` (tests/mailauth/arcchain.py) pass; a changed body, a changed
seal, a cv=fail seal, a missing key, a temporary DNS failure, more than 50
sets and damaged fields fail; no ARC fields is none.  Then the checker's
field (``arc=`` after DKIM, smtp.remote-ip) and ``[mailauth] arc = false``.
"""

from __future__ import annotations

import re

import authres
import pytest

from mailnet.mailauth import arccheck, results
from mailnet.mailauth.dnsquery import DNSTemporary
from tests.mailauth.arcchain import MESSAGE, Sealer, answers, chain


@pytest.fixture(scope="module")
def sealers():
    return Sealer("fwd.test"), Sealer("list.test", "s2")


def test_one_set_passes(sealers):
    fwd, _ = sealers
    sealed = chain([fwd])
    assert arccheck.keyNames(sealed.split(b"\r\n\r\n")[0] + b"\r\n") == ["arc1._domainkey.fwd.test"]
    r = arccheck.verify(sealed, answers(fwd))
    assert (r.result, r.instance, r.domain) == ("pass", 1, "fwd.test"), r


def test_two_sets_pass(sealers):
    fwd, lst = sealers
    r = arccheck.verify(chain([fwd, lst]), answers(fwd, lst))
    assert (r.result, r.instance, r.domain) == ("pass", 2, "list.test"), r


def test_none_without_arc_fields():
    assert arccheck.verify(MESSAGE, {}) == arccheck.ARCResult("none")
    assert not arccheck.present(MESSAGE.split(b"\r\n\r\n")[0] + b"\r\n")


def test_a_changed_body_fails(sealers):
    fwd, lst = sealers
    sealed = chain([fwd, lst]).replace(b"Hello by way", b"Goodbye by way")
    r = arccheck.verify(sealed, answers(fwd, lst))
    assert r.result == "fail" and "ARC-Message-Signature" in r.reason, r


def test_a_changed_seal_fails(sealers):
    fwd, lst = sealers
    sealed = chain([fwd, lst])
    # the older set's seal: change its cv (i=1 must say none) and, separately, a letter of its b=
    older = re.search(rb"ARC-Seal: i=1;.*?(?=\r\n[^ \t])", sealed, re.S).group(0)
    bad = older.replace(b"cv=none", b"cv=pass")
    assert bad != older
    assert arccheck.verify(sealed.replace(older, bad), answers(fwd, lst)).result == "fail"
    b = re.search(rb"b=([A-Za-z0-9+/])", older)
    flipped = older[:b.start(1)] + (b"A" if b.group(1) != b"A" else b"B") + older[b.end(1):]
    r = arccheck.verify(sealed.replace(older, flipped), answers(fwd, lst))
    assert r.result == "fail" and "ARC-Seal" in r.reason, r


def test_a_seal_saying_cv_fail_ends_the_chain(sealers):
    fwd, lst = sealers
    once = chain([fwd])
    failed = lst.seal(once, "arc=fail")  # the second ADMD found the chain broken
    assert b"cv=fail" in failed
    assert arccheck.verify(failed, answers(fwd, lst)).result == "fail"


def test_keys_missing_or_not_fetched(sealers):
    fwd, _ = sealers
    sealed = chain([fwd])
    assert arccheck.verify(sealed, {fwd.name: []}).result == "fail"  # no key record
    r = arccheck.verify(sealed, {fwd.name: DNSTemporary("timeout")})
    assert r.result == "fail" and "temporary" in r.reason, r  # RFC 8617 has no temperror
    assert arccheck.verify(sealed, {}).result == "fail"


def test_50_sets_pass_and_go_to_a_thread():
    """The limit itself (s4.2.1) passes; a chain that long is too slow for the reactor thread."""
    from mailnet.mailauth import keys

    key = keys.generate("rsa")
    sealers = [Sealer(f"f{i}.test", key=key) for i in range(50)]
    sealed = chain(sealers)
    header = sealed.split(b"\r\n\r\n")[0] + b"\r\n"
    r = arccheck.verify(sealed, answers(*sealers))
    assert (r.result, r.instance, r.domain) == ("pass", 50, "f49.test"), r
    assert arccheck.heavy(header) and len(arccheck.keyNames(header)) == 50
    assert not arccheck.heavy(chain(sealers[:3]).split(b"\r\n\r\n")[0])


def test_more_than_50_sets_fail_without_a_lookup():
    sets = b"".join(b"ARC-Seal: i=%d; a=rsa-sha256; cv=none; d=x.test; s=s; b=AA==\r\n"
                    b"ARC-Message-Signature: i=%d; a=rsa-sha256; d=x.test; s=s; h=from; bh=AA==; b=AA==\r\n"
                    b"ARC-Authentication-Results: i=%d; x.test; arc=none\r\n" % (i, i, i) for i in range(1, 52))
    message = sets + MESSAGE
    header = message.split(b"\r\n\r\n")[0] + b"\r\n"
    assert arccheck.keyNames(header) == []  # nothing fetched for it
    r = arccheck.verify(message, {})
    assert r.result == "fail" and "50" in r.reason, r
    high = b"ARC-Seal: i=51; a=rsa-sha256; cv=pass; d=x.test; s=s; b=AA==\r\n" + MESSAGE
    assert "outside" in arccheck.verify(high, {}).reason


@pytest.mark.parametrize("fields", [
    b"ARC-Seal: a=rsa-sha256; cv=none; d=x.test; s=s; b=AA==\r\n",  # no i=
    b"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=x.test; s=s; b=AA==\r\n",  # an incomplete set
    b"ARC-Seal: i=1; i=1; ===; \xff\r\n",
    b"ARC-Message-Signature: i=1; a=rsa-sha256; d=x.test; s=s; h=arc-seal; bh=AA==; b=AA==\r\n"
    b"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=x.test; s=s; b=AA==\r\n"
    b"ARC-Authentication-Results: i=1; x.test; arc=none\r\n",  # a damaged set: a key it cannot use
    b"ARC-Seal: i=0; a=rsa-sha256; cv=none; d=x.test; s=s; b=AA==\r\n",
    b"ARC-Seal: i=99999999999999999999; cv=none\r\n",
])
def test_damaged_chains_fail_never_raise(fields):
    r = arccheck.verify(fields + MESSAGE, {"s._domainkey.x.test": [b"v=DKIM1; k=rsa; p=AAAA"]})
    assert r.result == "fail", r


def test_the_field(sealers):
    field = results.header("mx.b.test", dkims=[], ip="192.0.2.1",
                           arc=arccheck.ARCResult("pass", "", 2, "list.test")).decode().replace("\r\n\t", " ")
    assert "arc=pass (i=2 d=list.test) smtp.remote-ip=192.0.2.1" in field, field
    failed = results.header("mx.b.test", ip="192.0.2.1", arc=arccheck.ARCResult("fail", "ARC-Seal[1] did not validate", 2))
    text = failed.decode().replace("\r\n\t", " ")
    assert 'arc=fail (i=2) reason="ARC-Seal[1] did not validate" smtp.remote-ip=192.0.2.1' in text, text
    parsed = authres.AuthenticationResultsHeader.parse(text.strip())
    assert [r.method for r in parsed.results] == ["dkim", "arc"]
    assert "arc=" not in results.header("mx.b.test", ip="192.0.2.1").decode()  # ARC off: nothing


def test_the_checker_labels_and_does_not_change_the_verdict(sealers):
    """ARC is a label: a passing chain does not save a message failing DMARC p=reject."""
    from mailnet.mailauth.spfcheck import SPFResult
    from tests.mailauth.test_policy import checker

    fwd, lst = sealers
    sealed = chain([fwd, lst])
    header = sealed.split(b"\r\n\r\n")[0] + b"\r\n"
    c = checker()
    prepared = c._prepare(header, False)
    assert sorted(prepared[4]) == ["arc1._domainkey.fwd.test", "s2._domainkey.list.test"] and prepared[5]
    dkims, arc = c._verify(lambda: sealed, answers(fwd, lst), [], True)
    assert arc.result == "pass"
    fail = SPFResult("fail", "a.test")
    policy = {"_dmarc.a.test": [b"v=DMARC1; p=reject"]}
    verdict = c._conclude("192.0.2.1", ["a.test"], "a.test", ["_dmarc.a.test"], policy, fail, None, dkims, arc)
    assert verdict.reply is not None and verdict.reply.code == 550  # no local override by ARC
    assert b"arc=pass" in verdict.header and verdict.summary.endswith("arc=pass")
    off = checker(arc=False)
    assert off._prepare(header, False)[4:] == ([], False)
    assert off._verify(lambda: sealed, {}, [], False) == ([], None)


def test_a_long_chain_is_not_verified_on_the_reactor_thread(sealers):
    import types

    from tests.mailauth.test_policy import checker

    fwd, lst = sealers
    c = checker()
    seen = []
    c._check = lambda envelope, header, read, tooLarge, inline, *prepared: seen.append(inline)
    envelope = types.SimpleNamespace(sender="x@fwd.test", auth=None, helo="h", peer="192.0.2.1")
    short = chain([fwd, lst])
    long = chain([fwd, lst, fwd, lst])
    for message in (short, long, MESSAGE):
        c._start(envelope, message.split(b"\r\n\r\n")[0] + b"\r\n", lambda: message, False, True)
    assert seen == [True, False, True]

"""
DKIM through mailnet.mailauth (dkimpy underneath): the RFC 8463 and
RFC 6376 examples, signing and verifying with our keys, oversigning, and
how DNS answers map to results.
"""

from __future__ import annotations

import base64
import os
import stat

import dkim.canonicalization as canon
import pytest
from hypothesis import given, settings, strategies as st

from mailnet.mailauth import dkimcheck, dkimfast, dkimsign, keys
from mailnet.mailauth.dnsquery import DNSTemporary

# RFC 8463 Appendix A: the ed25519 key (RFC 8032's test key 1) and the signed message.
RFC8463_KEY = b"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
RFC8463_MESSAGE = b"""DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;
 d=football.example.com; i=@football.example.com;
 q=dns/txt; s=brisbane; t=1528637909; h=from : to :
 subject : date : message-id : from : subject : date;
 bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;
 b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus
 Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==
From: Joe SixPack <joe@football.example.com>
To: Suzie Q <suzie@shopping.example.net>
Subject: Is dinner ready?
Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)
Message-ID: <20030712040037.46341.5F8J@football.example.com>

Hi.

We lost the game.  Are you hungry yet?

Joe.
""".replace(b"\n", b"\r\n")
RFC8463_NAME = "brisbane._domainkey.football.example.com"


def test_rfc8463_example_verifies():
    [result] = dkimcheck.verifyAll(RFC8463_MESSAGE, {RFC8463_NAME: [RFC8463_KEY]})
    assert (result.result, result.domain, result.selector, result.algorithm) == \
        ("pass", "football.example.com", "brisbane", "ed25519-sha256")


def test_rfc8463_example_altered_fails():
    body = RFC8463_MESSAGE.replace(b"hungry", b"thirsty")
    assert dkimcheck.verifyAll(body, {RFC8463_NAME: [RFC8463_KEY]})[0].result == "fail"
    subject = RFC8463_MESSAGE.replace(b"Is dinner ready?", b"Is lunch ready?")
    assert dkimcheck.verifyAll(subject, {RFC8463_NAME: [RFC8463_KEY]})[0].result == "fail"


def test_rfc6376_relaxed_canonicalization_example():
    """RFC 6376 s3.4.6, the canonicalization we sign with (relaxed/relaxed)."""
    headers = [(b"A", b" X\r\n"), (b"B ", b" Y\t\r\n\tZ  \r\n")]
    assert [k + b":" + v for k, v in canon.Relaxed.canonicalize_headers(headers)] == [b"a:X\r\n", b"b:Y Z\r\n"]
    body = b" C \r\nD \t E\r\n\r\n\r\n"
    assert canon.Relaxed.canonicalize_body(body) == b" C\r\nD E\r\n"


@pytest.fixture(scope="module")
def keyring(tmp_path_factory):
    data = str(tmp_path_factory.mktemp("data"))
    keys.make(data, "a.test", "rsa1", "rsa")
    keys.make(data, "a.test", "ed1", "ed25519")
    found = keys.loadAll(data)["a.test"]
    answers = {f"{k.selector}._domainkey.a.test": [keys.txtValue(k.algorithm, keys.publicKey(k.algorithm, k.private)).encode()]
               for k in found}
    return data, found, answers


MESSAGE = (b"From: Alice <alice@a.test>\r\nTo: bob@b.test\r\nSubject: lunch\r\n"
           b"Date: Thu, 03 Dec 2026 10:00:00 +0000\r\nMessage-ID: <1@a.test>\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\n\r\nAt noon?\r\n")


def test_keys_are_private_and_match_their_record(keyring):
    data, found, answers = keyring
    assert [k.algorithm for k in found] == ["rsa", "ed25519"]  # RSA signs first
    for key in found:
        path = keys.keyPath(data, "a.test", key.selector, key.algorithm)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    rsa = found[0]
    der = keys.publicKey("rsa", rsa.private)
    from cryptography.hazmat.primitives import serialization
    assert serialization.load_der_public_key(der).key_size == 2048
    ed = keys.publicKey("ed25519", found[1].private)
    assert len(ed) == 32  # RFC 8463 s4.2: the raw key, not SubjectPublicKeyInfo
    with pytest.raises(FileExistsError):
        keys.make(data, "a.test", "rsa1", "rsa")


def test_sign_then_verify_rsa_and_ed25519(keyring):
    _, found, answers = keyring
    fields = dkimsign.sign(MESSAGE, found)
    assert fields.count(b"DKIM-Signature:") == 2
    assert b"a=rsa-sha256" in fields and b"a=ed25519-sha256" in fields
    assert fields.count(b"c=relaxed/relaxed") == 2
    results = dkimcheck.verifyAll(fields + MESSAGE, answers)
    assert [(r.result, r.algorithm) for r in results] == [("pass", "rsa-sha256"), ("pass", "ed25519-sha256")]


def test_signed_and_oversigned_fields(keyring):
    _, found, answers = keyring
    fields = dkimsign.sign(MESSAGE, found[:1])
    h = _h(fields)
    for name in (b"from", b"to", b"subject", b"date", b"message-id", b"mime-version", b"content-type"):
        assert h.count(name) == 2, name  # present once, signed once more (oversigned)
    assert h.count(b"reply-to") == 1 and h.count(b"cc") == 1  # absent, signed so none can be added
    assert b"received" not in h and b"return-path" not in h
    signed = fields + MESSAGE
    for added in (b"From: Mallory <m@evil.test>\r\n", b"Subject: urgent\r\n", b"Reply-To: m@evil.test\r\n"):
        forged = signed.replace(b"Message-ID:", added + b"Message-ID:")
        assert dkimcheck.verifyAll(forged, answers)[0].result == "fail", added
    # a field not signed may be added (a Received on the way) without breaking it
    relayed = b"Received: from x by y; Thu, 03 Dec 2026 10:00:01 +0000\r\n" + signed
    assert dkimcheck.verifyAll(relayed, answers)[0].result == "pass"


def _h(fields):
    from dkim.util import parse_tag_value
    return [x.strip() for x in parse_tag_value(fields.partition(b":")[2].replace(b"\r\n", b""))[b"h"].split(b":")]


def test_relaxed_survives_rewrapping(keyring):
    """relaxed/relaxed: whitespace changes on the way (refolding, trailing blanks) keep it valid."""
    _, found, answers = keyring
    signed = dkimsign.sign(MESSAGE, found) + MESSAGE
    refolded = signed.replace(b"Subject: lunch", b"Subject:   lunch").replace(b"At noon?\r\n", b"At  noon? \r\n")
    assert [r.result for r in dkimcheck.verifyAll(refolded, answers)] == ["pass", "pass"]


def test_dns_answers_map_to_results(keyring):
    _, found, answers = keyring
    signed = dkimsign.sign(MESSAGE, found[:1]) + MESSAGE
    name = f"{found[0].selector}._domainkey.a.test"
    assert dkimcheck.verifyAll(signed, {name: DNSTemporary("timeout")})[0].result == "temperror"
    assert dkimcheck.verifyAll(signed, {})[0].result == "temperror"  # never fetched: the time ran out
    assert dkimcheck.verifyAll(signed, {name: []})[0].result == "permerror"  # no key (RFC 6376 s6.1.2)
    revoked = [b"v=DKIM1; k=rsa; p="]
    assert dkimcheck.verifyAll(signed, {name: revoked})[0].result in ("permerror", "fail")
    garbage = [b"v=DKIM1; k=rsa; p=" + base64.b64encode(b"not a key")]
    assert dkimcheck.verifyAll(signed, {name: garbage})[0].result in ("permerror", "fail")


def test_rsa_sha1_is_not_accepted(keyring):
    """RFC 8301 s3.1: verifiers MUST NOT consider rsa-sha1 signatures valid."""
    import dkim

    _, found, answers = keyring
    rsa = found[0]
    sha1 = dkim.DKIM(MESSAGE).sign(rsa.selector.encode(), b"a.test", rsa.private, signature_algorithm=b"rsa-sha1",
                                   canonicalize=(b"relaxed", b"relaxed"), include_headers=[b"from"])
    [result] = dkimcheck.verifyAll(sha1 + MESSAGE, answers)
    assert (result.result, result.algorithm) == ("permerror", "rsa-sha1")


def test_unsigned_and_damaged_signatures():
    assert dkimcheck.verifyAll(MESSAGE, {}) == []
    damaged = b"DKIM-Signature: v=1; a=rsa-sha256; this is not a tag list\r\n" + MESSAGE
    [result] = dkimcheck.verifyAll(damaged, {})
    assert result.result == "permerror"


def test_openssl_rsa_signature_is_dkimpys_own(keyring, monkeypatch):
    """Signing goes through OpenSSL for speed; PKCS#1 v1.5 is deterministic, so
    the field must be byte for byte what dkimpy's own arithmetic gives."""
    import dkim

    _, found, _ = keyring
    rsa = found[:1]
    assert dkim.RSASSA_PKCS1_v1_5_sign is dkimfast._opensslSign
    monkeypatch.setattr("time.time", lambda: 1796290000)  # the t= tag
    fast = dkimsign.sign(MESSAGE, rsa)
    monkeypatch.setattr(dkim, "RSASSA_PKCS1_v1_5_sign", dkimfast._pythonSign)
    assert dkimsign.sign(MESSAGE, rsa) == fast


def test_openssl_rsa_verification_agrees_with_dkimpys_own(keyring, monkeypatch):
    import dkim

    _, found, answers = keyring
    signed = dkimsign.sign(MESSAGE, found[:1]) + MESSAGE
    altered = signed.replace(b"At noon?", b"At one?")
    badsig = signed.replace(b"; b=", b"; b=AAAA", 1)
    assert dkim.RSASSA_PKCS1_v1_5_verify is dkimfast._opensslVerify
    fast = [dkimcheck.verifyAll(m, answers)[0].result for m in (signed, altered, badsig)]
    monkeypatch.setattr(dkim, "RSASSA_PKCS1_v1_5_verify", dkimfast._pythonVerify)
    slow = [dkimcheck.verifyAll(m, answers)[0].result for m in (signed, altered, badsig)]
    assert fast == slow and fast[0] == "pass" and fast[1] == "fail"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200).map(lambda b: b.replace(b"x", b" ").replace(b"y", b"\t").replace(b"z", b"\r\n")))
def test_faster_canonicalization_is_dkimpys(data):
    assert dkimfast.compressWhitespace(data) == dkimfast._pythonCompress(data)
    assert dkimfast.unfoldHeaderValue(data) == dkimfast._pythonUnfold(data)
    assert dkimfast.stripTrailingWhitespace(data) == dkimfast._pythonStripTrailing(data)


def _parsed(parse, message):
    try:
        return parse(message)
    except Exception as e:
        return (type(e), str(e))


MESSAGE_BYTES = st.lists(st.sampled_from([b"From: a", b"Subject:x", b" folded", b"\tfolded", b"From x", b"bad line",
                                          b"\r\n", b"\n", b"\r", b"body", b" ", b"", b":", b"X-A: \xff"]),
                         max_size=30).map(b"".join)


@settings(max_examples=1000, deadline=None)
@given(MESSAGE_BYTES)
def test_faster_message_parse_is_dkimpys(message):
    assert _parsed(dkimfast.rfc822Parse, message) == _parsed(dkimfast._pythonParse, message)


def test_faster_message_parse_on_a_real_message():
    for message in (MESSAGE, MESSAGE.replace(b"\r\n", b"\n"), MESSAGE + b"\r\n\r\n", MESSAGE.split(b"\r\n\r\n")[0]):
        assert dkimfast.rfc822Parse(message) == dkimfast._pythonParse(message)


FIELD_BYTES = st.lists(st.sampled_from([b"b", b"=", b";", b" ", b"\t", b"\r", b"\n", b"\r\n", b"A", b"z", b"9", b"+",
                                        b"/", b"-", b".", b"\x0b", b"bh=", b" b=", b"; b="]), max_size=60).map(b"".join)


@settings(max_examples=1000, deadline=None)
@given(FIELD_BYTES)
def test_faster_b_tag_removal_is_dkimpys(field):
    assert dkimfast.BTAG.sub(b"\\1", field) == dkimfast._pythonBtag.sub(b"\\1", field)


def test_faster_b_tag_removal_on_real_signatures(keyring):
    _, found, _ = keyring
    for key in found:
        field = dkimsign.sign(MESSAGE, [key])
        value = field.partition(b":")[2]
        for variant in (value, value.replace(b"\r\n\t", b"\n "), value.rstrip(b"\r\n"), value + b" \r\n"):
            removed = dkimfast.BTAG.sub(b"\\1", variant)
            assert removed == dkimfast._pythonBtag.sub(b"\\1", variant)
            assert b"b=;" in removed.replace(b" ", b"") or removed.rstrip().endswith(b"b=")

"""
mailnet.mailauth.dkimown, our own code for DKIM's common cases, against
dkimpy: byte-identical signatures, the same verdicts (a pass only where
dkimpy passes), the RFC examples, and that the common cases really do not
go through dkimpy.
"""

from __future__ import annotations

import dkim
import pytest
from hypothesis import given, settings, strategies as st

from mailnet.mailauth import dkimcheck, dkimown, dkimsign, keys

from tests.mailauth.test_dkim import MESSAGE, RFC8463_KEY, RFC8463_MESSAGE, RFC8463_NAME


@pytest.fixture(scope="module")
def keyring(tmp_path_factory):
    data = str(tmp_path_factory.mktemp("data"))
    keys.make(data, "a.test", "rsa1", "rsa")
    keys.make(data, "a.test", "ed1", "ed25519")
    found = keys.loadAll(data)["a.test"]
    answers = {f"{k.selector}._domainkey.a.test": [keys.txtValue(k.algorithm, keys.publicKey(k.algorithm, k.private)).encode()]
               for k in found}
    return found, answers


class NoDkimpy:
    """Stands in for dkim.DKIM: the fast paths must not need it."""

    def __init__(self, *args, **kwargs):
        raise AssertionError("dkimpy's DKIM was used")


VARIANTS = [
    MESSAGE,
    MESSAGE.replace(b"Subject: lunch", b"Subject:  lunch \t at\r\n\t noon  "),  # folded, odd whitespace
    MESSAGE.replace(b"To: bob@b.test\r\n", b"To: bob@b.test\r\nTo: carol@b.test\r\nReceived: x\r\n"),  # repeated
    MESSAGE.replace(b"At noon?\r\n", b"At  noon? \t\r\n\r\n\r\n"),  # body whitespace, blank lines at the end
    MESSAGE.replace(b"At noon?\r\n", b""),  # empty body
    MESSAGE.replace(b"At noon?\r\n", b"line\nbare LF\r\n"),
    MESSAGE.replace(b"From: Alice <alice@a.test>\r\n", b"FROM: Alice\r\n <alice@a.test>\r\n"),
]


@pytest.mark.parametrize("variant", range(len(VARIANTS)))
@pytest.mark.parametrize("which", ["rsa", "ed25519", "both"])
def test_own_signature_is_byte_for_byte_dkimpys(keyring, monkeypatch, variant, which):
    found, answers = keyring
    chosen = {"rsa": found[:1], "ed25519": found[1:], "both": found}[which]
    message = VARIANTS[variant]
    monkeypatch.setattr("time.time", lambda: 1796290000)  # the t= tag
    include = dkimsign.signedFields(message.split(b"\r\n\r\n", 1)[0] + b"\r\n")
    own = dkimown.sign(message, chosen, include)
    assert own is not None
    assert own == dkimsign.dkimpySign(message, chosen, include)
    assert dkimsign.sign(message, chosen) == own


def test_signing_and_verifying_our_mail_does_not_use_dkimpy(keyring, monkeypatch):
    found, answers = keyring
    monkeypatch.setattr(dkim, "DKIM", NoDkimpy)
    for message in VARIANTS:
        signed = dkimsign.sign(message, found) + message
        assert [r.result for r in dkimcheck.verifyAll(signed, answers)] == ["pass", "pass"]


def test_rfc8463_example_passes_without_dkimpy(monkeypatch):
    monkeypatch.setattr(dkim, "DKIM", NoDkimpy)
    [result] = dkimcheck.verifyAll(RFC8463_MESSAGE, {RFC8463_NAME: [RFC8463_KEY]})
    assert result.result == "pass"


def test_rfc6376_relaxed_example():
    """RFC 6376 s3.4.6."""
    assert [b":".join(dkimown.relaxedField(n, v)) for n, v in [(b"A", b" X\r\n"), (b"B ", b" Y\t\r\n\tZ  \r\n")]] == \
        [b"a:X\r\n", b"b:Y Z\r\n"]
    assert dkimown.relaxedBody(b" C \r\nD \t E\r\n\r\n\r\n") == b" C\r\nD E\r\n"


def test_failures_are_left_to_dkimpy(keyring):
    found, answers = keyring
    signed = dkimsign.sign(MESSAGE, found[:1]) + MESSAGE
    record = answers["rsa1._domainkey.a.test"][0]
    assert dkimown.verifies(dkimown.Parsed(signed), 0, record)
    for bad in (signed.replace(b"At noon?", b"At one?"), signed.replace(b"lunch", b"dinner"),
                b"From: Mallory <m@a.test>\r\n" + signed, signed.replace(b"c=relaxed/relaxed", b"c=relaxed/bogus")):
        assert not dkimown.verifies(dkimown.Parsed(bad), 0, record)
        assert dkimcheck.verifyAll(bad, answers)[0].result in ("fail", "permerror")
    assert not dkimown.verifies(dkimown.Parsed(signed), 0, record, minkey=4096)  # dkimpy says why
    assert dkimcheck.verifyAll(signed, answers, minkey=4096)[0].result == "permerror"


def test_h_list_selects_like_dkimpy():
    fields = [(b"From", b"1"), (b"To", b"2"), (b"from", b"3"), (b"Subject", b"4")]
    for names in ([b"from", b"from", b"from"], [b"to", b"from", b"subject", b"to"], [b"x", b"x"], []):
        assert dkimown.selectFields(fields, names) == dkim.select_headers(fields, names)


# Alterations a message meets on the way, and forgeries: dkimown must pass
# exactly what dkimpy passes.
EDITS = st.lists(st.tuples(st.sampled_from([
    (b"At noon?", b"At  noon? "), (b"At noon?", b"At one?"), (b"Subject: lunch", b"Subject:\r\n lunch"),
    (b"Subject: lunch", b"Subject: Lunch"), (b"\r\n\r\nAt", b"\r\nX-Added: 1\r\n\r\nAt"),
    (b"\r\n\r\nAt", b"\r\nFrom: m@a.test\r\n\r\nAt"), (b"To: bob", b"To:  bob"), (b"c=relaxed/relaxed", b"c=simple"),
    (b"c=relaxed/relaxed", b"c=relaxed/simple"), (b"a=rsa-sha256", b"a=rsa-sha1"), (b"; t=", b"; l=3; t="),
    (b"h=from", b"h=to"), (b"s=rsa1", b"s=ed1"), (b"; b=", b"; b=AB"), (b"At noon?\r\n", b"At noon?\r\n\r\n"),
    (b"bh=", b"bh=A"), (b"; d=a.test", b"; d=b.test"), (b"i=@a.test", b"i=@x.a.test"), (b"i=@a.test", b"i=@b.test"),
]), st.booleans()), max_size=4)


def _dkimpy(message, idx, record):
    try:
        return dkim.DKIM(message).verify(idx, dnsfunc=lambda _name, timeout=5: record)
    except Exception:
        return False


@settings(max_examples=300, deadline=None)
@given(EDITS, st.sampled_from(["rsa", "ed25519", "both"]))
def test_verdicts_are_dkimpys(keyring, edits, which):
    found, answers = keyring
    chosen = {"rsa": found[:1], "ed25519": found[1:], "both": found}[which]
    message = dkimsign.sign(MESSAGE, chosen) + MESSAGE
    for (old, new), everywhere in edits:
        message = message.replace(old, new) if everywhere else message.replace(old, new, 1)
    parsed = dkimown.Parsed(message)
    for idx, key in enumerate(chosen):
        for name, [record] in answers.items():
            own = dkimown.verifies(parsed, idx, record)
            assert own == _dkimpy(message, idx, record)
            if not edits and name.startswith(key.selector + "."):
                assert own  # the unaltered message, its own key

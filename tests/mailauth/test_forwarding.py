"""
Forwarding, in process: the SRS rules of the queue and of RCPT
(mailnet/mailauth/forwarding.py) and the ARC seal (mailnet/mailauth/arcseal.py),
verified with dkimpy's arc_verify against a DNS stub.
"""

from __future__ import annotations

import os
import stat

import dkim
import pytest
from twisted.internet.task import Clock

from mailnet import config as configmod
from mailnet.mail import srs
from mailnet.mailauth import arcseal, keys
from mailnet.mailauth.dnsquery import DNSTemporary
from mailnet.mailauth.forwarding import SRSRewriter

NOW = 1_796_000_000.0


def _config(tmp_path, **srsSection):
    return configmod.fromDict({
        "server": {"hostname": "mx.fwd.test", "data_dir": str(tmp_path)},
        "domains": {"local": ["fwd.test", "other.test"]},
        "srs": srsSection,
    })


def _rewriter(tmp_path, **srsSection):
    clock = Clock()
    clock.advance(NOW)
    return SRSRewriter(_config(tmp_path, **srsSection), clock)


def test_relay_sender_rules(tmp_path):
    r = _rewriter(tmp_path)
    forwarded = r.relaySender("alice@orig.test", None)
    assert forwarded.startswith("SRS0=") and forwarded.endswith("=orig.test=alice@fwd.test")
    assert r.relaySender("", None) == ""  # a bounce stays a bounce
    assert r.relaySender("bob@fwd.test", None) == "bob@fwd.test"  # our own senders
    assert r.relaySender("bob@sub.other.test", None) == "bob@sub.other.test"
    assert r.relaySender(forwarded, None) == forwarded  # already ours
    assert r.relaySender("alice@orig.test", "bob@fwd.test") == "alice@orig.test"  # auto: a user's own mail
    on = _rewriter(tmp_path, enabled="on")
    assert on.relaySender("alice@orig.test", "bob@fwd.test").startswith("SRS0=")
    off = _rewriter(tmp_path, enabled="off")
    assert off.relaySender("alice@orig.test", None) == "alice@orig.test"
    again = srs.forward("SRS0=abcd=JX=orig.test=alice@first.test", "fwd.test", r.secrets()[0], NOW)
    assert r.relaySender("SRS0=abcd=JX=orig.test=alice@first.test", None) == again  # SRS1


def test_secret_made_once_0600(tmp_path):
    r = _rewriter(tmp_path)
    path = os.path.join(str(tmp_path), "srs", "secret")
    assert r.secrets() == [] and not os.path.exists(path)  # nothing forwarded yet: no file
    first = r.relaySender("alice@orig.test", None)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    with open(path, "rb") as f:
        secret = f.read()
    assert len(secret.strip()) >= 40
    # a restart reads it, not makes another
    assert _rewriter(tmp_path).relaySender("alice@orig.test", None) == first
    with open(path, "rb") as f:
        assert f.read() == secret


def test_srs_domain_setting(tmp_path):
    r = _rewriter(tmp_path, domain="SRS.Fwd.Test.")
    assert r.relaySender("alice@orig.test", None).endswith("@srs.fwd.test")
    with pytest.raises(configmod.ConfigError, match="max_age"):
        _config(tmp_path, max_age=1001)
    with pytest.raises(configmod.ConfigError, match="enabled"):
        _config(tmp_path, enabled="yes")


def test_inbound(tmp_path):
    r = _rewriter(tmp_path)
    address = r.relaySender("alice@orig.test", None)
    assert r.isOurs(address) and r.isOurs(address.lower())
    assert not r.isOurs("alice@fwd.test") and not r.isOurs(address.replace("@fwd.test", "@else.test"))
    assert r.inbound(address, "") == ("alice@orig.test", None)
    original, refusal = r.inbound(address, "mallory@evil.test")
    assert original is None and refusal.code == 550 and "bounces" in str(refusal)
    _, refusal = r.inbound(address.replace("=alice@", "=bob@"), "")
    assert refusal.code == 550 and "bad SRS hash" in str(refusal)
    r.clock.advance(22 * 86400)
    _, refusal = r.inbound(address, "")
    assert refusal.code == 550 and "expired" in str(refusal)
    assert not _rewriter(tmp_path, enabled="off").isOurs(address)


def test_inbound_without_secret_refuses(tmp_path):
    r = _rewriter(tmp_path)
    _, refusal = r.inbound("SRS0=abcd=JX=orig.test=alice@fwd.test", "")
    assert refusal.code == 550


# ARC

_MESSAGE = (b"From: Alice <alice@orig.test>\r\nTo: list@fwd.test\r\nSubject: hello\r\n"
            b"Date: Fri, 04 Dec 2026 05:00:00 +0000\r\nMessage-ID: <m1@orig.test>\r\n"
            b"DKIM-Signature: v=1; a=rsa-sha256; d=orig.test; s=x; h=from; bh=AAAA; b=BBBB\r\n\r\nbody\r\n")


@pytest.fixture(scope="module")
def sealKey():
    private, public = keys.generate("rsa")
    key = keys.SigningKey("fwd.test", "rsa1", "rsa", private)
    record = keys.txtValue("rsa", public).encode()
    return key, record


def _ar(authserv, extra=b""):
    return b"Authentication-Results: " + authserv + b";\r\n\tspf=pass smtp.mailfrom=orig.test" + extra + b"\r\n"


def _dns(records):
    def dnsfunc(name, timeout=5):
        return records.get(name.decode().rstrip("."))
    return dnsfunc


def test_seal_verifies_and_carries_our_results(sealKey):
    key, record = sealKey
    header = arcseal.withArcResult(_ar(b"mx.fwd.test"), arcseal.chainResult(_MESSAGE, {}))
    assert header.endswith(b";\r\n\tarc=none\r\n")
    sealed = arcseal.seal(header + _MESSAGE, key, "mx.fwd.test", timestamp=int(NOW)) + header + _MESSAGE
    assert sealed.startswith(b"ARC-Seal: i=1; cv=none; a=rsa-sha256; d=fwd.test; s=rsa1;")
    cv, results, reason = dkim.arc_verify(sealed, dnsfunc=_dns({"rsa1._domainkey.fwd.test": record}))
    assert cv == b"pass", reason
    assert b"spf=pass" in results[0]["aar-value"]
    assert b"h=from : from :" in sealed  # a message with a DKIM-Signature is sealed (dkimpy refuses to sign that field)
    # a changed body breaks it; a wrong key too
    assert dkim.arc_verify(sealed.replace(b"body", b"bodz"), dnsfunc=_dns({"rsa1._domainkey.fwd.test": record}))[0] \
        == b"fail"
    assert arcseal.keyNames(sealed.split(b"\r\n\r\n")[0] + b"\r\n") == ["rsa1._domainkey.fwd.test"]


def test_second_hop_sees_the_chain(sealKey):
    key, record = sealKey
    header = arcseal.withArcResult(_ar(b"mx.fwd.test"), "none")
    first = arcseal.seal(header + _MESSAGE, key, "mx.fwd.test", timestamp=int(NOW)) + header + _MESSAGE
    answers = {"rsa1._domainkey.fwd.test": [record]}
    assert arcseal.chainResult(first, answers) == "pass"
    assert arcseal.chainResult(first, {"rsa1._domainkey.fwd.test": DNSTemporary("x")}) == "fail"
    assert arcseal.chainResult(first.replace(b"body", b"bodz"), answers) == "fail"
    header2 = arcseal.withArcResult(_ar(b"mx.next.test"), "pass")
    second = arcseal.seal(header2 + first, key, "mx.next.test", timestamp=int(NOW)) + header2 + first
    assert second.startswith(b"ARC-Seal: i=2; cv=pass;")
    assert dkim.arc_verify(second, dnsfunc=_dns({"rsa1._domainkey.fwd.test": record}))[0] == b"pass"


def test_seal_key_choice(tmp_path):
    ring = keys.KeyRing(str(tmp_path), Clock())
    assert arcseal.sealKey(ring, "mx.fwd.test", ["fwd.test"]) is None
    keys.make(str(tmp_path), "fwd.test", "ed1", "ed25519")
    ring = keys.KeyRing(str(tmp_path), Clock())
    assert arcseal.sealKey(ring, "mx.fwd.test", ["fwd.test"]) is None  # ARC is rsa-sha256 only
    keys.make(str(tmp_path), "other.test", "rsa1", "rsa")
    ring = keys.KeyRing(str(tmp_path), Clock())
    key = arcseal.sealKey(ring, "mx.fwd.test", ["fwd.test", "other.test"])
    assert (key.domain, key.algorithm) == ("other.test", "rsa")

"""
The inbound policy (``[mailauth]``), without a network: what a DMARC
result, a DNS failure or a local domain without login makes of a message.
"""

from __future__ import annotations

import types

import pytest

from mailnet.config import fromDict
from mailnet.mailauth.checks import JUNK, Checker
from mailnet.mailauth.dmarc import DMARCResult
from mailnet.mailauth.spfcheck import SPFResult


def checker(**mailauth):
    config = fromDict({"domains": {"local": ["b.test"]}, "server": {"hostname": "mx.b.test"},
                       "mailauth": dict({"inbound": True}, **mailauth)})
    return Checker(config, reactor=None, resolver=None, pool=None)


def verdict(c, result, policy):
    return c._policy(b"Authentication-Results: x\r\n", DMARCResult(result, "a.test", policy, "why"),
                     SPFResult("fail", "a.test"), [])


def test_dmarc_policies():
    c = checker()
    refused = verdict(c, "fail", "reject")
    assert (refused.reply.code, refused.reply.enhanced) == (550, "5.7.1")
    assert "DMARC policy of a.test" in refused.reply.text
    assert verdict(c, "fail", "quarantine").folder == JUNK and verdict(c, "fail", "quarantine").reply is None
    none = verdict(c, "fail", "none")
    assert none.reply is None and none.folder is None and none.header
    assert verdict(c, "pass", "reject").reply is None
    assert verdict(c, "temperror", "none").reply is None  # dns_failure = "accept"


@pytest.mark.parametrize("settings,result,policy,expect", [
    ({"dmarc_reject": "junk"}, "fail", "reject", "junk"),
    ({"dmarc_reject": "label"}, "fail", "reject", "label"),
    ({"dmarc_quarantine": "label"}, "fail", "quarantine", "label"),
    ({"dns_failure": "defer"}, "temperror", "none", "451"),
])
def test_policy_options(settings, result, policy, expect):
    v = verdict(checker(**settings), result, policy)
    if expect == "junk":
        assert v.folder == JUNK and v.reply is None
    elif expect == "label":
        assert v.folder is None and v.reply is None
    else:
        assert (v.reply.code, v.reply.enhanced) == (451, "4.7.0")


def envelope(sender, auth=None):
    return types.SimpleNamespace(sender=sender, auth=auth, helo="client.test", peer="192.0.2.1")


def test_local_domain_without_login():
    c = checker()
    assert c.localSpoof(envelope("bob@b.test"), b"From: x@a.test\r\n").code == 550
    assert c.localSpoof(envelope("x@a.test"), b"From: Bob <bob@B.TEST>\r\n").code == 550
    assert c.localSpoof(envelope("x@mail.b.test"), b"From: x@a.test\r\n").code == 550  # subdomains too
    assert c.localSpoof(envelope("x@a.test"), b"From: x@notb.test\r\n") is None
    assert c.localSpoof(envelope(""), b"From: x@a.test\r\n") is None  # bounces
    assert c.localSpoof(envelope("bob@b.test", auth="bob@b.test"), b"From: bob@b.test\r\n") is None
    assert checker(local_spoofing="label").localSpoof(envelope("bob@b.test"), b"") is None


# -- A sender seen lately: the check without Deferreds, the same verdict ------


class _Zone:
    """twisted.names-shaped TXT answers from a dictionary, at once."""

    def __init__(self, zone):
        self.zone = zone

    def lookupText(self, name, timeout=None):
        from twisted.internet import defer
        from twisted.names import dns, error

        texts = self.zone.get(name.lower())
        if texts is None:
            return defer.fail(error.DomainError(name))
        return defer.succeed(([dns.RRHeader(name, dns.TXT, ttl=300, payload=dns.Record_TXT(t, ttl=300))
                               for t in texts], [], []))


def test_a_sender_seen_lately_gets_the_same_verdict_without_the_general_path(tmp_path):
    from twisted.internet import task

    from mailnet.mailauth import keys
    from mailnet.mailauth.dkimsign import sign
    from mailnet.mailauth.dnsquery import CachingResolver

    keys.make(str(tmp_path), "a.test", "rsa1", "rsa")
    keys.make(str(tmp_path), "a.test", "ed1", "ed25519")
    found = keys.loadAll(str(tmp_path))["a.test"]
    zone = {f"{k.selector}._domainkey.a.test": [keys.txtValue(k.algorithm, keys.publicKey(k.algorithm, k.private)).encode()]
            for k in found}
    zone["_dmarc.a.test"] = [b"v=DMARC1; p=reject"]
    zone["_dmarc.q.test"] = [b"v=DMARC1; p=quarantine"]
    clock = task.Clock()
    clock.advance(1000)
    c = checker()
    c.reactor, c.resolver = clock, CachingResolver(_Zone(zone), clock)
    for name in list(zone) + ["_dmarc.none.test"]:
        c.resolver.lookupText(name).addErrback(lambda f: None)  # cached, as after a first message
    plain = (b"From: Alice <alice@a.test>\r\nTo: bob@b.test\r\nSubject: hi\r\n"
             b"Date: Thu, 03 Dec 2026 10:00:00 +0000\r\nMessage-ID: <1@a.test>\r\n\r\nHello.\r\n")
    signed = sign(plain, found) + plain
    messages = [signed, signed.replace(b"Hello.", b"Hullo."),  # dkim=fail: the SPF fail then decides DMARC
                plain.replace(b"a.test>", b"q.test>"), plain.replace(b"a.test>", b"none.test>"),
                b"From: a@a.test, b@q.test\r\n\r\nx\r\n", b"Subject: no From\r\n\r\nx\r\n"]
    summaries = []
    for spf in ("pass", "fail"):
        sender = "alice@a.test"
        c.spfResults[("192.0.2.1", sender, "client.test")] = (2000, (SPFResult(spf, "a.test", "why"),
                                                                       SPFResult("none", "client.test")))
        for message in messages:
            header = message.split(b"\r\n\r\n", 1)[0] + b"\r\n"
            general = []
            c._check(envelope(sender), header, lambda: message, False, True, *c._prepare(header, False)) \
                .addCallback(general.append)
            taken = []
            real, c._check = c._check, None  # the general path is not taken
            try:
                c.check(envelope(sender), header, lambda: message, inline=True).addCallback(taken.append)
            finally:
                c._check = real
            assert taken == general and general[0].header.startswith(b"Authentication-Results: mx.b.test;")
            summaries.append((general[0].summary, general[0].folder, general[0].reply and general[0].reply.code))
    assert summaries[:6] == [
        ("spf=pass dkim=pass,pass dmarc=pass", None, None), ("spf=pass dkim=fail,fail dmarc=pass", None, None),
        ("spf=pass dkim=none dmarc=fail", "Junk", None), ("spf=pass dkim=none dmarc=none", None, None),
        ("spf=pass dkim=none dmarc=permerror", None, None), ("spf=pass dkim=none dmarc=none", None, None)]
    assert summaries[7] == ("spf=fail dkim=fail,fail dmarc=fail", None, 550)
    refused = []
    c.check(envelope("alice@a.test"), signed.replace(b"Hello.", b"Hullo.").split(b"\r\n\r\n")[0] + b"\r\n",
            lambda: signed.replace(b"Hello.", b"Hullo."), inline=True).addCallback(refused.append)
    assert refused[0].reply.code == 550 and b"dkim=fail" in refused[0].header


def test_the_verdict_says_whether_spf_verified_the_sender():
    """SPF pass for MAIL FROM marks the sender verified (SMTP then honours its NOTIFY=SUCCESS)."""
    c = checker()
    for spf, verified in (("pass", True), ("fail", False), ("none", False), ("softfail", False)):
        v = c._policy(b"", None, SPFResult(spf, "a.test"), [])
        assert v.senderVerified is verified, spf

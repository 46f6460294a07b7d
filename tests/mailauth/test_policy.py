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

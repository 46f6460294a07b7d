"""
DMARC pct= (RFC 7489 s6.3, s6.6.4): the policy applies to pct percent of
the failing messages; a failing message not sampled gets the next weaker
policy (reject -> quarantine, quarantine -> none), and the field says so.
"""

from __future__ import annotations

import authres
import pytest

from mailnet.mailauth import dmarc, results
from mailnet.mailauth.checks import JUNK
from mailnet.mailauth.spfcheck import SPFResult
from tests.mailauth.test_policy import checker

FAIL = SPFResult("fail", "a.test")


def failing(record, sample=dmarc.sampled, isSub=False, domain="a.test"):
    return dmarc.evaluate(domain, dmarc.parseRecord(record), isSub, FAIL, [], sample=sample)


def test_pct_0_never_applies_the_policy():
    for _ in range(300):  # the real draw, many times
        r = failing("v=DMARC1; p=reject; pct=0")
        assert (r.result, r.policy, r.requested, r.pct) == ("fail", "quarantine", "reject", 0)


def test_pct_100_always_applies_it_and_draws_nothing():
    def never(pct):
        raise AssertionError("pct=100 needs no draw")
    for record in ("v=DMARC1; p=reject; pct=100", "v=DMARC1; p=reject"):  # 100 is the default
        r = failing(record, sample=never)
        assert (r.policy, r.requested) == ("reject", "")


@pytest.mark.parametrize("record,isSub,sampled,policy", [
    ("v=DMARC1; p=reject; pct=50", False, True, "reject"),
    ("v=DMARC1; p=reject; pct=50", False, False, "quarantine"),  # s6.6.4: as though quarantine applied
    ("v=DMARC1; p=quarantine; pct=50", False, True, "quarantine"),
    ("v=DMARC1; p=quarantine; pct=50", False, False, "none"),  # s6.6.4: local classification as normal
    ("v=DMARC1; p=none; pct=50", False, False, "none"),
    ("v=DMARC1; p=none; sp=reject; pct=10", True, False, "quarantine"),  # sp= for a subdomain, same rule
])
def test_the_next_weaker_policy(record, isSub, sampled, policy):
    asked = []
    r = failing(record, sample=lambda pct: asked.append(pct) or sampled, isSub=isSub)
    assert r.policy == policy
    assert asked in ([], [int(record.rpartition("pct=")[2])])


def test_the_draw_follows_pct():
    drawn = [dmarc.sampled(30) for _ in range(4000)]
    assert 0.25 < sum(drawn) / len(drawn) < 0.35
    assert not any(dmarc.sampled(0) for _ in range(1000)) and all(dmarc.sampled(100) for _ in range(1000))


def test_a_pass_is_not_sampled():
    r = dmarc.evaluate("a.test", dmarc.parseRecord("v=DMARC1; p=reject; pct=0"), False,
                       SPFResult("pass", "a.test"), [], sample=lambda pct: False)
    assert (r.result, r.policy, r.requested) == ("pass", "reject", "")


def test_the_field_and_the_verdict():
    c = checker()
    c.sample = lambda pct: False
    out = c._dmarc("a.test", {"_dmarc.a.test": [b"v=DMARC1; p=reject; pct=20"]}, ["_dmarc.a.test"], FAIL, [])[0]
    field = results.header("mx.b.test", FAIL, None, [], out, "192.0.2.1").decode().replace("\r\n\t", " ")
    assert "dmarc=fail (p=reject dis=quarantine pct=20 not sampled)" in field, field
    assert "policy.dmarc=quarantine" in field, field
    parsed = authres.AuthenticationResultsHeader.parse(field.strip())
    assert [r.method for r in parsed.results] == ["spf", "dkim", "dmarc"]
    verdict = c._policy(field.encode(), out, FAIL, [])
    assert verdict.reply is None and verdict.folder == JUNK  # quarantine, not a refusal
    assert "p=reject pct=20 not sampled: quarantine" in verdict.summary
    c.sample = lambda pct: True
    out = c._dmarc("a.test", {"_dmarc.a.test": [b"v=DMARC1; p=reject; pct=20"]}, ["_dmarc.a.test"], FAIL, [])[0]
    assert c._policy(b"", out, FAIL, []).reply.code == 550
    assert "not sampled" not in results.header("mx.b.test", FAIL, None, [], out).decode()

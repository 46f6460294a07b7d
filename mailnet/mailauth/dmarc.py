"""
DMARC (RFC 7489): the policy record, identifier alignment and the result.

Pure apart from the Public Suffix List (``publicsuffixlist``, which ships
the list in the package: nothing is fetched at run time) that gives the
organizational domain (RFC 7489 s3.2).
"""

from __future__ import annotations

import dataclasses
import functools
import secrets
import threading

_psl = None
# The list takes about a second to parse.  The server starts parsing it in a
# thread; a first message checked meanwhile waits for that parse rather than
# parsing it a second time on the reactor thread (which it did, stalling the
# reactor for that second).
_pslLock = threading.Lock()


@functools.lru_cache(maxsize=4096)
def orgDomain(domain: str) -> str:
    """RFC 7489 s3.2: the organizational domain (public suffix + one label)."""
    global _psl
    if _psl is None:
        with _pslLock:
            if _psl is None:
                from publicsuffixlist import PublicSuffixList

                _psl = PublicSuffixList()
    domain = domain.lower().rstrip(".")
    return _psl.privatesuffix(domain) or domain


@dataclasses.dataclass
class Policy:
    p: str = "none"
    sp: str | None = None
    adkim: str = "r"
    aspf: str = "r"
    pct: int = 100
    rua: str = ""  # s6.3: where aggregate reports go (the raw tag value; :mod:`.dmarcrpt` parses it)
    fo: str = "0"


def parseRecord(text: bytes | str) -> Policy | None:
    """
    A DMARC record (RFC 7489 s6.3), or None when it is not one (no
    ``v=DMARC1`` first, or no valid ``p``: s6.6.3 says to ignore it).
    """
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    tags = {}
    for i, part in enumerate(text.split(";")):
        key, sep, value = part.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not key:
            continue
        if i == 0 and (key != "v" or value != "DMARC1"):
            return None
        tags.setdefault(key, value)
    policy = Policy()
    p = tags.get("p", "").lower()
    if p not in ("none", "quarantine", "reject"):
        # s6.6.3: a record with an invalid p but a valid rua is p=none; without, ignored
        if "rua" in tags:
            p = "none"
        else:
            return None
    policy.p = p
    sp = tags.get("sp", "").lower()
    policy.sp = sp if sp in ("none", "quarantine", "reject") else None
    policy.adkim = "s" if tags.get("adkim", "r").lower() == "s" else "r"
    policy.aspf = "s" if tags.get("aspf", "r").lower() == "s" else "r"
    try:
        policy.pct = max(0, min(100, int(tags.get("pct", "100"))))
    except ValueError:
        policy.pct = 100
    policy.rua = tags.get("rua", "")
    policy.fo = tags.get("fo", "0") or "0"
    return policy


def recordFrom(records) -> Policy | None:
    """RFC 7489 s6.6.3: exactly one DMARC record, else none."""
    found = [p for p in (parseRecord(r) for r in records) if p is not None]
    return found[0] if len(found) == 1 else None


def aligned(a: str, b: str, mode: str) -> bool:
    """RFC 7489 s3.1: strict = same name, relaxed = same organizational domain."""
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    if mode == "s":
        return a == b
    return orgDomain(a) == orgDomain(b)


@dataclasses.dataclass
class DMARCResult:
    result: str  # pass, fail, none, temperror, permerror
    domain: str  # the RFC5322.From domain
    policy: str = "none"  # the policy that applies: none, quarantine, reject
    reason: str = ""
    requested: str = ""  # a failure not sampled (pct=): the policy the record asked for ("" = sampled)
    pct: int = 100  # the record's pct= (kept for the field's comment and the log line)


WEAKER = {"reject": "quarantine", "quarantine": "none"}  # RFC 7489 s6.6.4: the next weaker policy


def sampled(pct: int) -> bool:
    """
    Whether this failing message is one of the pct percent to which the
    policy applies (RFC 7489 s6.3 pct, s6.6.4): pct=100 always, pct=0
    never, otherwise a uniform draw.  ``secrets``, so a sender cannot
    predict which of its messages slip through.
    """
    return pct >= 100 or secrets.randbelow(100) < pct


def evaluate(fromDomain: str, policy: Policy | None, isSubdomain: bool, spf, dkims, temporary=False,
             sample=sampled) -> DMARCResult:
    """
    The DMARC result (RFC 7489 s4.2): pass when SPF passed for an aligned
    MAIL FROM domain or a DKIM signature of an aligned domain verified.

    @param policy: the record found (at the From domain or, ``isSubdomain``,
        at its organizational domain), or None.
    @param spf: the MAIL FROM :class:`~.spfcheck.SPFResult`.
    @param dkims: the :class:`~.dkimcheck.DKIMResult` list.
    @param temporary: the record lookup failed for now.
    @param sample: ``sample(pct)`` -> whether a failing message gets the
        policy (:func:`sampled`; tests give their own).
    """
    if temporary:
        return DMARCResult("temperror", fromDomain, "none", "DNS error fetching the DMARC record")
    if policy is None:
        return DMARCResult("none", fromDomain, "none", "no DMARC record")
    if spf is not None and spf.result == "pass" and aligned(spf.domain, fromDomain, policy.aspf):
        return DMARCResult("pass", fromDomain, policy.p, "SPF aligned")
    for d in dkims:
        if d.result == "pass" and aligned(d.domain, fromDomain, policy.adkim):
            return DMARCResult("pass", fromDomain, policy.p, "DKIM aligned")
    applied = (policy.sp or policy.p) if isSubdomain else policy.p
    reason = "no aligned SPF or DKIM pass"
    if applied in WEAKER and policy.pct < 100 and not sample(policy.pct):
        # RFC 7489 s6.6.4: a message not sampled gets the next weaker policy
        # (reject -> quarantine, quarantine -> none), not no policy at all
        return DMARCResult("fail", fromDomain, WEAKER[applied], reason, requested=applied, pct=policy.pct)
    return DMARCResult("fail", fromDomain, applied, reason, pct=policy.pct)

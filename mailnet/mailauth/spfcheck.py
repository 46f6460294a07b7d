"""
SPF (RFC 7208) with pyspf, the maintained Python implementation (its
RFC 7208 test suite passes; checkdmarc only checks records and
spf-engine is a policy daemon built on pyspf).

pyspf does blocking DNS through the module function ``spf.DNSLookup``;
:func:`checkSPF` runs in a worker thread and answers those lookups with the
function it is given (:class:`mailnet.mailauth.dnsquery.BlockingDNS` in the
server, a dictionary in tests), set per thread so that checks running at the
same time do not mix.  RFC 7208 s4.6.4's limits are pyspf's: 10 mechanisms
that need DNS, 2 void lookups, 10 MX and PTR names; ``querytime`` bounds a
whole check (s4.6.4: "at least 20 seconds"), after which the result is
``temperror``.
"""

from __future__ import annotations

import dataclasses
import threading

import spf

_local = threading.local()


def _dispatch(name, qtype, strict=True, timeout=None, *rest):
    lookup = getattr(_local, "lookup", None)
    if lookup is None:
        raise spf.TempError("DNS: no resolver for this check")
    return lookup(name, qtype, strict, timeout)


# One module-wide hook, answered per thread.
spf.DNSLookup = _dispatch

RESULTS = ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror")
_OLD = {"error": "temperror", "unknown": "permerror", "deny": "fail", "ambiguous": "permerror"}


@dataclasses.dataclass
class SPFResult:
    """One identity's result (RFC 7208 s2.6) and the domain it was for."""

    result: str
    domain: str
    explanation: str = ""


def checkSPF(ip: str, sender: str, helo: str, lookup, querytime: float = 20) -> SPFResult:
    """
    The SPF result for the MAIL FROM identity (blocking: call in a thread).

    RFC 7208 s2.4: a null reverse-path is checked as ``postmaster@<helo>``.
    A HELO that is not a domain name (an address literal) gives ``none``.
    """
    if not sender:
        sender = "postmaster@" + helo
    domain = sender.rpartition("@")[2]
    if not _isDomain(domain):
        return SPFResult("none", domain, "no domain to check")
    _local.lookup = lookup
    try:
        q = spf.query(i=ip, s=sender, h=helo, querytime=querytime, timeout=querytime)
        result, _code, explanation = q.check()
    except spf.TempError as e:
        result, explanation = "temperror", str(e)
    except spf.PermError as e:
        result, explanation = "permerror", str(e)
    finally:
        _local.lookup = None
    result = _OLD.get(result, result)
    if result not in RESULTS:
        result = "permerror"
    return SPFResult(result, domain, explanation or "")


def checkHELO(ip: str, helo: str, lookup, querytime: float = 20) -> SPFResult:
    """RFC 7208 s2.3: the HELO identity, checked as postmaster@<helo>."""
    if not _isDomain(helo):
        return SPFResult("none", helo, "HELO is not a domain name")
    return checkSPF(ip, "postmaster@" + helo, helo, lookup, querytime)


def _isDomain(name: str) -> bool:
    return bool(name) and "." in name and not name.startswith("[") and all(
        0 < len(label) < 64 for label in name.rstrip(".").split("."))

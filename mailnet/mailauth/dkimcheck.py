"""
DKIM verification (RFC 6376 s6) with dkimpy.

The key records are fetched first, on the reactor, with twisted.names
(:func:`keyNames` says which; :func:`mailnet.mailauth.dnsquery.prefetchTXT`
fetches them); :func:`verifyAll` then runs in a worker thread and hands
dkimpy those answers through its ``dnsfunc``, so dkimpy never does DNS.
"""

from __future__ import annotations

import dataclasses
import functools

import dkim
from dkim.util import InvalidTagValueList, parse_tag_value

from mailnet.mailauth import dkimfast, dkimown

from mailnet.mailauth.dnsquery import DNSTemporary
from mailnet.mailauth.headers import fields

dkimfast.install()  # OpenSSL for dkimpy's RSA; key caches




@dataclasses.dataclass
class DKIMResult:
    """One signature's result (RFC 8601 s2.7.1)."""

    result: str  # pass, fail, neutral, temperror, permerror
    domain: str = ""
    selector: str = ""
    reason: str = ""
    b: str = ""  # the start of b=, to tell signatures apart (RFC 6008)
    algorithm: str = ""


@functools.lru_cache(maxsize=16)
def signatures(header: bytes, limit: int):
    """The tags of the first ``limit`` DKIM-Signature fields ({} for a damaged one);
    cached for the few headers being checked (the result is only read)."""
    out = []
    for name, raw in fields(header):
        if name != "dkim-signature":
            continue
        if len(out) >= limit:
            break
        try:
            out.append(parse_tag_value(raw.partition(b":")[2]))
        except (InvalidTagValueList, Exception):
            out.append({})
    return out


def _name(tags) -> str | None:
    d, s = tags.get(b"d"), tags.get(b"s")
    if not d or not s:
        return None
    return (s + b"._domainkey." + d).decode("ascii", "replace").lower().rstrip(".")


def keyNames(header: bytes, limit: int) -> list[str]:
    """The TXT names holding the keys of the signatures to check."""
    return [n for n in (_name(t) for t in signatures(header, limit)) if n]


def verifyAll(message: bytes, answers: dict, limit: int = 5, minkey: int = 1024) -> list[DKIMResult]:
    """
    Every signature's result (the first ``limit``; RFC 6376 s6.1 lets a
    verifier limit the signatures it checks).  Blocking: a worker thread.

    @param answers: ``{name: [TXT records] | DNSTemporary}`` from the prefetch.
    """
    header = message.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    sigs = signatures(header, limit)
    if not sigs:
        return []
    try:
        parsed = dkimown.Parsed(message)  # dkimpy's split of the message (dkimfast.rfc822Parse)
    except Exception as e:  # a message dkimpy cannot parse: every signature unverifiable
        return [DKIMResult("permerror", reason=f"unparsable message ({type(e).__name__})") for _ in sigs]
    verifier = None  # dkimpy, made only for a signature our own code does not pass
    out = []
    for idx, tags in enumerate(sigs):
        result = DKIMResult("permerror", (tags.get(b"d") or b"").decode("ascii", "replace").lower(),
                            (tags.get(b"s") or b"").decode("ascii", "replace"),
                            b=(tags.get(b"b") or b"").replace(b" ", b"")[:8].decode("ascii", "replace"),
                            algorithm=(tags.get(b"a") or b"").decode("ascii", "replace"))
        out.append(result)
        name = _name(tags)
        if name is None:
            result.reason = "signature without d= or s="
            continue
        if result.algorithm.lower() == "rsa-sha1":
            result.reason = "rsa-sha1 is not accepted"  # RFC 8301 s3.1: MUST NOT be considered valid
            continue
        answer = answers.get(name)
        if isinstance(answer, DNSTemporary) or answer is None:
            result.result, result.reason = "temperror", "key lookup failed"
            continue
        if not answer:
            result.reason = "no key for signature"  # RFC 6376 s6.1.2: PERMFAIL
            continue
        record = answer[0]
        if dkimown.verifies(parsed, idx, record, minkey):  # the common case, dkimpy's rules
            result.result, result.reason = "pass", ""
            continue
        try:
            if verifier is None:
                verifier = dkim.DKIM(message, minkey=minkey)
            ok = verifier.verify(idx, dnsfunc=lambda _name, timeout=5: record)
        except dkim.ValidationError as e:
            result.result, result.reason = "fail", _short(e)
            continue
        except dkim.DKIMException as e:
            result.reason = _short(e)
            continue
        except Exception as e:  # a library bug on hostile input: a permerror, not a crash
            result.reason = f"unverifiable signature ({type(e).__name__})"
            continue
        if ok:
            result.result, result.reason = "pass", ""
        else:
            result.result, result.reason = "fail", "signature did not verify"
    return out


def _short(e) -> str:
    text = str(e).split("(", 1)[0].strip() or type(e).__name__
    return text[:80]

"""
ARC validation (RFC 8617 s5.2) with dkimpy's ``dkim.ARC``.

As for DKIM (:mod:`.dkimcheck`): :func:`keyNames` says which key records the
ARC-Seal and ARC-Message-Signature fields need, the checker fetches them on
the reactor (:func:`mailnet.mailauth.dnsquery.prefetchTXT`), and
:func:`verify` hands dkimpy those answers through its ``dnsfunc``, so dkimpy
never does DNS.  :func:`verify` never raises: a damaged, oversized or
unverifiable chain is ``fail``.

The result only labels the message (``arc=`` in our Authentication-Results):
it does not override DMARC (docs/mailauth.md, "ARC").
"""

from __future__ import annotations

import dataclasses
import functools
import re

import dkim
from dkim.util import parse_tag_value

from mailnet.mailauth.dnsquery import DNSTemporary
from mailnet.mailauth.headers import fields

MAX_SETS = 50  # RFC 8617 s4.2.1: at most 50 ARC sets; more is a fail
# Each set costs two RSA checks through dkimpy (about 0.2 ms per set here): a chain of more
# sets than this is verified in a worker thread even in a small message, so that a
# 50-set chain cannot hold the reactor for tens of milliseconds.
INLINE_SETS = 3
ARC_FIELDS = ("arc-seal", "arc-message-signature", "arc-authentication-results")
_INSTANCE = re.compile(rb"(?:^|[\s;])i\s*=\s*(\d+)", re.IGNORECASE)


@dataclasses.dataclass
class ARCResult:
    """The chain's validation status (RFC 8617 s4.4: none, pass, fail)."""

    result: str  # none, pass, fail
    reason: str = ""
    instance: int = 0  # the newest set's i= (0: no chain)
    domain: str = ""  # the newest ARC-Seal's d=


@functools.lru_cache(maxsize=16)
def _scan(header: bytes):
    """
    (the ARC fields' count, the highest i=, a problem or "", the key names),
    for the checks' few headers at once (cached: the result is only read).
    """
    arc = [(name, raw) for name, raw in fields(header) if name in ARC_FIELDS]
    if not arc:
        return 0, 0, "", ()
    if len(arc) > 3 * MAX_SETS:
        return len(arc), 0, f"more than {MAX_SETS} ARC sets", ()
    names, highest = [], 0
    for name, raw in arc:
        value = raw.partition(b":")[2]
        m = _INSTANCE.search(value)
        if m is None:
            return len(arc), 0, f"{name} without i=", ()
        i = int(m.group(1)[:6])
        if not 1 <= i <= MAX_SETS:
            return len(arc), 0, f"ARC instance i={m.group(1)[:6].decode()} outside 1..{MAX_SETS}", ()
        highest = max(highest, i)
        if name == "arc-authentication-results":
            continue
        try:
            tags = parse_tag_value(value)
        except Exception:
            return len(arc), highest, f"damaged {name}", ()
        d, s = tags.get(b"d"), tags.get(b"s")
        if d and s:
            names.append((s + b"._domainkey." + d).decode("ascii", "replace").lower().rstrip("."))
    return len(arc), highest, "", tuple(dict.fromkeys(names))


def present(header: bytes) -> bool:
    """Whether the message has ARC fields at all."""
    return _scan(header)[0] > 0


def heavy(header: bytes) -> bool:
    """Whether the chain is too long to verify on the reactor thread (:data:`INLINE_SETS`)."""
    count, highest, problem, _ = _scan(header)
    return not problem and max(highest, (count + 2) // 3) > INLINE_SETS


def keyNames(header: bytes) -> list[str]:
    """The TXT names holding the keys of every ARC-Seal and ARC-Message-Signature
    (none for a chain that already fails on its shape: more than 50 sets...)."""
    return list(_scan(header)[3])


def _newestSealDomain(header: bytes, instance: int) -> str:
    for name, raw in fields(header):
        if name == "arc-seal":
            try:
                tags = parse_tag_value(raw.partition(b":")[2])
            except Exception:
                continue
            if tags.get(b"i", b"").strip() == str(instance).encode():
                return (tags.get(b"d") or b"").decode("ascii", "replace").lower()
    return ""


def verify(message: bytes, answers: dict, minkey: int = 1024) -> ARCResult:
    """
    The chain's result (RFC 8617 s5.2).  Blocking (hashing): the reactor
    for a small message, else a worker thread, like DKIM.

    @param answers: ``{name: [TXT records] | DNSTemporary}`` from the prefetch.
    """
    header = message.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    count, highest, problem, names = _scan(header)
    if count == 0:
        return ARCResult("none")
    if problem:
        return ARCResult("fail", problem, highest)
    for name in names:
        # RFC 8617 defines no temperror for arc: a key we could not fetch means the
        # chain could not be validated, which s5.2 calls fail (the reason says why)
        if isinstance(answers.get(name), DNSTemporary) or name not in answers:
            return ARCResult("fail", "key lookup failed (temporary DNS error)", highest)

    def lookup(name, timeout=5):
        key = name.decode("ascii", "replace") if isinstance(name, bytes) else str(name)
        found = answers.get(key.lower().rstrip("."))
        return found[0] if found else None

    try:
        status, _sets, reason = dkim.ARC(message, minkey=minkey).verify(dnsfunc=lookup)
    except Exception as e:  # dkimpy's errors and its bugs on hostile input: fail, never a crash
        return ARCResult("fail", _short(e), highest)
    if status == dkim.CV_Pass:
        return ARCResult("pass", "", highest, _newestSealDomain(header, highest))
    if status == dkim.CV_None:
        return ARCResult("none")
    # CV_Fail, or None: a seal said cv=fail, which ends the chain (s5.2 step 2: fail)
    return ARCResult("fail", _short(reason), highest)


def _short(e) -> str:
    text = str(e).split("(", 1)[0].strip() or type(e).__name__
    return text[:80]

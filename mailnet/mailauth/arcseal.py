"""
ARC sealing of the mail we forward (RFC 8617), with dkimpy.

A message received on the MX for an alias that sends it on to another
domain leaves with a new ARC set on top: ARC-Authentication-Results (our
Authentication-Results: what SPF, DKIM and DMARC said when it reached us),
ARC-Message-Signature and ARC-Seal, signed with the RSA DKIM key of our
hostname's domain (or of its nearest parent domain with keys; else of the
first local domain).  A next hop whose SPF or DMARC check fails because we
forwarded can trust what we saw, if it trusts us.

The previous sets, if any, are verified first (their key records fetched
beforehand on the reactor, as for DKIM: :func:`keyNames`), and the result
goes into our Authentication-Results as ``arc=pass|fail|none``: that is the
``cv=`` of our seal (RFC 8617 s5.1.1).  Sealed once, before the copy enters
the spool; the queue's retries send the same bytes.  No key: not sealed
(logged once).
"""

from __future__ import annotations

import re

import dkim
from dkim.util import parse_tag_value

from mailnet.mailauth import dkimfast
from mailnet.mailauth.dnsquery import DNSTemporary
from mailnet.mailauth.dkimsign import signedFields
from mailnet.mailauth.headers import fieldNames, fields

dkimfast.install()

ARC_FIELDS = ("arc-seal", "arc-message-signature", "arc-authentication-results")
MAX_SETS = 50  # RFC 8617 s4.2.1: i= 1 to 50


def keyNames(header: bytes) -> list[str]:
    """The TXT names of the keys of the ARC-Seal and ARC-Message-Signature fields in ``header``."""
    out = []
    for name, raw in fields(header):
        if name not in ("arc-seal", "arc-message-signature"):
            continue
        try:
            tags = parse_tag_value(raw.partition(b":")[2])
        except Exception:
            continue
        d, s = tags.get(b"d"), tags.get(b"s")
        if d and s:
            out.append(f"{s.decode('ascii', 'replace')}._domainkey.{d.decode('ascii', 'replace')}".lower())
    return list(dict.fromkeys(out))[:2 * MAX_SETS]


def hasChain(header: bytes) -> bool:
    return any(name in ARC_FIELDS for name in fieldNames(header))


def chainResult(message: bytes, answers: dict) -> str:
    """
    ``none`` (no ARC set), ``pass`` or ``fail``: the previous sets
    (RFC 8617 s5.2), with key records from ``answers`` (a key that could not
    be fetched makes the chain fail, as dkimpy sees no key).  Blocking.
    """
    if not hasChain(message.split(b"\r\n\r\n", 1)[0] + b"\r\n"):
        return "none"

    def dnsfunc(name, timeout=5):
        answer = answers.get(name.decode("ascii", "replace").rstrip(".").lower())
        if not answer or isinstance(answer, DNSTemporary):
            return None
        return answer[0] if isinstance(answer[0], bytes) else answer[0].encode("ascii", "replace")

    try:
        cv, _, _ = dkim.arc_verify(message, dnsfunc=dnsfunc)
    except Exception:  # a damaged chain, or a library bug on hostile input
        return "fail"
    return (cv or b"fail").decode("ascii").lower() if cv != dkim.CV_None else "fail"


def withArcResult(field: bytes, result: str) -> bytes:
    """Our Authentication-Results field with ``arc=<result>`` added (RFC 8617 s10.1)."""
    if not field or re.search(rb"[;\s]arc=", field):
        return field  # none, or the MX's ARC validation (arccheck.py) already wrote it
    body = field.rstrip(b"\r\n")
    return body + b";\r\n\tarc=" + result.encode("ascii") + b"\r\n"


def sealKey(ring, hostname: str, localDomains):
    """The RSA key to seal with (ARC knows rsa-sha256 only, RFC 8617 s4.1.2), or None."""
    for name in [hostname] + list(localDomains):
        for key in ring.forHost(name):
            if key.algorithm == "rsa":
                return key
    return None


def seal(message: bytes, key, authservId: str, timestamp: int | None = None) -> bytes:
    """
    The ARC set (three CRLF-ended fields) for ``message`` (CRLF form, our
    Authentication-Results in it); b"" when dkimpy ends the chain (more
    than 50 sets, or a chain without our arc= result).  Blocking (RSA).
    """
    header = message.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    # the fields our DKIM signatures cover (dkimsign.py); dkimpy refuses to
    # put DKIM-Signature or Authentication-Results in an AMS
    include = signedFields(header)
    lines = dkim.arc_sign(message, key.selector.encode("ascii"), key.domain.encode("ascii"), key.private,
                          authservId.encode("ascii"), include_headers=include, timestamp=timestamp)
    return b"".join(line if line.endswith(b"\r\n") else line + b"\r\n" for line in lines)

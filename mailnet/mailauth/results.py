"""
The Authentication-Results header field (RFC 8601) with ``authres``.
"""

from __future__ import annotations

import authres
import authres.dmarc


def _clean(text: str) -> str:
    # a comment or reason must not break the field (RFC 8601 s2.2: quoted-string)
    return "".join(c for c in text if c.isprintable() and c not in '"\\()')[:100]


def header(authservId: str, spf=None, helo=None, dkims=(), dmarc=None, ip: str = "") -> bytes:
    """
    One ``Authentication-Results:`` field, folded at the results, CRLF-ended:

        Authentication-Results: mx.b.test;
                spf=pass smtp.mailfrom=a.test;
                dkim=pass header.d=a.test header.s=rsa202612 header.b=AbCdEfGh;
                dmarc=pass header.from=a.test policy.dmarc=reject
    """
    results = []
    if spf is not None:
        results.append(authres.SPFAuthenticationResult(
            result=spf.result, smtp_mailfrom=spf.domain or None,
            result_comment=f"{ip} {'is' if spf.result == 'pass' else 'is not'} permitted" if ip and spf.result in ("pass", "fail", "softfail") else None))
    if helo is not None and helo.result != "none":
        results.append(authres.SPFAuthenticationResult(result=helo.result, smtp_helo=helo.domain))
    if not dkims:
        results.append(authres.DKIMAuthenticationResult(result="none"))
    for d in dkims:
        results.append(authres.DKIMAuthenticationResult(
            result=d.result, reason=_clean(d.reason) or None, header_d=d.domain or None,
            header_s=d.selector or None, header_a=d.algorithm or None))
        if d.b:
            results[-1].properties.append(authres.core.AuthenticationResultProperty("header", "b", d.b))
    if dmarc is not None:
        results.append(authres.dmarc.DMARCAuthenticationResult(
            result=dmarc.result, reason=_clean(dmarc.reason) or None, header_from=dmarc.domain or None,
            policy=dmarc.policy if dmarc.result in ("pass", "fail") else None))
    made = authres.AuthenticationResultsHeader(authserv_id=authservId, results=results)
    value = made.header_value()
    parts = value.split("; ")
    return ("Authentication-Results: " + ";\r\n\t".join(parts) + "\r\n").encode("utf-8")

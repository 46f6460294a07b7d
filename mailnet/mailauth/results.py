"""
The Authentication-Results header field (RFC 8601) with ``authres``.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import secrets

import authres
import authres.arc
import authres.dmarc


def _clean(text: str) -> str:
    # a comment or reason must not break the field (RFC 8601 s2.2: quoted-string)
    return "".join(c for c in text if c.isprintable() and c not in '"\\()')[:100]


# authres builds the field from objects and regular expressions: about a sixth
# of a whole check.  The same sender gets the same results again and again, so
# the field is kept per results, with each signature's header.b (the only part
# that differs from message to message) left as a marker that authres writes
# unchanged, then replaced by the value authres would write (its own quoting).
_MARK = "zq" + secrets.token_hex(8) + "b"  # never seen by a client; cannot be guessed


@functools.lru_cache(maxsize=1024)
def _field(authservId, spf, helo, dkims, dmarc, ip, arc=None) -> str:
    def unpack(kind, t):
        return None if t is None else kind(*t)

    from mailnet.mailauth.arccheck import ARCResult
    from mailnet.mailauth.dkimcheck import DKIMResult
    from mailnet.mailauth.dmarc import DMARCResult
    from mailnet.mailauth.spfcheck import SPFResult

    return _build(authservId, unpack(SPFResult, spf), unpack(SPFResult, helo),
                  [DKIMResult(*d) for d in dkims], unpack(DMARCResult, dmarc), ip, unpack(ARCResult, arc))


_getters = {}  # dataclass -> (attrgetter of its fields in order, the index of "b" or None)


def _getter(cls):
    got = _getters.get(cls)
    if got is None:
        names = [f.name for f in dataclasses.fields(cls)]  # TypeError for a class that is not a dataclass
        get = operator.attrgetter(*names)
        got = _getters[cls] = (get if len(names) > 1 else lambda x: (get(x),), names.index("b") if "b" in names else None)
    return got


def _fields(x):
    """The field values of a result, in order (None stays None)."""
    return None if x is None else _getter(type(x))[0](x)


def _marked(d, i):
    """A DKIM result's field values with ``b`` replaced by mark ``i`` (an empty one stays empty)."""
    get, where = _getter(type(d))
    if where is None:
        raise TypeError("no b field")
    values = get(d)
    return values[:where] + (f"{_MARK}{i}" if d.b else "",) + values[where + 1:]


def header(authservId: str, spf=None, helo=None, dkims=(), dmarc=None, ip: str = "", arc=None) -> bytes:
    """
    :func:`_build`, kept per results (:func:`_field`): the same field, byte
    for byte.
    """
    try:
        marked = tuple(_marked(d, i) for i, d in enumerate(dkims))
        text = _field(authservId, _fields(spf), _fields(helo), marked, _fields(dmarc), ip, _fields(arc))
    except TypeError:  # not the dataclasses (tests, callers with other objects): no cache
        return _build(authservId, spf, helo, dkims, dmarc, ip, arc)
    for i in reversed(range(len(dkims))):  # reversed: mark 1 is not a prefix of mark 10's place
        if dkims[i].b:
            text = text.replace(f"{_MARK}{i}", authres.core.QuotableValue(dkims[i].b).quote_if_needed())
    return text.encode("utf-8")


def _build(authservId: str, spf=None, helo=None, dkims=(), dmarc=None, ip: str = "", arc=None) -> str:
    """
    One ``Authentication-Results:`` field, folded at the results, CRLF-ended:

        Authentication-Results: mx.b.test;
                spf=pass smtp.mailfrom=a.test;
                dkim=pass header.d=a.test header.s=rsa202612 header.b=AbCdEfGh;
                dmarc=pass header.from=a.test policy.dmarc=reject

    With ``arc`` (an :class:`~.arccheck.ARCResult`), after the DKIM results
    (RFC 8617 s7.2; smtp.remote-ip as registered, the newest set in a comment):

                arc=pass (i=2 d=fwd.test) smtp.remote-ip=192.0.2.1;
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
    if arc is not None:
        comment = None
        if arc.instance and arc.result == "pass":
            comment = _clean(f"i={arc.instance}" + (f" d={arc.domain}" if arc.domain else ""))
        elif arc.instance:
            comment = f"i={arc.instance}"
        results.append(authres.arc.ARCAuthenticationResult(
            result=arc.result, result_comment=comment, reason=_clean(arc.reason) or None,
            smtp_remote_ip=ip or None))
    if dmarc is not None:
        # RFC 7489 s6.6.4 (pct=): policy.dmarc is the policy applied; a failure not sampled says which
        # policy was asked for, in a comment as OpenDMARC does (p= ... dis=)
        notSampled = getattr(dmarc, "requested", "")
        results.append(authres.dmarc.DMARCAuthenticationResult(
            result=dmarc.result, reason=_clean(dmarc.reason) or None, header_from=dmarc.domain or None,
            result_comment=f"p={notSampled} dis={dmarc.policy} pct={dmarc.pct} not sampled" if notSampled else None,
            policy=dmarc.policy if dmarc.result in ("pass", "fail") else None))
    made = authres.AuthenticationResultsHeader(authserv_id=authservId, results=results)
    value = made.header_value()
    parts = value.split("; ")
    return "Authentication-Results: " + ";\r\n\t".join(parts) + "\r\n"

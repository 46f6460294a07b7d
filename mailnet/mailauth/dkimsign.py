"""
DKIM signing (RFC 6376) with dkimpy: relaxed/relaxed, rsa-sha256 and, when
the domain has one, a second signature with ed25519-sha256 (RFC 8463).

Which fields are signed (RFC 6376 s5.4.1 "SHOULD be included", and what
current signers such as Rspamd, OpenDKIM and mox do): the originator,
recipient, subject, date, identification, MIME and list fields present in
the message.  Oversigning (s5.4.2, s8.15): the fields in :data:`OVERSIGN`
are listed once more than they occur, so a copy added later (a second
From or Subject, a Reply-To slipped in) breaks the signature.
"""

from __future__ import annotations

import functools

import dkim

from mailnet.mailauth import dkimfast, dkimown
from mailnet.mailauth.headers import fieldNames

dkimfast.install()  # OpenSSL for dkimpy's RSA; key caches


SIGN = (
    "from", "sender", "reply-to", "subject", "date", "message-id", "to", "cc",
    "in-reply-to", "references", "mime-version", "content-type", "content-transfer-encoding",
    "content-id", "content-description", "content-disposition", "content-language",
    "resent-date", "resent-from", "resent-sender", "resent-to", "resent-cc", "resent-message-id",
    "list-id", "list-help", "list-unsubscribe", "list-unsubscribe-post", "list-subscribe",
    "list-post", "list-owner", "list-archive", "autocrypt", "openpgp",
)

OVERSIGN = frozenset({
    "from", "sender", "reply-to", "subject", "date", "message-id", "to", "cc",
    "in-reply-to", "references", "mime-version", "content-type", "content-transfer-encoding",
    "list-unsubscribe", "list-unsubscribe-post",
})


def signedFields(header: bytes) -> list[bytes]:
    """The ``h=`` list for a header section: every present field of :data:`SIGN`
    as often as it occurs, and those of :data:`OVERSIGN` once more (From
    always, even absent it must be signed: s5.4)."""
    counts = {}
    for name in fieldNames(header):
        if name in _SIGNED:
            counts[name] = counts.get(name, 0) + 1
    return list(_listFor(tuple(sorted(counts.items()))))


_SIGNED = frozenset(SIGN)


@functools.lru_cache(maxsize=256)
def _listFor(counts: tuple) -> tuple:
    """The ``h=`` list for these (name, count) pairs: the same few header shapes come again and again."""
    counts = dict(counts)
    out = []
    for name in SIGN:
        n = counts.get(name, 0)
        if name in OVERSIGN and (n or name in ("from", "subject", "date", "to", "cc", "reply-to")):
            n += 1
        out += [name.encode("ascii")] * n
    return tuple(out)


def sign(message: bytes, keys, identity=None) -> bytes:
    """
    The DKIM-Signature fields (CRLF-terminated) for ``message`` (CRLF form),
    one per key in ``keys`` (:class:`~.keys.SigningKey`), to be put before
    the message.  Blocking (hashing, RSA): call in a worker thread.
    """
    header = message.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    include = signedFields(header)
    fast = dkimown.sign(message, keys, include)  # the same bytes, without dkimpy's Python
    if fast is not None:
        return fast
    return dkimpySign(message, keys, include)


def dkimpySign(message: bytes, keys, include) -> bytes:
    """:func:`sign` by dkimpy alone (for what :func:`.dkimown.sign` leaves to it)."""
    out = []
    for key in keys:
        signer = dkim.DKIM(message, linesep=b"\r\n")
        out.append(signer.sign(key.selector.encode("ascii"), key.domain.encode("ascii"), key.private,
                               signature_algorithm=key.dkimAlgorithm, canonicalize=(b"relaxed", b"relaxed"),
                               include_headers=include))
    return b"".join(out)

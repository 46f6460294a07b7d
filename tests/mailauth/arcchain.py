"""
ARC chains for the tests, sealed by dkimpy's own ``dkim.arc_sign`` (an
independent signer: none of our code takes part), and the key records to
publish for them.
"""

from __future__ import annotations

import dkim

from mailnet.mailauth import keys

MESSAGE = (b"From: Alice <alice@a.test>\r\nTo: list@fwd.test\r\nSubject: through a list\r\n"
           b"Date: Fri, 04 Dec 2026 05:00:00 +0000\r\nMessage-ID: <arc-1@a.test>\r\n\r\n"
           b"Hello by way of a forwarder.\r\n")


class Sealer:
    """One ADMD that seals: its key, selector and domain."""

    def __init__(self, domain: str, selector: str = "arc1", key=None):
        """``key``: (private, public) of :func:`mailnet.mailauth.keys.generate`, to share one."""
        self.domain, self.selector = domain, selector
        self.private, public = key or keys.generate("rsa")
        self.name = f"{selector}._domainkey.{domain}"
        self.record = keys.txtValue("rsa", public)

    def seal(self, message: bytes, results: str) -> bytes:
        """``message`` with this ADMD's Authentication-Results (``results``, e.g. "spf=pass
        smtp.mailfrom=a.test" or "arc=pass") and then its ARC set on top."""
        stamped = f"Authentication-Results: {self.domain}; {results}\r\n".encode() + message
        fields = dkim.arc_sign(stamped, self.selector.encode(), self.domain.encode(), self.private,
                               self.domain.encode())
        assert fields, "dkimpy did not seal"
        return b"".join(fields) + stamped


def chain(sealers, message: bytes = MESSAGE) -> bytes:
    """``message`` sealed by each of ``sealers`` in turn (i=1, 2, ...)."""
    for n, sealer in enumerate(sealers):
        message = sealer.seal(message, "spf=pass smtp.mailfrom=a.test" if n == 0 else "arc=pass")
    return message


def answers(*sealers) -> dict:
    """What the checker's prefetch would give for the sealers' keys."""
    return {s.name: [s.record.encode()] for s in sealers}

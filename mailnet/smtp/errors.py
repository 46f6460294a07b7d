"""
The one error type for delivery outcomes (STYLE.md lesson 3).

Shared by the SMTP server (store and spool failures become its replies) and
the outbound queue (a remote server's reply, a DNS failure or a refused
connection becomes one of these, and ``temporary`` alone decides between a
retry and a bounce).  This module imports nothing of Twisted or of the rest
of mailnet, so any package may use it.
"""

from __future__ import annotations

import re

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)")


class DeliveryError(Exception):
    """
    A delivery outcome that is not success.

    @ivar code: the SMTP reply code (int, 4xx or 5xx).
    @ivar enhanced: the RFC 3463 enhanced status code (``"4.3.0"``).
    @ivar message: text for the SMTP reply or the DSN diagnostic (one line).
    @ivar temporary: True for 4xx (retry later), False for 5xx (bounce).
    """

    def __init__(self, code: int, enhanced: str, message: str):
        if not 400 <= code < 600:
            raise ValueError(f"not an error reply code: {code}")
        if enhanced[0] != str(code)[0]:
            # RFC 3463 s2 / RFC 2034 s4: the class must agree with the code
            enhanced = f"{str(code)[0]}{enhanced[1:]}"
        super().__init__(code, enhanced, message)
        self.code = code
        self.enhanced = enhanced
        self.message = " ".join(message.split())

    @property
    def temporary(self) -> bool:
        return self.code < 500

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    def __str__(self):
        return f"{self.code} {self.enhanced} {self.message}"

    def __repr__(self):
        return f"DeliveryError({self.code}, {self.enhanced!r}, {self.message!r})"

    @classmethod
    def fromReply(cls, code: int, text: str) -> "DeliveryError":
        """
        Build one from a remote server's reply (for the queue).  The enhanced
        code is taken from the text when present (RFC 2034), else derived
        from the class of ``code`` (``4.0.0`` / ``5.0.0``).
        """
        lines = text.splitlines() or [""]
        match = _ENHANCED.match(lines[0])
        if match and match.group(1) == str(code)[0]:
            enhanced = f"{match.group(1)}.{match.group(2)}.{match.group(3)}"
            lines = [_ENHANCED.sub("", line, count=1) for line in lines]
        else:
            enhanced = f"{str(code)[0]}.0.0"
        return cls(code, enhanced, " ".join(line.strip() for line in lines if line.strip()))


def temporaryFailure(message="Error storing the message; try again later"):
    """451 4.3.0: the catch-all for a local failure worth a retry."""
    return DeliveryError(451, "4.3.0", message)

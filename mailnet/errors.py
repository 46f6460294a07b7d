"""
The one error type for delivery outcomes (STYLE.md lesson 3).

Whoever delivers a message (the SMTP server into the store or the spool, the
queue to a remote MTA or a local mailbox) reports a failure as a
:class:`DeliveryError`.  The queue decides from ``temporary`` alone whether to
retry or to bounce; the SMTP server turns it into its reply.
"""

from __future__ import annotations

import re

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})$")


class DeliveryError(Exception):
    """
    A delivery failed.

    @ivar code: the SMTP reply code (``451``, ``550``...).
    @ivar enhanced: the RFC 3463 enhanced status code (``"5.1.1"``); its class
        digit agrees with ``code``.
    @ivar message: human-readable text, one line, no CR/LF.
    @ivar temporary: True for a transient failure (retry later), False for a
        permanent one (bounce).
    @ivar remote: the name of the remote MTA whose reply this is, or None when
        the error was found here (DNS failure, refused connection, store...).
    """

    def __init__(self, code: int, enhanced: str | None, message: str, temporary: bool | None = None, remote: str | None = None):
        code = int(code)
        if temporary is None:
            temporary = code < 500
        if not enhanced or not _ENHANCED.match(enhanced):
            enhanced = f"{4 if temporary else 5}.0.0"
        self.code = code
        self.enhanced = enhanced
        self.message = " ".join(str(message).split())
        self.temporary = bool(temporary)
        self.remote = remote
        super().__init__(str(self))

    @property
    def permanent(self) -> bool:
        return not self.temporary

    def __str__(self):
        return f"{self.code} {self.enhanced} {self.message}".rstrip()

    def __repr__(self):
        return f"DeliveryError({self.code}, {self.enhanced!r}, {self.message!r}, temporary={self.temporary}, remote={self.remote!r})"

    def __eq__(self, other):
        if not isinstance(other, DeliveryError):
            return NotImplemented
        return (self.code, self.enhanced, self.message, self.temporary, self.remote) == (
            other.code, other.enhanced, other.message, other.temporary, other.remote)

    __hash__ = Exception.__hash__

    @classmethod
    def fromString(cls, text: str, remote: str | None = None) -> "DeliveryError":
        """Parse ``"550 5.1.1 text"`` (as written by ``str``) back."""
        parts = text.split(" ", 2)
        code = int(parts[0]) if parts and parts[0].isdigit() else 451
        enhanced = parts[1] if len(parts) > 1 and _ENHANCED.match(parts[1]) else None
        rest = parts[2] if enhanced else " ".join(parts[1:])
        return cls(code, enhanced, rest, remote=remote)


def temporary(enhanced: str, message: str, code: int = 451, remote: str | None = None) -> DeliveryError:
    return DeliveryError(code, enhanced, message, True, remote)


def permanent(enhanced: str, message: str, code: int = 550, remote: str | None = None) -> DeliveryError:
    return DeliveryError(code, enhanced, message, False, remote)

"""
The one error type for delivery outcomes (STYLE.md lesson 3).

Whoever delivers a message (the SMTP server into the store or the spool, the
queue to a remote MTA or a local mailbox) reports a failure as a
:class:`DeliveryError`.  The queue decides from ``temporary`` alone whether to
retry or to bounce; the SMTP server turns it into its reply.

Compatible with the SMTP package's ``DeliveryError(code, enhanced, message)``
(same constructor, ``temporary``/``permanent``, ``fromReply``,
:func:`temporaryFailure`), so that one can become a re-export of this one.
This module imports nothing of Twisted or of the rest of mailnet.
"""

from __future__ import annotations

import re

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})$")
_LEADING = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)")


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
        if not 400 <= code < 600:
            raise ValueError(f"not an error reply code: {code}")
        if temporary is None:
            temporary = code < 500
        if not enhanced or not _ENHANCED.match(enhanced):
            enhanced = f"{str(code)[0]}.0.0"
        elif enhanced[0] != str(code)[0]:
            # RFC 3463 s2 / RFC 2034 s4: the class must agree with the code.
            enhanced = f"{str(code)[0]}{enhanced[1:]}"
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
    def fromReply(cls, code: int, text: str, remote: str | None = None) -> "DeliveryError":
        """
        From a remote server's reply: the enhanced code is taken from the
        text when present (RFC 2034), else ``X.0.0`` of the reply's class.
        """
        lines = text.splitlines() or [""]
        match = _LEADING.match(lines[0])
        enhanced = None
        if match and match.group(1) == str(code)[0]:
            enhanced = f"{match.group(1)}.{match.group(2)}.{match.group(3)}"
            lines = [_LEADING.sub("", line, count=1) for line in lines]
        return cls(code, enhanced, " ".join(line.strip() for line in lines if line.strip()), remote=remote)

    @classmethod
    def fromString(cls, text: str, remote: str | None = None) -> "DeliveryError":
        """Parse ``"550 5.1.1 text"`` (as written by ``str``) back."""
        parts = text.split(" ", 2)
        code = int(parts[0]) if parts and parts[0].isdigit() and 400 <= int(parts[0]) < 600 else 451
        enhanced = parts[1] if len(parts) > 1 and _ENHANCED.match(parts[1]) else None
        rest = parts[2] if enhanced else " ".join(parts[1:])
        return cls(code, enhanced, rest, remote=remote)


def temporaryFailure(message="Error storing the message; try again later") -> DeliveryError:
    """451 4.3.0: the catch-all for a local failure worth a retry."""
    return DeliveryError(451, "4.3.0", message)

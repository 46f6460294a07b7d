"""
What the IMAP session core and its command modules share: the session
states (RFC 3501 s3), the error that ends a command with a tagged NO or
BAD, and the markers a command returns instead of ``(kind, text, code)``.
"""

from __future__ import annotations

NOT_AUTHENTICATED, AUTHENTICATED, SELECTED, LOGOUT = "not authenticated", "authenticated", "selected", "logout"

# RFC 2180 s4.1, RFC 5530 s3: a FETCH by sequence number names a message
# expunged meanwhile, which may not be announced during it.  The others are
# served and the answer is OK with EXPUNGEISSUED, as Dovecot answers (a NO
# makes clients treat the FETCH as failed); the EXPUNGE follows at the next
# command that may carry it.
GONE = ("OK", "Some messages were already expunged", b"EXPUNGEISSUED")

# A command that wrote its own tagged answer (or closed the connection) returns this.
ALREADY_ANSWERED = object()


class CommandError(Exception):
    """End a command with a tagged NO or BAD: ``CommandError("NO", "text", b"CODE")``."""

    def __init__(self, kind, text, code=None):
        super().__init__(text)
        self.kind = kind
        self.text = text
        self.code = code


def no(text, code=None):
    return CommandError("NO", text, code)


def bad(text, code=None):
    return CommandError("BAD", text, code)


def reasonOf(e):
    text = str(e) or type(e).__name__
    return text[:200]

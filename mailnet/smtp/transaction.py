"""
One mail transaction as the SMTP session hands it on: the envelope
(:class:`IncomingEnvelope`, one :class:`AcceptedRecipient` per RCPT) and
the effects that carry its message to the runner (:class:`OpenMessage`,
:class:`MessageData`, :class:`AbortMessage`, :class:`CommitMessage`; the
shared effects are in :mod:`mailnet.effects`).  No I/O.
"""

from __future__ import annotations

import dataclasses

from mailnet.effects import Effect


@dataclasses.dataclass(slots=True)
class OpenMessage(Effect):
    """A message begins: DATA was accepted, or the first BDAT chunk came."""

    envelope: object


@dataclasses.dataclass(slots=True)
class MessageData(Effect):
    """The next decoded piece of the message (starts at a line start)."""

    data: bytes


@dataclasses.dataclass(slots=True)
class AbortMessage(Effect):
    """Forget the message being received; nothing of it may become visible."""


@dataclasses.dataclass(slots=True)
class CommitMessage(Effect):
    """Store the message durably (long); the outcome is the Reply to send."""



@dataclasses.dataclass(slots=True)
class AcceptedRecipient:
    """
    One accepted RCPT.

    @ivar address: as the client gave it (canonical syntax).
    @ivar orcpt: RFC 3461 ORCPT as received (``"rfc822;a+40b"``), or None.
    @ivar notify: RFC 3461 NOTIFY as a list (``["SUCCESS", "FAILURE"]``,
        ``["NEVER"]``) or None.
    @ivar local: local usernames it resolves to.
    @ivar remote: remote addresses it resolves to (itself for a remote
        domain, alias targets elsewhere).
    """

    address: str
    orcpt: str | None
    notify: list | None
    local: list
    remote: list


@dataclasses.dataclass(slots=True)
class IncomingEnvelope:
    """One mail transaction: what the store and the spool are told."""

    sender: str  # "" for the null reverse-path
    recipients: list
    helo: str
    peer: str
    tls: bool
    auth: str | None
    esmtp: bool
    smtputf8: bool = False
    body: str = "7BIT"
    size: int | None = None  # declared with SIZE=
    ret: str | None = None
    envid: str | None = None
    # The sender passed our checks: SPF pass for the MAIL FROM domain, set
    # at the end of DATA from the mail checks' verdict (Verdict.senderVerified);
    # then NOTIFY=SUCCESS/DELAY is honoured from an MX client too
    # (see mailnet.smtp.delivery.honouredNotify).
    senderVerified: bool = False

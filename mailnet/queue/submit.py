"""
One message submitted by a logged-in user from somewhere other than SMTP
(JMAP EmailSubmission): the SMTP submission path without the SMTP
session.  The recipients are resolved as RCPT does (local domains through
``Directory.resolve``, others relayed), and the message goes through
:class:`mailnet.smtp.delivery.MessageDelivery` with an authenticated
envelope, so it is DKIM-signed (the message filter), stored for local
recipients and spooled for remote ones exactly as if it had come by SMTP
submission, durably before the outcome fires.
"""

from __future__ import annotations

import dataclasses

from twisted.internet import defer

from mailnet.smtp.delivery import MessageDelivery
from mailnet.smtp.transaction import AcceptedRecipient, IncomingEnvelope


@dataclasses.dataclass
class Submitted:
    """The outcome: SMTP's reply, and the local users that got a copy."""

    code: int
    enhanced: str
    text: str
    local: tuple = ()


def resolveRecipient(directory, address):
    """``(local users, remote addresses)`` for an RCPT, or None for an unknown local address (550 5.1.1)."""
    domain = address.rpartition("@")[2]
    if not domain.startswith("[") and directory.isLocalDomain(domain):
        resolution = directory.resolve(address)
        if resolution is None:
            return None
        return list(resolution.local), list(resolution.remote)
    return [], [address]


def submit(context, username, mailFrom, rcptTo, data: bytes, peer="127.0.0.1", helo="jmap") -> defer.Deferred:
    """
    Deliver and queue ``data`` (CRLF) from ``mailFrom`` to ``rcptTo`` for the
    logged-in ``username`` (the caller checked that they may use mailFrom).

    @return: Deferred firing with a :class:`Submitted` (code 250 when every
        copy is durable); never fails.
    """
    recipients = []
    for address in rcptTo:
        resolved = resolveRecipient(context.directory, address)
        if resolved is None:
            return defer.succeed(Submitted(550, "5.1.1", f"<{address}>: no such user here"))
        recipients.append(AcceptedRecipient(address, None, None, resolved[0], resolved[1]))
    smtputf8 = not (mailFrom.isascii() and all(a.isascii() for a in rcptTo))
    envelope = IncomingEnvelope(sender=mailFrom, recipients=recipients, helo=helo, peer=peer, tls=False,
                                auth=username, esmtp=True, smtputf8=smtputf8,
                                body="8BITMIME" if any(b >= 0x80 for b in data) else "7BIT")
    delivery = MessageDelivery(context, envelope)
    delivery.write(data)
    local = tuple(delivery.local)

    def done(reply):
        return Submitted(reply.code, reply.enhanced or "", reply.text, local if reply.code < 300 else ())

    return delivery.commit().addCallback(done)

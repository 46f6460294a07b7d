"""
What an SMTP session knows of its server: the role of the listener
(MX, submission, implicit-TLS submission) and the limits
(:class:`SMTPSettings`, built from the configuration by
:meth:`SMTPSettings.fromContext`).  No I/O.
"""

from __future__ import annotations

import dataclasses

from mailnet.smtp import replies
from mailnet.smtp.replies import Reply

SMTP, SUBMISSION, SUBMISSIONS = "smtp", "submission", "submissions"


@dataclasses.dataclass
class SMTPSettings:
    """
    What a session needs to know of the server and its limits.

    @ivar role: ``"smtp"`` (MX: mail for our domains, AUTH optional),
        ``"submission"`` (STARTTLS then AUTH before MAIL) or
        ``"submissions"`` (implicit TLS, AUTH before MAIL).
    """

    hostname: str = "localhost"
    role: str = SMTP
    maxSize: int = 35 * 1024 * 1024
    maxLine: int = 1000
    maxRecipients: int = 100
    maxErrors: int = 20
    maxAuthFailures: int = 5
    allowPlaintext: bool = False
    tlsAvailable: bool = True
    postmasterDomain: str = "localhost"
    # [mailauth] local_spoofing = "reject": MAIL FROM in one of our local
    # domains (or a subdomain) without AUTH is refused (issue 16).
    refuseLocalSenders: bool = True
    # quota(username, size) -> DeliveryError or None, from memory
    # (mailnet.localdelivery.quotaRefusal over the store); None: no quota.
    quota: object = None
    # [srs]: the :class:`~mailnet.mailauth.forwarding.SRSRewriter` (isOurs,
    # inbound) for RCPT TO an SRS address of ours; None: SRS off.
    srs: object = None

    @property
    def greeting(self) -> Reply:
        reply = self.__dict__.get("_greeting")
        if reply is None or reply.lines[0].split()[0] != self.hostname:
            reply = self.__dict__["_greeting"] = replies.greeting(self.hostname)
        return reply

    @classmethod
    def fromContext(cls, context, role):
        config = context.config
        limits = config.limits
        return cls(
            hostname=context.hostname,
            role=role,
            maxSize=limits.message_size,
            maxLine=limits.smtp_line_length,
            maxRecipients=limits.smtp_recipients,
            maxErrors=limits.smtp_errors,
            maxAuthFailures=limits.auth_failures,
            allowPlaintext=config.auth.allow_plaintext,
            tlsAvailable=context.tlsOptions is not None,
            postmasterDomain=config.domains.local[0],
            refuseLocalSenders=config.mailauth.local_spoofing == "reject",
            quota=_quotaCheck(context.store),
            srs=getattr(context, "srs", None),
        )


def _quotaCheck(store):
    if getattr(store, "quotaUsage", None) is None:
        return None
    from mailnet.localdelivery import quotaRefusal

    return lambda username, size: quotaRefusal(store, username, size)

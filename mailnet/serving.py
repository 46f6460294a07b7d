"""
The protocol service: one per protocol (SMTP, POP3, IMAP), a child of
:class:`mailnet.service.MailnetService`.

It owns what the protocol's sessions share (POP3's maildrop locks, IMAP's
:class:`~mailnet.imap.session.Shared`) and gives the protocol factory for
each listener it serves.  Binding is not its job: ``MailnetService`` binds
every configured listener, wraps implicit-TLS ones in TLS and applies the
connection limits, asking the service only for ``factory(listener)``.
"""

from __future__ import annotations

from twisted.application import service


class ProtocolService(service.Service):
    """
    Base of the per-protocol services; a protocol's ``server.py`` subclasses
    it and has ``makeService(context) -> ProtocolService``.

    @cvar name: the protocol ("smtp", "pop3", "imap"); also the child
        service's name.
    @cvar listeners: the ``[listen]`` keys it serves, in binding order.
    @cvar implicitTLS: those of ``listeners`` that speak TLS from the first
        byte (``MailnetService`` wraps their factories in TLS).
    @cvar REFUSAL: bytes sent to a client refused for too many connections
        on a plain-text listener (implicit-TLS ones just close).
    @ivar context: the :class:`~mailnet.service.MailContext`.
    """

    name = ""
    listeners: tuple[str, ...] = ()
    implicitTLS: frozenset[str] = frozenset()
    REFUSAL = b""

    def __init__(self, context):
        self.context = context

    def factory(self, listener):
        """
        The ``IProtocolFactory`` for ``listener`` (one of :attr:`listeners`),
        not yet wrapped in TLS or limits.  Called once per bound listener,
        before ``startService``.
        """
        raise NotImplementedError(f"{type(self).__name__}.factory")

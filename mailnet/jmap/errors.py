"""
The errors of RFC 8620 s3.6: request-level (a problem details object,
RFC 7807, answered instead of the whole response) and method-level (an
``error`` response in place of one method's answer).  Pure: no I/O.
"""

from __future__ import annotations

PREFIX = "urn:ietf:params:jmap:error:"


class RequestError(Exception):
    """
    RFC 8620 s3.6.1: the whole request is refused with an
    ``application/problem+json`` body.

    @ivar type: the short name (``notJSON``, ``notRequest``,
        ``unknownCapability``, ``limit``).
    @ivar status: the HTTP status.
    @ivar limit: for ``limit``, the name of the limit (RFC 8620 s3.6.1: it
        MUST be present).
    """

    def __init__(self, type, detail, status=400, limit=None):
        super().__init__(detail)
        self.type = type
        self.detail = detail
        self.status = status
        self.limit = limit

    def problem(self) -> dict:
        body = {"type": PREFIX + self.type, "status": self.status, "detail": self.detail}
        if self.limit is not None:
            body["limit"] = self.limit
        return body


class _ErrorObject(Exception):
    """An error answered as a JMAP error object: ``type``, ``description``, further properties."""

    def __init__(self, type, description=None, **extra):
        super().__init__(description or type)
        self.type = type
        self.description = description
        self.extra = extra

    def arguments(self) -> dict:
        body = {"type": self.type}
        if self.description:
            body["description"] = self.description
        body.update(self.extra)
        return body


class MethodError(_ErrorObject):
    """
    RFC 8620 s3.6.2 (and the per-method errors of s5): one method call
    answered with ``["error", {"type": ..., ...}, callId]``.

    @ivar type: ``unknownMethod``, ``invalidArguments``, ``stateMismatch``...
    @ivar extra: further properties of the error object.
    """


class SetError(_ErrorObject):
    """
    RFC 8620 s5.3: one record of a ``/set`` (or ``/copy``) that could not be
    created, updated or destroyed (``notFound``, ``invalidProperties``,
    ``forbidden``, ``overQuota``...); the others go on.
    """


class ServerUnavailable(Exception):
    """Raised by a method for a temporary failure (the store is busy): ``serverUnavailable``."""


def invalidArguments(description):
    return MethodError("invalidArguments", description)

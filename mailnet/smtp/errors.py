"""
The delivery outcome type, as the SMTP package names it.

There is one :class:`DeliveryError` for the whole of mailnet (STYLE.md
lesson 3), defined in :mod:`mailnet.errors` and shared with the queue; this
module re-exports it so that ``mailnet.smtp.errors.DeliveryError`` and
``mailnet.errors.DeliveryError`` are the same class.
"""

from mailnet.errors import DeliveryError, temporaryFailure

__all__ = ["DeliveryError", "temporaryFailure"]

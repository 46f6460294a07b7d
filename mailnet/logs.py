"""
Logging: every mailnet module gets its logger from :func:`Logger`, which
filters by the ``[log] level`` setting before events reach twistd's log.

Rules: one line per event that matters to an operator (a delivery, a login
failure with the client address, a queue attempt); protocol dialogues only at
debug; never a password, AUTH payload or message body.
"""

import sys

from twisted import logger as _tl

_predicate = _tl.LogLevelFilterPredicate(defaultLogLevel=_tl.LogLevel.info)
_observer = _tl.FilteringLogObserver(_tl.globalLogPublisher, [_predicate])


def setLevel(name: str):
    """Set the lowest level logged: "debug", "info", "warn" or "error"."""
    _predicate.setLogLevelForNamespace(None, _tl.LogLevel.levelWithName(name))


def Logger(namespace: str | None = None) -> _tl.Logger:
    """A twisted Logger for the calling module, subject to the level."""
    if namespace is None:
        namespace = sys._getframe(1).f_globals.get("__name__", "mailnet")
    return _tl.Logger(namespace=namespace, observer=_observer)

"""
Logging: every mailnet module gets its logger from :func:`Logger`, which
filters by the ``[log] level`` setting before events reach twistd's log.

Rules: one line per event that matters to an operator (a delivery, a login
failure with the client address, a queue attempt); protocol dialogues only at
debug; never a password, AUTH payload or message body.
"""

import json
import re
import sys
from time import time as _time

from twisted import logger as _tl

_predicate = _tl.LogLevelFilterPredicate(defaultLogLevel=_tl.LogLevel.info)


class _LevelFilter:
    """
    The observer every mailnet logger emits to: events below the level set
    for their namespace stop here, the rest go to the global publisher.
    Twisted's ``FilteringLogObserver`` with ``_predicate`` does the same, but
    compares log levels (``constantly`` constants) and walks the namespace
    for every event; the answer is cached per namespace and level here, and
    forgotten when a level is set.
    """

    def __init__(self, predicate, observer):
        self.predicate = predicate
        self.observer = observer
        self.passes = {}  # (namespace, level) -> the event is logged

    def __call__(self, event):
        key = (event.get("log_namespace"), event.get("log_level"))
        passes = self.passes.get(key)
        if passes is None:
            passes = self.predicate(event) is not _tl.PredicateResult.no
            if len(self.passes) < 10000:
                self.passes[key] = passes
        if passes:
            if "log_trace" in event:
                event["log_trace"].append((self, self.observer))
            self.observer(event)


_observer = _LevelFilter(_predicate, _tl.globalLogPublisher)


def setLevel(name: str):
    """Set the lowest level logged: "debug", "info", "warn" or "error"."""
    _predicate.setLogLevelForNamespace(None, _tl.LogLevel.levelWithName(name))
    _observer.passes.clear()


class _CachedTime:
    """formatTime for the classic log format, computed once per second."""

    def __init__(self):
        self.second = None
        self.text = "-"

    def __call__(self, when):
        if when is None:
            return "-"
        second = int(when)
        if second != self.second:
            self.second = second
            self.text = _tl.formatTime(when, _tl.timeFormatRFC3339)
        return self.text


def _formatEvent(event, formatTime):
    """
    twistd's classic text line (``formatEventAsClassicLogText``), with two
    shortcuts: the time stamp is formatted once per second, and a format
    that is a single field (``"{text}"``, used by the busiest lines) skips
    the string formatter.  DNS resolver chatter gives None (nothing is
    written) unless the level is debug: the check is here, not in a
    filtering observer, so that other events pay one comparison for it.
    """
    if event.get("log_namespace") == "log_legacy" and _isDNSChatter(event):
        return None
    fmt = event.get("log_format")
    if (type(fmt) is str and fmt[:1] == "{" and fmt[-1:] == "}" and "log_failure" not in event
            and "log_flattened" not in event):
        name = fmt[1:-1]
        if name.isidentifier() and name in event:
            system = event.get("log_system")
            if system is None:
                level = event.get("log_level")
                system = f"{event.get('log_namespace', '-')}#{level.name if level is not None else '-'}"
            line = f"{formatTime(event.get('log_time'))} [{system}] {event[name]}"
            return line.replace("\n", "\n\t") + "\n"
    return _tl.formatEventAsClassicLogText(event, formatTime=formatTime)


# twisted.names and the UDP port under it log every query's socket ("...
# starting on 41234", "(UDP Port 41234 Closed)") and every resolv.conf read
# through the legacy log.  mailnet uses UDP only for DNS.
_DNS_CHATTER = re.compile(
    r"DNSDatagramProtocol starting on \d+$|\(UDP Port \d+ Closed\)$"
    r"|(Starting|Stopping) protocol <twisted\.names\.dns\.DNSDatagramProtocol"
    r"|.*resolv\.conf'? changed, reparsing$|Resolver added .* to server list$")


def _isDNSChatter(event):
    """A legacy-log event of DNS resolver chatter, shown only at the debug level."""
    message = event.get("message")
    return bool(message and len(message) == 1 and isinstance(message[0], str) and _DNS_CHATTER.match(message[0])
                and _predicate.logLevelForNamespace("log_legacy") is not _tl.LogLevel.debug)


# [log] format: "text" (twistd's classic lines) or "json" (one object per line).
_format = ["text"]


def setFormat(name: str):
    """Write "text" or "json" lines from now on (the observer asks per event)."""
    _format[0] = name


_SKIP = frozenset({"message", "format", "isError", "time", "system", "why", "failure"})


def _jsonEvent(event, formatTime):
    """
    One JSON object for a log shipper: ``time`` (RFC 3339), ``level``,
    ``namespace``, ``system``, ``text`` (the line the text format shows)
    and the event's own fields that are plain values (``id``, ``stage``,
    ``to``... : the message's queue id and stage of docs/operations.md
    "Logs"); a failure's traceback as ``traceback``.
    """
    if event.get("log_namespace") == "log_legacy" and _isDNSChatter(event):
        return None
    level = event.get("log_level")
    out = {"time": formatTime(event.get("log_time")), "level": level.name if level is not None else None,
           "namespace": event.get("log_namespace"), "system": event.get("log_system"),
           "text": _tl.formatEvent(event)}
    for key, value in event.items():
        if key[:4] == "log_" or key in _SKIP or key in out:
            continue
        if value is None or isinstance(value, (str, int, float, bool)):
            out[key] = value
        elif isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float)) for v in value):
            out[key] = list(value)
    failure = event.get("log_failure")
    if failure is not None:
        try:
            out["traceback"] = failure.getTraceback()
        except Exception:
            out["traceback"] = repr(failure)
    return json.dumps(out, ensure_ascii=False, default=str) + "\n"


def _formatAny(event, formatTime):
    if _format[0] == "json":
        return _jsonEvent(event, formatTime)
    return _formatEvent(event, formatTime)


def twistdObserver():
    """For ``twistd --logger``: :func:`textFileObserver` on stdout."""
    return textFileObserver(sys.stdout)


def textFileObserver(outFile=None):
    """
    A log observer writing the same lines as twistd's default one (to
    ``outFile``, default stdout), at a fraction of the cost per event,
    without DNS resolver chatter (unless the level is debug); JSON objects
    instead after ``setFormat("json")`` (``[log] format``).
    """
    formatTime = _CachedTime()
    return _tl.FileLogObserver(sys.stdout if outFile is None else outFile,
                               lambda event: _formatAny(event, formatTime))


class _Logger(_tl.Logger):
    """
    ``twisted.logger.Logger`` whose ``emit`` takes its level as given: the
    ``info``/``warn``/... methods pass one of the ``LogLevel`` constants, and
    Twisted's check of it against every constant (``constantly``'s
    ``iterconstants``) costs more than the rest of an event.  An unknown
    level still goes to Twisted's ``emit``, which reports it.
    """

    def emit(self, level, format=None, **kwargs):
        if level not in _LEVELS:
            return super().emit(level, format, **kwargs)
        event = kwargs
        event.update(log_logger=self, log_level=level, log_namespace=self.namespace, log_source=self.source,
                     log_format=format, log_time=_time())
        if "log_trace" in event:
            event["log_trace"].append((self, self.observer))
        self.observer(event)


_LEVELS = frozenset(_tl.LogLevel.iterconstants())


def Logger(namespace: str | None = None) -> _tl.Logger:
    """A twisted Logger for the calling module, subject to the level."""
    if namespace is None:
        namespace = sys._getframe(1).f_globals.get("__name__", "mailnet")
    return _Logger(namespace=namespace, observer=_observer)

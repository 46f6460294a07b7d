"""
Helpers for testing a store without a reactor (no pytest needed).

Both builtin stores can run without one: the memory store completes
everything synchronously, and the Maildir store takes an injectable
``runner`` for its blocking work, which in tests is :func:`syncRunner`
(the work runs at once in the calling thread and the Deferred it returns
has fired).  So :func:`result` just extracts a fired Deferred's value.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.python.failure import Failure


def result(d):
    """The result of an already-fired Deferred; raises its failure."""
    if not isinstance(d, defer.Deferred):
        return d
    box = []
    d.addBoth(box.append)
    assert box, f"Deferred {d!r} has not fired"
    value = box[0]
    if isinstance(value, Failure):
        value.raiseException()
    return value


def failure(d, *types):
    """The exception an already-fired Deferred failed with."""
    box = []
    d.addBoth(box.append)
    assert box, f"Deferred {d!r} has not fired"
    value = box[0]
    assert isinstance(value, Failure), f"expected failure, got {value!r}"
    if types:
        assert value.check(*types), value
    return value.value


def syncRunner(f, *args, **kwargs):
    """A ``runner`` that does the blocking work at once, in the caller's thread."""
    return defer.maybeDeferred(f, *args, **kwargs)


class Recorder:
    """An IFolderListener that records what it is told."""

    def __init__(self):
        self.events = []

    def messagesAdded(self, folder, infos):
        self.events.append(("added", folder, [i.uid for i in infos]))

    def flagsChanged(self, folder, infos):
        self.events.append(("flags", folder, [(i.uid, set(i.flags)) for i in infos]))

    def messagesExpunged(self, folder, uids):
        self.events.append(("expunged", folder, list(uids)))

    def kinds(self):
        return [e[0] for e in self.events]

    def clear(self):
        self.events = []


def msg(n=0, extra=b""):
    """A small message, numbered."""
    return (
        b"From: a@example.test\r\nTo: b@example.test\r\nSubject: test %d\r\n\r\nbody %d\r\n"
        % (n, n)
        + extra
    )

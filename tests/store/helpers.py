"""
Helpers for the store tests.

How the tests drive Deferreds: both builtin stores can run without a
reactor.  The memory store completes everything synchronously.  The maildir
store takes an injectable ``runner`` for its blocking work (fsync, rename,
directory scans); in production it is ``deferToThreadPool``, and in tests it
is :func:`mailnet.store.testing.syncRunner`, which runs the work at once in
the calling thread and returns a fired Deferred.  So every Deferred a test
gets has already fired, and :func:`result` just extracts the value (or
raises the failure) -- no reactor, no pytest-twisted, no sleeping.  The group committer's real
threaded path is tested separately with :class:`ThreadedRunner`, which runs
work in real threads and lets the test "pump" completions back into the
main thread the way ``callFromThread`` would.
"""

from __future__ import annotations

import queue
import threading

from twisted.internet import defer
from twisted.python.failure import Failure

from mailnet.store.testing import Recorder, failure, msg, result, syncRunner

__all__ = ["Recorder", "ThreadedRunner", "failure", "msg", "result", "syncRunner"]


class ThreadedRunner:
    """
    Runs work in real threads; :meth:`pump` fires the Deferreds of finished
    work in the caller's thread (a stand-in for the reactor).
    """

    def __init__(self):
        self.done = queue.Queue()
        self.threads = []

    def __call__(self, f, *args, **kwargs):
        d = defer.Deferred()

        def work():
            try:
                value = f(*args, **kwargs)
            except BaseException:
                value = Failure()
            self.done.put((d, value))

        t = threading.Thread(target=work, daemon=True)
        self.threads.append(t)
        t.start()
        return d

    def callFromThread(self, f, *args):
        self.done.put((f, args))

    def pump(self, until, timeout=30):
        """Fire completions until ``until()`` is true."""
        while not until():
            d, value = self.done.get(timeout=timeout)
            if isinstance(d, defer.Deferred):
                if isinstance(value, Failure):
                    d.errback(value)
                else:
                    d.callback(value)
            else:
                d(*value)

    def wait(self, d, timeout=30):
        box = []
        d.addBoth(box.append)
        self.pump(lambda: box, timeout)
        if isinstance(box[0], Failure):
            box[0].raiseException()
        return box[0]

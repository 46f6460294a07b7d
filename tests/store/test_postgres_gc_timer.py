"""
The gc Sweeper's timer (mailnet/store/postgres/gc.py), in process with a
task.Clock and a runner whose Deferred the test fires: a store closed
while a sweep runs must not start the timer again when that sweep ends
(else a closed store keeps sweeping, and its Database's poolRunner makes
a new thread pool and new connections after close).
"""

from __future__ import annotations

from twisted.internet import defer, task

from mailnet.store.postgres import gc


class _Db:
    def __init__(self):
        self.calls = []

    def runner(self, f, *args):
        d = defer.Deferred()
        self.calls.append(d)
        return d


def _sweeper():
    clock = task.Clock()
    db = _Db()
    sweeper = gc.Sweeper(db, None, 60.0, 3600.0, clock)
    sweeper.start()
    clock.advance(60.0)
    assert len(db.calls) == 1  # the sweep runs
    return clock, db, sweeper


def test_stop_during_a_sweep_leaves_no_timer_behind():
    clock, db, sweeper = _sweeper()
    sweeper.stop()
    db.calls[0].callback(gc.Report())
    assert clock.getDelayedCalls() == []
    clock.advance(600.0)
    assert len(db.calls) == 1
    # Started again (an embedding restarting the store's sweeper): it sweeps again.
    sweeper.start()
    clock.advance(60.0)
    assert len(db.calls) == 2


def test_stop_during_a_failing_sweep_leaves_no_timer_behind():
    clock, db, sweeper = _sweeper()
    sweeper.stop()
    db.calls[0].errback(RuntimeError("the database went away"))
    assert clock.getDelayedCalls() == []


def test_without_stop_the_next_sweep_comes_an_interval_later():
    clock, db, sweeper = _sweeper()
    db.calls[0].callback(None)
    clock.advance(60.0)
    assert len(db.calls) == 2
    sweeper.stop()
    db.calls[1].callback(None)
    assert clock.getDelayedCalls() == []


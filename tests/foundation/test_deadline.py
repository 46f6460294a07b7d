"""mailnet.deadline: named deadlines on one timer, moved only by a rate."""

from twisted.internet import task

from mailnet.deadline import RETRY, Deadlines


def make(answer=True):
    clock = task.Clock()
    fired = []

    def expired(name):
        fired.append((name, clock.seconds()))
        return answer(name) if callable(answer) else answer

    return clock, Deadlines(clock, expired), fired


def test_bytes_do_not_restart_a_deadline():
    clock, d, fired = make()
    d.start("line", 10)
    clock.advance(6)
    d.start("line", 10)  # already running: unchanged
    d.received(1000)  # no rate: no credit
    clock.advance(4)
    assert fired == [("line", 10)]
    assert not d.running("line") and clock.getDelayedCalls() == []


def test_rate_credit():
    clock, d, fired = make()
    d.start("data", 10, rate=100)
    clock.advance(9)
    d.received(500)  # +5 s
    assert d.left("data") == 6
    clock.advance(5.9)
    assert fired == []
    clock.advance(0.2)
    assert fired == [("data", 15.1)]


def test_stop_cancels_and_earliest_first():
    clock, d, fired = make()
    d.start("login", 30)
    d.start("line", 5)
    d.stop("line")
    clock.advance(29)
    assert fired == []
    d.stop("login")
    assert clock.getDelayedCalls() == []


def test_not_now_retries():
    busy = [True]
    clock, d, fired = make(lambda name: not busy[0])
    d.start("login", 10)
    clock.advance(10)
    assert d.running("login")
    clock.advance(RETRY)
    busy[0] = False
    clock.advance(RETRY)
    assert [t for _, t in fired] == [10, 10 + RETRY, 10 + 2 * RETRY]
    assert not d.running("login")


def test_handler_stopping_the_others():
    clock = task.Clock()
    fired = []
    d = None

    def expired(name):
        fired.append(name)
        d.stop("b")
        return False

    d = Deadlines(clock, expired)
    d.start("a", 5)
    d.start("b", 5)
    clock.advance(5)
    assert fired == ["a"]  # "b" was stopped by the handler: not reported


def test_a_number_means_look_again_then():
    # an idle timeout on the same timer: "not idle long enough, look in 7 s"
    answers = [7, True]
    clock, d, fired = make(lambda name: answers.pop(0))
    d.start("idle", 10)
    clock.advance(10)
    assert d.running("idle") and d.left("idle") == 7
    clock.advance(7)
    assert fired == [("idle", 10), ("idle", 17)] and not d.running("idle")
    assert clock.getDelayedCalls() == []


def test_one_lazy_timer():
    clock, d, fired = make()
    d.start("idle", 300)
    (timer,) = clock.getDelayedCalls()
    for _ in range(3):  # a deadline per message, passing after the timer: no timer operation
        d.start("data", 300, rate=500)
        d.stop("data")
        assert clock.getDelayedCalls() == [timer] and timer.getTime() == 300
    d.start("line", 60)  # passes first: the same timer, moved sooner
    assert clock.getDelayedCalls() == [timer] and timer.getTime() == 60
    d.stop("line")
    clock.advance(60)  # nothing due: re-armed for the idle deadline
    assert fired == [] and [c.getTime() for c in clock.getDelayedCalls()] == [300]
    clock.advance(240)
    assert fired == [("idle", 300)] and clock.getDelayedCalls() == []

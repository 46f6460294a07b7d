"""
Deadlines that the client's bytes do not push back (slowloris defence).

An idle timeout restarts at every byte, so a client that sends one byte
every few seconds keeps a command, a message or an unauthenticated session
open for ever.  A deadline is fixed when it starts: a command line must end
within so many seconds of its first byte, a login must happen within so
many seconds of connecting.  Only real transfer buys time: a deadline with
a ``rate`` moves later by one second per ``rate`` bytes received, so an
honest client sending at least that fast always finishes (Postfix's
``smtpd_min_data_rate`` model), while a dribbling one gains nothing.

:class:`Deadlines` keeps a connection's named deadlines on one timer.  The
protocol says which ones run (:meth:`Deadlines.start` / :meth:`Deadlines.stop`,
after each input and each finished action) and is asked, when one passes,
whether to close now.  A protocol may put its idle timeout on the same timer
(a deadline whose handler answers "look again in so many seconds" while the
client is not idle long enough), so that a connection has one timer in all.
Used by the SMTP, IMAP and POP3 protocols.

The timer is lazy: starting a deadline that passes after the timer fires, or
stopping one while others run, touches no timer (the timer finds nothing due,
and re-arms for the earliest deadline left); only a deadline that passes
before it moves it sooner.  A deadline per command or per message therefore
costs no timer operation.
"""

from __future__ import annotations

# When a deadline passes while the server itself is busy for the client (a
# password check, storing a message), look again this much later.
RETRY = 1.0


class Deadlines:
    """
    The running deadlines of one connection, on one lazily re-armed timer.

    @param clock: the reactor (``seconds``, ``callLater``).
    @param expired: called with the name of a deadline that has passed;
        returns True when it dealt with it (the connection is closing: every
        deadline stops), False when it is not the client's fault right now
        (the deadline is looked at again after :data:`RETRY` seconds), or a
        number of seconds after which to look at it again (an idle timeout:
        the client was active meanwhile).
    """

    def __init__(self, clock, expired):
        self.clock = clock
        self.expired = expired
        self._at = {}  # name -> time it passes
        self._rate = {}  # name -> bytes per second that buy one second
        self._timer = None
        self._timerAt = 0.0  # when _timer fires

    def start(self, name, seconds, rate=0):
        """Start ``name`` unless it is running already."""
        if name not in self._at:
            now = self.clock.seconds()
            at = self._at[name] = now + seconds
            if rate:
                self._rate[name] = rate
            if self._timer is None or at < self._timerAt:
                self._wake(at, now)

    def stop(self, name):
        if self._at.pop(name, None) is not None:
            if self._rate:
                self._rate.pop(name, None)
            if not self._at:
                self.cancel()

    def running(self, name) -> bool:
        return name in self._at

    def received(self, count):
        """``count`` bytes arrived: credit the rate-based deadlines."""
        if self._rate:
            at = self._at
            for name, rate in self._rate.items():
                at[name] += count / rate

    def left(self, name) -> float | None:
        """Seconds until ``name`` passes (None when it does not run)."""
        at = self._at.get(name)
        return None if at is None else at - self.clock.seconds()

    def cancel(self):
        """Stop everything (the connection is gone)."""
        self._at.clear()
        self._rate.clear()
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _wake(self, at, now=None):
        """Have the timer fire at ``at`` (sooner than it would)."""
        delay = max(0.0, at - (self.clock.seconds() if now is None else now))
        timer = self._timer
        if timer is not None and timer.active():
            timer.reset(delay)
        else:
            self._timer = self.clock.callLater(delay, self._fire)
        self._timerAt = at

    def _fire(self):
        self._timer = None
        now = self.clock.seconds()
        for name, at in sorted(self._at.items(), key=lambda item: item[1]):
            if at > now:
                break
            if name not in self._at:
                continue  # stopped by the handler of an earlier one
            answer = self.expired(name)
            if answer is True:
                self.cancel()
                return
            if name in self._at:
                self._at[name] = now + (RETRY if answer is False else answer)
        if self._at:
            at = min(self._at.values())
            if self._timer is None or at < self._timerAt:
                self._wake(at)

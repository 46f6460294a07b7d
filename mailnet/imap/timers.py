"""
The IMAP session's timers, as effects (docs/design.md, "One protocol
shape"): autologout and the deadlines of :mod:`mailnet.deadline` ask the
runner for ``StartTimer``/``CancelTimer``; the runner answers with
``session.event(TimerFired(name))``.  Also the name "wake": a store event
reached the view outside the session's turn (IDLE) and the session asked
its runner for a turn (``out.wake()``).

:class:`SessionTimers` is a mixin of :class:`mailnet.imap.session.IMAPSession`.
"""

from __future__ import annotations

from mailnet.imap.commands.common import NOT_AUTHENTICATED
from mailnet.imap.commands.context import WAKE
from mailnet.imap.effects import CancelTimer, StartTimer
from mailnet.logs import Logger

log = Logger()

# Before login the autologout timer is shorter (RFC 9051 s5.4 allows it).
PREAUTH_TIMEOUT = 120


class SessionTimers:
    """Autologout, the deadlines and IDLE's wake-up of :class:`mailnet.imap.session.IMAPSession` (a mixin)."""

    def _startTimer(self, name, seconds):
        self._aside(StartTimer(name, seconds))

    def _cancelTimer(self, name):
        self._aside(CancelTimer(name))

    def event(self, event):
        """
        An event from the runner: ``TimerFired(name)`` of a timer asked for
        ("autologout", "deadlines"), or "wake" (a store event reached the
        view while idle).  Returns its effects.
        """
        self._begin()
        name = event.name
        if name == "wake":
            self._wakeAsked = False
            if self.notify is not None:
                self._notifyOpens()
            if self.idling:
                if not self._updatingContexts:
                    self._flush()
                    if self._lineWaiter is not None and self._contextsDirty():
                        # RFC 5267 s4.3: IDLE looks at the changed messages for
                        # the kept search results (commands/context.py).
                        self._lineWaiter = None
                        self._step(WAKE)
            elif self.notify is not None and not self.busy and self.state != NOT_AUTHENTICATED:
                self._flush(between=True)
        elif name == "looked":
            self._notifyLooked(event)
        elif name == "autologout":
            self._autologout = False
            self._timedOut()
        elif name == "deadlines":
            timer, self._deadlineTimer = self._deadlineTimer, None
            if timer is not None and timer.running:
                timer.running = False
                timer.function()
        return self._end()

    def _timeout(self):
        if self.state != NOT_AUTHENTICATED:
            return self.settings.idleTimeout
        return min(self.settings.idleTimeout, PREAUTH_TIMEOUT)

    def _resetTimer(self):
        """The client said something: autologout counts from now (the timer moves when it fires)."""
        self._lastInput = self.clock.seconds()
        if not self._autologout:
            self._autologout = True
            self._startTimer("autologout", self._timeout())

    def _timedOut(self):
        if self.closed:
            return
        if self.busy and not self.idling:
            # A long command (a big FETCH to a slow client) is still going.
            self._autologout = True
            self._startTimer("autologout", self._timeout())
            return
        left = self._lastInput + self._timeout() - self.clock.seconds()
        if left > 0:
            # Input came since the timer was set: look again when it may be due.
            self._autologout = True
            self._startTimer("autologout", left)
            return
        log.info("imap: {peer}: autologout after {n}s without a command", peer=self.out.peer, n=self._timeout())
        self.send(b"* BYE Autologout; idle for too long\r\n")
        self._close()

    # Deadlines (slowloris): a command, with its literals, must end within
    # commandDeadline of its first byte plus 1 s per minDataRate bytes
    # received; a login within loginDeadline of connecting.  Idle timeouts
    # after login (IDLE's 30 minutes included) are the timer above.

    def _commandInProgress(self):
        reader = self.reader
        if self._lineWaiter is not None:  # IDLE's DONE, a SASL response
            return reader.buffered() > 0
        # not busy: every whole command has been taken, what is left is partial
        return not self.busy and (reader.midCommand or reader.buffered() > 0)

    def _watchDeadlines(self):
        deadlines = self.deadlines
        if self.closed:
            deadlines.cancel()
            return
        if self._commandInProgress():
            deadlines.start("command", self.settings.commandDeadline, rate=self.settings.minDataRate)
        else:
            deadlines.stop("command")
        if self.state != NOT_AUTHENTICATED:
            deadlines.stop("login")

    def _deadlinePassed(self, name):
        if self.closed:
            return True
        if self.busy and self._lineWaiter is None:
            return False  # we are working (a password check): not the client's fault
        if name == "login":
            seconds, text = self.settings.loginDeadline, b"no login within %d seconds" % self.settings.loginDeadline
        else:
            seconds, text = self.settings.commandDeadline, b"command not completed in time"
        log.info("imap: {peer}: {name} deadline passed ({s} s), closing", peer=self.out.peer, name=name, s=seconds)
        self.send(b"* BYE Autologout; " + text + b"\r\n")
        self._close()
        return True


class TimerClock:
    """
    The clock :class:`mailnet.deadline.Deadlines` is given: the time from
    the reactor's clock (reading it is no I/O), its one timer the runner's
    timer "deadlines", asked for as an effect.
    """

    def __init__(self, session):
        self.session = session
        self.seconds = session.clock.seconds

    def callLater(self, delay, function):
        timer = self.session._deadlineTimer = _Timer(self.session, "deadlines", function)
        timer.reset(delay)
        return timer


class _Timer:
    """What Deadlines sees of its timer (a DelayedCall's active, reset, cancel)."""

    __slots__ = ("session", "name", "function", "running")

    def __init__(self, session, name, function):
        self.session = session
        self.name = name
        self.function = function
        self.running = False

    def active(self):
        return self.running

    def reset(self, delay):
        self.running = True
        self.session._startTimer(self.name, delay)

    def cancel(self):
        if self.running:
            self.running = False
            self.session._cancelTimer(self.name)

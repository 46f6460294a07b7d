"""
The IMAP effect runner: what an :class:`~mailnet.imap.session.IMAPSession`
asks for, done (docs/design.md, "One protocol shape").  The shared effects
(``Send``, ``Close``, ``StartTLS``) are run as :class:`mailnet.effects.EffectRunner`
runs them, ``Login`` through its one login sequence (:mod:`mailnet.login`);
the general ``Start``/``Wait``/``Discard`` (start a long effect now, take its
outcome later) and ``StartTimer``/``CancelTimer`` (the session's timers,
answered with ``session.event(TimerFired(name))``) are here, with IMAP's own
(:mod:`mailnet.imap.effects`): ``StoreCall``, ``InThread``, ``Drain``,
``NextTurn``, ``Compress``, ``CloseFolder``, ``KeepFolder``/``ForgetFolder``
(the shared folder keeper), ``StartPolling``/``StopPolling`` (IDLE's
refreshes), ``PauseReading``/``ResumeReading``.

:class:`IMAPRunner` is mixed into the Twisted protocol
(:class:`mailnet.imap.server.IMAPServerProtocol`), which provides
``session``, ``shared``, ``peer``, ``write``, ``drained``, ``startTLS``,
``startCompression``, ``pauseReading``/``resumeReading`` and ``close``.
It is the only one that touches the reactor for the session: timers,
worker threads, the next turn.

The session returns at most one long effect at a time, last in its list.
When that effect's outcome is there already (a store that answers at
once, a refresh with nothing new, a started open that has finished) the
runner goes straight on with the session's next effects in the same loop,
without a Deferred: a client pipelining thousands of commands does not
deepen the stack.
"""

from __future__ import annotations

from twisted.internet import defer, task

from mailnet.effects import PENDING, TAKEN, EffectRunner, Login, closeOutcome
from mailnet.imap.effects import (
    CancelTimer,
    CloseFolder,
    Compress,
    Discard,
    Drain,
    Failed,
    ForgetFolder,
    InThread,
    KeepFolder,
    Look,
    Looked,
    NextTurn,
    PauseReading,
    ResumeReading,
    Start,
    StartPolling,
    StartTimer,
    StopPolling,
    StoreCall,
    TimerFired,
    Wait,
    Write,
)
from mailnet.logs import Logger
from mailnet.store.interfaces import IAccount

log = Logger()

_WAITING = object()


class IMAPRunner(EffectRunner):
    """Runs an IMAP session's effects (mixed into the connection's protocol)."""

    protocolName = "imap"
    avatarInterface = IAccount

    def initIMAPRunner(self):
        self.initRunner({Compress: self.runCompress, KeepFolder: self.runKeepFolder,
                         ForgetFolder: self.runForgetFolder, CloseFolder: self.runCloseFolder,
                         StartPolling: self.runStartPolling, StopPolling: self.runStopPolling,
                         Start: self.runStart, Discard: self.runDiscard, StartTimer: self.runStartTimer,
                         CancelTimer: self.runCancelTimer, PauseReading: self.runPauseReading,
                         ResumeReading: self.runResumeReading, Write: self.runWrite, Look: self.runLook})
        self._poller = None
        self._timers = {}  # name -> DelayedCall
        self._started = set()  # handles whose outcome has not come yet
        self._wakeCall = None
        self._wakeWhenDrained = False  # a wake-up waits for the transport to have room
        del self.handlers[Login]  # a long effect here (EffectRunner.login's Deferred, resumed by runEffects)
        # The long effects: a handler returning the outcome, or _WAITING
        # when it will resume us (self._await).
        self.longHandlers = {StoreCall: self.runStoreCall, InThread: self.runInThread, Drain: self.runDrain,
                             Wait: self.runWait, NextTurn: self.runNextTurn, Login: self.runLogin}
        # What Start may start besides a StoreCall: a handler returning a Deferred (or a value).
        self.startHandlers = {InThread: self.callInThread}

    @property
    def loginSequence(self):
        return self.shared.login

    def runEffects(self, effects):
        """Run ``effects`` (from the session), and those that follow the long ones."""
        handlers = self.handlers
        longHandlers = self.longHandlers
        while effects:
            if self.stopped:
                self._discard(effects)
                return
            follow = None
            for effect in effects:
                kind = type(effect)
                handler = handlers.get(kind)
                if handler is not None:
                    handler(effect)
                    continue
                outcome = longHandlers[kind](effect)
                if outcome is _WAITING:
                    return
                follow = self.session.completed(effect, outcome)
                break
            effects = follow

    def _await(self, effect, d):
        """The outcome of a long effect now if ``d`` has it, else _WAITING (it will resume us)."""
        if d.called and not d.paused:
            # Fired already (the usual refresh, a store that answers from
            # memory): take the result without building a callback.
            result = d.result
            if not isinstance(result, defer.Failure):
                return result
            d.addErrback(lambda f: None)  # handled: raised in the command
            return Failed(result.value)
        now = []
        waiting = []

        def fired(result):
            outcome = Failed(result.value) if isinstance(result, defer.Failure) else result
            if waiting:
                self._resumeLater(effect, outcome)
            else:
                now.append(outcome)

        d.addBoth(fired)
        if now:
            return now[0]
        waiting.append(True)
        self.busy = True
        return _WAITING

    def _resumeLater(self, effect, outcome):
        self.busy = False
        try:
            self.runEffects(self.session.completed(effect, outcome))
        except Exception:
            log.failure("imap: {peer}: running the session's effects failed", peer=self.peer)

    def _discard(self, effects):
        """The connection is gone: run nothing more but closing handles; end what waits for us."""
        for effect in effects:
            kind = type(effect)
            if kind is CloseFolder:
                effect.folder.close()
            elif kind is Discard:
                self.runDiscard(effect)
            elif kind in self.longHandlers:
                self.session.abandon()

    # IMAP's effects

    def runStoreCall(self, effect):
        try:
            result = getattr(effect.target, effect.method)(*effect.args)
        except Exception as e:
            return Failed(e)
        if isinstance(result, defer.Deferred):
            return self._await(effect, result)
        return result

    def runInThread(self, effect):
        return self._await(effect, self.shared.inThread(effect.function, *effect.args))

    def callInThread(self, effect):
        return self.shared.inThread(effect.function, *effect.args)

    def runDrain(self, effect):
        d = self.drained()
        if d is None:
            return False
        return self._await(effect, d.addCallback(lambda _: True))

    def runNextTurn(self, effect):
        return self._await(effect, task.deferLater(self.shared.clock, 0, lambda: None))

    def runLogin(self, effect):
        return self._await(effect, self.login(effect))

    def runWrite(self, effect):
        self.writeSequence(effect.pieces)

    # Start now, wait later (mailnet.effects.Start)

    def runStart(self, handle):
        inner = handle.effect
        if type(inner) is StoreCall:  # the usual one (FETCH's opens): no further call
            try:
                result = getattr(inner.target, inner.method)(*inner.args)
            except Exception as e:
                result = Failed(e)
        else:
            result = self.startHandlers[type(inner)](inner)
        if not isinstance(result, defer.Deferred):
            handle.outcome = result  # not waited for yet, not discarded: nobody has it
        elif result.called and not result.paused:
            value = result.result
            if isinstance(value, defer.Failure):
                result.addErrback(lambda f: None)  # handled: raised where it is waited for
                value = Failed(value.value)
            handle.outcome = value
        else:
            self._started.add(handle)
            result.addBoth(self._fired, handle)

    def _fired(self, result, handle):
        self._started.discard(handle)
        self._arrived(Failed(result.value) if isinstance(result, defer.Failure) else result, handle)

    def _arrived(self, outcome, handle):
        if handle.discarded:
            if type(outcome) is not Failed:
                closeOutcome(outcome)
            return
        handle.outcome = outcome
        waiter = handle.waiter
        if waiter is not None:
            handle.waiter = None
            handle.outcome = TAKEN
            self._resumeLater(waiter, outcome)

    def runWait(self, effect):
        handle = effect.handle
        outcome = handle.outcome
        if outcome is PENDING:
            handle.waiter = effect
            self.busy = True
            return _WAITING
        handle.outcome = TAKEN
        return outcome

    def runDiscard(self, effect):
        for handle in effect.handles:
            handle.discard()

    # Timers (mailnet.effects.StartTimer): the session's, on the reactor

    def runStartTimer(self, effect):
        name = effect.name
        call = self._timers.get(name)
        if call is not None and call.active():
            call.reset(effect.seconds)
        else:
            self._timers[name] = self.shared.clock.callLater(effect.seconds, self._timerFired, name)

    def runCancelTimer(self, effect):
        call = self._timers.pop(effect.name, None)
        if call is not None and call.active():
            call.cancel()

    def _timerFired(self, name):
        self._timers.pop(name, None)
        if not self.stopped:
            self._event(TimerFired(name))

    def wake(self):
        """
        The session's one call on its runner: a store event reached its view
        outside its turn (IDLE).  On the next turn it gets ``TimerFired("wake")``.
        """
        if self._wakeCall is None and not self.stopped:
            self._wakeCall = self.shared.clock.callLater(0, self._woken)

    def _woken(self):
        self._wakeCall = None
        if self.stopped:
            return
        drained = self.drained()
        if drained is not None:
            # The client is not reading: what waits stays with the session
            # (merged, bounded) until the transport has room, rather than
            # growing the transport's buffer (NOTIFY, IDLE).
            if not self._wakeWhenDrained:
                self._wakeWhenDrained = True
                drained.addCallback(self._drainedWake)
            return
        self._event(TimerFired("wake"))

    def _drainedWake(self, _):
        self._wakeWhenDrained = False
        self.wake()

    def runLook(self, effect):
        """Call the store now; the outcome goes to the session as the event ``Looked`` when it comes."""

        def arrived(result):
            outcome = Failed(result.value) if isinstance(result, defer.Failure) else result
            if self.stopped:
                if type(outcome) is not Failed:
                    closeOutcome(outcome)
                return
            self._event(Looked(effect.key, outcome))

        defer.maybeDeferred(getattr(effect.target, effect.method), *effect.args).addBoth(arrived)

    def _event(self, event):
        try:
            self.runEffects(self.session.event(event))
        except Exception:
            log.failure("imap: {peer}: running the session's effects failed", peer=self.peer)

    def runPauseReading(self, effect):
        self.pauseReading()

    def runResumeReading(self, effect):
        self.resumeReading()

    def runCompress(self, effect):
        self.startCompression(effect.pending)

    def runKeepFolder(self, effect):
        keeper = self.shared.keeper
        keeper.touch(effect.key, effect.account, effect.name)
        if effect.snapshot is not None:
            keeper.remember(effect.key, effect.snapshot)

    def runCloseFolder(self, effect):
        effect.folder.close()

    def runForgetFolder(self, effect):
        self.shared.keeper.forget(effect.user, effect.name)

    def runStartPolling(self, effect):
        self.runStopPolling(None)
        folder = effect.folder

        def poll():
            if not self.stopped:
                folder.refresh().addErrback(
                    lambda f: log.warn("imap: refresh while idle failed: {f}", f=f.getErrorMessage()))

        self._poller = poller = task.LoopingCall(poll)
        poller.clock = self.shared.clock
        poller.start(effect.seconds, now=False).addErrback(lambda f: None)

    def runStopPolling(self, effect):
        poller, self._poller = self._poller, None
        if poller is not None and poller.running:
            poller.stop()

    def stopRunner(self):
        """The connection is gone: run nothing more, stop polling and the timers, close what comes."""
        self.stopped = True
        self.runStopPolling(None)
        timers, self._timers = self._timers, {}
        for call in timers.values():
            if call.active():
                call.cancel()
        if self._wakeCall is not None and self._wakeCall.active():
            self._wakeCall.cancel()
        self._wakeCall = None
        # What was started and is not waited for is closed when it comes; a
        # command waiting for one goes on when it comes, as after any long
        # effect, and sees the connection closed.
        for handle in self._started:
            if handle.waiter is None:
                handle.discard()

    # What EffectRunner's shared handlers call

    def flush(self):
        pass  # writes go to the transport as they come

    def closeConnection(self):
        self.close()

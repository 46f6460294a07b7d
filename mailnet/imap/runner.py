"""
The IMAP effect runner: what an :class:`~mailnet.imap.session.IMAPSession`
asks for, done (docs/design.md, "One protocol shape").  The shared effects
(``Send``, ``Close``, ``StartTLS``) are run as :class:`mailnet.effects.EffectRunner`
runs them, ``Login`` through its one login sequence (:mod:`mailnet.login`);
IMAP's own (:mod:`mailnet.imap.effects`) are here: ``StoreCall``,
``InThread``, ``Drain``, ``Compress``, ``CloseFolder``,
``KeepFolder``/``ForgetFolder`` (the shared folder keeper),
``StartPolling``/``StopPolling`` (IDLE's refreshes) and ``Legacy`` (a command of an area not converted
yet).

:class:`IMAPRunner` is mixed into the Twisted protocol
(:class:`mailnet.imap.server.IMAPServerProtocol`), which provides
``session``, ``shared``, ``peer``, ``write``, ``drained``, ``startTLS``,
``startCompression`` and ``close``.

The session returns at most one long effect at a time, last in its list.
When that effect's Deferred has fired already (a store that answers at
once, a refresh with nothing new) the runner goes straight on with the
session's next effects in the same loop: a client pipelining thousands of
commands does not deepen the stack.
"""

from __future__ import annotations

from twisted.internet import defer, task

from mailnet.effects import EffectRunner, Login
from mailnet.imap.effects import (
    CloseFolder,
    Compress,
    Drain,
    Failed,
    ForgetFolder,
    InThread,
    KeepFolder,
    Legacy,
    StartPolling,
    StopPolling,
    StoreCall,
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
                         StartPolling: self.runStartPolling, StopPolling: self.runStopPolling})
        self._poller = None
        del self.handlers[Login]  # a long effect here (EffectRunner.login's Deferred, resumed by runEffects)
        # The long effects: a handler returning a Deferred of the outcome.
        self.longHandlers = {StoreCall: self.runStoreCall, InThread: self.runInThread, Drain: self.runDrain,
                             Legacy: self.runLegacy, Login: self.login}

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
                outcome = self._start(effect, longHandlers[kind](effect))
                if outcome is _WAITING:
                    return
                follow = self.session.completed(effect, outcome)
                break
            effects = follow

    def _start(self, effect, d):
        """The outcome of a long effect now if it has one, else _WAITING (it will resume us)."""
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
            if type(effect) is CloseFolder:
                effect.folder.close()
            elif type(effect) is Legacy:
                effect.coroutine.close()
            elif type(effect) in self.longHandlers:
                self.session.abandon()

    # IMAP's effects

    def runStoreCall(self, effect):
        try:
            result = getattr(effect.target, effect.method)(*effect.args)
        except Exception:
            return defer.fail()
        if isinstance(result, defer.Deferred):
            return result
        return defer.succeed(result)

    def runInThread(self, effect):
        return self.shared.inThread(effect.function, *effect.args)

    def runDrain(self, effect):
        d = self.drained()
        if d is None:
            return defer.succeed(False)
        return d.addCallback(lambda _: True)

    def runLegacy(self, effect):
        return defer.ensureDeferred(effect.coroutine)

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
        """The connection is gone: run nothing more, stop polling."""
        self.stopped = True
        self.runStopPolling(None)

    # What EffectRunner's shared handlers call

    def flush(self):
        pass  # writes go to the transport as they come

    def closeConnection(self):
        self.close()

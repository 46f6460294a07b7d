"""
Effects: what a protocol session asks the outside world to do, and the one
runner that does it.

Every protocol has the same shape (docs/design.md, "One protocol shape"):

1. a parser (pure): bytes to commands;
2. a session (pure: no I/O, no Twisted, no store) that consumes commands and
   returns a list of :class:`Effect`; a long effect (a password check, a
   message commit, opening a maildrop) is answered later through
   ``session.completed(effect, outcome)``, which returns more effects;
3. an :class:`EffectRunner` that runs the effects in order and, while a long
   effect is outstanding, hands the session no more commands, so that replies
   leave in the order of the commands (RFC 2920 s3, RFC 2449 s6.6);
4. a thin Twisted protocol: bytes in, batched writes, the TLS switch (which
   drops buffered input), timers through :mod:`mailnet.deadline`.

The effects every protocol shares are here; a protocol adds its own (POP3's
``Retrieve``, SMTP's ``CommitMessage``) and a handler for each.
"""

from __future__ import annotations

import dataclasses

from twisted.internet import defer
from twisted.python.failure import Failure

from mailnet.auth import normalize
from mailnet.login import LoginAbandoned, LoginFailed


class Effect:
    """Something a session asks its runner to do."""

    __slots__ = ()


@dataclasses.dataclass(slots=True)
class Send(Effect):
    """Write ``data`` (the runner may batch writes)."""

    data: bytes


@dataclasses.dataclass(slots=True)
class Close(Effect):
    """Close the connection once everything before it is written."""


@dataclasses.dataclass(slots=True)
class StartTLS(Effect):
    """
    The "go ahead" reply has been queued: write it, then start TLS.  Input
    the client sent before the handshake is thrown away by whoever holds the
    buffer (RFC 3207 s4.2, RFC 2595 s4): never executed.
    """


@dataclasses.dataclass(slots=True)
class Login(Effect):
    """
    Check a user name and password through :class:`mailnet.login.LoginSequence`
    (throttle, portal, log); the outcome goes to ``session.completed``: a
    :class:`LoginOk` or a :class:`LoginError`.

    @ivar authzid: the SASL authorization identity ("" if none); the login
        is refused (counted as a failure) unless it is empty or names the
        same user (RFC 4616 s2: we do not let one user act as another).
    """

    username: str
    password: bytes | str
    authzid: str = ""

    def __repr__(self):  # never show the password
        return f"Login(username={self.username!r}, password=<hidden>)"


@dataclasses.dataclass(slots=True)
class LoginOk:
    """A good login: the avatar from the realm and its logout callable."""

    avatar: object
    logout: object


@dataclasses.dataclass(slots=True)
class LoginError:
    """
    No login: bad credentials (``temporary`` false: counted, the delay has
    been waited), or too many logins waiting / the store failed
    (``temporary``: try again later, nothing counted).
    """

    temporary: bool = False


# Concurrency: start now, wait later.


PENDING = object()
TAKEN = object()


class Start(Effect):
    """
    Start the long ``effect`` now and go on without waiting for it; the
    ``Start`` is itself the handle of its outcome, which the runner puts in
    :attr:`outcome` when it comes, to be taken later with :class:`Wait`
    (or :meth:`take`).  Not long itself: nothing comes back.  (IMAP's FETCH
    and SEARCH open the next messages, and read the next batch in a worker
    thread, while they write the current one.)

    A session may take an outcome that has come without a :class:`Wait`:
    reading it is no I/O, and with a store that opens messages at once it
    saves a round trip to the runner per message.

    @ivar outcome: the outcome once it came (a failure as the protocol's
        ``Failed``), :data:`PENDING` before, :data:`TAKEN` once taken or
        discarded.
    """

    __slots__ = ("effect", "outcome", "waiter", "discarded")

    def __init__(self, effect):
        self.effect = effect
        self.outcome = PENDING
        self.waiter = None  # the Wait effect the session is blocked on
        self.discarded = False

    def __repr__(self):
        return f"Start({self.effect!r})"

    def take(self):
        """The outcome if it has come (it is then the caller's), else :data:`PENDING`."""
        outcome = self.outcome
        if outcome is not PENDING:
            self.outcome = TAKEN
        return outcome

    def discard(self):
        """Nobody will wait for it: close what it gives (a message file), now or when it comes."""
        self.discarded = True
        outcome, self.outcome = self.outcome, TAKEN
        if outcome is not PENDING and outcome is not TAKEN:
            closeOutcome(outcome)


def closeOutcome(outcome):
    """Close an outcome nobody will use (a file, a folder handle); anything else is dropped."""
    close = getattr(outcome, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            pass


@dataclasses.dataclass(slots=True, eq=False)
class Wait(Effect):
    """A long effect: the outcome of the started effect ``handle`` (a :class:`Start`; at once if it came)."""

    handle: Start


@dataclasses.dataclass(slots=True, eq=False)
class Discard(Effect):
    """The started effects ``handles`` will not be waited for: close what they give (see :meth:`Start.discard`)."""

    handles: tuple


# Timers: the session asks, the runner owns the reactor's timer and tells
# the session when it fires.


@dataclasses.dataclass(slots=True)
class StartTimer(Effect):
    """
    Have ``session.event(TimerFired(name))`` called in ``seconds``; a timer
    of that name already running is moved to then.  Not long; order with
    the other effects does not matter.
    """

    name: str
    seconds: float


@dataclasses.dataclass(slots=True)
class CancelTimer(Effect):
    """Stop the timer ``name`` if it runs."""

    name: str


@dataclasses.dataclass(slots=True)
class TimerFired:
    """An event for the session (not an effect): the timer ``name`` of :class:`StartTimer` fired."""

    name: str


class EffectRunner:
    """
    Runs a session's effects in order.  Meant to be mixed into the protocol
    of one connection, which provides:

    * ``session``: the state machine (``completed(effect, outcome)``);
    * ``write(data)`` (may batch), ``flush()``, ``closeConnection()``,
      ``startTLS()``;
    * ``loginSequence``, ``protocolName``, ``peer``, ``avatarInterface`` for
      :class:`Login`;
    * optionally ``nextEffects()`` (the effects of the next command, or None
      when there is none yet) for :meth:`pump`, ``internalError(failure)``
      and ``resumed()``.

    Protocol effects are added to :attr:`handlers` (effect type -> method).
    A protocol whose connections are many and short may instead override
    :meth:`run` with a table of functions built once per class (SMTP does:
    a dict of bound methods per connection is set-up cost on every
    connection).

    @ivar busy: a long effect is outstanding: no more commands until it
        completes.
    @ivar stopped: the connection is gone: run nothing more.
    """

    busy = False
    stopped = False
    _pumping = False

    def initRunner(self, handlers=None):
        self.handlers = {Send: self.runSend, Close: self.runClose, StartTLS: self.runStartTLS, Login: self.runLogin}
        if handlers:
            self.handlers.update(handlers)

    def run(self, effects):
        handlers = self.handlers
        for effect in effects:
            if self.stopped:
                return
            handlers[type(effect)](effect)

    def pump(self):
        """
        Hand the session commands until one starts a long effect or none is
        left.  Safe to call from inside a handler (a synchronous completion):
        the loop already running goes on, no second one starts.
        """
        if self._pumping:
            return
        self._pumping = True
        try:
            while not self.busy and not self.stopped:
                effects = self.nextEffects()
                if effects is None:
                    break
                self.run(effects)
        finally:
            self._pumping = False
            self.flush()

    def nextEffects(self):
        return None

    # Long effects

    def wait(self, d):
        """
        A long effect has started: ``d`` fires with the effects that follow
        it.  Until then no more commands are read.  Returns a Deferred that
        fires (with None) once those effects have run.
        """
        self.busy = True
        return d.addCallbacks(self.resume, self._resumeFailed)

    def waitFor(self, effect, d):
        """
        A long effect whose outcome ``d`` fires with: the session's
        ``completed(effect, outcome)`` says what follows (nothing once the
        client has gone).  Returns a Deferred that fires (with None) once
        those effects have run.
        """
        # One callback pair on d (not three links): this runs once per
        # message or login.
        self.busy = True
        return d.addCallbacks(self._completed, self._resumeFailed, callbackArgs=(effect,))

    def _completed(self, outcome, effect):
        if self.stopped:
            self.busy = False
            return None
        try:
            effects = self.session.completed(effect, outcome)
        except Exception:
            effects = self._failed(Failure())
        return self.resume(effects)

    def _resumeFailed(self, failure):
        return self.resume(self._failed(failure))

    def _failed(self, failure):
        if self.stopped:
            return []  # the client went away mid-effect; nothing to say
        return self.internalError(failure)

    def internalError(self, failure):
        """The effects that answer an unexpected failure of a long effect."""
        raise NotImplementedError

    def resume(self, effects):
        self.busy = False
        if self.stopped:
            return
        self.run(effects)
        self.resumed()
        self.pump()

    def resumed(self):
        """A long effect has completed and its effects have run."""

    # Shared effects

    def runSend(self, effect):
        self.write(effect.data)

    def runClose(self, effect):
        self.flush()
        self.closeConnection()

    def runStartTLS(self, effect):
        self.flush()  # the go-ahead leaves in the clear, before the handshake
        self.startTLS()

    def runLogin(self, effect):
        self.waitFor(effect, self.login(effect))

    @defer.inlineCallbacks
    def login(self, effect):
        """
        The one login sequence (:mod:`mailnet.login`).  Fires with a
        :class:`LoginOk`, a :class:`LoginError`, or None when the client went
        away before its password was checked.
        """
        sequence = self.loginSequence
        try:
            if effect.authzid and normalize(effect.authzid) != normalize(effect.username):
                yield sequence.refuse(self.protocolName, self.peer, effect.username,
                                      f"may not act as {printable(effect.authzid)}")
            avatar, logout = yield sequence.login(self.protocolName, self.peer, effect.username, effect.password,
                                                  self.avatarInterface, alive=lambda: not self.stopped)
        except LoginAbandoned:
            return None
        except LoginFailed:
            return LoginError(temporary=False)
        except Exception:
            # Too many logins waiting, or the password was fine but the
            # account could not be opened (logged by the sequence).
            return LoginError(temporary=True)
        if self.stopped:
            logout()  # the client has gone meanwhile: give the account back
            return None
        return LoginOk(avatar, logout)


def printable(text, limit=100):
    """A client-supplied name made safe for one log line."""
    text = text[:limit]
    return "".join(c if c.isprintable() else "?" for c in text)

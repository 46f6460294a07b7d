"""
IMAP's own effects (docs/design.md, "One protocol shape"): what an
:class:`~mailnet.imap.session.IMAPSession` command asks its runner
(:mod:`mailnet.imap.runner`) to do, besides the shared ones of
:mod:`mailnet.effects` (``Send``, ``Close``, ``StartTLS``, ``Login``).

A command is a generator: it ``yield``s one long effect at a
time and gets its outcome back as the value of the ``yield`` (a failure is
raised there, so the store's errors reach the one place that maps them to
NO/BAD replies).  Its reply lines are collected by the session and leave as
``Send`` effects before the next long effect, in order.  The session hands
the runner at most one long effect at a time, always last in the list it
returns; the runner answers it through ``session.completed(effect,
outcome)``.
"""

from __future__ import annotations

import dataclasses

from mailnet.effects import (
    CancelTimer,
    Close,
    Discard,
    Effect,
    Login,
    LoginError,
    LoginOk,
    Send,
    Start,
    StartTimer,
    StartTLS,
    TimerFired,
    Wait,
)

# used through this module too
__all__ = ["CancelTimer", "Close", "Discard", "Effect", "Login", "LoginError", "LoginOk", "Send", "Start",
           "StartTimer", "StartTLS", "TimerFired", "Wait"]


@dataclasses.dataclass(slots=True)
class Write(Effect):
    """
    Write ``pieces`` (a list of bytes) as they are: FETCH responses with
    message bodies, which the transport joins once (a ``Send`` of them
    joined would copy each body once more).
    """

    pieces: list


@dataclasses.dataclass(slots=True)
class StoreCall(Effect):
    """
    Call ``target.method(*args)`` (an account or folder of the store
    contract, :mod:`mailnet.store.interfaces`); the outcome is what it
    returns (a Deferred's result), or a :class:`Failed`.
    """

    target: object
    method: str
    args: tuple = ()


@dataclasses.dataclass(slots=True)
class Look(Effect):
    """
    Call ``target.method(*args)`` like a :class:`StoreCall`, but outside
    any command and without waiting: the outcome comes back later as the
    event :class:`Looked` (``session.event``) with ``key``.  (NOTIFY opens
    the folder of a mailbox to watch when another session creates it.)
    """

    target: object
    method: str
    args: tuple
    key: tuple


@dataclasses.dataclass(slots=True)
class Looked:
    """The outcome of a :class:`Look` (a :class:`Failed` when it failed), given to ``session.event``."""

    key: tuple
    outcome: object
    name: str = "looked"


@dataclasses.dataclass(slots=True)
class InThread(Effect):
    """Run the blocking ``function(*args)`` in a worker thread; the outcome is its result."""

    function: object
    args: tuple = ()


@dataclasses.dataclass(slots=True)
class Drain(Effect):
    """Wait until the transport has room (flow control); the outcome is True when it had to wait."""


@dataclasses.dataclass(slots=True)
class Compress(Effect):
    """
    RFC 4978: the tagged OK has been queued; from right after it, deflate
    what is written and inflate what is read.  ``pending`` is what the client
    sent after the command (compressed already), handed back to be inflated.
    """

    pending: bytes = b""


@dataclasses.dataclass(slots=True)
class KeepFolder(Effect):
    """
    Note a use of folder ``name`` of ``account`` with the shared
    :class:`~mailnet.imap.mailbox.FolderKeeper` (it keeps recently used
    folders open a while; ``key`` is (user, name)), and give it the
    ``snapshot`` a SELECT made (None: none to keep).  Nothing comes back.
    """

    key: tuple
    account: object
    name: str
    snapshot: object = None


@dataclasses.dataclass(slots=True)
class CloseFolder(Effect):
    """Close a folder handle or a selected view (``close()``), after the effects before it."""

    folder: object


@dataclasses.dataclass(slots=True)
class ForgetFolder(Effect):
    """The keeper closes what it holds of folder ``name`` of ``user`` and its children (DELETE, RENAME)."""

    user: str
    name: str


@dataclasses.dataclass(slots=True)
class StartPolling(Effect):
    """
    IDLE (RFC 2177): refresh ``folder`` every ``seconds`` until
    :class:`StopPolling` (or the connection ends), for changes other
    programs make; a failed refresh is logged.  Nothing comes back: what a
    refresh finds reaches the session's view as store events.
    """

    folder: object
    seconds: float


@dataclasses.dataclass(slots=True)
class StopPolling(Effect):
    """End the polling of :class:`StartPolling`."""


@dataclasses.dataclass(slots=True)
class ReadLine(Effect):
    """
    The client's next line, raw (SASL responses, IDLE's DONE).  Never reaches
    the runner: the session holds the input and resumes the command itself.
    """


@dataclasses.dataclass(slots=True)
class NextTurn(Effect):
    """
    Let other connections have the reactor: the outcome (None) comes on its
    next turn.  A long FETCH or SEARCH that waited for nothing yields this
    every few milliseconds.
    """


@dataclasses.dataclass(slots=True)
class PauseReading(Effect):
    """Stop reading from the client (a command runs and much input is buffered already)."""


@dataclasses.dataclass(slots=True)
class ResumeReading(Effect):
    """Read from the client again."""


@dataclasses.dataclass(slots=True)
class Failed:
    """The outcome of a long effect that failed: ``error`` is raised where the command waits."""

    error: BaseException


# The effects the runner waits for (the session stops after one of these).
LONG = (StoreCall, InThread, Drain, Wait, NextTurn, Login)

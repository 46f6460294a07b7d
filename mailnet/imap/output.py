"""
The IMAP session's output: the bytes it writes and the effects it returns
(docs/design.md, "One protocol shape").  While the session computes (feed,
completed, event, start: between ``_begin`` and ``_end``) the bytes go to
an outbox and the effects to a list; ``_end`` hands both to the runner as
effects in order.  With the dialogue at debug level
(:mod:`mailnet.imap.dialogue`) the session swaps in the ``_send*Logged``
methods.

:class:`SessionOutput` is a mixin of :class:`mailnet.imap.session.IMAPSession`.
"""

from __future__ import annotations

from mailnet.effects import PENDING
from mailnet.imap.effects import LONG, CloseFolder, Discard, Drain, Failed, Send, Start, Wait, Write


class SessionOutput:
    """The outbox and effects list of :class:`mailnet.imap.session.IMAPSession` (a mixin)."""

    # Effects

    def _begin(self):
        self._outbox = []
        self._effects = []

    def _end(self):
        """The effects computed since _begin (the bytes written as one Send)."""
        box = self._outbox
        effects = self._effects
        if box:
            effects.append(self._sendEffect(box))
        self._outbox = self._effects = None
        return effects

    def _sendEffect(self, box):
        """The bytes written since the last effect: one ``Send``, or the pieces as they are when large (FETCH)."""
        pieces, self._pieces = self._pieces, False
        if len(box) == 1:
            return Send(box[0])
        if pieces:
            # Message bytes: the transport joins what it writes, once; a
            # join here would copy every body a second time.
            return Write(box)
        return Send(b"".join(box))

    def emit(self, effect):
        """An effect, after the bytes written so far."""
        box = self._outbox
        if box:
            self._effects.append(self._sendEffect(box))
            self._outbox = []
        self._effects.append(effect)

    def _aside(self, effect):
        """
        An effect whose order with the bytes does not matter (a timer, a
        pause): before the long effect that ends the list, if one does.
        """
        effects = self._effects
        if effects is None:
            return  # the connection is gone: the runner has stopped everything
        if effects and type(effects[-1]) in LONG:
            effects.insert(len(effects) - 1, effect)
        else:
            effects.append(effect)

    def closeFolder(self, folder):
        """Close a folder handle: an effect, in order, while computing effects (else at once)."""
        if self._effects is not None:
            self.emit(CloseFolder(folder))
        else:
            folder.close()

    def startEffect(self, effect) -> Start:
        """
        Start the long ``effect`` (a ``StoreCall``, an ``InThread``) without
        waiting for it; ``yield Wait(handle)`` takes its outcome later
        (mailnet.effects.Start).
        """
        handle = Start(effect)
        self._effects.append(handle)  # in any order with the bytes
        return handle

    def waitFor(self, handle):
        """(``yield from``) The outcome of a started effect: taken at once if it has come, else a ``Wait``."""
        outcome = handle.take()
        if outcome is PENDING:
            return (yield Wait(handle))
        if type(outcome) is Failed:
            raise outcome.error
        return outcome

    def discard(self, handles):
        """Started effects nobody will wait for: what they give is closed (now when the connection is gone)."""
        handles = tuple(handles)
        if not handles:
            return
        if self._effects is not None:
            self._effects.append(Discard(handles))
        else:
            for handle in handles:
                handle.discard()

    # Output

    def send(self, data):
        if not self.closed:
            box = self._outbox
            if box is not None:
                box.append(data)

    def sendLines(self, lines):
        if lines and not self.closed:
            box = self._outbox
            if box is not None:
                box.extend(lines)

    def sendPieces(self, pieces):
        """Write a few (large) pieces without joining them."""
        if pieces and not self.closed:
            box = self._outbox
            if box is not None:
                box.extend(pieces)
                self._pieces = True

    def _sendLogged(self, data):
        if not self.closed:
            self._dialogue.response(data)
            SessionOutput.send(self, data)

    def _sendLinesLogged(self, lines):
        if lines and not self.closed:
            data = b"".join(lines)
            self._dialogue.response(data)
            SessionOutput.send(self, data)

    def _sendPiecesLogged(self, pieces):
        if pieces and not self.closed:
            for piece in pieces:
                self._dialogue.response(piece)
            SessionOutput.sendPieces(self, pieces)

    def tagged(self, tag, kind, text, code=None):
        line = tag.encode("ascii") + b" " + kind.encode("ascii") + b" "
        if code:
            line += b"[" + code + b"] "
        self.send(line + text.encode("utf-8", "replace") + b"\r\n")

    def drainEffect(self):
        """(A command: ``yield from``.) Wait until the transport has room."""
        if (yield Drain()):
            self._waitedAt = self.clock.seconds()

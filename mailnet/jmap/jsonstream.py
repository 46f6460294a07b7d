"""
A JMAP response as JSON in pieces (issue 14: Email/get of a 10 MB body
with flat memory).  Pure: no I/O; :mod:`mailnet.http.api` writes the pieces
to the request with flow control.

A large text value (an EmailBodyValue's ``value``) is a :class:`LazyText`:
its decoded text in pieces, never joined.  :func:`encodePieces` writes the
response with ``json.dumps`` as before, each LazyText standing in as a
placeholder string, and splits the result at the placeholders, where the
text's JSON escaping goes out a slice at a time.  The bytes are exactly
``json.dumps(value, separators=(",", ":"))`` of the same response with the
texts joined (tests/jmap/test_jsonstream.py checks it); a response with no
LazyText is that one ``json.dumps`` call, as fast as before.

Nothing here can fail once the first piece is out: the texts are decoded
(and every error of the method turned into its answer) before the response
object exists, ``json.dumps`` of the rest runs in full before the first
piece is yielded, and escaping a str cannot fail.
"""

from __future__ import annotations

import json
import secrets
from json.encoder import encode_basestring_ascii

# Characters per escaped slice of a LazyText (at most 6 bytes each once escaped).
SLICE = 32 * 1024
# Decoded texts longer than this (characters) stay in pieces (smaller ones are a plain str).
LAZY_OVER = 256 * 1024


class LazyText:
    """A decoded text kept as a list of str pieces (no joined copy)."""

    __slots__ = ("pieces", "length")

    def __init__(self, pieces):
        self.pieces = pieces
        self.length = sum(len(p) for p in pieces)

    def __len__(self):
        return self.length

    def __str__(self):
        return "".join(self.pieces)

    def __eq__(self, other):
        if isinstance(other, LazyText):
            other = str(other)
        return isinstance(other, str) and str(self) == other

    __hash__ = None

    def escaped(self):
        """The JSON string (quotes included) as ASCII bytes, a slice at a time."""
        yield b'"'
        for piece in self.pieces:
            for at in range(0, len(piece), SLICE):
                # A str slice never splits a character, so slice by slice is the whole escaping.
                yield encode_basestring_ascii(piece[at:at + SLICE])[1:-1].encode("ascii")
        yield b'"'


def textValue(pieces):
    """A plain str for a short text, a :class:`LazyText` for a long one."""
    if sum(len(p) for p in pieces) <= LAZY_OVER:
        return "".join(pieces)
    return LazyText(pieces)


def plain(o):
    """``default`` for ``json.dumps`` elsewhere (the WebSocket): a LazyText as its joined text."""
    if isinstance(o, LazyText):
        return str(o)
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def dumps(value) -> str:
    """The whole JSON text (LazyTexts joined): the reference the pieces must equal."""
    return json.dumps(value, separators=(",", ":"), default=plain)


def encodePieces(value):
    """
    The JSON of ``value`` (``separators=(",", ":")``, ASCII) as a list of
    pieces: bytes, and generators of bytes for the LazyTexts.  Everything
    that can fail has run when this returns.
    """
    lazy = []
    token = "\x00lazy-" + secrets.token_hex(16) + "-"

    def stand(o):
        if isinstance(o, LazyText):
            lazy.append(o)
            return token + str(len(lazy) - 1)
        raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")

    text = json.dumps(value, separators=(",", ":"), default=stand)
    if not lazy:
        return [text.encode("ascii")]
    marker = encode_basestring_ascii(token)[:-1]  # '"\u0000lazy-...-'
    parts = text.split(marker)
    if len(parts) != len(lazy) + 1:  # the random token in the data itself: never in practice, still right
        return [dumps(value).encode("ascii")]
    out = [parts[0].encode("ascii")]
    for n, part in enumerate(parts[1:]):
        index, _, rest = part.partition('"')
        if index != str(n):
            return [dumps(value).encode("ascii")]
        out.append(lazy[n].escaped())
        out.append(rest.encode("ascii"))
    return out


def iterBytes(pieces):
    for piece in pieces:
        if isinstance(piece, bytes):
            if piece:
                yield piece
        else:
            yield from piece

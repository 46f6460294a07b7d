"""
App passwords (bearer tokens): ``mailnet token add|list|revoke USER``.

A token is ``mn_`` and 32 random bytes in base64url (256 bits).  It is
shown once, when made; the tokens file keeps only its SHA-256, one line a
token::

    user@domain:name:sha256-hex:created-unix-seconds

A fast unkeyed hash is enough here, unlike for passwords (argon2,
mailnet/passwords.py): a slow hash is there to make guessing a *chosen*
password from a stolen file expensive, but a 256-bit random token cannot
be guessed whatever the hash costs, and a fast one lets every request
carrying the token (each JMAP call, each IMAP login) be checked in
microseconds without a thread or a cache.

The file lives beside the users file (``<users file>.tokens``), is written
like it (locked, atomically, durably: mailnet/durable.py) and is re-read
when it changes on disk, so a revoke takes effect on a running server at
once.

Where a token is accepted: as ``Authorization: Bearer`` on the http
listener (JMAP: mailnet/http/auth.py), and, as an app password with the
user's name, wherever the users file checks a password: HTTP Basic, IMAP,
POP3, SMTP AUTH and the webmail's login (``UserDB.checkPassword``).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time

from mailnet.auth import _WatchedFile, normalize
from mailnet.logs import Logger

log = Logger()

PREFIX = "mn_"
# mn_ + 43 base64url characters (32 bytes, unpadded).
TOKEN_RE = re.compile(r"mn_[A-Za-z0-9_-]{43}")
NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")


def makeToken() -> str:
    return PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")


def looksLikeToken(text) -> bool:
    return isinstance(text, str) and TOKEN_RE.fullmatch(text) is not None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


class TokenDB(_WatchedFile):
    """The tokens file: who owns which token digest."""

    def _parse(self, lines):
        byDigest = {}
        for number, line in enumerate(lines, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            fields = line.split(":")
            if len(fields) != 4 or not re.fullmatch(r"[0-9a-f]{64}", fields[2]):
                log.warn("{path}:{n}: expected 'user:name:sha256:created'; line ignored", path=self.path, n=number)
                continue
            byDigest[fields[2]] = (normalize(fields[0]), fields[1], fields[3])
        return byDigest

    # Checking (on the reactor: from memory, one hash)

    def owner(self, token) -> str | None:
        """The user a token belongs to, or None (not a token, unknown, revoked)."""
        if not looksLikeToken(token):
            return None
        found = self.current().get(digest(token))
        return found[0] if found else None

    def check(self, username, token) -> bool:
        """Whether ``token`` is one of ``username``'s app passwords."""
        return self.owner(token) == normalize(username)

    # The CLI's side

    def list(self, username) -> list[tuple[str, str]]:
        """``[(name, created unix seconds)]`` of a user's tokens, oldest first."""
        key = normalize(username)
        found = [(name, created) for user, name, created in self.current().values() if user == key]
        return sorted(found, key=lambda item: (item[1], item[0]))

    def add(self, username, name=None, clock=time.time) -> str:
        """Make a token for ``username``; return it (the only time it is seen)."""
        key = normalize(username)
        if name is None:
            name = "token-" + secrets.token_hex(3)
        if not NAME_RE.fullmatch(name):
            raise ValueError(f"{name!r}: a token name is 1-64 letters, digits, '.', '_' or '-'")
        token = makeToken()
        with self.editing() as lines:
            for line in lines:
                fields = line.split(":")
                if len(fields) == 4 and normalize(fields[0]) == key and fields[1] == name:
                    raise ValueError(f"{key} has a token named {name} already")
            lines.append(f"{key}:{name}:{digest(token)}:{int(clock())}")
        return token

    def revoke(self, username, name):
        key = normalize(username)
        with self.editing() as lines:
            keep = [line for line in lines
                    if not ((f := line.split(":")) and len(f) == 4 and normalize(f[0]) == key and f[1] == name)]
            if len(keep) == len(lines):
                raise KeyError(f"{key} has no token named {name}")
            lines[:] = keep

    def removeUser(self, username):
        """Revoke every token of a user (``mailnet user del``)."""
        key = normalize(username)
        with self.editing() as lines:
            lines[:] = [line for line in lines if normalize(line.split(":")[0]) != key]

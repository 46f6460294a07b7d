"""
Password hashes in Dovecot's ``{SCHEME}hash`` notation.

New hashes are argon2id (default), bcrypt (``BLF-CRYPT``) or SHA-512-crypt.
Checking accepts what an admin moving from Dovecot brings: ARGON2ID,
ARGON2I, BLF-CRYPT, SHA512-CRYPT, SHA256-CRYPT, CRYPT (dispatching on the
``$id$``), SSHA512/SSHA256/SHA512/SHA256 (base64), PLAIN/CLEARTEXT.

SHA-crypt is implemented here (Drepper's specification) because the stdlib
``crypt`` module is gone from Python 3.13.  All checks are constant time
where the scheme allows and are CPU-heavy: call :func:`verify` from a thread.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

import argon2
import bcrypt

_ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

# Byte orders of the final encoding (SHA-crypt spec, steps 22e and 22f).
_ORDER512 = [
    (0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4), (47, 5, 26),
    (6, 27, 48), (28, 49, 7), (50, 8, 29), (9, 30, 51), (31, 52, 10), (53, 11, 32),
    (12, 33, 54), (34, 55, 13), (56, 14, 35), (15, 36, 57), (37, 58, 16), (59, 17, 38),
    (18, 39, 60), (40, 61, 19), (62, 20, 41),
]
_ORDER256 = [
    (0, 10, 20), (21, 1, 11), (12, 22, 2), (3, 13, 23), (24, 4, 14), (15, 25, 5),
    (6, 16, 26), (27, 7, 17), (18, 28, 8), (9, 19, 29),
]


class UnsupportedScheme(ValueError):
    """The stored hash uses a scheme we cannot check."""


def _b64_24(b2, b1, b0, n):
    w = (b2 << 16) | (b1 << 8) | b0
    out = []
    for _ in range(n):
        out.append(_ITOA64[w & 0x3F])
        w >>= 6
    return "".join(out)


def _repeat(digest, length):
    return (digest * (length // len(digest) + 1))[:length]


def sha_crypt(password: bytes, setting: str, algorithm="sha512") -> str:
    """
    SHA-crypt (``$5$``/``$6$``).  ``setting`` is ``$6$salt``,
    ``$6$rounds=N$salt`` or a whole hash (its salt and rounds are reused).
    """
    h = getattr(hashlib, algorithm)
    prefix = "$6$" if algorithm == "sha512" else "$5$"
    if not setting.startswith(prefix):
        raise ValueError("bad SHA-crypt setting")
    rest = setting[3:]
    rounds, custom = 5000, False
    if rest.startswith("rounds="):
        num, _, rest = rest[7:].partition("$")
        rounds, custom = max(1000, min(999_999_999, int(num))), True
    salt = rest.split("$", 1)[0][:16].encode()
    P, S = password, salt
    B = h(P + S + P).digest()
    a = h(P + S)
    a.update(_repeat(B, len(P)))
    n = len(P)
    while n:
        a.update(B if n & 1 else P)
        n >>= 1
    A = a.digest()
    DP = _repeat(h(P * len(P)).digest(), len(P))
    DS = _repeat(h(S * (16 + A[0])).digest(), len(S))
    C = A
    for i in range(rounds):
        c = h(DP if i & 1 else C)
        if i % 3:
            c.update(DS)
        if i % 7:
            c.update(DP)
        c.update(C if i & 1 else DP)
        C = c.digest()
    if algorithm == "sha512":
        enc = "".join(_b64_24(C[x], C[y], C[z], 4) for x, y, z in _ORDER512) + _b64_24(0, 0, C[63], 2)
    else:
        enc = "".join(_b64_24(C[x], C[y], C[z], 4) for x, y, z in _ORDER256) + _b64_24(0, C[31], C[30], 3)
    head = prefix + (f"rounds={rounds}$" if custom else "")
    return f"{head}{salt.decode()}${enc}"


_argon = argon2.PasswordHasher()


def make(password: str, scheme: str = "argon2id") -> str:
    """Hash a new password; returns ``{SCHEME}hash``."""
    pw = password.encode("utf-8")
    if scheme == "argon2id":
        return "{ARGON2ID}" + _argon.hash(pw)
    if scheme == "bcrypt":
        return "{BLF-CRYPT}" + bcrypt.hashpw(pw, bcrypt.gensalt(10)).decode()
    if scheme == "sha512-crypt":
        salt = "".join(secrets.choice(_ITOA64) for _ in range(16))
        return "{SHA512-CRYPT}" + sha_crypt(pw, f"$6$rounds=100000${salt}")
    raise ValueError(f"unknown scheme {scheme!r}")


def _crypt(pw: bytes, stored: str) -> bool:
    if stored.startswith(("$2a$", "$2b$", "$2y$")):
        return bcrypt.checkpw(pw, stored.encode())
    if stored.startswith("$6$"):
        return hmac.compare_digest(sha_crypt(pw, stored, "sha512"), stored)
    if stored.startswith("$5$"):
        return hmac.compare_digest(sha_crypt(pw, stored, "sha256"), stored)
    if stored.startswith("$argon2"):
        return _argon2(pw, stored)
    raise UnsupportedScheme("crypt variant " + stored[:4])


def _argon2(pw: bytes, stored: str) -> bool:
    try:
        return _argon.verify(stored, pw)
    except argon2.exceptions.VerificationError:
        return False
    except argon2.exceptions.InvalidHashError:
        raise UnsupportedScheme("malformed argon2 hash")


def _salted(algorithm, digest_size):
    def check(pw: bytes, stored: str) -> bool:
        raw = base64.b64decode(stored)
        digest, salt = raw[:digest_size], raw[digest_size:]
        return hmac.compare_digest(hashlib.new(algorithm, pw + salt).digest(), digest)

    return check


_SCHEMES = {
    "ARGON2ID": _argon2,
    "ARGON2I": _argon2,
    "BLF-CRYPT": _crypt,
    "SHA512-CRYPT": _crypt,
    "SHA256-CRYPT": _crypt,
    "CRYPT": _crypt,
    "SSHA512": _salted("sha512", 64),
    "SSHA256": _salted("sha256", 32),
    "SHA512": _salted("sha512", 64),
    "SHA256": _salted("sha256", 32),
    "PLAIN": lambda pw, stored: hmac.compare_digest(pw, stored.encode("utf-8")),
    "CLEARTEXT": lambda pw, stored: hmac.compare_digest(pw, stored.encode("utf-8")),
}


def scheme(stored: str) -> str:
    """The scheme name of a stored hash (``CRYPT`` when there is no prefix)."""
    if stored.startswith("{"):
        return stored[1:].split("}", 1)[0].upper()
    return "CRYPT"


def verify(password: str, stored: str) -> bool:
    """
    Check a password against a stored ``{SCHEME}hash``.

    @raise UnsupportedScheme: the scheme is unknown or the hash malformed.
    """
    name = scheme(stored)
    body = stored.split("}", 1)[1] if stored.startswith("{") else stored
    check = _SCHEMES.get(name)
    if check is None:
        raise UnsupportedScheme(name)
    try:
        return check(password.encode("utf-8"), body)
    except (ValueError, TypeError) as e:
        if isinstance(e, UnsupportedScheme):
            raise
        raise UnsupportedScheme(f"malformed {name} hash")

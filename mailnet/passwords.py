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
import stringprep
import unicodedata

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


class InvalidPassword(ValueError):
    """The password has characters SASLprep prohibits (RFC 4013 s2.3, s2.4, s2.5)."""


# RFC 4013 s2.3: the prohibited output tables of RFC 3454.
_PROHIBITED = (
    stringprep.in_table_c12, stringprep.in_table_c21_c22, stringprep.in_table_c3, stringprep.in_table_c4,
    stringprep.in_table_c5, stringprep.in_table_c6, stringprep.in_table_c7, stringprep.in_table_c8,
    stringprep.in_table_c9,
)


def saslprep(text: str, stored: bool = True) -> str:
    """
    RFC 4013 SASLprep, the preparation of passwords on every protocol, so
    that a password typed with a non-ASCII space, or with an accent composed
    or decomposed, is the same password everywhere.

    @param stored: True for a string being stored (a new password:
        unassigned code points are prohibited, RFC 3454 s7), False for a
        query (a password being checked: they are allowed).
    @raise InvalidPassword: a prohibited character, or bad bidi text.
    """
    if text.isascii() and text.isprintable():
        return text  # the common case; SASLprep leaves printable ASCII as it is
    # RFC 4013 s2.1: non-ASCII spaces (C.1.2) map to SPACE; B.1 maps to nothing.
    mapped = "".join(" " if stringprep.in_table_c12(c) else c for c in text if not stringprep.in_table_b1(c))
    # RFC 4013 s2.2: Unicode normalization form KC (of Unicode 3.2, like the tables).
    prepared = unicodedata.ucd_3_2_0.normalize("NFKC", mapped)
    for c in prepared:
        if any(table(c) for table in _PROHIBITED):
            raise InvalidPassword(f"character U+{ord(c):04X} is not allowed in a password")
        if stored and stringprep.in_table_a1(c):
            raise InvalidPassword(f"character U+{ord(c):04X} is not assigned in Unicode 3.2")
    # RFC 4013 s2.4 / RFC 3454 s6: bidirectional text.
    if any(stringprep.in_table_d1(c) for c in prepared):
        if any(stringprep.in_table_d2(c) for c in prepared):
            raise InvalidPassword("a password may not mix right-to-left and left-to-right text")
        if not (stringprep.in_table_d1(prepared[0]) and stringprep.in_table_d1(prepared[-1])):
            raise InvalidPassword("right-to-left text must start and end with a right-to-left character")
    return prepared


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
    """
    Hash a new password (SASLprep'd first); returns ``{SCHEME}hash``.

    @raise InvalidPassword: SASLprep refuses the password.
    """
    pw = saslprep(password).encode("utf-8")
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

    The password is SASLprep'd first (RFC 4013); one the preparation
    prohibits is simply wrong.  When the prepared form differs from what
    was typed and does not match, what was typed is tried too: hashes made
    before mailnet prepared passwords, or imported from Dovecot (which does
    not), hold the password as it was typed.

    @raise UnsupportedScheme: the scheme is unknown or the hash malformed.
    """
    name = scheme(stored)
    body = stored.split("}", 1)[1] if stored.startswith("{") else stored
    check = _SCHEMES.get(name)
    if check is None:
        raise UnsupportedScheme(name)
    try:
        prepared = saslprep(password, stored=False)
    except InvalidPassword:
        return False
    try:
        if check(prepared.encode("utf-8"), body):
            return True
        return prepared != password and check(password.encode("utf-8"), body)
    except (ValueError, TypeError) as e:
        if isinstance(e, UnsupportedScheme):
            raise
        raise UnsupportedScheme(f"malformed {name} hash")

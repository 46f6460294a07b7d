"""
The Sender Rewriting Scheme (SRS): the envelope sender of a message we
forward, rewritten into an address of our domain, so that SPF at the next
hop checks our domain (which authorizes us) and a bounce comes back to us,
who send it on to the original sender.  Pure: no I/O, no clock (the time is
a parameter).

SRS has no RFC.  The format is the one of Shevek's SRS paper and of its
implementations that everyone interoperates with: Mail::SRS (Perl, the
reference; its Guarded scheme), libsrs2 and postsrsd::

    SRS0=HHHH=TT=orig-domain=orig-local@our.domain
    SRS1=HHHH=first-forwarder.domain==HHHH=TT=orig-domain=orig-local@our.domain

* ``HHHH``: the first 4 characters of the base64 HMAC-SHA1, keyed with the
  secret, of the lower-cased fields (SRS0: timestamp, domain, local part;
  SRS1: the forwarder's domain and the rest of its SRS0 local part).
  base64 has both cases; a hash is checked exactly first, then without
  case, since some MTAs change the case of local parts (Mail::SRS does the
  same and warns).
* ``TT``: days since 1970 modulo 1024 in two base32 characters
  (``A-Z2-7``, high five bits first); read without case.  An address is
  good for ``maxAge`` days.
* The separator after ``SRS0``/``SRS1`` may be ``=``, ``+`` or ``-``
  (read; we write ``=``), the tags are read without case.
* An SRS0 address of another forwarder is not wrapped again but turned into
  SRS1 (its hash and timestamp are its own; we hash what we carry); an
  SRS1 address gets our hash in place of the previous forwarder's.  A bounce
  to an SRS1 address of ours goes to the SRS0 address inside, at the
  forwarder that made it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

DAY = 86400
BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
TICKSLOTS = 32 * 32  # two base32 characters
HASH_LENGTH = 4  # Mail::SRS HashLength and HashMin, libsrs2 and postsrsd's default
MAX_AGE = 21  # days; Mail::SRS's default is 31, postsrsd's 21
SEP = "="

_SRS0 = re.compile(r"^srs0([-+=])", re.IGNORECASE)
_SRS1 = re.compile(r"^srs1([-+=])", re.IGNORECASE)


class SRSError(ValueError):
    """An SRS address of ours that cannot be reversed: the reason is for the 550 text."""


def timestamp(now: float) -> str:
    """The two-character timestamp of the day of ``now`` (Unix seconds)."""
    days = int(now // DAY)
    return BASE32[(days >> 5) & 31] + BASE32[days & 31]


def timestampValid(stamp: str, now: float, maxAge: int = MAX_AGE) -> bool:
    """Whether ``stamp`` is of today or of the ``maxAge`` days before (Mail::SRS's timestamp_check)."""
    stamp = stamp.upper()
    if len(stamp) != 2 or any(c not in BASE32 for c in stamp):
        return False
    then = BASE32.index(stamp[0]) * 32 + BASE32.index(stamp[1])
    today = int(now // DAY) % TICKSLOTS
    while today < then:  # the cycle wrapped since
        today += TICKSLOTS
    return today <= then + maxAge


def _hash(secret: bytes, *fields: str) -> str:
    mac = hmac.new(secret, digestmod=hashlib.sha1)
    for field in fields:
        mac.update(field.lower().encode("utf-8"))
    return base64.b64encode(mac.digest()).decode("ascii")[:HASH_LENGTH]


def _hashValid(secrets, given: str, *fields: str) -> bool:
    if len(given) < HASH_LENGTH:
        return False
    made = [_hash(s, *fields) for s in secrets]
    # exact first, then without case (a hop that lower-cased the local part)
    return any(hmac.compare_digest(given.encode("utf-8", "replace"), m.encode("ascii")) for m in made) or \
        any(given.lower() == m.lower() for m in made)


def _split(address: str):
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or "@" in local:
        raise ValueError(f"not an address: {address!r}")
    return local, domain


def isSRS(address: str) -> bool:
    """Whether the local part of ``address`` is in SRS0 or SRS1 form (anyone's)."""
    local = address.rpartition("@")[0]
    return bool(_SRS0.match(local) or _SRS1.match(local))


def forward(sender: str, domain: str, secret: bytes, now: float) -> str:
    """
    The envelope sender to use when forwarding mail from ``sender`` as
    ``domain`` (ours): SRS0 for a plain address, SRS1 for another
    forwarder's SRS0 or SRS1 address.  A sender of ``domain`` itself is
    returned as it is (Mail::SRS does the same).

    @param secret: the key (the first of :func:`parseSecrets`).
    """
    local, host = _split(sender)
    if host.lower() == domain.lower():
        return sender
    m = _SRS1.match(local)
    if m:
        # SRS1=hash=srshost=srsuser: keep the first forwarder's host and user, hash again
        parts = local[m.end():].split(SEP, 2)
        if len(parts) == 3:
            _, srsHost, srsUser = parts
            return f"SRS1{SEP}{_hash(secret, srsHost, srsUser)}{SEP}{srsHost}{SEP}{srsUser}@{domain}"
    m = _SRS0.match(local)
    if m:
        # SRS0<sep>... of another forwarder: carried as it is (with its separator)
        srsUser = local[m.start(1):]
        return f"SRS1{SEP}{_hash(secret, host, srsUser)}{SEP}{host}{SEP}{srsUser}@{domain}"
    stamp = timestamp(now)
    return f"SRS0{SEP}{_hash(secret, stamp, host, local)}{SEP}{stamp}{SEP}{host}{SEP}{local}@{domain}"


def reverse(address: str, secrets, now: float, maxAge: int = MAX_AGE) -> str:
    """
    The address an SRS address of ours stands for: the original sender for
    SRS0, the first forwarder's SRS0 address for SRS1.

    @param secrets: every key that may have made it (the first signs; the
        others are older ones kept during a change).
    @raise SRSError: not SRS, damaged, a wrong hash or too old.
    """
    try:
        local, _ = _split(address)
    except ValueError as e:
        raise SRSError(str(e)) from None
    m = _SRS1.match(local)
    if m:
        parts = local[m.end():].split(SEP, 2)
        if len(parts) != 3 or not parts[1] or not parts[2]:
            raise SRSError("damaged SRS1 address")
        given, srsHost, srsUser = parts
        if not _hashValid(secrets, given, srsHost, srsUser):
            raise SRSError("bad SRS hash")
        return f"SRS0{srsUser}@{srsHost}"
    m = _SRS0.match(local)
    if not m:
        raise SRSError("not an SRS address")
    parts = local[m.end():].split(SEP, 3)
    if len(parts) != 4 or not all(parts[1:]):
        raise SRSError("damaged SRS0 address")
    given, stamp, host, user = parts
    if not _hashValid(secrets, given, stamp, host, user):
        raise SRSError("bad SRS hash")
    if not timestampValid(stamp, now, maxAge):
        raise SRSError(f"SRS address expired (older than {maxAge} days)")
    return f"{user}@{host}"


def parseSecrets(text: bytes) -> list[bytes]:
    """The keys of a secret file: one a line, the first signs, blank lines skipped."""
    return [line.strip() for line in text.splitlines() if line.strip()]

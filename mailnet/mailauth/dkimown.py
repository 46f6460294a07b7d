"""
DKIM's common cases in our own code, dkimpy for everything else.

What dkimpy still cost per 4 KB message after :mod:`.dkimfast` was mostly
its general-purpose Python around the cryptography: a second parse of the
signature's tags, canonicalizing every header field to use a few, a linear
search per signed name (:func:`dkim.select_headers`), the body hashed once
per key when signing.  This module does the two cases every message of
ours and nearly every message received takes, with the same rules as
dkimpy 1.1 (the version pyproject.toml pins):

* :func:`sign`: relaxed/relaxed, rsa-sha256 and ed25519-sha256, the body
  canonicalized and hashed once for all keys.  PKCS#1 v1.5 and Ed25519 are
  deterministic, so the fields are byte for byte dkimpy's (a test compares
  them, with the clock fixed); dkimpy's own :func:`dkim.fold` folds them.
* :func:`verifies`: says only "this signature verifies", for rsa-sha256
  and ed25519-sha256 without ``l=``, with dkimpy's own checks of the
  signature's tags (:func:`dkim.validate_signature_fields`) and of the key
  record (:func:`dkim.evaluate_pk`).  Anything else (a failure, an odd
  case) returns False and the caller asks dkimpy, so every failure and its
  reason are dkimpy's, and a pass is never given where dkimpy would fail
  (a Hypothesis test compares both on altered messages).

Both are used only when :func:`.dkimfast.install` found the dkimpy it was
tested with (:func:`usable`).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import time

import dkim
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, utils
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from dkim.canonicalization import correct_empty_body, strip_trailing_lines
from dkim.util import parse_tag_value

from mailnet.mailauth import dkimfast

# Made once: a function-level import and two small objects per signature
# were a measurable share of a 4 KB message's DKIM cost (docs/mailauth-cost.md).
_PKCS1 = padding.PKCS1v15()
_PREHASHED = utils.Prehashed(hashes.SHA256())

def usable() -> bool:
    """Whether dkimpy is the version this was written against (dkimfast checked it)."""
    return dkimfast.install()


_SIG_NAME = b"DKIM-Signature"
_WS = re.compile(rb"\s+")
_H_SPLIT = re.compile(rb"\s*:\s*")


# Canonicalization (RFC 6376 s3.4), dkimpy's rules with dkimfast's functions.

def relaxedBody(body: bytes) -> bytes:
    """s3.4.4, as dkimpy's ``Relaxed.canonicalize_body``."""
    body = dkimfast.compressWhitespace(dkimfast.stripTrailingWhitespace(body))
    return correct_empty_body(strip_trailing_lines(body))


def relaxedField(name: bytes, value: bytes):
    """s3.4.2: (name, value) as dkimpy's ``Relaxed.canonicalize_headers`` gives them."""
    return name.lower().rstrip(), dkimfast.compressWhitespace(dkimfast.unfoldHeaderValue(value)).strip() + b"\r\n"


def _simpleField(name, value):
    return name, value


_BODY = {b"relaxed": relaxedBody, b"simple": strip_trailing_lines}
_FIELD = {b"relaxed": relaxedField, b"simple": _simpleField}


def selectFields(fields, names):
    """
    The fields a signature's ``h=`` list names, as :func:`dkim.select_headers`:
    each name takes the last of its fields not taken yet (s5.4.2), a name
    with none left takes nothing.  ``fields`` are (name, value) as parsed;
    ``names`` are lowercased.
    """
    where = {}
    for i, (name, _) in enumerate(fields):
        where.setdefault(name.lower(), []).append(i)
    used = {}
    out = []
    for name in names:
        found = where.get(name)
        k = used.get(name, 0)
        if found and k < len(found):
            out.append(fields[found[-1 - k]])
            used[name] = k + 1
        else:
            used[name] = len(found) if found else 0
    return out


def _headerHash(hasher, canonical, selected, sigName, sigValue):
    """s3.7: the selected fields, then the signature field with an empty b=, no CRLF."""
    for name, value in selected:
        name, value = canonical(name, value)
        hasher.update(name + b":" + value)
    name, value = canonical(sigName, dkimfast.BTAG.sub(rb"\1", sigValue))
    hasher.update(name + b":" + value.rstrip())
    return hasher.digest()


# Keys: the same few, again and again.

@functools.lru_cache(maxsize=64)
def _privateRSA(pem: bytes):
    return load_pem_private_key(pem, password=None)


@functools.lru_cache(maxsize=64)
def _privateEd25519(seed64: bytes):
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(seed64))  # not strict, as nacl's Base64Encoder


@functools.lru_cache(maxsize=1024)
def _tags(value: bytes):
    """dkimpy's parse of a signature field's tags (only read)."""
    return parse_tag_value(value)


def _signature(algorithm: bytes, private: bytes, digest: bytes) -> bytes:
    if algorithm == b"rsa-sha256":
        return _privateRSA(private).sign(digest, _PKCS1, _PREHASHED)
    return _privateEd25519(private).sign(digest)  # RFC 8463 s3: Ed25519 of the SHA-256 hash


def sign(message: bytes, keys, include) -> bytes | None:
    """
    The DKIM-Signature fields that dkimpy's ``DKIM.sign`` makes for each key,
    relaxed/relaxed, no identity, no ``l=``: byte for byte the same.  None
    when this cannot do it (not :func:`usable`, an algorithm other than
    rsa-sha256/ed25519-sha256, a key or message it cannot read): the caller
    then asks dkimpy, which gives its own result or error.
    """
    if not usable() or not keys:
        return None
    try:
        fields, body = dkimfast.rfc822Parse(message)
    except Exception:
        return None
    include = tuple(name.lower() for name in include)
    if b"from" not in include:
        return None  # dkimpy refuses (s5.4: From MUST be signed)
    bodyHash = base64.b64encode(hashlib.sha256(relaxedBody(body)).digest())
    selected = selectFields(fields, include)
    out = []
    for key in keys:
        algorithm = key.dkimAlgorithm
        if algorithm not in (b"rsa-sha256", b"ed25519-sha256"):
            return None
        domain, selector = key.domain.encode("ascii"), key.selector.encode("ascii")
        tags = [(b"v", b"1"), (b"a", algorithm), (b"c", b"relaxed/relaxed"), (b"d", domain),
                (b"i", b"@" + domain), (b"q", b"dns/txt"), (b"s", selector),
                (b"t", str(int(time.time())).encode("ascii")), (b"h", b" : ".join(include)),
                (b"bh", bodyHash), (b"b", b"0" * 60)]  # b= on a line of its own, as dkimpy folds it
        value = dkim.fold(b"; ".join(b"=".join(t) for t in tags), namelen=len(_SIG_NAME), linesep=b"\r\n")
        value = dkimfast.BTAG.sub(rb"\1", value)
        digest = _headerHash(hashlib.sha256(), relaxedField, selected, _SIG_NAME, b" " + value)
        try:
            signature = _signature(algorithm, key.private, digest)
        except Exception:
            return None  # a key we cannot read: dkimpy says what is wrong with it
        tags[-1] = (b"b", base64.b64encode(signature))
        value = b"; ".join(b"=".join(t) for t in tags) + b"\r\n"
        out.append(_SIG_NAME + b": " + dkim.fold(value, namelen=len(_SIG_NAME), linesep=b"\r\n"))
    return b"".join(out)


class Parsed:
    """One message split once (dkimpy's rules) for all its signatures; body hashes kept per c=."""

    def __init__(self, message: bytes):
        self.fields, self.body = dkimfast.rfc822Parse(message)
        self.signatures = [(n, v) for n, v in self.fields if n.lower() == b"dkim-signature"]
        self._bodyHashes = {}

    def bodyHash(self, canon: bytes) -> bytes:
        found = self._bodyHashes.get(canon)
        if found is None:
            found = self._bodyHashes[canon] = hashlib.sha256(_BODY[canon](self.body)).digest()
        return found


def verifies(parsed: Parsed, idx: int, record, minkey: int = 1024) -> bool:
    """
    True if signature ``idx`` (0 = the topmost DKIM-Signature field, as
    dkimpy counts) verifies with the key ``record`` (the TXT record's text)
    by dkimpy's rules; False for "ask dkimpy" (it did not verify, or a case
    this leaves to dkimpy).  Never raises.
    """
    if not usable() or idx >= len(parsed.signatures):
        return False
    try:
        return _verifies(parsed, parsed.signatures[idx], record, minkey)
    except Exception:
        return False


def _verifies(parsed, sigField, record, minkey):
    sig = _tags(sigField[1])
    dkim.validate_signature_fields(sig)  # raises for what dkimpy refuses (also t=/x=)
    algorithm = sig[b"a"]
    if algorithm not in (b"rsa-sha256", b"ed25519-sha256") or b"l" in sig:
        return False
    canon = sig.get(b"c", b"simple/simple").split(b"/")
    if len(canon) == 1:
        canon.append(b"simple")
    if len(canon) != 2 or canon[0] not in _FIELD or canon[1] not in _BODY:
        return False
    name = sig[b"s"] + b"._domainkey." + sig[b"d"] + b"."
    pk, keysize, ktag, tlsrpt = dkim.evaluate_pk(name, record)  # cached by dkimfast
    if pk is None or tlsrpt or ktag != algorithm.split(b"-")[0]:
        return False
    if parsed.bodyHash(canon[1]) != base64.b64decode(_WS.sub(b"", sig[b"bh"])):
        return False
    names = [n.lower() for n in _H_SPLIT.split(sig[b"h"])]
    if b"from" in names:
        names.append(b"from")  # dkimpy: any extra From breaks the signature (its bug #644046)
    digest = _headerHash(hashlib.sha256(), _FIELD[canon[0]], selectFields(parsed.fields, names), *sigField)
    signature = base64.b64decode(_WS.sub(b"", sig[b"b"]))
    if ktag == b"rsa":
        if keysize < minkey:
            return False
        key = dkimfast._opensslPublic(pk["modulus"], pk["publicExponent"])
        try:
            key.verify(signature, digest, _PKCS1, _PREHASHED)
        except InvalidSignature:
            return False
        return True
    pk.verify(digest, signature)  # nacl: raises when it does not verify
    return True

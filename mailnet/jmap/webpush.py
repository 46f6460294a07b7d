"""
Web Push message encryption (RFC 8291, with the ``aes128gcm`` content
coding of RFC 8188): what a PushSubscription with ``keys`` gets (RFC 8620
s7.2: "the body MUST be encrypted using [RFC8291]").  Pure: bytes in,
bytes out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

RECORD_SIZE = 4096  # RFC 8188 s2.1 rs; RFC 8291 s4: one record, at most 4096 octets


def b64decode(text: str) -> bytes:
    """base64url with or without padding; ValueError otherwise."""
    if not isinstance(text, str) or len(text) > 1024:
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


def b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def checkKeys(keys) -> tuple[bytes, bytes]:
    """
    RFC 8620 s7.2 ``keys``: ``{"p256dh": <P-256 point, uncompressed,
    base64url>, "auth": <16 octets, base64url>}`` (RFC 8291 s3.2).
    Returns the two decoded; ValueError with the reason otherwise.
    """
    if not isinstance(keys, dict) or set(keys) != {"p256dh", "auth"}:
        raise ValueError("keys must be {p256dh, auth}")
    point, auth = b64decode(keys["p256dh"]), b64decode(keys["auth"])
    if len(auth) != 16:
        raise ValueError("auth must be 16 octets")
    if len(point) != 65 or point[0] != 4:
        raise ValueError("p256dh must be an uncompressed P-256 point")
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        raise ValueError("p256dh is not a point of P-256") from None
    return point, auth


def _hmac(key, data):
    return hmac.new(key, data, hashlib.sha256).digest()


def encrypt(plaintext: bytes, p256dh: bytes, auth: bytes, privateKey=None, salt=None) -> bytes:
    """
    RFC 8291 s3.4 and RFC 8188 s2: one ``aes128gcm`` record.  ``privateKey``
    (the application server's ephemeral ECDH key) and ``salt`` are random
    unless given (the RFC's example gives them).
    """
    if len(plaintext) + 103 > RECORD_SIZE:
        raise ValueError("a push message is at most 3993 octets of plaintext")  # RFC 8291 s4
    if privateKey is None:
        privateKey = ec.generate_private_key(ec.SECP256R1())
    salt = os.urandom(16) if salt is None else salt
    userAgent = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), p256dh)
    serverPublic = privateKey.public_key().public_bytes(serialization.Encoding.X962,
                                                        serialization.PublicFormat.UncompressedPoint)
    shared = privateKey.exchange(ec.ECDH(), userAgent)
    # RFC 8291 s3.4: IKM = HKDF(auth, ecdh_secret, "WebPush: info" || 0 || ua_public || as_public, 32)
    prkKey = _hmac(auth, shared)
    ikm = _hmac(prkKey, b"WebPush: info\x00" + p256dh + serverPublic + b"\x01")
    # RFC 8188 s2.2, s2.3: the content encryption key and the nonce (one record: sequence 0).
    prk = _hmac(salt, ikm)
    cek = _hmac(prk, b"Content-Encoding: aes128gcm\x00\x01")[:16]
    nonce = _hmac(prk, b"Content-Encoding: nonce\x00\x01")[:12]
    # RFC 8188 s2: the last record's padding delimiter is 2.
    ciphertext = AESGCM(cek).encrypt(nonce, plaintext + b"\x02", None)
    header = salt + struct.pack("!IB", RECORD_SIZE, len(serverPublic)) + serverPublic
    return header + ciphertext

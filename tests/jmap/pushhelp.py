"""The user agent's half of RFC 8291 (keys and decryption), written apart from mailnet's, for the push tests."""

import base64
import os
import struct

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class UserAgent:
    """A push client's keys (RFC 8291 s2): a P-256 key pair and a 16-octet auth secret."""

    def __init__(self, private=None, auth=None):
        self.private = private or ec.generate_private_key(ec.SECP256R1())
        self.auth = auth or os.urandom(16)
        self.public = self.private.public_key().public_bytes(serialization.Encoding.X962,
                                                             serialization.PublicFormat.UncompressedPoint)

    def keys(self):
        return {"p256dh": b64(self.public), "auth": b64(self.auth)}

    def decrypt(self, body: bytes) -> bytes:
        # RFC 8188 s2.1 header: salt(16) rs(4) idlen(1) keyid(idlen).
        salt, rs, idlen = body[:16], struct.unpack("!I", body[16:20])[0], body[20]
        assert rs >= 18
        serverPublic = body[21:21 + idlen]
        ciphertext = body[21 + idlen:]
        shared = self.private.exchange(ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(),
                                                                                              serverPublic))
        ikm = HKDF(hashes.SHA256(), 32, self.auth, b"WebPush: info\x00" + self.public + serverPublic).derive(shared)
        cek = HKDF(hashes.SHA256(), 16, salt, b"Content-Encoding: aes128gcm\x00").derive(ikm)
        nonce = HKDF(hashes.SHA256(), 12, salt, b"Content-Encoding: nonce\x00").derive(ikm)
        plain = AESGCM(cek).decrypt(nonce, ciphertext, None)
        plain = plain.rstrip(b"\x00")
        assert plain.endswith(b"\x02")  # the last record's delimiter
        return plain[:-1]

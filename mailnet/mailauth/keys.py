"""
DKIM keys: made by ``mailnet dkim keygen``, kept under ``data_dir/dkim``.

    data_dir/dkim/<domain>/<selector>.rsa.key       PEM (PKCS#1), 0600
    data_dir/dkim/<domain>/<selector>.ed25519.key   base64 of the 32-byte seed
                                                    (RFC 8463 s3), 0600

Every key of a domain signs its mail (one DKIM-Signature each): an RSA key
alone, or RSA and ed25519 side by side (RFC 8463 s4 recommends both, since
not every verifier knows ed25519 yet).  Rotating is: make a key with a new
selector, publish it, wait for the DNS TTL, remove the old file.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import re
import time

from mailnet import durable

ALGORITHMS = ("rsa", "ed25519")
RSA_BITS = 2048  # RFC 8301 s3.2: at least 1024, 2048 recommended
_SELECTOR = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


@dataclasses.dataclass(frozen=True)
class SigningKey:
    domain: str
    selector: str
    algorithm: str  # "rsa" or "ed25519"
    private: bytes  # as dkimpy takes it

    @property
    def dkimAlgorithm(self) -> bytes:
        return b"rsa-sha256" if self.algorithm == "rsa" else b"ed25519-sha256"


def keyDir(dataDir: str) -> str:
    return os.path.join(dataDir, "dkim")


def defaultSelector(algorithm: str, now=None) -> str:
    """``rsa202612`` / ``ed202612``: the algorithm and the month, so a new key
    (or the second algorithm) gets a name of its own."""
    stamp = time.strftime("%Y%m", time.gmtime(now))
    return ("rsa" if algorithm == "rsa" else "ed") + stamp


def checkSelector(selector: str) -> str:
    selector = selector.lower()
    if not _SELECTOR.match(selector):
        raise ValueError(f"bad selector {selector!r}: letters, digits and '-', at most 63")
    return selector


def checkDomain(domain: str) -> str:
    domain = domain.lower().rstrip(".")
    labels = domain.split(".")
    if len(labels) < 2 or not all(_SELECTOR.match(label) for label in labels):
        raise ValueError(f"bad domain {domain!r}")
    return domain


def keyPath(dataDir: str, domain: str, selector: str, algorithm: str) -> str:
    return os.path.join(keyDir(dataDir), domain, f"{selector}.{algorithm}.key")


def generate(algorithm: str) -> tuple[bytes, bytes]:
    """A new key: (private key as stored, public key for the ``p=`` tag, raw)."""
    if algorithm == "rsa":
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption())
        public = key.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
        return private, public
    if algorithm == "ed25519":
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519

        key = ed25519.Ed25519PrivateKey.generate()
        seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption())
        public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return base64.b64encode(seed) + b"\n", public
    raise ValueError(f"unknown algorithm {algorithm!r} (rsa or ed25519)")


def publicKey(algorithm: str, private: bytes) -> bytes:
    """The raw public key (the ``p=`` tag before base64) of a stored private key."""
    if algorithm == "rsa":
        from cryptography.hazmat.primitives import serialization

        key = serialization.load_pem_private_key(private, password=None)
        return key.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.from_private_bytes(base64.b64decode(private.strip()))
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def txtValue(algorithm: str, public: bytes) -> str:
    """The TXT record's value (RFC 6376 s3.6.1; RFC 8463 s4 for k=ed25519)."""
    return f"v=DKIM1; k={algorithm}; p={base64.b64encode(public).decode('ascii')}"


def txtRecord(domain: str, selector: str, algorithm: str, public: bytes) -> str:
    """One zone-file line; values over 255 bytes split into quoted strings (RFC 7208 s3.3, RFC 6376 s3.6.2.2)."""
    value = txtValue(algorithm, public)
    chunks = " ".join(f'"{value[i:i + 255]}"' for i in range(0, len(value), 255))
    return f"{selector}._domainkey.{domain}. IN TXT ( {chunks} )"


def make(dataDir: str, domain: str, selector: str, algorithm: str, force: bool = False) -> tuple[str, bytes]:
    """
    Make and store a key (0600, durably: mailnet.durable).  Returns (its
    path, the raw public key).  Refuses to replace an existing one unless
    ``force``.
    """
    domain = checkDomain(domain)
    selector = checkSelector(selector)
    path = keyPath(dataDir, domain, selector, algorithm)
    if os.path.exists(path) and not force:
        raise FileExistsError(path)
    private, public = generate(algorithm)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    durable.writeAtomically(path, private, mode=0o600)
    return path, public


def loadAll(dataDir: str, log=None) -> dict[str, list[SigningKey]]:
    """Every readable key, by domain; an unreadable or damaged file is skipped (and logged)."""
    keys: dict[str, list[SigningKey]] = {}
    root = keyDir(dataDir)
    try:
        domains = sorted(os.listdir(root))
    except FileNotFoundError:
        return keys
    for domain in domains:
        folder = os.path.join(root, domain)
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            parts = name.split(".")
            if len(parts) != 3 or parts[2] != "key" or parts[1] not in ALGORITHMS:
                continue
            try:
                with open(os.path.join(folder, name), "rb") as f:
                    private = f.read()
                publicKey(parts[1], private)  # damaged keys are found now, not per message
            except Exception as e:
                if log is not None:
                    log.error("DKIM key {domain}/{name} cannot be used: {error}", domain=domain, name=name,
                              error=type(e).__name__)
                continue
            keys.setdefault(domain.lower(), []).append(SigningKey(domain.lower(), parts[0], parts[1], private))
    for found in keys.values():
        found.sort(key=lambda k: ALGORITHMS.index(k.algorithm))  # RSA first
    return keys


KEY_RECHECK = 5.0  # seconds between looks at data_dir/dkim for new keys


class KeyRing:
    """
    The DKIM keys by domain (:func:`loadAll`), looked for again every
    :data:`KEY_RECHECK` seconds and read again when data_dir/dkim changed:
    a new key is used without a restart.  Reactor thread only.

    @param clock: ``IReactorTime``.
    """

    def __init__(self, dataDir, clock, log=None):
        self.dataDir = dataDir
        self.clock = clock
        self.log = log
        self._keys = {}
        self._checked = None
        self._stamp = None

    def get(self) -> dict:
        now = self.clock.seconds()
        if self._checked is None or now - self._checked >= KEY_RECHECK:
            self._checked = now
            stamp = _stamp(keyDir(self.dataDir))
            if stamp != self._stamp:
                self._stamp = stamp
                self._keys = loadAll(self.dataDir, self.log)
        return self._keys

    def forHost(self, name) -> list:
        """The keys of ``name`` or of the nearest parent domain that has keys
        ([] if none): a d= that DMARC's relaxed alignment (RFC 7489 s3.1.1)
        accepts for a From at ``name``."""
        keys = self.get()
        labels = name.lower().rstrip(".").split(".")
        for i in range(len(labels)):
            found = keys.get(".".join(labels[i:]))
            if found:
                return found
        return []


def _stamp(root):
    """What changes when a key is added, replaced or removed."""
    try:
        out = [os.stat(root).st_mtime_ns]
        for name in sorted(os.listdir(root)):
            out.append((name, os.stat(os.path.join(root, name)).st_mtime_ns))
        return tuple(out)
    except OSError:
        return None

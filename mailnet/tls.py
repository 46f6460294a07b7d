"""
TLS material: the server certificate (made self-signed on first run when
none is configured) and the context factory every listener uses, for
implicit TLS and for STARTTLS/STLS alike.
"""

from __future__ import annotations

import datetime
import ipaddress
import os

import OpenSSL.crypto
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import ssl
from mailnet.logs import Logger

from mailnet.auth import writeAtomically

log = Logger()


def makeSelfSigned(certPath, keyPath, hostname, days=3650):
    """Write a self-signed P-256 certificate for ``hostname`` (and localhost)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    names = {hostname, "localhost"}
    san = [x509.DNSName(n) for n in sorted(names)]
    san += [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1"))]
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    for path in (certPath, keyPath):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    writeAtomically(
        keyPath,
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        mode=0o600,
    )
    writeAtomically(certPath, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)


def ensureCertificate(config) -> bool:
    """
    Make the self-signed pair in data_dir/tls when no certificate is
    configured and none was made before.  Returns True if one was made.
    """
    if config.tls.cert:
        return False
    if os.path.exists(config.certFile) and os.path.exists(config.keyFile):
        return False
    makeSelfSigned(config.certFile, config.keyFile, config.server.hostname)
    log.info("made a self-signed certificate for {host} in {path}", host=config.server.hostname, path=config.certFile)
    return True


def serverOptions(certFile, keyFile):
    """
    A ``CertificateOptions`` for servers: TLS 1.2 and newer, Twisted's
    default ciphers, the whole chain from ``certFile`` sent.
    """
    with open(certFile, "rb") as f:
        chain = f.read()
    with open(keyFile, "rb") as f:
        keyData = f.read()
    certs = x509.load_pem_x509_certificates(chain)
    key = serialization.load_pem_private_key(keyData, password=None)
    leaf = ssl.Certificate.loadPEM(certs[0].public_bytes(serialization.Encoding.PEM))
    extra = [ssl.Certificate.loadPEM(c.public_bytes(serialization.Encoding.PEM)).original for c in certs[1:]]
    return ssl.CertificateOptions(
        privateKey=OpenSSL.crypto.PKey.from_cryptography_key(key),
        certificate=leaf.original,
        extraCertChain=extra,
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
    )

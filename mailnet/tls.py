"""
TLS material and the server's TLS settings.

Without ``[tls] cert``, mailnet keeps a small development CA in
``data_dir/tls`` (``dev-ca.pem``, its key ``dev-ca.key`` mode 0600, apart
from the server keys) and signs two leaf certificates with it for
``localhost``, ``127.0.0.1``, ``::1`` and ``[server] hostname``: an ECDSA one
(``cert.pem``/``key.pem``) and an RSA one (``rsa-cert.pem``/``rsa-key.pem``).
Clients trust ``dev-ca.pem``; the server's own keys cannot mint certificates.

:func:`serverOptions` loads every configured pair into one context (OpenSSL
picks the ECDSA or the RSA certificate by what the client offers), TLS 1.2
and newer, and for TLS 1.2 only ECDHE with AES-GCM or ChaCha20-Poly1305.
:func:`checkCertificates` finds what would break every handshake (a key that
does not match, an expired certificate) before a listener starts.
"""

from __future__ import annotations

import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL
from twisted.internet import ssl

from mailnet.config import ConfigError
from mailnet.durable import writeAtomically
from mailnet.logs import Logger

log = Logger()

# RFC 9325 s4.2: TLS 1.2 suites forward secret and AEAD only (no CBC, no RSA
# key exchange), ECDSA first; TLS 1.3 suites are OpenSSL's (all AEAD).
CIPHERS = ":".join([
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-CHACHA20-POLY1305",
])

CA_DAYS = 3650
LEAF_DAYS = 825  # the longest some clients (Apple's) accept from a locally trusted CA
RENEW_DAYS = 30  # our own development leaf is remade this long before it expires
WARN_DAYS = 14   # any certificate: a warning this long before it expires

CA_NAME = "mailnet development CA"


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def _writeKey(path, key):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    writeAtomically(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()), mode=0o600)


def _writeCert(path, data):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    writeAtomically(path, data, mode=0o644)


def _hostNames(hostname):
    """(DNS names, IP addresses) a development leaf is made for."""
    dns, ips = {"localhost"}, {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    try:
        ips.add(ipaddress.ip_address(hostname))
    except ValueError:
        dns.add(hostname.lower().rstrip("."))
    return sorted(dns), sorted(ips, key=lambda a: (a.version, int(a)))


def makeDevelopmentCA(certPath, keyPath, hostname):
    """Write a new development CA (P-256, 10 years, may sign leaves only)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{CA_NAME} ({hostname})"[:64])])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        # RFC 5280 s4.2.1.9: a CA that signs only leaves
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _writeKey(keyPath, key)
    _writeCert(certPath, _pem(cert))
    return cert, key


def makeLeaf(certPath, keyPath, hostname, caCert, caKey, kind="ecdsa"):
    """
    Write a server certificate signed by the development CA: not a CA,
    serverAuth only, for localhost, 127.0.0.1, ::1 and ``hostname``.
    ``certPath`` holds the leaf and then the CA (clients that are pointed
    at it as a trust file find the CA there too).
    """
    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    dns, ips = _hostNames(hostname)
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname[:64])]))
        .issuer_name(caCert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(min(now + datetime.timedelta(days=LEAF_DAYS), caCert.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns] + [x509.IPAddress(a) for a in ips]),
                       critical=False)
        # RFC 5280 s4.2.1.9: not a CA, so its key cannot vouch for other names
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=kind == "rsa",
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(caKey.public_key()), critical=False)
        .sign(caKey, hashes.SHA256())
    )
    _writeKey(keyPath, key)
    _writeCert(certPath, _pem(cert) + _pem(caCert))
    return cert


def makeSelfSigned(certPath, keyPath, hostname, days=3650):
    """
    Write a self-signed P-256 certificate for ``hostname`` (and localhost),
    marked as a CA.  What mailnet made before it had a development CA; kept
    for tests that need a peer with such a certificate.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    names = {hostname, "localhost"}
    san = [x509.DNSName(n) for n in sorted(names)]
    san += [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1"))]
    now = _now()
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
    _writeKey(keyPath, key)
    _writeCert(certPath, _pem(cert))


def _loadFirst(path):
    try:
        with open(path, "rb") as f:
            return x509.load_pem_x509_certificates(f.read())[0]
    except (OSError, ValueError):
        return None


def isOldDevelopmentCertificate(cert) -> bool:
    """
    True for exactly what older mailnet versions made in data_dir/tls: a
    self-signed P-256 certificate marked as a CA, with only a common name,
    and names {hostname, localhost, 127.0.0.1, ::1}.  An admin's own
    certificate never matches.
    """
    try:
        if cert.issuer != cert.subject or len(cert.subject) != 1:
            return False
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if len(cn) != 1:
            return False
        oids = {e.oid for e in cert.extensions}
        if oids != {x509.oid.ExtensionOID.SUBJECT_ALTERNATIVE_NAME, x509.oid.ExtensionOID.BASIC_CONSTRAINTS}:
            return False
        if not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return False
        key = cert.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            return False
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        ips = {str(a) for a in san.get_values_for_type(x509.IPAddress)}
        dns = set(san.get_values_for_type(x509.DNSName))
        if ips != {"127.0.0.1", "::1"} or dns != {cn[0].value, "localhost"}:
            return False
        cert.verify_directly_issued_by(cert)
        return True
    except Exception:
        return False


def _issuedBy(cert, ca) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
        return True
    except Exception:
        return False


def _names(cert):
    """(DNS names, IP addresses as strings) of a certificate; CN if no SAN."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return ([n.lower() for n in san.get_values_for_type(x509.DNSName)],
                [str(a) for a in san.get_values_for_type(x509.IPAddress)])
    except x509.ExtensionNotFound:
        return [a.value.lower() for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)], []


def nameMatches(cert, hostname) -> bool:
    """Does ``cert`` name ``hostname`` (RFC 6125: exact, or ``*.`` for one label)?"""
    dns, ips = _names(cert)
    try:
        return str(ipaddress.ip_address(hostname)) in ips
    except ValueError:
        pass
    host = hostname.lower().rstrip(".")
    for name in dns:
        if name == host:
            return True
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False


def ensureCertificate(config) -> bool:
    """
    Without ``[tls] cert``: make the development CA and its two leaves in
    data_dir/tls if they are missing; replace an older mailnet's self-signed
    CA-certificate; remake our own leaves when they near expiry or do not
    name ``[server] hostname``.  A certificate we did not make is never
    touched.  Returns True if anything was made.
    """
    if config.tls.cert:
        return False
    hostname = config.server.hostname
    certFile, keyFile = config.certFile, config.keyFile
    caFile, caKeyFile = config.devCAFile, config.devCAKeyFile
    present = os.path.exists(certFile) or os.path.exists(keyFile)
    current = _loadFirst(certFile)
    if present and current is not None and isOldDevelopmentCertificate(current):
        log.warn("replacing the self-signed development certificate of an older mailnet (it was a CA) in {path}; "
                 "clients should trust {ca} now", path=certFile, ca=caFile)
        present = False
    ca = _loadFirst(caFile) if os.path.exists(caKeyFile) else None
    if present:
        if current is None or ca is None or not _issuedBy(current, ca):
            return False  # the admin's own files in our place: theirs to manage
        soon = _now() + datetime.timedelta(days=RENEW_DAYS)
        rsaCurrent = _loadFirst(config.rsaCertFile) if os.path.exists(config.rsaKeyFile) else None
        if (current.not_valid_after_utc > soon and nameMatches(current, hostname)
                and rsaCurrent is not None and _issuedBy(rsaCurrent, ca)
                and rsaCurrent.not_valid_after_utc > soon and nameMatches(rsaCurrent, hostname)):
            return False
        log.info("renewing the development certificates in {path} for {host}", path=os.path.dirname(certFile),
                 host=hostname)
    if ca is None or ca.not_valid_after_utc < _now() + datetime.timedelta(days=RENEW_DAYS):
        ca, caKey = makeDevelopmentCA(caFile, caKeyFile, hostname)
        log.info("made a development CA in {path}: clients trust this file", path=caFile)
    else:
        with open(caKeyFile, "rb") as f:
            caKey = serialization.load_pem_private_key(f.read(), password=None)
    makeLeaf(certFile, keyFile, hostname, ca, caKey, "ecdsa")
    makeLeaf(config.rsaCertFile, config.rsaKeyFile, hostname, ca, caKey, "rsa")
    log.info("made ECDSA and RSA certificates for {host} in {path}, signed by {ca}", host=hostname,
             path=os.path.dirname(certFile), ca=caFile)
    return True


def makeDevelopmentCertificates(config, newCA=False):
    """``mailnet cert make``: (re)make both leaves, and the CA if asked or missing."""
    ca = None if newCA else _loadFirst(config.devCAFile)
    if ca is None or not os.path.exists(config.devCAKeyFile):
        ca, caKey = makeDevelopmentCA(config.devCAFile, config.devCAKeyFile, config.server.hostname)
    else:
        with open(config.devCAKeyFile, "rb") as f:
            caKey = serialization.load_pem_private_key(f.read(), password=None)
    makeLeaf(config.certFile, config.keyFile, config.server.hostname, ca, caKey, "ecdsa")
    makeLeaf(config.rsaCertFile, config.rsaKeyFile, config.server.hostname, ca, caKey, "rsa")


def certificatePairs(config):
    """[(label, cert file, key file)] the server uses; the RSA pair when set or ours."""
    pairs = [("cert", "key", config.certFile, config.keyFile)]
    if config.rsaCertFile and (config.tls.rsa_cert or os.path.exists(config.rsaCertFile)):
        pairs.append(("rsa_cert", "rsa_key", config.rsaCertFile, config.rsaKeyFile))
    return pairs


def _loadPair(where, certLabel, keyLabel, certFile, keyFile):
    def fail(label, problem):
        raise ConfigError(f"{where}: [tls] {label}: {problem}")

    try:
        with open(certFile, "rb") as f:
            chain = x509.load_pem_x509_certificates(f.read())
    except OSError as e:
        fail(certLabel, f"cannot read {certFile}: {e.strerror}")
    except ValueError:
        fail(certLabel, f"{certFile} holds no readable PEM certificate")
    try:
        with open(keyFile, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
    except OSError as e:
        fail(keyLabel, f"cannot read {keyFile}: {e.strerror}")
    except TypeError:
        fail(keyLabel, f"{keyFile} is encrypted; mailnet needs the key without a passphrase")
    except Exception:  # ValueError, UnsupportedAlgorithm
        fail(keyLabel, f"{keyFile} holds no readable PEM private key")
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if (chain[0].public_key().public_bytes(serialization.Encoding.DER, spki)
            != key.public_key().public_bytes(serialization.Encoding.DER, spki)):
        fail(keyLabel, f"{keyFile} does not match the certificate in {certFile}")
    if certLabel == "rsa_cert" and not isinstance(key, rsa.RSAPrivateKey):
        fail(certLabel, f"{certFile} is not an RSA certificate")
    return chain, key


def checkCertificates(config, now=None) -> list[str]:
    """
    Check every certificate pair the server would load: the key matches the
    certificate and the certificate has not expired (each a
    :class:`ConfigError`, one line naming the file).  Returns warnings: it
    expires within 14 days, is not valid yet, or does not name
    ``[server] hostname``.  Default files not made yet are skipped.
    """
    where = config.source or "<defaults>"
    now = now or _now()
    warnings = []
    loaded = []
    for certLabel, keyLabel, certFile, keyFile in certificatePairs(config):
        if not getattr(config.tls, certLabel) and not (os.path.exists(certFile) or os.path.exists(keyFile)):
            continue  # made at start
        chain, key = _loadPair(where, certLabel, keyLabel, certFile, keyFile)
        loaded.append((certLabel, chain, key))
        leaf = chain[0]
        end = leaf.not_valid_after_utc
        if end <= now:
            raise ConfigError(f"{where}: [tls] {certLabel}: {certFile} expired on {end:%Y-%m-%d %H:%M} UTC")
        if end - now < datetime.timedelta(days=WARN_DAYS):
            warnings.append(f"{where}: [tls] {certLabel}: {certFile} expires on {end:%Y-%m-%d %H:%M} UTC "
                            f"(in {(end - now).days} days)")
        if leaf.not_valid_before_utc > now:
            warnings.append(f"{where}: [tls] {certLabel}: {certFile} is not valid before "
                            f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
        if not nameMatches(leaf, config.server.hostname):
            dns, ips = _names(leaf)
            warnings.append(f"{where}: [tls] {certLabel}: {certFile} does not name [server] hostname "
                            f"{config.server.hostname} (it names {', '.join(dns + ips) or 'nothing'})")
    if len(loaded) == 2 and isinstance(loaded[0][2], rsa.RSAPrivateKey):
        raise ConfigError(f"{where}: [tls] rsa_cert: [tls] cert is RSA too; rsa_cert is for an RSA certificate "
                          "beside an ECDSA one")
    return warnings


class ServerTLSOptions(ssl.CertificateOptions):
    """
    Twisted's ``CertificateOptions`` with several certificates (one per key
    type, each with its own chain).  OpenSSL picks the one the client can
    use: in TLS 1.3 by its signature algorithms, in TLS 1.2 by the suite.
    """

    # Called with the TLS version name ("TLSv1.3") of every completed
    # handshake (the server's metrics).
    onHandshake = None

    def __init__(self, pairs, **kw):
        self._pairs = pairs
        super().__init__(**kw)

    def _infoCallback(self, connection, where, ret):
        if where & SSL.SSL_CB_HANDSHAKE_DONE and self.onHandshake is not None:
            self.onHandshake(connection.get_protocol_version_name())

    def _makeContext(self, skipCiphers=False):
        ctx = super()._makeContext(skipCiphers=True)
        for certFile, keyFile in self._pairs:
            ctx.use_certificate_chain_file(certFile.encode())  # leaf and its own chain
            ctx.use_privatekey_file(keyFile.encode())
            ctx.check_privatekey()
        if not skipCiphers:
            ctx.set_cipher_list(self._cipherString.encode("ascii"))
        ctx.set_info_callback(self._infoCallback)
        return ctx

    def reload(self):
        """
        Read the certificate and key files again (a renewal): connections
        made from now on use them; open ones keep the context they started
        with.  Raises (``SSL.Error``, ``OSError``) and keeps the old context
        when the new files are unusable.
        """
        self._context = self._makeContext()


def fileStamps(config):
    """(mtime, size, inode) of every certificate and key file, to notice a renewal."""
    stamps = []
    for _, _, certFile, keyFile in certificatePairs(config):
        for path in (certFile, keyFile):
            try:
                st = os.stat(path)
                stamps.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                stamps.append(None)
    return stamps


def reloadCertificates(config, options) -> bool:
    """
    Check the certificate files as at start (:func:`checkCertificates`:
    the key matches, not expired) and load them into ``options`` (a
    :class:`ServerTLSOptions`).  On a problem, log one line and keep
    serving the old certificates.  Returns whether it reloaded.
    """
    try:
        for warning in checkCertificates(config):
            log.warn("{warning}", warning=warning)
        options.reload()
    except ConfigError as e:
        log.error("TLS certificates not reloaded (keeping the old ones): {e}", e=str(e))
        return False
    except (SSL.Error, OSError, ValueError) as e:
        log.error("TLS certificates not reloaded (keeping the old ones): {e}", e=e)
        return False
    log.info("TLS certificates reloaded")
    return True


def serverOptions(config):
    """
    The server's TLS options: every pair of :func:`certificatePairs`
    (checked first, see :func:`checkCertificates`), TLS 1.2 and newer
    (RFC 8996), TLS 1.2 suites from :data:`CIPHERS`.
    """
    for certLabel, keyLabel, certFile, keyFile in certificatePairs(config):
        _loadPair(config.source or "<defaults>", certLabel, keyLabel, certFile, keyFile)
    options = ServerTLSOptions(
        [(certFile, keyFile) for _, _, certFile, keyFile in certificatePairs(config)],
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,  # RFC 8996
        acceptableCiphers=ssl.AcceptableCiphers.fromOpenSSLCipherString(CIPHERS),
    )
    try:
        options.getContext()
    except SSL.Error as e:
        raise ConfigError(f"{config.source or '<defaults>'}: [tls] cert: OpenSSL refused the certificates: {e}")
    return options

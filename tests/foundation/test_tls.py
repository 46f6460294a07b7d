"""TLS as clients see it: the development CA and its leaves, an RSA
certificate beside the ECDSA one, no CBC suites, certificate problems found
before the first handshake, and the listener's file and backlog limits."""

import datetime
import os
import re
import shutil
import socket
import ssl
import stat
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mailnet import tls
from tests.harness import MailServer


def tlsDir(server):
    return os.path.join(server.dataDir, "tls")


def handshake(server, listener, ctx, hostname="localhost"):
    """(TLS version, cipher, the server's leaf) of one implicit-TLS handshake."""
    with socket.create_connection(("127.0.0.1", server.port(listener)), timeout=10) as sock:
        with ctx.wrap_socket(sock, server_hostname=hostname) as conn:
            leaf = x509.load_der_x509_certificate(conn.getpeercert(binary_form=True))
            return conn.version(), conn.cipher()[0], leaf


def caContext(server, maxVersion=None, ciphers=None):
    ctx = ssl.create_default_context(cafile=os.path.join(tlsDir(server), "dev-ca.pem"))
    if maxVersion:
        ctx.maximum_version = maxVersion
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    s = MailServer(tmp_path_factory.mktemp("tls"), config={"store": {"backend": "memory"}})
    s.start()
    yield s
    s.stop()


def test_development_leaf_is_not_a_ca_and_verifies_against_the_dev_ca(tls_server):
    d = tlsDir(tls_server)
    assert stat.S_IMODE(os.stat(os.path.join(d, "dev-ca.key")).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.join(d, "key.pem")).st_mode) == 0o600
    with open(os.path.join(d, "dev-ca.pem"), "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    with open(os.path.join(d, "key.pem"), "rb") as f, open(os.path.join(d, "dev-ca.key"), "rb") as g:
        assert f.read() != g.read()  # the server's key is not the CA's
    for listener in ("imaps", "submissions", "pop3s"):
        version, _, leaf = handshake(tls_server, listener, caContext(tls_server), "localhost")
        assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
        assert ExtendedKeyUsageOID.SERVER_AUTH in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign is False
        aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
        assert aki == ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        leaf.verify_directly_issued_by(ca)
        assert leaf.issuer == ca.subject != leaf.subject
    # every name the leaf is for verifies; another does not
    for name in ("127.0.0.1", "mx.example.test"):
        handshake(tls_server, "imaps", caContext(tls_server), name)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(tls_server, "imaps", caContext(tls_server), "other.example.test")


def test_rsa_only_client_gets_the_rsa_certificate(tls_server):
    ecdsa = handshake(tls_server, "imaps", caContext(tls_server))[2]
    assert isinstance(ecdsa.public_key(), ec.EllipticCurvePublicKey)
    tls12 = handshake(tls_server, "imaps", caContext(tls_server, ssl.TLSVersion.TLSv1_2))
    assert tls12[:2] == ("TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256")
    version, cipher, leaf = handshake(tls_server, "submissions", caContext(
        tls_server, ssl.TLSVersion.TLSv1_2, "ECDHE-RSA-AES128-GCM-SHA256"))
    assert (version, cipher) == ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256")
    assert isinstance(leaf.public_key(), rsa.RSAPublicKey)
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_rsa_only_signature_algorithms_in_tls13(tls_server):
    """TLS 1.3 picks the certificate by the client's signature algorithms."""
    if not shutil.which("openssl"):
        pytest.skip("no openssl command")
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{tls_server.port('imaps')}", "-tls1_3",
                        "-sigalgs", "rsa_pss_rsae_sha256", "-servername", "localhost",
                        "-CAfile", os.path.join(tlsDir(tls_server), "dev-ca.pem")],
                       input="", capture_output=True, text=True, timeout=30)
    assert "Peer signature type: RSA-PSS" in r.stdout and "Verification: OK" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("ciphers", ["ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA",
                                     "ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES256-SHA384:AES128-SHA:AES256-SHA256",
                                     "AES128-GCM-SHA256:AES256-GCM-SHA384"])
def test_cbc_and_static_rsa_suites_are_refused(tls_server, ciphers):
    ctx = caContext(tls_server, ssl.TLSVersion.TLSv1_2, ciphers)
    for listener in ("imaps", "submissions"):
        with pytest.raises(ssl.SSLError):
            handshake(tls_server, listener, ctx)


def test_starttls_uses_the_same_certificates(tls_server):
    import smtplib

    with smtplib.SMTP("127.0.0.1", tls_server.port("submission"), timeout=10) as smtp:
        smtp.starttls(context=caContext(tls_server, ssl.TLSVersion.TLSv1_2, "ECDHE-RSA-AES128-GCM-SHA256"))
        assert smtp.sock.cipher()[0] == "ECDHE-RSA-AES128-GCM-SHA256"


# Certificates from older versions and from the admin


def test_old_self_signed_dev_certificate_is_replaced_and_an_admins_own_is_kept(tmp_path):
    old = MailServer(tmp_path / "old", config={"store": {"backend": "memory"}})
    os.makedirs(tlsDir(old))
    tls.makeSelfSigned(old.certFile, os.path.join(tlsDir(old), "key.pem"), "mx.example.test")
    old.start()
    try:
        assert "replacing the self-signed development certificate of an older mailnet" in old.log()
        leaf = handshake(old, "imaps", caContext(old))[2]
        assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    finally:
        old.stop()

    # The admin's own pair in data_dir/tls (made by another CA, or self-signed) stays as it is.
    own = MailServer(tmp_path / "own", config={"store": {"backend": "memory"}})
    os.makedirs(tlsDir(own))
    writePair(os.path.join(tlsDir(own), "cert.pem"), os.path.join(tlsDir(own), "key.pem"), "mx.example.test")
    with open(own.certFile, "rb") as f:
        before = f.read()
    own.start()
    try:
        with open(own.certFile, "rb") as f:
            assert f.read() == before
        assert "replacing" not in own.log()
        assert handshake(own, "imaps", ssl.create_default_context(cafile=own.certFile), "mx.example.test")
        assert not os.path.exists(os.path.join(tlsDir(own), "rsa-cert.pem"))
    finally:
        own.stop()


def test_cert_make_says_which_file_to_trust(tmp_path):
    server = MailServer(tmp_path, config={"store": {"backend": "memory"}})
    r = server.mailnet("cert", "make")
    assert f"clients trust the development CA: {os.path.join(tlsDir(server), 'dev-ca.pem')}" in r.stdout
    with open(os.path.join(tlsDir(server), "dev-ca.pem"), "rb") as f:
        ca = f.read()
    r = server.mailnet("cert", "make", check=False)
    assert r.returncode == 1 and "use --force" in r.stderr
    server.mailnet("cert", "make", "--force")
    with open(os.path.join(tlsDir(server), "dev-ca.pem"), "rb") as f:
        assert f.read() == ca  # clients keep trusting the same CA


# Certificate problems: one line, exit 2, before any handshake


def writePair(certPath, keyPath, name, days=365, start=None, keyType="ec", otherKey=False):
    """A self-signed (not CA) certificate for ``name`` and its key (or another key)."""
    key = ec.generate_private_key(ec.SECP256R1()) if keyType == "ec" else rsa.generate_private_key(65537, 2048)
    start = start or datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    if otherKey:
        key = ec.generate_private_key(ec.SECP256R1()) if keyType == "ec" else rsa.generate_private_key(65537, 2048)
    with open(certPath, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(keyPath, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))


def configured(tmp_path, **kw):
    cert, key = str(tmp_path / "own-cert.pem"), str(tmp_path / "own-key.pem")
    writePair(cert, key, kw.pop("name", "mx.example.test"), **kw)
    return MailServer(tmp_path / "server", config={"store": {"backend": "memory"}, "tls": {"cert": cert, "key": key}})


def assertOneLineExit2(server, message):
    r = server.mailnet("config", "check", server.configPath, check=False)
    assert r.returncode == 2, r
    assert r.stdout == "" and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert re.search(message, r.stderr), r.stderr
    with pytest.raises(RuntimeError):
        server.start(timeout=60)
    assert server.process.returncode == 2
    errors = [line for line in server.output if line.startswith("mailnet:")]
    assert len(errors) == 1 and re.search(message, errors[0]), server.log()
    assert "Traceback" not in server.log()


def test_key_that_does_not_match_the_certificate(tmp_path):
    server = configured(tmp_path, otherKey=True)
    assertOneLineExit2(server, r"^mailnet: .*mailnet\.toml: \[tls\] key: .*own-key\.pem does not match the "
                               r"certificate in .*own-cert\.pem$")


def test_expired_certificate(tmp_path):
    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=100)
    server = configured(tmp_path, start=start, days=30)
    assertOneLineExit2(server, r"\[tls\] cert: .*own-cert\.pem expired on \d{4}-\d\d-\d\d")


def test_rsa_cert_must_be_rsa_and_match(tmp_path):
    rsaCert, rsaKey = str(tmp_path / "rsa.pem"), str(tmp_path / "rsa-key.pem")
    writePair(rsaCert, rsaKey, "mx.example.test")  # ECDSA in the RSA slot
    server = configured(tmp_path)
    server.sections["tls"].update(rsa_cert=rsaCert, rsa_key=rsaKey)
    from tests.harness import writeConfig

    writeConfig(server.configPath, server.sections)
    assertOneLineExit2(server, r"\[tls\] rsa_cert: .*rsa\.pem is not an RSA certificate")


def test_configured_rsa_certificate_beside_ecdsa(tmp_path):
    rsaCert, rsaKey = str(tmp_path / "rsa.pem"), str(tmp_path / "rsa-key.pem")
    writePair(rsaCert, rsaKey, "mx.example.test", keyType="rsa")
    server = configured(tmp_path)
    server.sections["tls"].update(rsa_cert=rsaCert, rsa_key=rsaKey)
    from tests.harness import writeConfig

    writeConfig(server.configPath, server.sections)
    server.start()
    try:
        ecdsaCtx = ssl.create_default_context(cafile=server.sections["tls"]["cert"])
        assert isinstance(handshake(server, "imaps", ecdsaCtx, "mx.example.test")[2].public_key(),
                          ec.EllipticCurvePublicKey)
        rsaCtx = ssl.create_default_context(cafile=rsaCert)
        rsaCtx.maximum_version = ssl.TLSVersion.TLSv1_2
        rsaCtx.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256")
        assert isinstance(handshake(server, "imaps", rsaCtx, "mx.example.test")[2].public_key(), rsa.RSAPublicKey)
    finally:
        server.stop()


def test_expiring_soon_and_wrong_name_are_warnings(tmp_path):
    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=80)
    server = configured(tmp_path, start=start, days=85, name="other.example.test")
    r = server.mailnet("config", "check", server.configPath)
    assert r.stdout.endswith(": ok\n")
    warnings = r.stderr.splitlines()
    assert len(warnings) == 2, r.stderr
    assert re.search(r"^mailnet: warning: .*\[tls\] cert: .*own-cert\.pem expires on .* \(in 4 days\)$", warnings[0])
    assert re.search(r"^mailnet: warning: .*\[tls\] cert: .*own-cert\.pem does not name \[server\] hostname "
                     r"mx\.example\.test \(it names other\.example\.test\)$", warnings[1])
    server.start()
    try:
        server.waitForLog("expires on")
        server.waitForLog("does not name [server] hostname")
    finally:
        server.stop()


# Operating-system limits


def test_open_files_limit_raised_to_what_the_limits_need(tmp_path):
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    connections = 300
    server = MailServer(tmp_path, config={"store": {"backend": "memory"}, "listen": {"http": ""},
                                          "limits": {"connections": connections}})
    need = sum(1 for d in server.sections["listen"].values() if d) * connections  # one file per connection
    if hard != resource.RLIM_INFINITY and hard < need + 1000:
        pytest.skip(f"hard open files limit {hard} is too low for this test")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # the server inherits a low soft limit
    try:
        server.start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        with open(f"/proc/{server.process.pid}/limits") as f:
            line = next(line for line in f if line.startswith("Max open files"))
        assert need <= int(line.split()[3]) < need + 1000, line  # plus a few for the queue and files
        assert "raised the open files limit from 1024 to" in server.log()
    finally:
        server.stop()


def test_open_files_limit_that_cannot_be_raised_is_logged(tmp_path):
    server = MailServer(tmp_path, config={"store": {"backend": "memory"}, "limits": {"connections": 10 ** 8}})
    server.start()
    try:
        line = server.waitForLog("open files limit is")
        assert "the connection limits need about" in line
    finally:
        server.stop()


def listenBacklog(port):
    r = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True)
    return int(r.stdout.split()[2])  # Send-Q of a listening socket is its backlog


@pytest.mark.skipif(not shutil.which("ss"), reason="no ss command")
def test_listen_backlog(tmp_path):
    with open("/proc/sys/net/core/somaxconn") as f:
        if int(f.read()) < 300:
            pytest.skip("net.core.somaxconn is below 300")
    server = MailServer(tmp_path, config={"store": {"backend": "memory"}, "limits": {"listen_backlog": 300},
                                          "listen": {"pop3": "tcp:0:interface=127.0.0.1:backlog=77"}})
    server.start()
    try:
        assert listenBacklog(server.port("smtp")) == 300
        assert listenBacklog(server.port("imaps")) == 300
        assert listenBacklog(server.port("pop3")) == 77  # an endpoint's own backlog= wins
    finally:
        server.stop()


def test_hostname_change_remakes_our_leaves_with_the_same_ca(tmp_path):
    server = MailServer(tmp_path, config={"store": {"backend": "memory"}})
    server.start()
    server.stop()
    with open(os.path.join(tlsDir(server), "dev-ca.pem"), "rb") as f:
        ca = f.read()
    server.sections["server"]["hostname"] = "mail2.example.test"
    from tests.harness import writeConfig

    writeConfig(server.configPath, server.sections)
    server.start()
    try:
        assert "renewing the development certificates" in server.log()
        assert "does not name" not in server.log()
        handshake(server, "imaps", caContext(server), "mail2.example.test")
        with open(os.path.join(tlsDir(server), "dev-ca.pem"), "rb") as f:
            assert f.read() == ca
    finally:
        server.stop()


class FakeResource:
    RLIMIT_NOFILE = 7
    RLIM_INFINITY = -1

    def __init__(self, soft, hard, privileged=False):
        self.limits = (soft, hard)
        self.privileged = privileged

    def getrlimit(self, kind):
        return self.limits

    def setrlimit(self, kind, limits):
        if limits[1] > self.limits[1] and not self.privileged:
            raise ValueError("not allowed to raise maximum limit")
        self.limits = limits


def test_raise_file_limit_cases():
    from mailnet import net

    r = FakeResource(1024, 4096)
    assert net.raiseFileLimit(2000, r) == (1024, 2000) and r.limits == (2000, 4096)
    r = FakeResource(1024, 4096)
    assert net.raiseFileLimit(9000, r) == (1024, 4096) and r.limits == (4096, 4096)  # as far as allowed
    r = FakeResource(1024, 4096, privileged=True)
    assert net.raiseFileLimit(9000, r) == (1024, 9000) and r.limits == (9000, 9000)
    r = FakeResource(50000, 60000)
    assert net.raiseFileLimit(9000, r) == (50000, 50000) and r.limits == (50000, 60000)  # never lowered
    r = FakeResource(1024, -1)
    assert net.raiseFileLimit(9000, r) == (1024, 9000)


def test_with_backlog():
    from mailnet import net

    assert net.withBacklog("tcp:25", 511) == "tcp:25:backlog=511"
    assert net.withBacklog("tcp:25:interface=127.0.0.1", 9) == "tcp:25:interface=127.0.0.1:backlog=9"
    assert net.withBacklog("tcp:25:backlog=7", 511) == "tcp:25:backlog=7"
    assert net.withBacklog("unix:/run/m.sock", 511) == "unix:/run/m.sock:backlog=511"

"""
Certificate reload on a real server: new certificate files (as an ACME
client's renewal leaves them) are served to new connections after SIGHUP or
when the poll notices them; open connections keep working; unusable files
are refused and the old certificate stays.
"""

from __future__ import annotations

import imaplib
import os
import signal
import socket
import ssl

from cryptography import x509

from tests.queue.e2e import waitFor


def servedSerial(server, listener="imaps"):
    context = ssl.create_default_context(cafile=os.path.join(server.dataDir, "tls", "dev-ca.pem"))
    context.check_hostname = False
    with socket.create_connection(("127.0.0.1", server.port(listener)), timeout=30) as raw:
        with context.wrap_socket(raw) as s:
            return x509.load_der_x509_certificate(s.getpeercert(binary_form=True)).serial_number


def openSession(server):
    context = ssl.create_default_context(cafile=os.path.join(server.dataDir, "tls", "dev-ca.pem"))
    context.check_hostname = False
    imap = imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=context)
    imap.login("alice@example.test", "alice-pw")
    return imap


def renew(server):
    server.mailnet("cert", "make", "--force")


def test_sighup_reloads_for_new_connections_open_ones_stay(make_server):
    server = make_server(config={"tls": {"reload_poll": 0}})
    server.addUser("alice@example.test", "alice-pw")
    before = servedSerial(server)
    imap = openSession(server)
    renew(server)
    assert servedSerial(server) == before  # no poll: nothing until told
    os.kill(server.process.pid, signal.SIGHUP)
    server.waitForLog("TLS certificates reloaded", timeout=30)
    after = servedSerial(server)
    assert after != before
    assert servedSerial(server, "imaps") == after
    # The session opened before the renewal still works.
    assert imap.noop()[0] == "OK"
    imap.logout()
    assert server.process.poll() is None


def test_poll_notices_renewal_and_refuses_broken_files(make_server):
    server = make_server(config={"tls": {"reload_poll": 1}})
    before = servedSerial(server)
    renew(server)
    server.waitForLog("TLS certificates reloaded", timeout=30)
    renewed = waitFor(lambda: (lambda s: s if s != before else None)(servedSerial(server)), what="new certificate")
    certFile = os.path.join(server.dataDir, "tls", "cert.pem")
    with open(certFile, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")
    server.waitForLog("TLS certificates not reloaded (keeping the old ones)", timeout=30)
    assert servedSerial(server) == renewed
    assert servedSerial(server, "submissions") == renewed

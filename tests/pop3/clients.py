"""Helpers for the tests that drive a real mailnet with real POP3 clients."""

from __future__ import annotations

import email.policy
import itertools
import os
import poplib
import socket
import ssl
import time
from email.message import EmailMessage

_counter = itertools.count()


def newUser(server, prefix="u"):
    name = f"{prefix}{os.getpid()}x{next(_counter)}@example.test"
    password = f"pw-{name}"
    server.addUser(name, password)
    return name, password


def mimeMessage(subject="test", body="Hello.\n.leading dot\n..two dots\n.\nend\n", attachment=b"\x00\x01binary\xff" * 100):
    msg = EmailMessage()
    msg["From"] = "Bob <bob@example.org>"
    msg["To"] = "alice@example.test"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{time.time()}.{next(_counter)}@example.test>"
    msg.set_content(body)
    if attachment:
        msg.add_attachment(attachment, maintype="application", subtype="octet-stream", filename="data.bin")
    return msg.as_bytes(policy=email.policy.SMTP)  # CRLF


def putMessage(server, user, crlfMessage: bytes, lf=True) -> str:
    """
    Deliver like an external MDA (procmail, Postfix local): write the
    message into tmp/ with LF line ends, then rename it into new/.
    """
    root = server.maildir(user)
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    name = f"{int(time.time())}.M{next(_counter)}P{os.getpid()}.testhost"
    tmp = os.path.join(root, "tmp", name)
    data = crlfMessage.replace(b"\r\n", b"\n") if lf else crlfMessage
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    final = os.path.join(root, "new", name)
    os.rename(tmp, final)
    return final


def tlsContext(server):
    ctx = ssl.create_default_context(cafile=server.certFile)
    return ctx


def pop3s(server, user=None, password=None):
    c = poplib.POP3_SSL("127.0.0.1", server.port("pop3s"), context=tlsContext(server), timeout=30)
    if user:
        c.user(user)
        c.pass_(password)
    return c


def pop3stls(server, user=None, password=None):
    c = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=30)
    # The certificate names localhost; we connect to 127.0.0.1 (in its SANs).
    c.stls(tlsContext(server))
    if user:
        c.user(user)
        c.pass_(password)
    return c


def retr(client, n) -> bytes:
    """RETR as poplib gives it (dot-unstuffed lines), back in CRLF form."""
    _, lines, _ = client.retr(n)
    return b"".join(line + b"\r\n" for line in lines)


class Raw:
    """A plain socket speaking POP3 by hand, for what poplib cannot send."""

    def __init__(self, port, tls=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname="localhost")
        self.file = self.sock.makefile("rb")
        self.greeting = self.line()

    def send(self, data: bytes):
        self.sock.sendall(data)

    def line(self) -> bytes:
        return self.file.readline()

    def multiline(self) -> list[bytes]:
        lines = []
        while (line := self.line()) not in (b".\r\n", b""):
            lines.append(line)
        return lines

    def starttls(self, tls):
        """Switch to TLS, keeping nothing the old reader buffered."""
        self.file = None
        self.sock = tls.wrap_socket(self.sock, server_hostname="localhost")
        self.file = self.sock.makefile("rb")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

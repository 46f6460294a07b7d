"""Helpers for the tests that drive a real mailnet with real POP3 clients."""

from __future__ import annotations

import email.policy
import itertools
import os
import poplib
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import textwrap
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


# fetchmail and getmail6, run by tests/pop3/test_clients.py and tests/test_clients_on_both_stores.py


def runFetchmail(tmp_path, server, name, pw, mode, keep):
    home = tmp_path / "fetchmail"
    out = tmp_path / "fetched"
    home.mkdir(exist_ok=True)
    out.mkdir(exist_ok=True)
    port = server.port("pop3s" if mode == "ssl" else "pop3")
    tls = "ssl" if mode == "ssl" else "sslproto tls1.2+"
    rc = home / "fetchmailrc"
    rc.write_text(textwrap.dedent(f"""\
        set no bouncemail
        poll localhost via 127.0.0.1 proto pop3 port {port} uidl
          user "{name}" there with password "{pw}" is "nobody" here
          {tls} sslcertck sslcommonname "localhost" sslcertfile "{server.certFile}"
          {"keep" if keep else "nokeep flush"}
          mda "/bin/sh -c 'cat > {out}/msg.$$'"
        """))
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(home), FETCHMAILHOME=str(home))
    # Its own lock file: as root fetchmail would use /var/run/fetchmail.pid
    # (FETCHMAILHOME or not), and one running elsewhere (another xdist
    # worker's test) makes it exit 8, "another foreground fetchmail is running".
    command = ["fetchmail", "-v", "--nosyslog", "--pidfile", str(home / "fetchmail.pid"), "-f", str(rc)]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    messages = [(p.read_bytes()) for p in sorted(out.iterdir())]
    for p in out.iterdir():
        p.unlink()
    return proc, messages


def withoutReceived(lfMessage: bytes) -> bytes:
    """fetchmail adds a Received: header (folded) at the top; drop it."""
    lines = lfMessage.split(b"\n")
    assert lines[0].startswith(b"Received: ")
    i = 1
    while lines[i][:1] in (b" ", b"\t"):
        i += 1
    return b"\n".join(lines[i:])


GETMAIL_REAPED = os.path.join(os.path.dirname(__file__), "getmail_reaped.py")

# In the getmail process: the parent sleeps a moment after each fork(), as
# when the scheduler runs the child first on a loaded machine.
SLOW_PARENT = """\
import os, runpy, sys, time
fork = os.fork
def slowFork():
    pid = fork()
    if pid:
        time.sleep(0.5)
    return pid
os.fork = slowFork
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def getmailCommand(*args, slowParent=False):
    """
    The installed getmail, run through getmail_reaped.py: getmail 6.18 can
    miss the end of its delivery child and stall (see that file).
    """
    getmail = shutil.which("getmail")
    with open(getmail) as f:
        first = f.readline()
    python = shlex.split(first[2:]) if first.startswith("#!") else [sys.executable]
    shim = ["-c", SLOW_PARENT] if slowParent else []
    return [*python, *shim, GETMAIL_REAPED, getmail, *args]


def getmailSetup(tmp_path, server, name, pw, delete, request):
    """A getmailrc fetching ``name``'s maildrop over POP3S into a fresh
    Maildir; returns (getmail's directory, the Maildir)."""
    deliverAs = ""
    if os.geteuid() == 0:
        # getmail refuses to deliver as root; it switches to "user" for the
        # delivery, which must be able to reach the Maildir (pytest's
        # tmp_path is private to root).
        import pathlib
        import pwd
        import tempfile

        nobody = pwd.getpwnam("nobody")
        dest = pathlib.Path(tempfile.mkdtemp(prefix="getmail-dest-", dir="/tmp")) / "Maildir"
        request.addfinalizer(lambda: shutil.rmtree(dest.parent, ignore_errors=True))
        for sub in ("tmp", "new", "cur"):
            (dest / sub).mkdir(parents=True)
        for d in (dest.parent, dest, dest / "tmp", dest / "new", dest / "cur"):
            os.chown(d, nobody.pw_uid, nobody.pw_gid)
        deliverAs = "user = nobody"
    else:
        dest = tmp_path / "Maildir"
        for sub in ("tmp", "new", "cur"):
            (dest / sub).mkdir(parents=True)
    gdir = tmp_path / "getmail"
    gdir.mkdir()
    (gdir / "getmailrc").write_text(textwrap.dedent(f"""\
        [retriever]
        type = SimplePOP3SSLRetriever
        server = 127.0.0.1
        port = {server.port("pop3s")}
        username = {name}
        password = {pw}
        ca_certs = {server.certFile}
        ssl_cert_hostname = localhost

        [destination]
        type = Maildir
        path = {dest}/
        {deliverAs}

        [options]
        read_all = false
        delete = {str(delete).lower()}
        received = false
        delivered_to = false
        verbose = 2
        """))
    return gdir, dest


def runGetmail(gdir, slowParent=False):
    return subprocess.run(getmailCommand("--getmaildir", str(gdir), "--rcfile", "getmailrc", slowParent=slowParent),
                          capture_output=True, text=True, timeout=60)


def delivered(dest):
    # getmail puts a Return-Path: (the envelope sender, unknown to POP3) on top.
    return sorted(p.read_bytes().removeprefix(b"Return-Path: <unknown>\n") for p in (dest / "new").iterdir())

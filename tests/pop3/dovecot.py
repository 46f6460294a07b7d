"""Run Dovecot (POP3 and/or IMAP) as our own child process (tests and bench)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from tests.harness import freePort

# /usr/sbin is not on every PATH.
DOVECOT = shutil.which("dovecot") or next(
    (p for p in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot") if os.path.exists(p)), None)


def waitPort(port, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class Dovecot:
    """
    Dovecot on 127.0.0.1 high ports with its own config under ``base``
    (which must be reachable by Dovecot's unprivileged processes), users in a
    passwd-file, mail in ``base/mail/<domain>/<local>`` owned by the mail user
    (nobody when we are root).  Stopped by PID.

    ``protocols``: any of ``"pop3"`` (ports ``port`` and ``tlsPort``, the
    latter implicit TLS) and ``"imap"`` (``imapPort``, ``imapsPort``).  The
    one namespace is INBOX with ``/`` as hierarchy separator, as mailnet's
    IMAP shows it; Maildir++ on disk (``.`` between levels) either way.
    """

    def __init__(self, base, cert, key, protocols=("pop3",)):
        self.base = base
        self.protocols = tuple(protocols)
        self.cert = cert
        self.key = key
        self.mail = os.path.join(base, "mail")
        self.users = {}
        self.extraConfig = ""  # appended to dovecot.conf (plugins, as tests/ops/test_quota_dovecot.py)
        self.process = None
        self.owner = pwd.getpwnam("nobody") if os.getuid() == 0 else pwd.getpwuid(os.getuid())
        os.makedirs(self.mail, exist_ok=True)
        os.chmod(base, 0o755)

    def maildir(self, user):
        local, domain = user.split("@")
        return os.path.join(self.mail, domain, local)

    def addUser(self, user, hashed, source=None):
        """``hashed`` in {SCHEME} form; ``source``: a Maildir to copy in."""
        self.users[user] = hashed
        if source is not None:
            shutil.copytree(source, self.maildir(user))

    def start(self):
        with open(os.path.join(self.base, "passwd"), "w") as f:
            for user, hashed in self.users.items():
                f.write(f"{user}:{hashed}\n")
        os.chmod(os.path.join(self.base, "passwd"), 0o644)
        if os.getuid() == 0:
            for dirpath, dirnames, filenames in os.walk(self.mail):
                os.chown(dirpath, self.owner.pw_uid, self.owner.pw_gid)
                for n in filenames:
                    os.chown(os.path.join(dirpath, n), self.owner.pw_uid, self.owner.pw_gid)
        self.port = self.tlsPort = self.imapPort = self.imapsPort = None
        services = ""
        if "pop3" in self.protocols:
            self.port, self.tlsPort = freePort(), freePort()
            services += f"""\
service pop3-login {{
  inet_listener pop3 {{
    port = {self.port}
  }}
  inet_listener pop3s {{
    port = {self.tlsPort}
    ssl = yes
  }}
}}
"""
        if "imap" in self.protocols:
            self.imapPort, self.imapsPort = freePort(), freePort()
            services += f"""\
service imap-login {{
  inet_listener imap {{
    port = {self.imapPort}
  }}
  inet_listener imaps {{
    port = {self.imapsPort}
    ssl = yes
  }}
}}
"""
        conf = os.path.join(self.base, "dovecot.conf")
        b = self.base
        with open(conf, "w") as f:
            f.write(f"""\
protocols = {" ".join(self.protocols)}
listen = 127.0.0.1
base_dir = {b}/run
state_dir = {b}/state
log_path = {b}/dovecot.log
ssl = yes
ssl_cert = <{self.cert}
ssl_key = <{self.key}
disable_plaintext_auth = no
auth_mechanisms = plain
passdb {{
  driver = passwd-file
  args = {b}/passwd
}}
userdb {{
  driver = static
  args = uid={self.owner.pw_uid} gid={self.owner.pw_gid} home={b}/home/%d/%n
}}
mail_location = maildir:{self.mail}/%d/%n
pop3_uidl_format = %08Xu%08Xv
namespace inbox {{
  inbox = yes
  separator = /
}}
{services}service anvil {{
  chroot =
}}
{self.extraConfig}""")
        self.process = subprocess.Popen([DOVECOT, "-F", "-c", conf], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.STDOUT)
        for port in (self.port, self.tlsPort, self.imapPort, self.imapsPort):
            if port is not None:
                waitPort(port)
        return self

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self):
        try:
            with open(os.path.join(self.base, "dovecot.log")) as f:
                return f.read()
        except FileNotFoundError:
            return ""

"""
Start the real server (``python -m mailnet run``, i.e. twistd with our
plugin) in a temporary directory and talk to it from tests.

Every listener binds port 0 on 127.0.0.1 (or the ``host`` given: a node
of tests/pgnodes.py in its own network namespace); the server reports what it bound
in ``<data_dir>/run/listeners.json`` and logs ``mailnet ready``, which
:meth:`MailServer.start` waits for (an event, not a sleep).

    server = MailServer(tmp_path, config={"limits": {"message_size": 10000}})
    server.start()
    server.addUser("alice@example.test", "secret")
    smtplib.SMTP("127.0.0.1", server.port("smtp"))
    server.kill()        # SIGKILL, for crash tests
    server.start()       # same data directory, new ports
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_LIVE = set()


@atexit.register
def _killLeftovers():
    """A test that forgot to stop its server must not leave it running."""
    for process in list(_LIVE):
        if process.poll() is None:
            process.kill()


LISTENERS = ["smtp", "submission", "submissions", "pop3", "pop3s", "imap", "imaps", "http", "metrics"]


def freePort(host="127.0.0.1"):
    """A TCP port on ``host`` that was free a moment ago (for peers that
    cannot report the port they bound, like aiosmtpd or Dovecot)."""
    s = socket.socket()
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def toml(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return str(value)


def writeConfig(path, sections: dict):
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {toml(value)}")
        lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines))


class MailServer:
    """
    One mailnet process.

    @param config: extra config sections merged over the test defaults
        (data_dir in ``directory``, all listeners on 127.0.0.1 port 0,
        domain ``example.test``, fast auth failure delays).
    """

    def __init__(self, directory, config=None, env=None, host="127.0.0.1", prefix=()):
        self.directory = str(directory)
        self.host = host  # every listener's address (tests/pgnodes.py: one per node)
        self.prefix = list(prefix)  # argv before python, e.g. ["ip", "netns", "exec", NAME]
        os.makedirs(self.directory, exist_ok=True)
        self.dataDir = os.path.join(self.directory, "data")
        self.configPath = os.path.join(self.directory, "mailnet.toml")
        sections = {
            "server": {"hostname": "mx.example.test", "data_dir": self.dataDir},
            "domains": {"local": ["example.test"]},
            "listen": {name: f"tcp:0:interface={host}" for name in LISTENERS},
            "auth": {"failure_delay": 0.05},
            # Tests never reach past 127.0.0.1: a resolver on a closed
            # loopback port makes remote domains a temporary failure (the
            # mail waits in the queue).  MX tests set their own DNS server.
            "dns": {"nameservers": ["127.0.0.1:9"], "timeout": 2},
            "log": {"level": "info"},
        }
        for section, values in (config or {}).items():
            sections.setdefault(section, {}).update(values)
        self.sections = sections
        writeConfig(self.configPath, sections)
        self.env = env
        self.process = None
        self.info = None
        self.output = []
        self._reader = None

    # Life cycle

    def start(self, timeout=60):
        """Start and wait until every listener is bound."""
        assert self.process is None or self.process.poll() is not None, "already running"
        listenersFile = os.path.join(self.dataDir, "run", "listeners.json")
        if os.path.exists(listenersFile):
            os.unlink(listenersFile)
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), PYTHONUNBUFFERED="1")
        env.update(self.env or {})
        self.output = []
        self.process = subprocess.Popen(
            self.prefix + [sys.executable, "-m", "mailnet", "--config", self.configPath, "run"],
            cwd=self.directory,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
        _LIVE.add(self.process)
        ready = threading.Event()

        def read(process=self.process, output=self.output):
            for line in iter(process.stdout.readline, b""):
                text = line.decode("utf-8", "replace").rstrip("\n")
                output.append(text)
                if "mailnet ready" in text:
                    ready.set()
            ready.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        # "ready" is also set when the output ends (the process is exiting but
        # may not be reaped yet): without listeners.json it did not start.
        if not ready.wait(timeout) or self.process.poll() is not None or not os.path.exists(listenersFile):
            self.stop()
            raise RuntimeError("mailnet did not start:\n" + self.log())
        with open(listenersFile) as f:
            self.info = json.load(f)
        return self

    def stop(self, timeout=30):
        """SIGTERM and wait (a clean shutdown)."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._reader:
            self._reader.join(5)

    def kill(self):
        """SIGKILL: the crash in crash tests."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self._reader:
            self._reader.join(5)

    def log(self) -> str:
        return "\n".join(self.output)

    def waitForLog(self, text, timeout=10):
        """Wait until a line containing ``text`` is logged; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.output):
                if text in line:
                    return line
            time.sleep(0.02)
        raise AssertionError(f"{text!r} not logged within {timeout}s:\n{self.log()}")

    # Facts

    def port(self, listener) -> int:
        return self.info["listeners"][listener]["port"]

    def url(self, path="/"):
        """``http://<host>:<http port><path>``: the JMAP/webmail listener."""
        return f"http://{self.host}:{self.port('http')}{path}"

    @property
    def certFile(self):
        return os.path.join(self.dataDir, "tls", "cert.pem")

    def mailnet(self, *args, input=None, check=True):
        """Run the ``mailnet`` command against this server's config."""
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        return subprocess.run(
            [sys.executable, "-m", "mailnet", "--config", self.configPath, *args],
            input=input, capture_output=True, text=True, check=check, env=env, cwd=self.directory,
        )

    def addUser(self, name, password):
        """Add a user directly to the users file (the running server sees it at once)."""
        from mailnet import auth

        users = auth.UserDB(os.path.join(self.dataDir, "users"), "argon2id", 0)
        users.add(name, password)

    def addAlias(self, address, *targets):
        from mailnet import auth

        auth.AliasDB(os.path.join(self.dataDir, "aliases")).add(address, list(targets))

    def maildir(self, user, folder="INBOX"):
        """Path of a user's Maildir folder (Maildir++ layout)."""
        local, domain = user.split("@")
        root = os.path.join(self.dataDir, "mail", domain, local)
        if folder == "INBOX":
            return root
        return os.path.join(root, "." + folder.replace("/", "."))

    def messageFiles(self, user, folder="INBOX"):
        """Files in new/ and cur/ of a Maildir folder."""
        root = self.maildir(user, folder)
        found = []
        for sub in ("new", "cur"):
            d = os.path.join(root, sub)
            if os.path.isdir(d):
                found += [os.path.join(d, n) for n in sorted(os.listdir(d))]
        return found

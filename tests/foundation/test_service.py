"""The server as a newcomer and an operator see it: start-up, the printed
ports and demo login, clean errors, clean shutdown."""

import json
import os
import socket
import stat
import subprocess
import sys
import threading

import pytest

from mailnet import config
from tests.harness import ROOT, MailServer


def test_starts_reports_listeners_and_stops(tmp_path):
    server = MailServer(tmp_path, config={"store": {"backend": "memory"}})
    server.start()
    try:
        info = server.info
        assert info["pid"] == server.process.pid
        for name, address in info["listeners"].items():
            assert address["host"] == "127.0.0.1" and address["port"] > 0
            assert f"listening: {name}" in server.log()
            socket.create_connection(("127.0.0.1", address["port"]), timeout=5).close()
        assert "demo login" not in server.log()  # only without a config file
        assert os.path.exists(server.certFile)
        assert stat.S_IMODE(os.stat(os.path.join(server.dataDir, "tls", "key.pem")).st_mode) == 0o600
    finally:
        server.stop()
    # twistd ends a clean shutdown by re-raising the signal it got.
    assert server.process.returncode in (0, -15)
    assert "Server Shut Down." in server.log()


def test_port_in_use_is_one_line(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        server = MailServer(tmp_path, config={"store": {"backend": "memory"},
                                              "listen": {"imap": f"tcp:{port}:interface=127.0.0.1"}})
        with pytest.raises(RuntimeError):
            server.start(timeout=30)
        assert server.process.returncode == 1
        errors = [line for line in server.output if line.startswith("mailnet:")]
        assert errors == [f"mailnet: [listen] imap: cannot listen on 'tcp:{port}:interface=127.0.0.1': "
                          f"Couldn't listen on 127.0.0.1:{port}: [Errno 98] Address already in use."]
        assert "Traceback" not in server.log()
    finally:
        server.stop()
        busy.close()


DEV_PORTS = [2525, 2587, 2465, 2110, 2995, 2143, 2993, 8080]


def ports_free():
    for port in DEV_PORTS:
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        finally:
            s.close()
    return True


@pytest.mark.skipif(not ports_free(), reason="the development ports are in use on this machine")
def test_development_defaults_as_a_newcomer_sees_them(tmp_path):
    """`mailnet run` with no config in an empty directory: ./var, the fixed
    development ports, a certificate, a demo login that works the second time too."""
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")

    def run_once():
        proc = subprocess.Popen([sys.executable, "-m", "mailnet", "run"], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "mailnet ready" in line or "mailnet:" in line:
                break
        proc.terminate()
        lines += proc.stdout.readlines()
        proc.wait(30)
        return "".join(lines)

    out = run_once()
    assert "mailnet ready: localhost, domains example.test, data in " + str(tmp_path / "var") in out, out
    demo = [line for line in out.splitlines() if "demo login: user demo@example.test password " in line]
    assert len(demo) == 1
    password = demo[0].rsplit(" ", 1)[1]
    assert (tmp_path / "var" / "tls" / "cert.pem").exists()
    with open(tmp_path / "var" / "run" / "listeners.json") as f:
        ports = {name: a["port"] for name, a in json.load(f)["listeners"].items()}
    defaults = config.load(None, checkFiles=False)
    for name, port in ports.items():
        assert getattr(defaults.listen, name) == f"tcp:{port}:interface=127.0.0.1"
    from mailnet import auth, passwords

    users = auth.UserDB(str(tmp_path / "var" / "users"))
    assert passwords.verify(password, users.current()["demo@example.test"])
    assert run_once().count(f"password {password}") == 1  # same login printed again


def test_cli_users_and_aliases(tmp_path):
    server = MailServer(tmp_path, config={"store": {"backend": "memory"}})
    r = server.mailnet("user", "add", "Carol@example.test", "pw")
    assert r.stdout == "added carol@example.test\n"
    r = server.mailnet("user", "add", "dave@example.test", input="from-stdin\n")
    assert server.mailnet("user", "list").stdout == "carol@example.test\ndave@example.test\n"
    from mailnet import auth, passwords

    stored = auth.UserDB(os.path.join(server.dataDir, "users")).current()
    assert passwords.verify("from-stdin", stored["dave@example.test"])
    assert stored["carol@example.test"].startswith("{ARGON2ID}$argon2id$")
    server.mailnet("user", "passwd", "carol@example.test", "new")
    stored = auth.UserDB(os.path.join(server.dataDir, "users")).current()
    assert passwords.verify("new", stored["carol@example.test"])
    r = server.mailnet("user", "add", "carol@example.test", "x", check=False)
    assert r.returncode == 1 and r.stderr == "mailnet: user carol@example.test exists already\n"
    r = server.mailnet("user", "add", "nodomain", "x", check=False)
    assert r.returncode == 1 and "not a valid user name" in r.stderr
    r = server.mailnet("user", "add", "x@elsewhere.test", "x")
    assert "elsewhere.test is not in [domains] local" in r.stderr
    server.mailnet("user", "del", "dave@example.test")
    r = server.mailnet("user", "del", "dave@example.test", check=False)
    assert r.returncode == 1 and r.stderr == "mailnet: no user dave@example.test\n"

    server.mailnet("alias", "add", "team@example.test", "carol@example.test", "ext@remote.test")
    server.mailnet("alias", "add", "@example.test", "carol@example.test")
    assert server.mailnet("alias", "list").stdout == (
        "@example.test: carol@example.test\nteam@example.test: carol@example.test, ext@remote.test\n")
    server.mailnet("alias", "del", "@example.test")
    r = server.mailnet("alias", "del", "@example.test", check=False)
    assert r.returncode == 1
    r = server.mailnet("--config", "/nonexistent.toml", "user", "list", check=False)
    assert r.returncode == 2 and r.stderr == "mailnet: /nonexistent.toml: no such file\n"


def test_protocol_services_own_their_state_and_serve_their_listeners(tmp_path):
    """In process: one ProtocolService child per protocol; the listeners of
    a protocol share its state (POP3's maildrop locks, IMAP's Shared)."""
    from twisted.internet import task

    from mailnet import service
    from mailnet.http.metrics import MetricsService
    from mailnet.http.server import HTTPService
    from mailnet.imap.server import IMAPService
    from mailnet.pop3.server import POP3Service
    from mailnet.serving import ProtocolService
    from mailnet.smtp.server import SMTPService
    from mailnet.store.memory import MemoryStore

    conf = config.fromDict({"server": {"data_dir": str(tmp_path), "hostname": "mx.example.test"}})
    top = service.makeService(conf, reactor=task.Clock(), store=MemoryStore())
    assert [type(p) for p in top.protocols] == [SMTPService, POP3Service, IMAPService, HTTPService,
                                                   MetricsService]
    assert all(isinstance(p, ProtocolService) and p.parent is top and p.context is top.context for p in top.protocols)
    assert top.getServiceNamed("pop3") is top.protocols[1]
    assert top.getServiceNamed("queue").context is top.context
    assert {name: (p.name, implicit) for name, (p, implicit) in top.listeners.items()} == {
        "smtp": ("smtp", False), "submission": ("smtp", False), "submissions": ("smtp", True),
        "pop3": ("pop3", False), "pop3s": ("pop3", True), "imap": ("imap", False), "imaps": ("imap", True),
        "http": ("http", False), "metrics": ("metrics", False)}
    assert list(top.listeners) == ["smtp", "submission", "submissions", "pop3", "pop3s", "imap", "imaps", "http",
                                   "metrics"]
    smtp, pop3, imap, http, _ = top.protocols
    assert smtp.REFUSAL.startswith(b"421 ") and pop3.REFUSAL.startswith(b"-ERR ") and imap.REFUSAL.startswith(b"* BYE")
    assert smtp.factory("submission").settings is not smtp.factory("smtp").settings
    assert pop3.factory("pop3").locks is pop3.factory("pop3s").locks is pop3.locks
    assert pop3.factory("pop3s").implicitTLS and not pop3.factory("pop3").implicitTLS
    assert imap.factory("imap").shared is imap.factory("imaps").shared is imap.shared
    assert imap.factory("imaps").implicitTLS and not imap.factory("imap").implicitTLS
    # State belongs to the service, not to the context or the module.
    other = service.MailnetService(top.context)
    assert other.protocols[1].locks is not pop3.locks and other.protocols[2].shared is not imap.shared
    assert not hasattr(top.context, "_imapShared")

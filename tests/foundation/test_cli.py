"""
The `mailnet` command as a newcomer meets it: which data directory it works
on, that it does not leave stray ./var directories behind, --config before
or after the command, --version, and one server per data directory.
"""

import json
import os
import smtplib
import subprocess
import sys

import pytest

from tests.foundation.test_install import TWISTD, startAndStop
from tests.harness import ROOT, MailServer

pytestmark = pytest.mark.slow


def mailnet(*args, cwd, input=None):
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("MAILNET_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "mailnet", *args], cwd=cwd, env=env, input=input,
                          capture_output=True, text=True)


def test_version(tmp_path):
    from mailnet import __version__

    r = mailnet("--version", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"mailnet {__version__} (Twisted ")
    assert os.listdir(tmp_path) == []


def test_without_config_nothing_is_created_by_accident(tmp_path):
    var = tmp_path / "var"
    for args in (["user", "list"], ["alias", "list"], ["queue", "list"], ["user", "del", "x@example.test"],
                 ["alias", "add", "a@example.test", "b@example.test"], ["user", "passwd", "x@example.test", "pw"]):
        r = mailnet(*args, cwd=tmp_path)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert r.stderr == (f"mailnet: no data directory {var} (no --config given): nothing to work on; "
                            "give --config FILE, or start with `mailnet run` or `mailnet user add`\n"), args
        assert r.stdout == ""
        assert os.listdir(tmp_path) == [], args
    r = mailnet("config", "check", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout == "<defaults>: ok\n", r.stderr
    r = mailnet("queue", "--help", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("usage: mailnet queue"), r.stderr
    r = mailnet("user", "add", cwd=tmp_path)
    assert (r.returncode, r.stderr) == (2, "mailnet: user add: which user?\n")
    assert os.listdir(tmp_path) == []

    # user add is how a newcomer starts: it makes the directory, and says where
    r = mailnet("user", "add", "alice@example.test", cwd=tmp_path, input="pw\n")
    assert r.returncode == 0, r.stderr
    assert r.stderr == f"mailnet: creating the development data directory {var} (no --config given)\n"
    assert oct(os.stat(var).st_mode & 0o777) == oct(0o700)
    r = mailnet("user", "list", cwd=tmp_path)
    assert r.stdout == "alice@example.test\n"
    assert r.stderr == f"mailnet: using the development data directory {var} (no --config given)\n"
    # looking at a queue no server has made does not make it
    r = mailnet("queue", "list", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1] == f"mailnet: no queue in {var} yet (no server has run with this data directory)"
    assert sorted(os.listdir(var)) == ["users", "users.lock"]


def test_config_after_the_command(tmp_path):
    server = MailServer(tmp_path / "s", config={"store": {"backend": "memory"}})
    other = tmp_path / "elsewhere"
    other.mkdir()
    conf = server.configPath
    r = mailnet("user", "add", "--config", conf, "bob@example.test", "pw", cwd=other)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "added bob@example.test\n"
    assert r.stderr == f"mailnet: creating the data directory {server.dataDir}\n"
    r = mailnet("user", "list", "-c", conf, cwd=other)
    assert (r.returncode, r.stdout, r.stderr) == (0, "bob@example.test\n", "")
    # before the command still works, and the one after it wins
    r = mailnet("--config", "/nonexistent.toml", "user", "list", "--config", conf, cwd=other)
    assert (r.returncode, r.stdout) == (0, "bob@example.test\n"), r.stderr
    r = mailnet("config", "check", "--config", conf, cwd=other)
    assert (r.returncode, r.stdout) == (0, f"{conf}: ok\n"), r.stderr
    assert os.listdir(other) == []

    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
    out = startAndStop([sys.executable, "-m", "mailnet", "run", "--config", conf], cwd=other, env=env)
    assert "mailnet ready" in out, out
    assert f"data in {server.dataDir}" in out
    r = mailnet("queue", "list", "--config", conf, cwd=other)
    assert (r.returncode, r.stdout) == (0, "the queue is empty\n"), r.stderr
    assert os.listdir(other) == []


def test_a_second_server_on_the_same_data_directory_refuses(tmp_path):
    first = MailServer(tmp_path, config={"store": {"backend": "memory"}})
    first.start()
    try:
        listeners = os.path.join(first.dataDir, "run", "listeners.json")
        with open(listeners) as f:
            before = f.read()
        env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
        for argv in ([sys.executable, "-m", "mailnet", "run", "--config", first.configPath],
                     [sys.executable, "-c", TWISTD, "-n", "mailnet", "--config", first.configPath]):
            second = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
            assert second.returncode == 1, second.stdout + second.stderr
            assert second.stderr == (f"mailnet: another mailnet (pid {first.process.pid}) is running with the data "
                                     f"directory {first.dataDir}; stop it first or give this one another "
                                     "[server] data_dir\n"), second.stdout + second.stderr
            assert "Traceback" not in second.stdout and "mailnet ready" not in second.stdout
            with open(listeners) as f:
                assert f.read() == before
        with smtplib.SMTP("127.0.0.1", first.port("smtp"), timeout=10) as s:
            assert s.noop()[0] == 250
    finally:
        first.stop()
    # the lock goes with the process: the next start works
    first.start()
    try:
        assert json.load(open(listeners))["pid"] == first.process.pid
    finally:
        first.stop()


def test_token_add_list_revoke(tmp_path):
    server = MailServer(tmp_path / "s", config={"store": {"backend": "memory"}})
    conf = server.configPath
    assert mailnet("user", "add", "-c", conf, "bob@example.test", "pw", cwd=tmp_path).returncode == 0
    r = mailnet("token", "add", "-c", conf, "Bob@example.test", "--name", "phone", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert r.stdout == token + "\n" and token.startswith("mn_") and len(token) == 46
    second = mailnet("token", "add", "-c", conf, "bob@example.test", cwd=tmp_path).stdout.strip()
    assert second != token
    r = mailnet("token", "list", "-c", conf, "bob@example.test", cwd=tmp_path)
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and len(lines) == 2 and lines[0].startswith("phone  created 20")
    assert token not in r.stdout and second not in r.stdout
    stored = open(os.path.join(server.dataDir, "users.tokens")).read()
    assert token not in stored and second not in stored  # hashed at rest
    # Errors: a name taken, a bad name, an unknown user, an unknown token.
    for args, message in ((["add", "bob@example.test", "--name", "phone"], "has a token named phone already"),
                          (["add", "bob@example.test", "--name", "a:b"], "a token name is"),
                          (["add", "nobody@example.test"], "no user nobody@example.test"),
                          (["revoke", "bob@example.test", "tablet"], "has no token named tablet"),
                          (["revoke", "bob@example.test"], "token revoke USER NAME")):
        r = mailnet("token", "-c", conf, *args, cwd=tmp_path)
        assert r.returncode != 0 and message in r.stderr, (args, r.stderr)
    r = mailnet("token", "revoke", "-c", conf, "bob@example.test", "phone", cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, "revoked phone of bob@example.test\n"), r.stderr
    assert len(mailnet("token", "list", "-c", conf, "bob@example.test", cwd=tmp_path).stdout.splitlines()) == 1
    # A user removed takes their tokens along (a user made again later does not inherit them).
    assert mailnet("user", "del", "-c", conf, "bob@example.test", cwd=tmp_path).returncode == 0
    assert open(os.path.join(server.dataDir, "users.tokens")).read() == ""

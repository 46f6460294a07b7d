"""Config validation: every bad case is one clear line naming file and key."""

import os
import subprocess
import sys

import pytest

from mailnet import config
from tests.harness import ROOT


def load_text(tmp_path, text, name="mailnet.toml"):
    path = tmp_path / name
    path.write_text(text)
    return config.load(str(path))


def test_defaults_are_development():
    c = config.load(None, checkFiles=False)
    assert c.isDevelopment
    assert c.server.hostname == "localhost"
    assert c.server.data_dir == os.path.join(os.getcwd(), "var")
    assert c.domains.local == ["example.test"]
    assert c.server.demo_user is True
    ports = {k: v for k, v in vars(c.listen).items()}
    assert ports == {
        "smtp": "tcp:2525:interface=127.0.0.1",
        "submission": "tcp:2587:interface=127.0.0.1",
        "submissions": "tcp:2465:interface=127.0.0.1",
        "pop3": "tcp:2110:interface=127.0.0.1",
        "pop3s": "tcp:2995:interface=127.0.0.1",
        "imap": "tcp:2143:interface=127.0.0.1",
        "imaps": "tcp:2993:interface=127.0.0.1",
        "http": "tcp:8080:interface=127.0.0.1",
        "metrics": "tcp:9025:interface=127.0.0.1",
    }
    assert c.certFile == os.path.join(c.server.data_dir, "tls", "cert.pem")


def test_file_values_and_relative_paths(tmp_path):
    c = load_text(tmp_path, '[server]\ndata_dir = "d"\nhostname = "mx.example.org"\n[limits]\nmessage_size = 1000\n')
    assert c.server.data_dir == str(tmp_path / "d")
    assert c.limits.message_size == 1000
    assert c.server.demo_user is False  # only the no-config defaults make a demo user
    assert c.source == str(tmp_path / "mailnet.toml")


@pytest.mark.parametrize(
    "text, message",
    [
        ("[limits]\nmessage_size = \"big\"\n", '[limits] message_size: expected an integer, got "big"'),
        ("[limits]\nmessage_size = 0\n", "[limits] message_size: must be at least 1, got 0"),
        ("[limits]\nmesage_size = 10\n", "[limits] mesage_size: unknown key"),
        ("[limts]\n", "[limts]: unknown section"),
        ("[listen]\nsmtp = \"bogus:25\"\n", "[listen] smtp: bad endpoint \"bogus:25\""),
        ("[listen]\nsmtp = \"tcp:99999\"\n", "[listen] smtp: bad endpoint \"tcp:99999\": port out of range"),
        ("[listen]\nsmtp = \"ssl:465\"\n", "[listen] smtp: bad endpoint \"ssl:465\": use tcp:"),
        ("[listen]\nsmtp = 25\n", "[listen] smtp: expected a string, got 25"),
        ("[server]\ndemo_user = \"yes\"\n", '[server] demo_user: expected true or false, got "yes"'),
        ("[domains]\nlocal = \"a.test\"\n", "[domains] local: expected a list of strings"),
        ("[domains]\nlocal = []\n", "[domains] local: at least one local domain is needed"),
        ("[auth]\nhash = \"md5\"\n", '[auth] hash: expected one of "argon2id", "bcrypt", "sha512-crypt", got "md5"'),
        ("[relay]\nsmarthost = \"nohost\"\n", '[relay] smarthost: expected "host:port"'),
        ("[tls]\ncert = \"missing.pem\"\nkey = \"missing.pem\"\n", "[tls] cert: cannot read"),
        ("[tls]\ncert = \"c.pem\"\n", "[tls] key: cert and key must be given together"),
        ("[tls]\nrsa_cert = \"c.pem\"\n", "[tls] rsa_key: rsa_cert and rsa_key must be given together"),
        ("[tls]\nrsa_cert = \"c.pem\"\nrsa_key = \"c.pem\"\n", "[tls] rsa_cert: needs [tls] cert and key too"),
        ("[store]\nbackend = \"nosuch\"\n", '[store] backend: expected "maildir", "memory", "postgres" or "package.module:factory"'),
        ("[server\n", "not valid TOML"),
        ("[server]\ndata_dir = \"/dev/null/x\"\n", "[server] data_dir: /dev/null is not a directory"),
    ],
)
def test_bad_config_one_line(tmp_path, text, message):
    (tmp_path / "c.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    with pytest.raises(config.ConfigError) as e:
        load_text(tmp_path, text)
    line = str(e.value)
    assert "\n" not in line
    assert line.startswith(str(tmp_path / "mailnet.toml") + ": ")
    assert message in line


def test_not_a_pem(tmp_path):
    (tmp_path / "cert.pem").write_text("hello")
    with pytest.raises(config.ConfigError, match=r"\[tls\] cert: .* is not a PEM file"):
        load_text(tmp_path, '[tls]\ncert = "cert.pem"\nkey = "cert.pem"\n')


def test_missing_file():
    with pytest.raises(config.ConfigError, match="^/nonexistent.toml: no such file$"):
        config.load("/nonexistent.toml")


def test_replace_validates():
    c = config.load(None, checkFiles=False)
    assert c.replace(limits={"message_size": 5}).limits.message_size == 5
    with pytest.raises(config.ConfigError):
        c.replace(limits={"message_size": "x"})


def test_example_file_is_generated_from_schema():
    """etc/mailnet.toml documents every option: it must be what the schema generates."""
    with open(os.path.join(ROOT, "etc", "mailnet.toml")) as f:
        assert f.read() == config.example(), "run: python -m mailnet config example > etc/mailnet.toml"


def test_example_file_is_valid_and_uses_standard_ports(tmp_path):
    c = config.load(os.path.join(ROOT, "etc", "mailnet.toml"), checkFiles=False)
    assert c.listen.smtp == "tcp:25"
    assert c.listen.pop3s == "tcp:995"
    assert c.listen.imaps == "tcp:993"
    for section, options in config.SCHEMA.items():
        for key, option in options.items():
            assert option.doc, f"[{section}] {key} has no doc"


def run_cli(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "mailnet", *args], capture_output=True, text=True, cwd=cwd, env=env)


def test_config_check_command(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[server]\ndata_dir = "d"\n')
    r = run_cli("config", "check", str(good))
    assert r.returncode == 0 and r.stdout.strip() == f"{good}: ok"
    bad = tmp_path / "bad.toml"
    bad.write_text("[limits]\nsmtp_recipients = -1\n")
    r = run_cli("config", "check", str(bad))
    assert r.returncode == 2
    assert r.stderr == f"mailnet: {bad}: [limits] smtp_recipients: must be at least 1, got -1\n"
    assert "Traceback" not in r.stderr


def test_twistd_refuses_bad_config_in_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[listen]\nimap = \"tcp:notaport\"\n")
    env = dict(os.environ, PYTHONPATH=ROOT)
    r = subprocess.run(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=", "mailnet", "--config", str(bad)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60,
    )
    assert r.returncode == 2
    assert "Traceback" not in r.stderr + r.stdout
    assert f"mailnet: {bad}: [listen] imap: bad endpoint" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1

"""The examples in docs/extending.md, executed: a third-party store chosen by
config (its steps run as a reader would, in an empty directory), and mailnet
embedded in a Twisted application with the application's own users."""

import imaplib
import json
import os
import re
import signal
import smtplib
import ssl
import subprocess
import sys
import threading
import time
from email.message import EmailMessage

import pytest
from twisted.application import service
from twisted.internet import defer

from tests.harness import ROOT, freePort

BIN = os.path.dirname(sys.executable)


def docText():
    with open(os.path.join(ROOT, "docs", "extending.md")) as f:
        return f.read()


def section(title):
    """The text of one '## ' section of docs/extending.md."""
    text = docText()
    start = text.index("## " + title)
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def docFiles(text):
    """Code blocks that start with '# <file name>': {name: content}."""
    files = {}
    for body in re.findall(r"```(?:python|toml)\n(.*?)```", text, re.S):
        first = body.split("\n", 1)[0]
        if first.startswith("# "):
            files[first[2:].split()[0]] = body
    return files


def docCommands(text):
    """The shell commands of the ```sh blocks, in order."""
    commands = []
    for body in re.findall(r"```sh\n(.*?)```", text, re.S):
        commands += [line for line in body.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return commands


def readerEnv():
    """A shell like a reader's after installing mailnet: the `mailnet` and
    `twistd` commands on PATH.  PYTHONPATH names only this checkout (the
    mailnet under test), never the reader's directory."""
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get("PATH", ""), PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
    env.pop("MAILNET_CONFIG", None)
    return env


class Background:
    """A long-running command started by the test (its own process group)."""

    def __init__(self, command, cwd, env):
        self.output = []
        self.process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in iter(self.process.stdout.readline, b""):
            self.output.append(line.decode("utf-8", "replace").rstrip("\n"))

    def log(self):
        return "\n".join(self.output)

    def waitForFile(self, path, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(path):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{path} did not appear; output:\n{self.log()}")

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.reader.join(5)


def test_backend_steps_work_verbatim_from_a_fresh_directory(tmp_path):
    """Save the files the doc shows into an empty directory and run the doc's
    commands there, in order (`run` in the background, as in its own
    terminal).  The one change: the doc's SMTP port is swapped for a free
    one, since other tests run on this machine at the same time."""
    text = section("Writing a store backend")
    port = str(freePort())
    files = docFiles(text)
    assert set(files) == {"auditstore.py", "mailnet.toml"}
    for name, content in files.items():
        (tmp_path / name).write_text(content.replace("2525", port))
    commands = [c.replace("2525", port) for c in docCommands(text)]
    assert any(c.endswith(" run") for c in commands) and commands[-1].startswith("cat ")
    env = readerEnv()
    server = None
    try:
        for command in commands:
            if command.endswith(" run"):
                server = Background(["bash", "-c", "exec " + command], tmp_path, env)
                server.waitForFile(tmp_path / "var" / "run" / "listeners.json")
                continue
            done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, f"{command}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
            last = done
        entry = json.loads(last.stdout.strip().splitlines()[-1])
        assert entry["to"] == ["alice@example.test"] and entry["size"] > 0
        assert "mailnet ready" in server.log()
    finally:
        if server is not None:
            server.stop()


def test_doc_shows_the_line_config_check_prints(tmp_path):
    """The error line quoted in the doc is what a bad option really gives."""
    text = section("Writing a store backend")
    quoted = re.search(r"```\n(mailnet: mailnet\.toml: .*?)\n```", text).group(1)
    files = docFiles(text)
    (tmp_path / "auditstore.py").write_text(files["auditstore.py"])
    (tmp_path / "mailnet.toml").write_text(files["mailnet.toml"] + 'colour = "blue"\n')
    done = subprocess.run(["bash", "-c", "mailnet config check mailnet.toml"], cwd=tmp_path, env=readerEnv(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr == quoted + "\n"


@pytest.fixture
def auditstore(tmp_path, monkeypatch):
    """The worked backend example, written out as an importable module."""
    (tmp_path / "auditstore.py").write_text(docFiles(docText())["auditstore.py"])
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("auditstore", None)
    return tmp_path


def test_backend_example_delivers_and_audits(auditstore):
    from mailnet import config
    from mailnet.service import makeStore

    conf = config.fromDict({"server": {"data_dir": str(auditstore / "data")}, "store": {"backend": "auditstore:makeStore"}})
    os.makedirs(conf.server.data_dir)
    store = makeStore(conf)
    delivery = store.newDelivery()
    delivery.addRecipient("alice@example.test")
    delivery.write(b"Subject: hi\r\n\r\nbody\r\n")
    done = []
    delivery.commit().addBoth(done.append)
    assert done and done[0][0][0] == "alice@example.test"
    with open(os.path.join(conf.server.data_dir, "deliveries.log")) as f:
        entry = json.loads(f.read())
    assert entry["to"] == ["alice@example.test"] and entry["size"] == 21


def test_backend_example_gets_its_options(auditstore):
    from mailnet import config
    from mailnet.service import makeStore

    raw = {"server": {"data_dir": str(auditstore / "data")}, "store": {"backend": "auditstore:makeStore"}}
    conf = config.fromDict(dict(raw, store=dict(raw["store"], options={"log_file": "audit.jsonl"})))
    assert makeStore(conf).logPath == os.path.join(conf.server.data_dir, "audit.jsonl")
    conf = config.fromDict(dict(raw, store=dict(raw["store"], options={"log_flie": "x"})))
    with pytest.raises(config.ConfigError) as caught:
        makeStore(conf)
    assert str(caught.value) == "<dict>: [store] backend auditstore:makeStore: [store.options] log_flie: unknown option (known: log_file)"


def test_bad_backend_is_a_config_error(tmp_path):
    from mailnet import config
    from mailnet.service import makeStore

    conf = config.fromDict({"server": {"data_dir": str(tmp_path)}, "store": {"backend": "nosuchmodule:makeStore"}})
    with pytest.raises(config.ConfigError, match=r"\[store\] backend: cannot import nosuchmodule"):
        makeStore(conf)


def test_embedding_example(tmp_path, monkeypatch):
    """The .tac example: mailnet as a child service; its store used directly."""
    (tmp_path / "mailnet.toml").write_text(
        '[store]\nbackend = "memory"\n[listen]\n'
        + "".join(f'{name} = "tcp:0:interface=127.0.0.1"\n' for name in ["smtp", "submission", "submissions", "pop3", "pop3s", "imap", "imaps", "http"])
    )
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(docFiles(docText())["myapp.tac"], "myapp.tac", "exec"), namespace)
    application = namespace["application"]
    top = service.IService(application)
    top.privilegedStartService()
    top.startService()
    try:
        mail = namespace["mail"]
        assert mail.context.config.store.backend == "memory"
        for port in mail.ports.values():
            assert port.getHost().port > 0
        done = []
        namespace["notify"]("alice@example.test", "hello").addBoth(done.append)
        assert done and done[0][0][:2] == ("alice@example.test", "INBOX")
        account = []
        mail.context.store.getAccount("alice@example.test").addBoth(account.append)
        folder = []
        account[0].openFolder("INBOX").addBoth(folder.append)
        assert len(folder[0].messages()) == 1
    finally:
        d = defer.maybeDeferred(top.stopService)
        # Closing listening ports takes a reactor turn (the reactor is not
        # running in this test): turn it until the service has stopped.
        from twisted.internet import reactor

        for _ in range(500):
            if d.called:
                break
            reactor.iterate(0.01)
        assert d.called


def test_embedded_application_users_log_in_and_receive_mail(tmp_path):
    """The .tac example run as the doc says (twistd -ny myapp.tac): alice
    exists only in the application's stock InMemory checker, not in the
    users file, yet logs in over IMAP and receives a message sent over SMTP."""
    (tmp_path / "myapp.tac").write_text(docFiles(section("Embedding mailnet"))["myapp.tac"])
    (tmp_path / "mailnet.toml").write_text(
        '[server]\nhostname = "mx.example.test"\n[domains]\nlocal = ["example.test"]\n'
        '[auth]\nfailure_delay = 0.05\n[dns]\nnameservers = ["127.0.0.1:9"]\n[listen]\n'
        + "".join(f'{name} = "{"tcp:0:interface=127.0.0.1" if name in ("smtp", "imaps") else ""}"\n'
                  for name in ["smtp", "submission", "submissions", "pop3", "pop3s", "imap", "imaps", "http"])
    )
    app = Background(["twistd", "-ny", "myapp.tac"], tmp_path, readerEnv())
    try:
        listeners = tmp_path / "var" / "run" / "listeners.json"
        app.waitForFile(listeners)
        time.sleep(0.1)  # written atomically; a rename away from complete
        ports = {name: info["port"] for name, info in json.loads(listeners.read_text())["listeners"].items()}
        assert not (tmp_path / "var" / "users").exists()

        tls = ssl.create_default_context()
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
        imap = imaplib.IMAP4_SSL("127.0.0.1", ports["imaps"], ssl_context=tls, timeout=30)
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            imap.login("alice@example.test", "wrong")
        assert imap.login("alice@example.test", "alice-secret")[0] == "OK"
        imap.select("INBOX")

        message = EmailMessage()
        message["From"] = "someone@remote.test"
        message["To"] = "alice@example.test"
        message["Subject"] = "for an application user"
        message.set_content("hello\n")
        with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=30) as smtp:
            refused = smtp.send_message(message)
            assert refused == {}
            # nobody (not in the application's addresses) is refused at RCPT
            code, _ = smtp.docmd("MAIL FROM:<someone@remote.test>")
            assert code == 250
            code, _ = smtp.docmd("RCPT TO:<nobody@example.test>")
            assert code == 550

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            typ, data = imap.search(None, "ALL")
            if data[0].split():
                break
            imap.noop()
            time.sleep(0.1)
        uids = data[0].split()
        assert len(uids) == 1, app.log()
        typ, fetched = imap.fetch(uids[0], "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert b"for an application user" in fetched[0][1]
        imap.logout()
    finally:
        app.stop()

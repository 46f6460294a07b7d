"""The examples in docs/extending.md, executed: a third-party store chosen by
config, and mailnet embedded in a Twisted application."""

import json
import os
import re
import sys

import pytest
from twisted.application import service
from twisted.internet import defer

from tests.harness import ROOT, MailServer


def code_blocks():
    with open(os.path.join(ROOT, "docs", "extending.md")) as f:
        text = f.read()
    return re.findall(r"```python\n(.*?)```", text, re.S)


@pytest.fixture
def auditstore(tmp_path, monkeypatch):
    """The worked backend example, written out as an importable module."""
    (tmp_path / "auditstore.py").write_text(code_blocks()[0])
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("auditstore", None)
    return tmp_path


def test_backend_example_runs_in_a_real_server(auditstore):
    server = MailServer(auditstore / "srv", config={"store": {"backend": "auditstore:makeStore"}},
                        env={"PYTHONPATH": f"{ROOT}:{auditstore}"})
    server.start()
    try:
        assert "mailnet ready" in server.log()
    finally:
        server.stop()


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
    exec(compile(code_blocks()[1], "myapp.tac", "exec"), namespace)
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

"""SMTPConnector: hosts in MX order, what a failure means, TLS fallback, smarthost policy."""

import pytest
from twisted.internet import defer

from mailnet import config as configmod
from mailnet.errors import DeliveryError
from mailnet.queue.mx import MXResolver
from mailnet.queue.relay import SMTPConnector
from mailnet.queue.scheduler import SMARTHOST
from tests.queue.fakes import FakeResolver

ZONE = {
    "remote.test": {"MX": [(10, "mx1.remote.test"), (20, "mx2.remote.test")]},
    "mx1.remote.test": {"A": ["127.0.0.1"], "AAAA": ["::1"]},
    "mx2.remote.test": {"A": ["127.0.0.1"]},
}


class Connector(SMTPConnector):
    """The real connector with open() scripted: (name, ip, mode) -> session or DeliveryError."""

    def __init__(self, config, outcomes):
        super().__init__(None, config, MXResolver(FakeResolver(ZONE), hostsFile=None))
        self.outcomes = outcomes
        self.opened = []

    def open(self, name, ip, port, mode, auth=None):
        self.opened.append((name, ip, port, mode, auth))
        outcome = self.outcomes.get((name, ip, mode), DeliveryError(451, "4.4.1", f"connect to {name}: refused", True))
        if isinstance(outcome, DeliveryError):
            return defer.fail(outcome)
        return defer.succeed(outcome)


def conf(tmp_path, **relay):
    return configmod.fromDict({"server": {"data_dir": str(tmp_path)}, "relay": relay})


def connect(connector, destination):
    out = []
    connector.connect(destination).addBoth(out.append)
    return out[0]


def test_hosts_and_addresses_in_order_until_one_works(tmp_path):
    c = Connector(conf(tmp_path, mx_port=2525), {("mx2.remote.test", "127.0.0.1", "opportunistic"): "session"})
    assert connect(c, "remote.test") == "session"
    assert [(o[0], o[1], o[2]) for o in c.opened] == [
        ("mx1.remote.test", "127.0.0.1", 2525), ("mx1.remote.test", "::1", 2525), ("mx2.remote.test", "127.0.0.1", 2525)]


def test_5xx_greeting_everywhere_defers(tmp_path):
    refused = DeliveryError(554, "5.7.1", "go away", False, "mx2.remote.test")
    c = Connector(conf(tmp_path), {("mx2.remote.test", "127.0.0.1", "opportunistic"): refused})
    failure = connect(c, "remote.test")
    e = failure.value
    assert e.temporary and (e.code, e.enhanced) == (554, "5.7.1")
    assert "refused to talk" in e.message


def test_tls_failure_retried_in_plaintext(tmp_path):
    broken = DeliveryError(421, "4.7.5", "TLS failed", True)
    broken.tlsFailed = True
    c = Connector(conf(tmp_path), {("mx1.remote.test", "127.0.0.1", "opportunistic"): broken,
                                   ("mx1.remote.test", "127.0.0.1", "none"): "plain"})
    assert connect(c, "remote.test") == "plain"


def test_required_tls_never_falls_back(tmp_path):
    broken = DeliveryError(421, "4.7.5", "bad certificate", True)
    broken.tlsFailed = True
    c = Connector(conf(tmp_path, require_tls=["remote.test"]),
                  {(h, ip, "required"): broken for h, ip in [("mx1.remote.test", "127.0.0.1"), ("mx1.remote.test", "::1"), ("mx2.remote.test", "127.0.0.1")]})
    failure = connect(c, "remote.test")
    assert failure.value.enhanced == "4.7.5"
    assert {o[3] for o in c.opened} == {"required"}


@pytest.mark.parametrize("setting, mode", [("starttls", "required"), ("implicit", "implicit"), ("opportunistic", "opportunistic")])
def test_smarthost_policy_and_password_file(tmp_path, setting, mode):
    secret = tmp_path / "pw"
    secret.write_text("s3cret\nignored second line\n")
    c = Connector(conf(tmp_path, smarthost="127.0.0.1:587", smarthost_user="relay", smarthost_password_file=str(secret),
                       smarthost_tls=setting), {("127.0.0.1", "127.0.0.1", mode): "session"})
    assert connect(c, SMARTHOST) == "session"
    [(name, ip, port, used, auth)] = c.opened
    assert (port, used, auth) == (587, mode, ("relay", "s3cret"))

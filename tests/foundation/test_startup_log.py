"""What the info log shows: every listener (http too, now that JMAP is built),
no DNS resolver chatter (twisted.names logs every query's UDP socket)."""

import io
import smtplib
import ssl

import pytest
from twisted.python import log as legacyLog

from mailnet import logs, service
from tests.harness import MailServer

CHATTER = ("DNSDatagramProtocol", "UDP Port", "resolv.conf", "Resolver added")


@pytest.mark.slow
def test_info_log_of_a_real_server(tmp_path):
    server = MailServer(tmp_path, config={"store": {"backend": "memory"}})
    server.start()
    try:
        log = server.log()
        assert "listener http" not in log  # no "not built yet" line any more
        assert f"listening: http         127.0.0.1:{server.port('http')}" in log
        assert "not part of this build" not in log
        server.addUser("alice@example.test", "alice-pw")
        context = ssl.create_default_context(cafile=server.certFile)
        context.check_hostname = False
        with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=30) as s:
            s.starttls(context=context)
            s.login("alice@example.test", "alice-pw")
            s.sendmail("alice@example.test", ["friend@remote.test"], b"Subject: x\r\n\r\nhello\r\n")
        # the MX lookup asks a nameserver that does not answer (127.0.0.1:9)
        server.waitForLog("to=<friend@remote.test>", timeout=60)
        chatter = [line for line in server.output if any(word in line for word in CHATTER)]
        assert chatter == []
    finally:
        server.stop()


def test_dns_chatter_is_kept_for_debug():
    out = io.StringIO()
    observer = logs.textFileObserver(out)
    lines = ["DNSDatagramProtocol starting on 41234", "(UDP Port 41234 Closed)",
             "Starting protocol <twisted.names.dns.DNSDatagramProtocol object at 0x7f5948890790>",
             "Stopping protocol <twisted.names.dns.DNSDatagramProtocol object at 0x7f5948890790>",
             "b'/etc/resolv.conf' changed, reparsing", "Resolver added ('10.0.0.53', 53) to server list",
             "something else"]
    legacyLog.addObserver(observer)  # the legacy log is where twisted.names writes
    try:
        for line in lines:
            legacyLog.msg(line)
        assert [line.split("] ", 1)[1] for line in out.getvalue().splitlines()] == ["something else"]
        logs.setLevel("debug")
        for line in lines:
            legacyLog.msg(line)
    finally:
        logs.setLevel("info")
        legacyLog.removeObserver(observer)
    assert [line.split("] ", 1)[1] for line in out.getvalue().splitlines()] == ["something else"] + lines


def test_twistd_to_stdout_uses_our_observer():
    """`twistd -n mailnet` gets the filtering observer; a log file given to twistd is left alone."""
    from twisted.scripts import twistd

    from mailnet import tap

    class Options(twistd.ServerOptions):
        _getPlugins = staticmethod(lambda interface: [tap.serviceMaker])

    options = Options()
    options.parseOptions(["-n", "mailnet", "--config", "x.toml"])
    assert options["logger"] is logs.twistdObserver
    options = Options()
    options.parseOptions(["-n", "--logfile", "mailnet.log", "mailnet"])
    assert options["logger"] is None


def test_no_optional_protocol_modules():
    """Every protocol is wired explicitly; nothing is skipped when missing."""
    assert not hasattr(service, "optionalModule")
    assert [module.__name__ for module in service.PROTOCOLS] == [
        "mailnet.smtp.server", "mailnet.pop3.server", "mailnet.imap.server", "mailnet.http.server",
        "mailnet.http.metrics"]
    assert service.NOT_BUILT == {}

"""
Vacation auto-replies on the real server, as a receiver sees them: DKIM-
signed with the keys of the user's domain (verified with dkimpy and with
Perl's Mail::DKIM, the key found through the test DNS server), and sent only
for mail that names one of the user's addresses in To/Cc (RFC 5230 s4.5,
RFC 3834 s2): a Bcc gets none, an alias of hers in To gets one.  The replies
are relayed by the queue to an aiosmtpd peer.
"""

import smtplib
import time

import pytest

from tests.conftest import USERS
from tests.http.test_real_mail import ALICE
from tests.http.test_real_vacation import vacation
from tests.mailauth.helpers import ZoneServer, haveMailDKIM, mailDKIMVerify, txtOf
from tests.queue.e2e import Sink, zone

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from tests.harness import MailServer, writeConfig

    root = tmp_path_factory.mktemp("vacsign")
    sink = Sink().start()
    server = MailServer(root / "server", config={
        "auth": {"allow_plaintext": True},
        "relay": {"mx_port": sink.port, "connect_timeout": 3, "reply_timeout": 10},
        "queue": {"retry_initial": 1, "retry_max": 2, "delay_warning": 0},
    })
    records = zone()
    for algorithm, selector in (("rsa", "vac1"), ("ed25519", "vaced1")):
        out = server.mailnet("dkim", "keygen", "example.test", "--selector", selector, "--algorithm", algorithm).stdout
        name, value = txtOf(out)
        records[name] = {"TXT": [value]}
    dns = ZoneServer(root, records)
    server.sections["dns"] = {"nameservers": [f"127.0.0.1:{dns.port}"], "timeout": 2}
    writeConfig(server.configPath, server.sections)
    server.start()
    for name, password in USERS.items():
        server.addUser(name, password)
    server.addAlias("team@example.test", ALICE[0], "bob@example.test")
    [answer] = vacation(server, ("VacationResponse/set", {"update": {"singleton": {
        "isEnabled": True, "subject": "Out of office", "textBody": "Back on Monday."}}}))
    assert answer["updated"] == {"singleton": None}
    yield server, sink, dns, records
    server.stop()
    sink.stop()
    dns.stop()


def send(server, sender, to, n, extra=""):
    message = (f"From: <{sender}>\r\nTo: {to}\r\nSubject: mail {n}\r\nMessage-ID: <s{n}@ok.test>\r\n"
               f"{extra}\r\nHello.\r\n")
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as smtp:
        smtp.sendmail(sender, [ALICE[0]], message.encode())


def replyTo(sink, address, timeout=60):
    """The message the peer got for ``address`` (waiting on its condition, not sleeping)."""
    deadline = time.monotonic() + timeout
    handler = sink.handler
    with handler.changed:
        while True:
            for record in handler.messages:
                if record["rcpts"] == [address]:
                    return record
            left = deadline - time.monotonic()
            if left <= 0:
                break
            handler.changed.wait(left)
    raise AssertionError(f"no reply to {address} in {timeout}s: {[r['rcpts'] for r in sink.handler.messages]}")


def test_only_mail_naming_her_gets_a_reply_bcc_none_alias_yes(world):
    server, sink, dns, records = world
    # Bcc'd: the envelope names her, the header names only a list.
    send(server, "bcc@ok.test", "friends@lists.ok.test", 1)
    send(server, "cc@ok.test", "friends@lists.ok.test", 2, f"Cc: Alice <{ALICE[0]}>\r\n")
    send(server, "alias@ok.test", "The team <team@example.test>", 3)  # her alias in To
    send(server, "tag@ok.test", "alice+holiday@example.test", 4)
    for address in ("cc@ok.test", "alias@ok.test", "tag@ok.test"):
        reply = replyTo(sink, address)
        assert reply["sender"] == "" and reply["message"]["Auto-Submitted"] == "auto-replied"
    time.sleep(2.0)  # the Bcc'd one was delivered first: any reply to it would be here by now
    assert "bcc@ok.test" not in [r for record in sink.handler.messages for r in record["rcpts"]]


def test_the_reply_is_signed_and_dkimpy_verifies_it(world):
    import dkim

    server, sink, dns, records = world
    send(server, "carol@ok.test", ALICE[0], 5)
    data = replyTo(sink, "carol@ok.test")["data"]
    head = data.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ")
    signatures = [line for line in head.split(b"\r\n") if line.startswith(b"DKIM-Signature:")]
    # Once with each of example.test's keys, before the fields the reply was built with.
    assert len(signatures) == 2 and all(b" d=example.test;" in s for s in signatures), signatures
    assert head.startswith(b"DKIM-Signature:")

    def txt(name, timeout=5):
        name = (name.decode() if isinstance(name, bytes) else name).rstrip(".")
        return records.get(name, {}).get("TXT", [""])[0].encode() or None

    assert dkim.verify(data, dnsfunc=txt)
    assert not dkim.verify(data.replace(b"Back on Monday.", b"Back on Tuesday."), dnsfunc=txt)


@pytest.mark.skipif(not haveMailDKIM(), reason="Perl's Mail::DKIM (libmail-dkim-perl, in .ci/apt-packages) "
                                              "is not installed")
def test_mail_dkim_verifies_the_reply(world):
    server, sink, dns, records = world
    send(server, "dave@ok.test", ALICE[0], 6)
    data = replyTo(sink, "dave@ok.test")["data"]
    out = mailDKIMVerify(data, dns.port)
    assert "signature example.test rsa-sha256 pass" in out and "result: pass" in out, out
    out = mailDKIMVerify(data.replace(b"Back on Monday.", b"Back on Tuesday."), dns.port)
    assert "result: pass" not in out, out

"""RCPT TO an SRS address of ours (in-process): only bounces, routed to the original sender, before any catch-all."""

from __future__ import annotations

from twisted.internet.task import Clock

from mailnet import config as configmod
from mailnet.mailauth.forwarding import SRSRewriter
from tests.smtp.helpers import makeDirectory, makeSession


def _srs(tmp_path):
    clock = Clock()
    clock.advance(1_796_000_000)
    conf = configmod.fromDict({"server": {"data_dir": str(tmp_path / "data")},
                               "domains": {"local": ["example.test"]}})
    return SRSRewriter(conf, clock)


def test_bounce_to_srs_address_goes_to_the_original_sender(tmp_path):
    srs = _srs(tmp_path)
    address = srs.relaySender("carol@orig.test", None)
    directory = makeDirectory(tmp_path, aliases={"@example.test": ["alice@example.test"]})  # a catch-all
    s, r = makeSession(tmp_path, directory=directory, srs=srs)
    s.feed(b"EHLO mx.next.test\r\nMAIL FROM:<>\r\nRCPT TO:<" + address.encode() + b">\r\n")
    assert r.take()[-1].code == 250
    [rcpt] = s.mail.recipients
    assert (rcpt.address, rcpt.local, rcpt.remote) == (address, [], ["carol@orig.test"])


def test_srs_address_refusals(tmp_path):
    srs = _srs(tmp_path)
    address = srs.relaySender("carol@orig.test", None)
    directory = makeDirectory(tmp_path, aliases={"@example.test": ["alice@example.test"]})
    s, r = makeSession(tmp_path, directory=directory, srs=srs)
    s.feed(b"EHLO mx.next.test\r\nMAIL FROM:<spam@evil.test>\r\nRCPT TO:<" + address.encode() + b">\r\n")
    last = r.take()[-1]
    assert (last.code, last.enhanced) == (550, "5.7.1") and "only bounces" in str(last)
    s.feed(b"RSET\r\nMAIL FROM:<>\r\nRCPT TO:<SRS0=AAAA=JX=orig.test=carol@example.test>\r\n")
    last = r.take()[-1]
    assert (last.code, last.enhanced) == (550, "5.1.1") and "invalid SRS address" in str(last)
    # without SRS (off) the same address is an ordinary local one: the catch-all takes it
    s, r = makeSession(tmp_path, directory=directory)
    s.feed(b"EHLO mx.next.test\r\nMAIL FROM:<>\r\nRCPT TO:<" + address.encode() + b">\r\n")
    assert r.take()[-1].code == 250
    assert s.mail.recipients[0].local == ["alice@example.test"]

"""The SMTP client: reply parser, the sans-I/O machine, the Twisted protocol."""

import base64
import io

import pytest
from hypothesis import given, settings, strategies as st
from twisted.internet import task
from twisted.internet.testing import StringTransport

from mailnet.errors import DeliveryError
from mailnet.queue import client
from mailnet.queue.client import (
    ClientMachine, Done, Failed, ProtocolError, Ready, Recipient, ReplyParser, Send, Transaction,
)

# -- Replies ---------------------------------------------------------------


def test_single_and_multiline_replies():
    p = ReplyParser()
    replies = p.feed(b"220 mx.test ESMTP\r\n250-mx.test hello\r\n250-PIPELINING\r\n250 SIZE 1000\r\n")
    assert [r.code for r in replies] == [220, 250]
    assert replies[1].lines == ("mx.test hello", "PIPELINING", "SIZE 1000")


def test_partial_lines_and_bare_lf():
    p = ReplyParser()
    assert p.feed(b"25") == []
    assert p.feed(b"0-a\n250") == []
    [r] = p.feed(b" b\r\n")
    assert (r.code, r.lines) == (250, ("a", "b"))


def test_enhanced_code_and_text():
    [r] = ReplyParser().feed(b"550-5.1.1 no such user\r\n550 5.1.1 really\r\n")
    assert r.enhanced == "5.1.1"
    assert r.text == "no such user really"
    assert str(r) == "550 5.1.1 no such user really"
    e = r.error("mx.test")
    assert (e.code, e.enhanced, e.temporary, e.remote) == (550, "5.1.1", False, "mx.test")
    # An enhanced code whose class disagrees with the reply is not one.
    [r] = ReplyParser().feed(b"451 5.1.1 odd\r\n")
    assert r.enhanced == "" and r.error().enhanced == "4.0.0"


def test_bare_code_ends_reply():
    [r] = ReplyParser().feed(b"250\r\n")
    assert (r.code, r.lines) == (250, ("",))


@pytest.mark.parametrize("garbage", [b"hello\r\n", b"25 x\r\n", b"2500\r\n" * 0 + b"abc\r\n", b"x" * 5000])
def test_garbage_is_a_protocol_error(garbage):
    with pytest.raises(ProtocolError):
        ReplyParser().feed(garbage)


def test_code_change_within_reply():
    with pytest.raises(ProtocolError):
        ReplyParser().feed(b"250-a\r\n251 b\r\n")


@settings(max_examples=150)
@given(st.lists(st.tuples(st.integers(200, 599), st.lists(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40), min_size=1, max_size=4)), min_size=1, max_size=5),
       st.lists(st.integers(1, 30), max_size=20))
def test_any_chunking_gives_the_same_replies(replies, cuts):
    wire = b""
    for code, lines in replies:
        for i, line in enumerate(lines):
            sep = " " if i == len(lines) - 1 else "-"
            wire += f"{code}{sep}{line}\r\n".encode()
    p = ReplyParser()
    got = []
    pos = 0
    for cut in cuts:
        got += p.feed(wire[pos:pos + cut])
        pos += cut
    got += p.feed(wire[pos:])
    assert [(r.code, list(r.lines)) for r in got] == [(c, l) for c, l in replies]


@settings(max_examples=150)
@given(st.binary(max_size=300))
def test_fuzz_parser_only_raises_protocol_error(data):
    try:
        ReplyParser().feed(data)
    except ProtocolError:
        pass


# -- The machine ---------------------------------------------------------------


class Peer:
    """Drives a ClientMachine like a server would; collects what it sends."""

    def __init__(self, **kw):
        kw.setdefault("remote", "mx.remote.test")
        self.m = ClientMachine("mx.example.test", **kw)
        self.sent = []
        self.actions = []

    def reply(self, text):
        actions = self.m.receive(text.replace("\n", "\r\n").encode())
        self._collect(actions)
        return actions

    def _collect(self, actions):
        for a in actions:
            if isinstance(a, Send):
                self.sent += a.data.decode().split("\r\n")[:-1]
        self.actions += actions

    def start(self, txn):
        actions = self.m.start(txn)
        self._collect(actions)
        return actions

    def take(self):
        sent, self.sent = self.sent, []
        return sent

    def kinds(self, actions):
        return [type(a).__name__ for a in actions]


def txn(*rcpts, **kw):
    kw.setdefault("size", 100)
    return Transaction("alice@example.test", [Recipient(r) if isinstance(r, str) else r for r in rcpts], **kw)


def ready(peer, ehlo="250-mx.remote.test\n250-PIPELINING\n250-8BITMIME\n250-SIZE 1000000\n250 DSN\n"):
    peer.reply("220 mx.remote.test ESMTP\n")
    assert peer.take() == ["EHLO mx.example.test"]
    actions = peer.reply(ehlo)
    assert any(isinstance(a, Ready) for a in actions)
    return peer


def test_plain_session_without_extensions():
    p = Peer(tls="none")
    p.reply("220 hi\n")
    assert p.take() == ["EHLO mx.example.test"]
    assert p.kinds(p.reply("250 hi\n")) == ["Ready"]
    p.start(txn("bob@remote.test", "carol@remote.test"))
    assert p.take() == ["MAIL FROM:<alice@example.test>"]
    p.reply("250 ok\n")
    assert p.take() == ["RCPT TO:<bob@remote.test>"]
    p.reply("550 5.1.1 no bob\n")
    assert p.take() == ["RCPT TO:<carol@remote.test>"]
    p.reply("250 ok\n")
    assert p.take() == ["DATA"]
    actions = p.reply("354 go\n")
    assert p.kinds(actions) == ["SendBody"]
    assert p.m.waiting == "body"
    p.m.bodySent()
    assert p.m.waiting == "dot"
    [done] = p.reply("250 2.0.0 queued as X\n")
    result = done.result
    assert result.outcomes["carol@remote.test"] is None
    assert result.outcomes["bob@remote.test"] == DeliveryError(550, "5.1.1", "no bob", False, "mx.remote.test")
    assert str(result.reply) == "250 2.0.0 queued as X"
    assert p.m.ready and p.m.waiting is None


def test_pipelining_sends_one_group_and_checks_every_reply():
    p = ready(Peer(tls="none"))
    actions = p.start(txn("bob@remote.test", "carol@remote.test"))
    assert len([a for a in actions if isinstance(a, Send)]) == 1  # RFC 2920: one write
    assert p.take() == ["MAIL FROM:<alice@example.test> SIZE=100", "RCPT TO:<bob@remote.test>",
                        "RCPT TO:<carol@remote.test>", "DATA"]
    actions = p.reply("250 ok\n250 ok\n452 4.2.2 mailbox full\n354 go\n")
    assert p.kinds(actions) == ["SendBody"]
    p.m.bodySent()
    [done] = p.reply("250 ok\n")
    assert done.result.outcomes["bob@remote.test"] is None
    assert done.result.outcomes["carol@remote.test"].temporary
    assert done.result.dsn


def test_pipelining_no_recipient_data_refused_then_rset():
    p = ready(Peer(tls="none"))
    p.start(txn("bob@remote.test"))
    p.take()
    p.reply("250 ok\n550 5.1.1 no\n554 5.5.1 no valid recipients\n")
    assert p.take() == ["RSET"]
    [done] = p.reply("250 ok\n")
    assert done.result.outcomes["bob@remote.test"].enhanced == "5.1.1"
    assert p.m.ready


def test_pipelining_no_recipient_but_data_accepted_sends_lone_dot():
    # RFC 2920 s3.1: the client cannot assume DATA is refused.
    p = ready(Peer(tls="none"))
    p.start(txn("bob@remote.test"))
    p.take()
    p.reply("250 ok\n550 no\n354 go ahead\n")
    assert p.take() == ["."]
    p.reply("554 no recipients\n")
    assert p.take() == ["RSET"]
    [done] = p.reply("250 ok\n")
    assert done.result.outcomes["bob@remote.test"].code == 550


def test_mail_refused_fails_everyone_with_its_reply():
    p = ready(Peer(tls="none"), ehlo="250 hi\n")
    p.start(txn("bob@remote.test", "carol@remote.test"))
    p.take()
    p.reply("553 5.7.1 sender rejected\n")
    assert p.take() == ["RSET"]
    [done] = p.reply("250 ok\n")
    assert {str(e) for e in done.result.outcomes.values()} == {"553 5.7.1 sender rejected"}


def test_pipelined_mail_refused_reports_mail_error_not_503():
    p = ready(Peer(tls="none"))
    p.start(txn("bob@remote.test"))
    p.take()
    p.reply("451 4.3.0 try later\n503 need MAIL\n503 need RCPT\n")
    p.take()
    [done] = p.reply("250 ok\n")
    assert str(done.result.outcomes["bob@remote.test"]) == "451 4.3.0 try later"


def test_data_refused_after_rcpt_accepted():
    p = ready(Peer(tls="none"))
    p.start(txn("bob@remote.test"))
    p.take()
    p.reply("250 ok\n250 ok\n451 4.3.0 no DATA now\n")
    assert p.take() == ["RSET"]
    [done] = p.reply("250 ok\n")
    assert done.result.outcomes["bob@remote.test"].temporary


def test_final_reply_refuses_message():
    p = ready(Peer(tls="none"))
    p.start(txn("bob@remote.test"))
    p.reply("250 ok\n250 ok\n354 go\n")
    p.m.bodySent()
    [done] = p.reply("554 5.7.1 spam\n")
    assert str(done.result.outcomes["bob@remote.test"]) == "554 5.7.1 spam"
    assert p.m.ready


def test_ehlo_refused_falls_back_to_helo():
    p = Peer(tls="opportunistic")
    p.reply("220 old\n")
    p.take()
    p.reply("502 what?\n")
    assert p.take() == ["HELO mx.example.test"]
    assert p.kinds(p.reply("250 hi\n")) == ["Ready"]
    assert p.m.extensions == {}


def test_greeting_554_fails_and_quits():
    p = Peer()
    actions = p.reply("554 5.7.1 go away\n")
    [failed] = [a for a in actions if isinstance(a, Failed)]
    assert failed.error.permanent and failed.error.enhanced == "5.7.1"
    assert p.take() == ["QUIT"]
    assert p.kinds(p.reply("221 bye\n")) == ["Close"]


def test_starttls_then_ehlo_again_forgetting_extensions():
    p = Peer(tls="opportunistic")
    p.reply("220 hi\n")
    p.take()
    p.reply("250-hi\n250-STARTTLS\n250-PIPELINING\n250 AUTH PLAIN\n")
    assert p.take() == ["STARTTLS"]
    actions = p.reply("220 go ahead\n")
    assert p.kinds(actions) == ["StartTLS", "Send"]
    assert p.take() == ["EHLO mx.example.test"]
    assert p.m.extensions == {}  # RFC 3207 s4.2
    assert p.m.tlsActive
    assert p.kinds(p.reply("250-hi\n250 SIZE 10\n")) == ["Ready"]
    assert not p.m.has("PIPELINING") and p.m.has("SIZE")


def test_opportunistic_without_starttls_goes_plain():
    p = Peer(tls="opportunistic")
    p.reply("220 hi\n")
    p.take()
    assert p.kinds(p.reply("250 hi\n")) == ["Ready"]
    assert not p.m.tlsActive


def test_opportunistic_starttls_refused_goes_plain():
    p = Peer(tls="opportunistic")
    p.reply("220 hi\n")
    p.reply("250-hi\n250 STARTTLS\n")
    p.take()
    assert p.kinds(p.reply("454 4.7.0 TLS not available\n")) == ["Ready"]


def test_required_tls_not_offered_fails_temporarily():
    p = Peer(tls="required")
    p.reply("220 hi\n")
    p.take()
    actions = p.reply("250 hi\n")
    [failed] = [a for a in actions if isinstance(a, Failed)]
    assert failed.error.temporary and failed.error.enhanced == "4.7.10"
    assert p.take() == ["QUIT"]


def test_size_over_peer_limit_fails_before_mail():
    p = ready(Peer(tls="none"))
    [done] = p.start(txn("bob@remote.test", size=2_000_000))
    assert p.take() == []
    e = done.result.outcomes["bob@remote.test"]
    assert (e.code, e.enhanced, e.permanent) == (552, "5.3.4", True)
    assert p.m.ready


def test_eight_bit_needs_8bitmime():
    p = ready(Peer(tls="none"), ehlo="250-hi\n250 PIPELINING\n")
    [done] = p.start(txn("bob@remote.test", body="8BITMIME"))
    assert done.result.outcomes["bob@remote.test"].enhanced == "5.6.3"
    p = ready(Peer(tls="none"))
    p.start(txn("bob@remote.test", body="8BITMIME"))
    assert p.take()[0] == "MAIL FROM:<alice@example.test> SIZE=100 BODY=8BITMIME"


def test_smtputf8_needed():
    p = ready(Peer(tls="none"))
    [done] = p.start(txn("bøb@remote.test", smtputf8=True))
    assert done.result.outcomes["bøb@remote.test"].enhanced == "5.6.7"
    p = ready(Peer(tls="none"), ehlo="250-hi\n250-PIPELINING\n250 SMTPUTF8\n")
    p.start(txn("bøb@remote.test", smtputf8=True))
    assert p.take()[:2] == ["MAIL FROM:<alice@example.test> SMTPUTF8", "RCPT TO:<bøb@remote.test>"]


def test_dsn_parameters_only_when_offered():
    rcpt = Recipient("bob@remote.test", notify=["SUCCESS", "FAILURE"], orcpt="rfc822;bob@remote.test")
    p = ready(Peer(tls="none"))
    p.start(txn(rcpt, ret="HDRS", envid="QQ+2B1"))
    assert p.take()[:2] == ["MAIL FROM:<alice@example.test> SIZE=100 RET=HDRS ENVID=QQ+2B1",
                            "RCPT TO:<bob@remote.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@remote.test"]
    p = ready(Peer(tls="none"), ehlo="250-hi\n250 PIPELINING\n")
    p.start(txn(rcpt, ret="HDRS", envid="QQ"))
    assert p.take()[:2] == ["MAIL FROM:<alice@example.test>", "RCPT TO:<bob@remote.test>"]


def test_null_sender():
    p = ready(Peer(tls="none"), ehlo="250 hi\n")
    p.start(Transaction("", [Recipient("bob@remote.test")]))
    assert p.take() == ["MAIL FROM:<>"]


def test_auth_plain_after_tls_and_masked_in_logs():
    p = Peer(tls="implicit", auth=("relay-user", "s3cret"))
    p.reply("220 hi\n")
    p.take()
    actions = p.reply("250-hi\n250 AUTH LOGIN PLAIN\n")
    [send] = [a for a in actions if isinstance(a, Send)]
    assert send.show == "AUTH PLAIN ****" and b"s3cret" not in send.show.encode()
    assert base64.b64decode(send.data.split()[2]) == b"\0relay-user\0s3cret"
    assert p.kinds(p.reply("235 2.7.0 ok\n")) == ["Ready"]


def test_auth_login():
    p = Peer(tls="implicit", auth=("u", "pw"))
    p.reply("220 hi\n")
    p.reply("250-hi\n250 AUTH LOGIN\n")
    assert p.take()[-1] == "AUTH LOGIN"
    p.reply("334 VXNlcm5hbWU6\n")
    assert p.take() == [base64.b64encode(b"u").decode()]
    p.reply("334 UGFzc3dvcmQ6\n")
    assert p.take() == [base64.b64encode(b"pw").decode()]
    assert p.kinds(p.reply("235 ok\n")) == ["Ready"]


def test_auth_refused_is_temporary():
    p = Peer(tls="implicit", auth=("u", "pw"))
    p.reply("220 hi\n")
    p.reply("250-hi\n250 AUTH PLAIN\n")
    [failed] = [a for a in p.reply("535 5.7.8 bad credentials\n") if isinstance(a, Failed)]
    assert failed.error.temporary


def test_no_password_without_tls():
    p = Peer(tls="opportunistic", auth=("u", "pw"))
    p.reply("220 hi\n")
    p.take()
    actions = p.reply("250-hi\n250 AUTH PLAIN\n")
    [failed] = [a for a in actions if isinstance(a, Failed)]
    assert "without TLS" in failed.error.message
    assert not any("AUTH" in line for line in p.take())
    # ... unless the caller allows it (a loopback smarthost).
    p = Peer(tls="none", auth=("u", "pw"), plainAuth=True)
    p.reply("220 hi\n")
    p.reply("250-hi\n250 AUTH PLAIN\n")
    assert p.take()[-1].startswith("AUTH PLAIN ")


def test_421_during_transaction_then_close():
    p = ready(Peer(tls="none"), ehlo="250 hi\n")
    p.start(txn("bob@remote.test"))
    p.reply("421 4.3.2 shutting down\n")
    actions = p.m.connectionLost()
    [done] = [a for a in actions if isinstance(a, Done)]
    assert str(done.result.outcomes["bob@remote.test"]) == "421 4.3.2 shutting down"


def test_connection_lost_after_dot_is_uncertain():
    p = ready(Peer(tls="none"))
    p.start(txn("bob@remote.test"))
    p.reply("250 ok\n250 ok\n354 go\n")
    p.m.bodySent()
    [done] = [a for a in p.m.connectionLost() if isinstance(a, Done)]
    assert done.result.uncertain
    assert done.result.outcomes["bob@remote.test"].temporary


def test_timeout_fails_transaction_and_closes():
    p = ready(Peer(tls="none"), ehlo="250 hi\n")
    p.start(txn("bob@remote.test"))
    assert p.m.waiting == "MAIL"
    actions = p.m.timedOut()
    assert p.kinds(actions) == ["Done", "Close"]
    assert actions[0].result.outcomes["bob@remote.test"].enhanced == "4.4.2"


def test_unexpected_reply_breaks_session():
    p = ready(Peer(tls="none"), ehlo="250 hi\n")
    actions = p.reply("250 surprise\n")
    assert p.kinds(actions) == ["Close"]
    assert p.m.state == "closed"


def test_several_transactions_on_one_session():
    p = ready(Peer(tls="none"))
    for n in range(3):
        p.start(txn(f"u{n}@remote.test"))
        p.reply("250 ok\n250 ok\n354 go\n")
        p.m.bodySent()
        [done] = p.reply("250 ok\n")
        assert done.result.outcomes[f"u{n}@remote.test"] is None
    p.take()
    p._collect(p.m.quit())
    assert p.take() == ["QUIT"]


# -- The Twisted protocol -------------------------------------------------------


def connected(clock=None, **kw):
    clock = clock or task.Clock()
    machine = ClientMachine("mx.example.test", tls="none", remote="mx.remote.test")
    proto = client.SMTPClientProtocol(machine, clock, replyTimeout=300, dataTimeout=600, host="mx.remote.test[127.0.0.1]:25")
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport, clock


def test_protocol_streams_the_stuffed_body():
    proto, transport, clock = connected()
    results = []
    proto.ready.addCallback(results.append)
    proto.dataReceived(b"220 hi\r\n")
    assert transport.value() == b"EHLO mx.example.test\r\n"
    transport.clear()
    proto.dataReceived(b"250-hi\r\n250 PIPELINING\r\n")
    assert results == [proto] and proto.alive
    message = b"Subject: x\r\n\r\n.dot\r\n" + b"y" * (client.CHUNK + 10) + b"\r\n"
    outcome = []
    proto.deliver(txn("bob@remote.test", open=lambda: io.BytesIO(message))).addCallback(outcome.append)
    transport.clear()
    proto.dataReceived(b"250 ok\r\n250 ok\r\n354 go\r\n")
    while transport.producer is not None:
        transport.producer.resumeProducing()
    assert transport.value() == b"Subject: x\r\n\r\n..dot\r\n" + b"y" * (client.CHUNK + 10) + b"\r\n.\r\n"
    assert proto.machine.waiting == "dot"
    proto.dataReceived(b"250 queued\r\n")
    assert outcome[0].outcomes == {"bob@remote.test": None}


def test_protocol_greeting_timeout():
    proto, transport, clock = connected()
    errors = []
    proto.ready.addErrback(errors.append)
    clock.advance(299)
    assert not errors
    clock.advance(2)
    assert transport.disconnecting or transport.disconnected or errors
    proto.connectionLost(None)
    assert errors[0].value.enhanced == "4.4.2"


def test_protocol_data_timeout_is_longer():
    proto, transport, clock = connected()
    proto.dataReceived(b"220 hi\r\n250 hi\r\n")
    outcome = []
    proto.deliver(txn("bob@remote.test", open=lambda: io.BytesIO(b"x\r\n"))).addCallback(outcome.append)
    proto.dataReceived(b"250 ok\r\n250 ok\r\n354 go\r\n")
    while transport.producer is not None:
        transport.producer.resumeProducing()
    clock.advance(500)
    assert not outcome
    clock.advance(101)
    assert outcome and outcome[0].uncertain
    assert outcome[0].outcomes["bob@remote.test"].temporary


def test_protocol_deliver_on_dead_connection():
    proto, transport, clock = connected()
    proto.dataReceived(b"220 hi\r\n250 hi\r\n")
    proto.connectionLost(None)
    out = []
    proto.deliver(txn("bob@remote.test")).addCallback(out.append)
    assert out[0].outcomes["bob@remote.test"].temporary


def test_delivery_error_compatible_forms():
    e = DeliveryError.fromReply(550, "5.1.1 no such user\n5.1.1 really", remote="mx")
    assert (e.code, e.enhanced, e.message, e.permanent, e.remote) == (550, "5.1.1", "no such user really", True, "mx")
    assert DeliveryError(451, "5.0.0", "x").enhanced == "4.0.0"  # class agrees with the code
    assert DeliveryError.fromString("451 4.4.1 connect failed") == DeliveryError(451, "4.4.1", "connect failed")
    with pytest.raises(ValueError):
        DeliveryError(250, "2.0.0", "not an error")


REPLY_CODES = [220, 221, 235, 250, 251, 334, 354, 421, 450, 451, 452, 454, 500, 502, 503, 535, 550, 552, 553, 554]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(REPLY_CODES), max_size=25),
       st.sampled_from(["none", "opportunistic", "required", "implicit"]),
       st.booleans(), st.booleans())
def test_fuzz_machine_never_crashes_and_always_finishes(codes, tls, withAuth, extensions):
    """Whatever the peer answers, no exception, and a started transaction ends in exactly one Done."""
    m = ClientMachine("mx.example.test", tls=tls, auth=("u", "p") if withAuth else None, plainAuth=True, remote="peer")
    done = []
    started = False
    ehlo = "250-hi\r\n250-PIPELINING\r\n250-STARTTLS\r\n250-AUTH PLAIN\r\n250 SIZE 10\r\n" if extensions else None
    for code in codes:
        if m.ready and not started:
            started = True
            done += [a for a in m.start(txn("a@x.test", "b@x.test", size=5)) if isinstance(a, Done)]
            continue
        if m.state == "closed":
            break
        if m.waiting == "body":
            m.bodySent()
        text = ehlo if (ehlo and code == 250 and m.waiting == "EHLO") else f"{code} text\r\n"
        done += [a for a in m.receive(text.encode()) if isinstance(a, Done)]
    done += [a for a in m.connectionLost() if isinstance(a, Done)]
    assert len(done) == (1 if started else 0)
    if done:
        assert set(done[0].result.outcomes) == {"a@x.test", "b@x.test"}
        assert m.txn is None


def test_protocol_timeouts_per_stage():
    proto, transport, clock = connected()
    proto.dataReceived(b"220 hi\r\n250 hi\r\n")
    outcome = []
    proto.deliver(txn("bob@remote.test", open=lambda: io.BytesIO(b"x\r\n"))).addCallback(outcome.append)
    proto.dataReceived(b"250 ok\r\n250 ok\r\n")
    assert proto.machine.waiting == "DATA"
    clock.advance(119)
    assert not outcome
    clock.advance(2)  # RFC 5321 s4.5.3.2.2: 2 minutes for the 354
    assert outcome and outcome[0].outcomes["bob@remote.test"].enhanced == "4.4.2"


def test_a_reply_at_both_limits_in_one_read():
    """1,000 lines of 4,096 bytes in one read (the limits), then the next reply's first bytes."""
    line = b"x" * (4096 - 4)
    wire = b"".join(b"250-" + line + b"\r\n" for _ in range(999)) + b"250 " + line + b"\r\n" + b"220 par"
    p = ReplyParser()
    [r] = p.feed(wire)
    assert len(r.lines) == 1000 and r.lines[-1] == line.decode()
    [r] = p.feed(b"tial\r\n")
    assert (r.code, r.lines) == (220, ("partial",))
    with pytest.raises(ProtocolError):
        ReplyParser().feed(b"250-" + line + b"\r\n" * 1 + wire)  # 1,001 lines

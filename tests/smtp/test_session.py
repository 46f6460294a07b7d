"""The session state machine, in process: bytes in, replies and actions out."""

import re

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mailnet.smtp import replies
from mailnet.smtp.replies import Reply
from tests.smtp.helpers import Recorder, b64, makeDirectory, makeSession, plain


@pytest.fixture
def directory(tmp_path):
    return makeDirectory(tmp_path, aliases={
        "sales@example.test": ["alice@example.test", "bob@example.test"],
        "fwd@example.test": ["someone@remote.example", "alice@example.test"],
        "alias-of-alice@example.test": ["alice@example.test"],
    })


def feed(session, recorder, data):
    session.feed(data)
    return recorder.take()


def codes(replies_):
    return [(r.code, r.enhanced) for r in replies_]


def ehlo(session, rec, name="client.example"):
    return feed(session, rec, f"EHLO {name}\r\n".encode())


def test_greeting(tmp_path):
    rec = Recorder()
    session, _ = makeSession(tmp_path, recorder=rec)
    session2, rec2 = makeSession(tmp_path)
    session2.start()
    (greeting,) = rec2.take()
    assert greeting.data == b"220 mx.example.test ESMTP mailnet\r\n"


def test_ehlo_mx_before_and_after_tls(tmp_path):
    session, rec = makeSession(tmp_path)
    (reply,) = ehlo(session, rec)
    assert reply.code == 250 and reply.enhanced == ""  # RFC 2034 s4
    keywords = [line.split()[0] for line in reply.lines[1:]]
    assert keywords == ["PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "STARTTLS", "CHUNKING", "DSN"]
    assert "AUTH" not in keywords  # not before TLS
    session, rec = makeSession(tmp_path, tls=True)
    (reply,) = ehlo(session, rec)
    assert "AUTH PLAIN LOGIN" in reply.lines and "STARTTLS" not in reply.lines
    assert reply.data.startswith(b"250-mx.example.test greets client.example\r\n250-PIPELINING\r\n")


def test_plaintext_auth_when_allowed(tmp_path):
    session, rec = makeSession(tmp_path, allowPlaintext=True)
    assert "AUTH PLAIN LOGIN" in ehlo(session, rec)[0].lines


def test_full_transaction_pipelined(tmp_path, directory):
    session, rec = makeSession(tmp_path, directory=directory)
    out = feed(session, rec, b"EHLO c.example\r\nMAIL FROM:<x@remote.example> BODY=8BITMIME\r\n"
                             b"RCPT TO:<alice@example.test>\r\nRCPT TO:<Sales@Example.Test>\r\nDATA\r\n")
    assert [r.code for r in out] == [250, 250, 250, 250, 354]
    out = feed(session, rec, b"Subject: hi\r\n\r\n..dot\r\nbody\r\n.\r\nQUIT\r\n")
    assert [r.code for r in out] == [250, 221]
    assert rec.closed
    (envelope, data), = rec.messages
    assert data == b"Subject: hi\r\n\r\n.dot\r\nbody\r\n"
    assert envelope.sender == "x@remote.example" and envelope.body == "8BITMIME"
    assert [r.address for r in envelope.recipients] == ["alice@example.test", "Sales@example.test"]
    assert envelope.recipients[1].local == ["alice@example.test", "bob@example.test"]


def test_replies_wait_for_the_commit(tmp_path):
    rec = Recorder(autoCommit=False)
    session, rec = makeSession(tmp_path, recorder=rec)
    feed(session, rec, b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
    # the client pipelines the next transaction after the end of data
    out = feed(session, rec, b"x\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.test>\r\n")
    assert out == [] and session.waiting
    session.messageResult(Reply(250, "2.0.0", "stored"))
    assert [r.code for r in rec.take()] == [250, 250, 250]
    assert rec.events[-4:] == [("commit",), ("reply", 250), ("reply", 250), ("reply", 250)]


def test_store_failure_451_then_session_goes_on(tmp_path):
    rec = Recorder()
    rec.commitReply = replies.STORE_FAILED
    session, rec = makeSession(tmp_path, recorder=rec)
    out = feed(session, rec, b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
    out = feed(session, rec, b"x\r\n.\r\nMAIL FROM:<>\r\n")
    assert codes(out) == [(451, "4.3.0"), (250, "2.1.0")]


def test_sequence_errors(tmp_path):
    session, rec = makeSession(tmp_path)
    out = feed(session, rec, b"MAIL FROM:<>\r\nEHLO c\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nMAIL FROM:<>\r\n"
                             b"MAIL FROM:<>\r\nDATA\r\nBDAT 3\r\nabcRSET\r\nDATA\r\n")
    assert codes(out) == [(503, "5.5.1"), (250, ""), (503, "5.5.1"), (503, "5.5.1"), (250, "2.1.0"),
                          (503, "5.5.1"), (554, "5.5.1"), (554, "5.5.1"), (250, "2.0.0"), (503, "5.5.1")]


def test_recipients(tmp_path, directory):
    session, rec = makeSession(tmp_path, directory=directory)
    feed(session, rec, b"EHLO c\r\nMAIL FROM:<a@remote.example>\r\n")
    out = feed(session, rec, b"RCPT TO:<nobody@example.test>\r\nRCPT TO:<x@remote.example>\r\n"
                             b"RCPT TO:<u@[192.0.2.9]>\r\nRCPT TO:<Postmaster>\r\nRCPT TO:<alice+tag@example.test>\r\n"
                             b"RCPT TO:<fwd@example.test>\r\n")
    assert codes(out) == [(550, "5.1.1"), (554, "5.7.1"), (554, "5.7.1"), (550, "5.1.1"), (250, "2.1.5"),
                          (250, "2.1.5")]
    assert session.mail.recipients[1].remote == ["someone@remote.example"]
    assert session.mail.recipients[1].local == ["alice@example.test"]


def test_postmaster_when_it_exists(tmp_path):
    directory = makeDirectory(tmp_path, aliases={"postmaster@example.test": ["alice@example.test"]})
    session, rec = makeSession(tmp_path, directory=directory)
    out = feed(session, rec, b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<postmaster>\r\n")
    assert out[-1].code == 250
    assert session.mail.recipients[0].local == ["alice@example.test"]


def test_too_many_recipients(tmp_path):
    session, rec = makeSession(tmp_path, maxRecipients=2)
    out = feed(session, rec, b"EHLO c\r\nMAIL FROM:<>\r\n" + b"RCPT TO:<bob@example.test>\r\n" * 3)
    assert codes(out)[-1] == (452, "4.5.3")
    assert len(session.mail.recipients) == 2


def test_dsn_and_size_params(tmp_path):
    session, rec = makeSession(tmp_path, maxSize=5000)
    out = feed(session, rec, b"EHLO c\r\nMAIL FROM:<a@remote.example> SIZE=5001\r\n"
                             b"MAIL FROM:<a@remote.example> SIZE=4000 RET=HDRS ENVID=abc+2B1\r\n"
                             b"RCPT TO:<bob@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob+40example.test\r\n"
                             b"RCPT TO:<alice@example.test> FOO=BAR\r\n")
    assert codes(out)[1:] == [(552, "5.3.4"), (250, "2.1.0"), (250, "2.1.5"), (555, "5.5.4")]
    mail = session.mail
    assert (mail.size, mail.ret, mail.envid) == (4000, "HDRS", "abc+2B1")
    r = mail.recipients[0]
    assert (r.notify, r.orcpt) == (["SUCCESS", "FAILURE"], "rfc822;bob+40example.test")


def test_message_too_big_while_streaming(tmp_path):
    session, rec = makeSession(tmp_path, maxSize=100)
    feed(session, rec, b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
    out = feed(session, rec, b"x" * 50 + b"\r\n" + b"y" * 60 + b"\r\n.\r\nNOOP\r\n")
    assert codes(out) == [(552, "5.3.4"), (250, "2.0.0")]
    assert rec.messages == [] and ("abort",) in rec.events


def test_smtputf8(tmp_path):
    directory = makeDirectory(tmp_path, users=["pelé@example.test"])
    session, rec = makeSession(tmp_path, directory=directory)
    out = feed(session, rec, "EHLO c\r\nMAIL FROM:<jörg@remote.example>\r\nMAIL FROM:<jörg@remote.example> SMTPUTF8\r\n"
                             "RCPT TO:<pelé@example.test>\r\n".encode())
    assert codes(out)[1:] == [(553, "5.6.7"), (250, "2.1.0"), (250, "2.1.5")]
    session, rec = makeSession(tmp_path, directory=directory)
    out = feed(session, rec, "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<pelé@example.test>\r\n".encode())
    assert codes(out)[-1] == (553, "5.6.7")


def test_starttls_discards_pipelined_input_and_state(tmp_path):
    session, rec = makeSession(tmp_path)
    # RFC 3207 s4.2: the MAIL after STARTTLS in the same packet is never run
    out = feed(session, rec, b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<evil@remote.example>\r\nRCPT TO:<bob@example.test>\r\n")
    assert [r.code for r in out] == [250, 220]
    assert rec.tlsStarted and session.tls
    assert rec.events[-1] == ("starttls",)
    assert session.helo is None and session.mail is None
    # over TLS now: EHLO is needed again, and the MAIL was not remembered
    out = feed(session, rec, b"RCPT TO:<bob@example.test>\r\nMAIL FROM:<>\r\nEHLO c\r\nSTARTTLS\r\n")
    assert codes(out) == [(503, "5.5.1"), (503, "5.5.1"), (250, ""), (503, "5.5.1")]


def test_starttls_forgets_auth(tmp_path):
    session, rec = makeSession(tmp_path, allowPlaintext=True, recorder=Recorder(passwords={"alice@example.test": "pw"}))
    out = feed(session, rec, f"EHLO c\r\nAUTH PLAIN {plain('alice@example.test', 'pw')}\r\n".encode())
    assert out[-1].code == 235 and session.user == "alice@example.test"
    feed(session, rec, b"STARTTLS\r\n")
    assert session.user is None


def test_submission_needs_tls_then_auth(tmp_path):
    rec = Recorder(passwords={"alice@example.test": "alice-pw"})
    session, rec = makeSession(tmp_path, role="submission", recorder=rec)
    out = feed(session, rec, f"EHLO c\r\nMAIL FROM:<alice@example.test>\r\nAUTH PLAIN {plain('alice@example.test', 'alice-pw')}\r\n".encode())
    assert codes(out)[1:] == [(530, "5.7.0"), (530, "5.7.0")]
    assert out[1].text == "Must issue a STARTTLS command first"
    feed(session, rec, b"STARTTLS\r\n")
    out = feed(session, rec, b"EHLO c\r\nMAIL FROM:<alice@example.test>\r\n")
    assert codes(out)[1:] == [(530, "5.7.0")] and out[1].text == "Authentication required"
    out = feed(session, rec, f"AUTH PLAIN {plain('alice@example.test', 'alice-pw')}\r\nMAIL FROM:<alice@example.test>\r\n"
                             "RCPT TO:<anyone@remote.example>\r\n".encode())
    assert codes(out) == [(235, "2.7.0"), (250, "2.1.0"), (250, "2.1.5")]
    assert session.mail.recipients[0].remote == ["anyone@remote.example"]


def test_sender_must_be_owned(tmp_path, directory):
    rec = Recorder(passwords={"alice@example.test": "pw"})
    session, rec = makeSession(tmp_path, role="submissions", tls=True, recorder=rec, directory=directory)
    feed(session, rec, f"EHLO c\r\nAUTH PLAIN {plain('alice@example.test', 'pw')}\r\n".encode())
    out = feed(session, rec, b"MAIL FROM:<bob@example.test>\r\nMAIL FROM:<x@remote.example>\r\n"
                             b"MAIL FROM:<alias-of-alice@example.test>\r\nRSET\r\nMAIL FROM:<Alice+lists@example.test>\r\n"
                             b"RSET\r\nMAIL FROM:<>\r\n")
    assert codes(out) == [(553, "5.7.1"), (553, "5.7.1"), (250, "2.1.0"), (250, "2.0.0"), (250, "2.1.0"),
                          (250, "2.0.0"), (250, "2.1.0")]


def test_auth_variants(tmp_path):
    rec = Recorder(passwords={"alice@example.test": "pw"})
    session, rec = makeSession(tmp_path, tls=True, recorder=rec)
    ehlo(session, rec)
    # PLAIN with an empty challenge
    out = feed(session, rec, b"AUTH PLAIN\r\n")
    assert out[0].data == b"334 \r\n"
    out = feed(session, rec, (plain("alice@example.test", "bad") + "\r\n").encode())
    assert codes(out) == [(535, "5.7.8")]
    # LOGIN
    out = feed(session, rec, b"AUTH LOGIN\r\n")
    assert out[0].data == b"334 VXNlcm5hbWU6\r\n"
    out = feed(session, rec, (b64("alice@example.test") + "\r\n").encode())
    assert out[0].data == b"334 UGFzc3dvcmQ6\r\n"
    out = feed(session, rec, (b64("pw") + "\r\n").encode())
    assert codes(out) == [(235, "2.7.0")]
    out = feed(session, rec, b"AUTH LOGIN\r\n")
    assert codes(out) == [(503, "5.5.1")]


def test_auth_errors(tmp_path):
    rec = Recorder(passwords={"alice@example.test": "pw"})
    session, rec = makeSession(tmp_path, tls=True, recorder=rec)
    ehlo(session, rec)
    out = feed(session, rec, b"AUTH CRAM-MD5\r\nAUTH PLAIN !!!\r\nAUTH LOGIN\r\n*\r\nAUTH\r\n")
    assert codes(out) == [(504, "5.5.4"), (501, "5.5.2"), (334, ""), (501, "5.0.0"), (501, "5.5.4")]
    # authzid other than the login is refused
    out = feed(session, rec, f"AUTH PLAIN {plain('alice@example.test', 'pw', authzid='bob@example.test')}\r\n".encode())
    assert codes(out) == [(535, "5.7.8")]
    # no AUTH inside a transaction
    out = feed(session, rec, f"MAIL FROM:<>\r\nAUTH PLAIN {plain('alice@example.test', 'pw')}\r\n".encode())
    assert codes(out) == [(250, "2.1.0"), (503, "5.5.1")]


def test_auth_failure_limit(tmp_path):
    rec = Recorder(passwords={})
    session, rec = makeSession(tmp_path, tls=True, recorder=rec, maxAuthFailures=3)
    ehlo(session, rec)
    line = f"AUTH PLAIN {plain('alice@example.test', 'x')}\r\n".encode()
    out = feed(session, rec, line * 5)
    assert codes(out) == [(535, "5.7.8"), (535, "5.7.8"), (421, "4.7.0")]
    assert rec.closed


def test_auth_waits_for_the_check(tmp_path):
    session, rec = makeSession(tmp_path, tls=True)
    ehlo(session, rec)
    out = feed(session, rec, f"AUTH PLAIN {plain('alice@example.test', 'pw')}\r\nNOOP\r\n".encode())
    assert out == [] and rec.pendingAuth == ("alice@example.test", "pw")
    session.authResult(None)
    assert codes(rec.take()) == [(535, "5.7.8"), (250, "2.0.0")]


def test_error_limit(tmp_path):
    session, rec = makeSession(tmp_path, maxErrors=3)
    out = feed(session, rec, b"FOO\r\nBAR\r\nBAZ\r\nQUX\r\nNOOP\r\n")
    assert codes(out) == [(500, "5.5.2")] * 3 + [(421, "4.7.0")]
    assert rec.closed
    assert feed(session, rec, b"NOOP\r\n") == []


def test_lines(tmp_path):
    session, rec = makeSession(tmp_path, maxLine=600)
    out = feed(session, rec, b"NOOP\nNOOP\r\n" + b"X" * 700 + b"\r\nNOOP\r\n")
    assert codes(out) == [(500, "5.5.2"), (250, "2.0.0"), (500, "5.5.2"), (250, "2.0.0")]
    # an over-long line arriving in pieces gets one reply
    out = feed(session, rec, b"Y" * 500)
    out += feed(session, rec, b"Y" * 500)
    out += feed(session, rec, b"Y" * 500 + b"\r\nNOOP\r\n")
    assert codes(out) == [(500, "5.5.2"), (250, "2.0.0")]
    assert out[0].text == "Line too long"


def test_simple_commands(tmp_path):
    session, rec = makeSession(tmp_path)
    out = feed(session, rec, b"HELO c\r\nNOOP\r\nHELP\r\nVRFY bob\r\nEXPN list\r\nRSET\r\nQUIT\r\n")
    assert codes(out) == [(250, ""), (250, "2.0.0"), (214, "2.0.0"), (252, "2.5.0"), (502, "5.5.1"),
                          (250, "2.0.0"), (221, "2.0.0")]
    assert rec.closed


def test_data_with_bare_lf_refused_and_smuggled_command_not_run(tmp_path):
    session, rec = makeSession(tmp_path)
    feed(session, rec, b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
    out = feed(session, rec, b"Subject: a\r\n\r\nx\n.\nMAIL FROM:<evil@remote.example>\nRCPT TO:<alice@example.test>\n"
                             b"DATA\nsmuggled\r\n.\r\n")
    assert codes(out) == [(554, "5.6.0")]
    assert rec.messages == [] and session.mail is None


def test_bdat(tmp_path):
    session, rec = makeSession(tmp_path)
    out = feed(session, rec, b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\n"
                             b"BDAT 10\r\nSubject: aBDAT 8 LAST\r\n\r\nbody\r\nNOOP\r\n")
    assert codes(out)[3:] == [(250, "2.0.0"), (250, "2.0.0"), (250, "2.0.0")]
    assert rec.messages[0][1] == b"Subject: a\r\nbody\r\n"


def test_bdat_chunk_split_across_feeds_and_binary_looking_data(tmp_path):
    session, rec = makeSession(tmp_path)
    feed(session, rec, b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\nBDAT 25 LAST\r\nQUIT\r\n")
    out = feed(session, rec, b"RSET\r\nDATA\r\n.\r\n\r\nxx")
    assert codes(out) == [(250, "2.0.0")]
    assert rec.messages[0][1] == b"QUIT\r\nRSET\r\nDATA\r\n.\r\n\r\nxx"
    assert not rec.closed


def test_bdat_without_mail_still_reads_the_chunk(tmp_path):
    session, rec = makeSession(tmp_path)
    out = feed(session, rec, b"EHLO c\r\nBDAT 6\r\nQUIT\r\nBDAT 0 LAST\r\nNOOP\r\n")
    assert codes(out) == [(250, ""), (503, "5.5.1"), (503, "5.5.1"), (250, "2.0.0")]
    assert not rec.closed


def test_bdat_chunk_far_over_the_size_limit_is_refused_without_reading_it(tmp_path):
    from mailnet.smtp.session import BDAT_SLACK

    session, rec = makeSession(tmp_path)
    limit = session.settings.maxSize
    out = feed(session, rec, b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\n"
                             + f"BDAT {limit + BDAT_SLACK + 1} LAST\r\n".encode() + b"x" * 1000)
    assert codes(out)[3:] == [(552, "5.3.4")] and b"closing" in out[-1].data
    assert rec.closed and rec.messages == []
    # just within the slack: read, dropped, refused, and the session goes on
    session, rec = makeSession(tmp_path, maxSize=1000)
    feed(session, rec, b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\n"
                       + f"BDAT {1000 + BDAT_SLACK} LAST\r\n".encode())
    out = feed(session, rec, (b"y" * 98 + b"\r\n") * ((1000 + BDAT_SLACK) // 100)
               + b"y" * ((1000 + BDAT_SLACK) % 100) + b"NOOP\r\n")
    assert codes(out) == [(552, "5.3.4"), (250, "2.0.0")] and not rec.closed


def test_bdat_failure_refuses_later_chunks(tmp_path):
    session, rec = makeSession(tmp_path)
    out = feed(session, rec, b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\n"
                             b"BDAT 4\r\na\nb\rBDAT 4 LAST\r\nc\r\ndNOOP\r\n")
    assert codes(out)[3:] == [(554, "5.6.0"), (503, "5.5.1"), (250, "2.0.0")]
    assert rec.messages == []


def test_timeout_aborts_message(tmp_path):
    session, rec = makeSession(tmp_path)
    feed(session, rec, b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\npart")
    assert session.readingData
    session.timeout()
    assert codes(rec.take()) == [(421, "4.4.2")]
    assert rec.events[-3:] == [("abort",), ("reply", 421), ("close",)]


def test_connection_lost_during_data_aborts(tmp_path):
    session, rec = makeSession(tmp_path)
    feed(session, rec, b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\npart")
    session.connectionLost()
    assert rec.events[-1] == ("abort",)


REPLY_LINE = re.compile(rb"^[2-5][0-5][0-9][ -]")
ENHANCED = re.compile(rb"^[245][0-5][0-9][ -][245]\.\d{1,3}\.\d{1,3}( |\r)")

command_lines = st.one_of(
    st.sampled_from([b"EHLO c", b"HELO c", b"MAIL FROM:<>", b"MAIL FROM:<a@remote.example> SIZE=10",
                     b"RCPT TO:<bob@example.test>", b"RCPT TO:<x@remote.example>", b"DATA", b"BDAT 3",
                     b"BDAT 0 LAST", b"RSET", b"NOOP", b"VRFY x", b"AUTH PLAIN", b"AUTH LOGIN", b"STARTTLS",
                     b".", b"QUIT", b"*", b"AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABwdw=="]),
    st.binary(max_size=60),
    st.text(max_size=40).map(lambda t: t.encode("utf-8")),
)


@given(st.lists(st.tuples(command_lines, st.sampled_from([b"\r\n", b"\n", b"\r", b""])), max_size=25),
       st.booleans())
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzz_every_input_gets_well_formed_replies(tmp_path, pieces, tls):
    rec = Recorder(passwords={"alice@example.test": "pw"})
    session, rec = makeSession(tmp_path, tls=tls, recorder=rec, maxLine=512)
    for line, end in pieces:
        session.feed(line + end)
    session.timeout()
    for reply in rec.replies:
        helo = reply.lines[0].startswith("mx.example.test greets")
        for out in reply.data.split(b"\r\n")[:-1]:
            assert REPLY_LINE.match(out + b"\r\n"), reply
            if out[:1] in b"245" and not helo:
                # RFC 2034 s4: every 2xx/4xx/5xx line but those to EHLO/HELO
                assert ENHANCED.match(out + b"\r\n"), reply
    assert rec.closed

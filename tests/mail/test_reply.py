"""mailnet.mail.reply: one Reply for what the server sends and what the client receives."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailnet.mail.reply import Reply
from mailnet.queue.client import ReplyParser
from tests.mail import _reference as old

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

codes = st.integers(200, 599)
enhancedCodes = st.sampled_from(["", "2.0.0", "4.7.0", "5.1.1", "5.5.10", "2.1.5"])
texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=30)
# Received lines, often starting with something like an enhanced code.
receivedLines = st.lists(st.one_of(texts, st.tuples(enhancedCodes, st.sampled_from(["", " ", "  "]), texts).map("".join)),
                         min_size=1, max_size=4).map(tuple)


@FUZZ
@given(codes, enhancedCodes, st.one_of(texts, st.lists(texts, max_size=4)))
def test_sent_reply_renders_as_the_smtp_copy_did(code, enhanced, text):
    try:
        expected = old.SmtpReply(code, enhanced, text)
    except ValueError:
        with pytest.raises(ValueError):
            Reply(code, enhanced, text)
        return
    new = Reply(code, enhanced, text)
    assert (new.code, new.enhanced, list(new.lines), new.data, new.text) == (
        expected.code, expected.enhanced, expected.lines, expected.data, expected.text)
    assert new.withText("other").data == old.SmtpReply(code, enhanced, "other").data


@FUZZ
@given(codes, receivedLines)
def test_received_reply_reads_as_the_client_copy_did(code, lines):
    new = Reply.received(code, lines)
    expected = old.ClientReply(code, lines)
    assert new.lines == lines
    assert new.enhanced == (expected.enhanced or "")
    assert (new.text, str(new), new.positive) == (expected.text, str(expected), expected.positive)
    for default in (None, "0.0", "4.0"):
        e, f = new.error("mx.test", default), expected.error("mx.test", default)
        assert (e.code, e.enhanced, e.message, e.temporary, e.remote) == (f.code, f.enhanced, f.message, f.temporary, f.remote)


@FUZZ
@given(codes, enhancedCodes, st.lists(texts.map(lambda t: " ".join(t.split())), min_size=1, max_size=4))
def test_what_the_server_sends_the_client_reads_back(code, enhanced, text):
    if enhanced and enhanced[0] != str(code)[0]:
        return
    sent = Reply(code, enhanced, text)
    [got] = ReplyParser().feed(sent.data)
    assert (got.code, got.enhanced) == (sent.code, sent.enhanced)
    assert got.text == " ".join(t for t in text if t)


def test_examples():
    r = Reply(250, "2.0.0", "OK")
    assert (r.data, r.text, str(r), r.isError, r.positive) == (b"250 2.0.0 OK\r\n", "OK", "250 2.0.0 OK", False, True)
    assert Reply(250, "", ["mx", "PIPELINING"]).data == b"250-mx\r\n250 PIPELINING\r\n"
    with pytest.raises(ValueError):
        Reply(550, "4.0.0", "class disagrees")
    got = Reply.received(550, ("5.1.1 no such user", "5.1.1 really"))
    assert (got.enhanced, got.text, got.isError) == ("5.1.1", "no such user really", True)
    assert got == Reply.received(550, ("5.1.1 no such user", "5.1.1 really"))
    assert got.error("mx").permanent

"""mailnet.mail.headers: RFC 2047 encoded words and RFC 5322 address lists."""

import email.header
import io
import signal
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailnet.imap import fetch
from mailnet.mail import headers, mime


def _oldDecode(value):
    out = []
    for text, charset in email.header.decode_header(value):
        if isinstance(text, bytes):
            text = text.decode(charset or "ascii", "replace")
        out.append(text)
    return "".join(out)


@pytest.mark.parametrize("value", [
    "=?utf-8?q?caf=C3=A9?= au lait",
    "Re: =?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?= =?ISO-8859-2?B?dSB1bmRlcnN0YW5kIHRoZSBleGFtcGxlLg==?=",
    "=?utf-8?b?w6k=?=  =?utf-8?b?w6k=?=",
    "a =?utf-8?q?x_y?= b",
    "=?UTF-8?Q?=E2=82?= =?UTF-8?Q?=AC?=",
    "plain =? text ?=",
    "(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)",
])
def test_encoded_words_decode_like_the_email_package(value):
    assert headers.decodeWords(value) == _oldDecode(value)


def test_encoded_word_with_a_language():
    # RFC 2231 s5: charset*language (the email package gives up on it).
    assert headers.decodeWords("=?utf-8*en?q?hi?= there") == "hi there"


def test_encoded_words_decode_in_linear_time():
    value = " ".join(["=?utf-8?q?caf=C3=A9?="] * 60000)  # 1.3 MB; the email package took about 10 s
    started = time.process_time()
    assert headers.decodeWords(value) == "café" * 60000
    assert time.process_time() - started < 2.0


def test_decode_header_unfolds_and_casefolds():
    assert headers.decodeHeader("=?utf-8?q?Caf=C3=A9?=\r\n Au Lait") == "café au lait"
    assert headers.decodeHeader("Plain") == "plain"


@pytest.mark.parametrize("text, expected", [
    ("alice@example.test", [(None, None, "alice", "example.test")]),
    ('"Bob, Jr." <bob@x.test>, carol@y.test (Carol)',
     [("Bob, Jr.", None, "bob", "x.test"), ("Carol", None, "carol", "y.test")]),
    ("<@relay.test:dave@z.test>", [(None, "@relay.test", "dave", "z.test")]),
    ("team: a@x.test, b@y.test;, c@z.test",
     [("group", "team", [(None, None, "a", "x.test"), (None, None, "b", "y.test")]), (None, None, "c", "z.test")]),
    ("undisclosed-recipients:;", [("group", "undisclosed-recipients", [])]),
    ("", []),
])
def test_parse_addresses(text, expected):
    assert headers.parseAddresses(text) == expected


def _alarm(signum, frame):
    raise TimeoutError("parseAddresses did not return")


@pytest.fixture
def deadline():
    """Fail (rather than hang the run) when the parser loops: 60 s of wall clock."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("text", [")", "a)b@x.test", "alice@x.test )", ")))(", "<a@x.test>)"])
def test_stray_close_parenthesis_is_skipped(deadline, text):
    assert headers.parseAddresses(text) == headers.parseAddresses(text.replace(")", " "))


def test_envelope_of_a_from_that_is_a_parenthesis(deadline):
    # FETCH ENVELOPE runs on the reactor thread: this message once hung the server.
    root = mime.scan(io.BytesIO(b"From: )\r\nTo: bob@x.test\r\n\r\nbody\r\n"))
    assert b'(NIL NIL "bob" "x.test")' in fetch.envelope(root)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet='ab@.,:;<>"()\\ \t[]', max_size=40))
def test_parse_addresses_takes_anything(deadline, text):
    for item in headers.parseAddresses(text):
        assert item[0] == "group" or len(item) == 4

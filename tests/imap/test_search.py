"""
SEARCH's MIME decoding: the light walk (search.quickText) must find the
same text as the email package on any message the email package can build,
and the raw fast path must agree with decoding.
"""

import email.message
import email.policy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailnet.imap import search
from mailnet.imap.parser import parseCommand
from mailnet.store.interfaces import MessageInfo

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

words = st.text(alphabet="abcdefghij\u00e9\u00fc\u00df\u65e5 ", min_size=1, max_size=40)
encodings = st.sampled_from(["utf-8", "iso-8859-1", "utf-8-qp", "utf-8-b64"])


def textPart(text, enc):
    part = email.message.EmailMessage(policy=email.policy.SMTP)
    if enc == "iso-8859-1":
        text = text.encode("latin-1", "replace").decode("latin-1")
        part.set_content(text, charset="iso-8859-1", cte="quoted-printable")
    elif enc == "utf-8-qp":
        part.set_content(text, charset="utf-8", cte="quoted-printable")
    elif enc == "utf-8-b64":
        part.set_content(text, charset="utf-8", cte="base64")
    else:
        part.set_content(text, charset="utf-8", cte="8bit")
    return part, text


@st.composite
def messages(draw):
    texts = []
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        part, text = textPart(draw(words), draw(encodings))
        parts.append(part)
        texts.append(text)
    if len(parts) == 1:
        msg = parts[0]
    else:
        msg = email.message.EmailMessage(policy=email.policy.SMTP)
        msg.make_mixed()
        msg.set_boundary("==b0undary==")  # the email package would pick a random one
        for p in parts:
            msg.attach(p)
        if draw(st.booleans()):
            attachment = email.message.EmailMessage(policy=email.policy.SMTP)
            attachment.set_content(b"\x00binary zzz", maintype="application", subtype="octet-stream")
            msg.attach(attachment)
    msg["Subject"] = "test"
    return msg.as_bytes(), texts


@given(messages())
@FUZZ
def test_quick_walk_matches_email_package(generated):
    data, texts = generated
    quick = "\n".join(search.quickText(data)).casefold()
    full = search.mimeText(data)
    for text in texts:
        for word in text.split():
            assert word.casefold() in full
            assert word.casefold() in quick, (word, quick)
    assert "zzz" not in quick  # attachments are not text


def run(program_bytes, data, flags=frozenset()):
    cmd = parseCommand(b"a SEARCH CHARSET UTF-8 " + program_bytes)
    program = search.decodeStrings(cmd.keys, "utf-8")
    searcher = search.Searcher(program, 1, 1)
    c = search.Candidate(1, 1, MessageInfo(1, flags, 1700000000.0, len(data), 1), False)
    c.data = data
    return searcher.match(c)


def test_fast_path_and_decoding_agree():
    plain = b"From: a@b\r\nSubject: Hello World\r\n\r\nThe Quick brown fox\r\n"
    assert run(b"BODY quick", plain) and run(b"TEXT hello", plain) and not run(b"BODY hello", plain)
    assert run(b'HEADER subject "world"', plain) and not run(b"HEADER to x", plain)
    encoded = (b"Subject: =?utf-8?b?w4lsw6ht?=\r\nContent-Type: text/plain; charset=utf-8\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\nw6l0w6kgYnLDu2xhbnQ=\r\n")
    assert run('SUBJECT "élèm"'.encode(), encoded)
    assert run('BODY "BRÛLANT"'.encode(), encoded) and run('TEXT "été"'.encode(), encoded)
    assert not run(b"BODY w6l0", encoded)  # the base64 itself is not the text


@given(st.lists(st.sampled_from([b"--b", b"--b--", b"x--b", b"\r\n", b"\n", b"\r", b" ", b"\t", b"text", b"--", b"b"]),
                max_size=25).map(b"".join),
       st.sampled_from([b"b", b"a.b", b"=_x"]))
@FUZZ
def test_split_parts_is_the_multiline_split(body, boundary):
    import re

    body = body.replace(b"b", boundary)
    expected = re.split(rb"(?m)^--" + re.escape(boundary) + rb"(--)?[ \t]*\r?$", body)
    assert search._splitParts(body, boundary) == expected

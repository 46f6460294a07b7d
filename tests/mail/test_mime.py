"""
mailnet.mail.mime: the one-pass scanner, transfer decoding, and the decoded
text of text parts (the light walk, quickText, must find the same text as
the email package on any message the email package can build).
"""

import base64
import binascii
import email.message
import email.policy
import io
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailnet.mail import mime
from mailnet.mail.lines import toCRLF

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
    quick = "\n".join(mime.quickText(data)).casefold()
    full = mime.mimeText(data)
    for text in texts:
        for word in text.split():
            assert word.casefold() in full
            assert word.casefold() in quick, (word, quick)
    assert "zzz" not in quick  # attachments are not text


@given(st.lists(st.sampled_from([b"--b", b"--b--", b"x--b", b"\r\n", b"\n", b"\r", b" ", b"\t", b"text", b"--", b"b"]),
                max_size=25).map(b"".join),
       st.sampled_from([b"b", b"a.b", b"=_x"]))
@FUZZ
def test_split_parts_is_the_multiline_split(body, boundary):
    body = body.replace(b"b", boundary)
    expected = re.split(rb"(?m)^--" + re.escape(boundary) + rb"(--)?[ \t]*\r?$", body)
    assert mime._splitParts(body, boundary) == expected


# -- The scanner -------------------------------------------------------------

pieces = st.sampled_from([
    b"Content-Type: multipart/mixed; boundary=b\r\n", b"Content-Type: message/rfc822\r\n",
    b"Content-Type: text/plain\r\n", b"Content-Type: multipart/digest; boundary=\"c\"\r\n",
    b"Subject: x\r\n", b"\r\n", b"\n", b"--b\r\n", b"--b--\r\n", b"--c\r\n", b"--c--\r\n", b"text\r\n",
    b" folded\r\n", b"\xff\xfe", b"--b", b"Content-Transfer-Encoding: base64\r\n",
])


def _parts(root):
    todo = [root]
    while todo:
        part = todo.pop()
        yield part
        todo.extend(part.children or [])
        if part.message is not None:
            todo.append(part.message)


@given(st.lists(pieces, max_size=40).map(b"".join), st.integers(1, 5), st.integers(1, 6))
@FUZZ
def test_scan_any_input_gives_offsets_inside_the_message(data, maxParts, maxDepth):
    root = mime.scan(io.BytesIO(data), len(data), maxParts=maxParts, maxDepth=maxDepth)
    count = 0
    for part in _parts(root):
        count += 1
        assert 0 <= part.headerStart <= part.bodyStart <= part.end <= len(data)
        assert part.lines >= 0
    # An empty multipart gets one empty text part shown (RFC 2046), not counted.
    assert count <= 2 * maxParts
    assert root.end == len(data)


def test_scan_offsets_of_a_multipart():
    data = (b"Content-Type: multipart/mixed; boundary=b\r\n\r\npreamble\r\n--b\r\n\r\none\r\n"
            b"--b\r\nContent-Type: text/html\r\n\r\n<p>two</p>\r\n--b--\r\n")
    root = mime.scan(io.BytesIO(data))
    first, second = root.children
    assert data[first.bodyStart:first.end] == b"one"
    assert data[second.bodyStart:second.end] == b"<p>two</p>"
    assert (second.maintype, second.subtype) == ("text", "html")
    head = mime.scanHeader(io.BytesIO(data), len(data))
    assert head.children is None and head.end == len(data) and head.maintype == "multipart"


bodies = st.binary(max_size=300)


@given(bodies, st.integers(1, 17))
@FUZZ
def test_base64_decoding_does_not_depend_on_chunks(raw, chunk):
    encoded = base64.encodebytes(raw)
    f = io.BytesIO(encoded)
    assert b"".join(mime.decodedChunks(f, 0, len(encoded), "base64", chunk)) == raw


@given(bodies, st.integers(1, 17))
@FUZZ
def test_quoted_printable_decoding_does_not_depend_on_chunks(raw, chunk):
    encoded = binascii.b2a_qp(raw)
    f = io.BytesIO(encoded)
    whole = b"".join(mime.decodedChunks(f, 0, len(encoded), "quoted-printable", len(encoded) + 1))
    assert b"".join(mime.decodedChunks(f, 0, len(encoded), "quoted-printable", chunk)) == whole
    # Whole lines come out with CRLF line ends; the last, unended line as decoded.
    cut = encoded.rfind(b"\n") + 1
    assert whole == toCRLF(binascii.a2b_qp(encoded[:cut])) + binascii.a2b_qp(encoded[cut:])


def test_unknown_encoding():
    try:
        mime.decoder("x-uuencode")
    except mime.UnknownEncoding:
        pass
    else:
        raise AssertionError("x-uuencode decoded")
    assert b"".join(mime.decodedChunks(io.BytesIO(b"abc"), 0, 3, "8bit")) == b"abc"

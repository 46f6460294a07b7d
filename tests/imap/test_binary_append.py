"""
RFC 3516 binary APPEND (a ``~{n}`` literal) keeps binary content byte for
byte, and no NUL ever goes out in an ordinary ``{n}`` literal (RFC 3501 s9),
through the real server and a raw socket (issue 12, defect 3).

What Dovecot 2.3 answers to the same APPENDs (checked on this machine): a
part with ``Content-Transfer-Encoding: binary`` is stored base64-encoded,
so ``BINARY[1]`` gives the bytes sent (in a literal8 when they hold a NUL),
``BINARY.SIZE[1]`` their count, ``BODY[1]`` the base64 text; a NUL that
reaches a BODY fetch anyway is sent as 0x80.
"""

from __future__ import annotations

import base64
import io
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailnet.mail.binary import encodeBinaryParts
from mailnet.mail import mime

from .raw import RawIMAP, literals

USER, PASSWORD = "alice@example.test", "alice-pw"

# Bare LF and a NUL in a binary part (what the conformance tool sent).
PAYLOAD = b"a\nb\x00c\nd"
SINGLE = (b"Subject: binary single\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\n"
          b"Content-Transfer-Encoding: binary\r\n\r\n" + PAYLOAD)
PAYLOAD2 = bytes(range(256)) + b"\r\n\n\r\x00end"
MULTI = (b"Subject: binary multi\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
         b"--XX\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
         b"--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n" + PAYLOAD2 +
         b"\r\n--XX--\r\n")


@pytest.fixture
def raw(imap_server):
    c = RawIMAP(imap_server.port("imap")).login(USER, PASSWORD)
    yield c
    c.close()


def _select(raw, name):
    raw.cmd(b"CREATE " + name)
    reply = raw.cmd(b"SELECT " + name)
    assert reply.splitlines()[-1].split()[1] == b"OK", reply


def _ok(reply):
    assert reply.splitlines()[-1].split()[1] == b"OK", reply
    return reply


def _noNulInPlainLiterals(reply):
    for label, kind, data in literals(reply):
        if kind != b"~":
            assert b"\x00" not in data, (label, data)


def test_binary_append_keeps_the_bytes_of_a_binary_part(raw):
    _select(raw, b"bin1")
    _ok(raw.append(b"bin1", SINGLE))
    raw.cmd(b"NOOP")
    reply = _ok(raw.cmd(b"FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1] BODY.PEEK[1] BODY.PEEK[] RFC822.SIZE BODYSTRUCTURE)"))
    _noNulInPlainLiterals(reply)
    assert b"BINARY.SIZE[1] 7" in reply
    got = {label: (kind, data) for label, kind, data in literals(reply)}
    # RFC 3516 s4.2: the NUL goes in a literal8.
    assert got[b"BINARY[1]"] == (b"~", PAYLOAD)
    kind, body1 = got[b"BODY[1]"]
    assert kind == b"" and base64.b64decode(body1) == PAYLOAD
    size = int(re.search(rb"RFC822.SIZE (\d+)", reply).group(1))
    assert len(got[b"BODY[]"][1]) == size
    assert b'"base64"' in reply.split(b"BODYSTRUCTURE", 1)[1]


def test_binary_append_multipart_binary_part_and_rfc822(raw):
    _select(raw, b"bin2")
    _ok(raw.append(b"bin2", MULTI))
    raw.cmd(b"NOOP")
    reply = _ok(raw.cmd(b"FETCH 1 (BINARY.SIZE[2] BINARY.PEEK[2] BODY.PEEK[2] BINARY.PEEK[1] RFC822 BODY.PEEK[TEXT])"))
    _noNulInPlainLiterals(reply)
    assert b"BINARY.SIZE[2] %d" % len(PAYLOAD2) in reply
    got = {label: (kind, data) for label, kind, data in literals(reply)}
    assert got[b"BINARY[2]"] == (b"~", PAYLOAD2)
    assert base64.b64decode(got[b"BODY[2]"][1]) == PAYLOAD2
    assert got[b"BINARY[1]"] == (b"", b"hello")
    assert b"\r\n--XX--\r\n" in got[b"RFC822"][1]


def test_binary_append_of_clean_text_is_stored_as_sent(raw):
    _select(raw, b"bin3")
    message = b"Subject: clean\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n"
    _ok(raw.append(b"bin3", message))
    raw.cmd(b"NOOP")
    reply = _ok(raw.cmd(b"FETCH 1 BODY.PEEK[]"))
    assert literals(reply) == [(b"BODY[]", b"", message)]


def test_ordinary_append_with_bare_lf_is_still_made_crlf(raw):
    _select(raw, b"bin4")
    _ok(raw.append(b"bin4", b"Subject: lf\nContent-Type: text/plain\n\nline1\nline2\n", binary=False))
    raw.cmd(b"NOOP")
    reply = _ok(raw.cmd(b"FETCH 1 (BINARY.SIZE[1] BODY.PEEK[])"))
    assert b"BINARY.SIZE[1] 14" in reply
    assert literals(reply)[0][2] == b"Subject: lf\r\nContent-Type: text/plain\r\n\r\nline1\r\nline2\r\n"


def test_a_stored_nul_never_goes_out_in_an_ordinary_literal(raw):
    # A NUL in a message stored by other means (here an ordinary literal,
    # which RFC 3501 does not allow to hold one): BODY fetches send 0x80 in
    # its place, BINARY fetches the NUL in a literal8.
    _select(raw, b"bin5")
    body = b"x\x00y\r\n" * 3
    _ok(raw.append(b"bin5", b"Subject: nul\r\nContent-Type: text/plain\r\n\r\n" + body, binary=False))
    raw.cmd(b"NOOP")
    reply = _ok(raw.cmd(b"FETCH 1 (BODY.PEEK[1] BODY.PEEK[] RFC822.TEXT BINARY.PEEK[1] BODY.PEEK[1]<1.3>)"))
    _noNulInPlainLiterals(reply)
    got = {label: (kind, data) for label, kind, data in literals(reply)}
    assert got[b"BODY[1]"] == (b"", body.replace(b"\x00", b"\x80"))
    assert got[b"BINARY[1]"] == (b"~", body)
    assert got[b"BODY[1]<1>"] == (b"", b"\x80y\r")


def test_a_big_stored_nul_is_streamed_without_it(raw):
    _select(raw, b"bin6")
    body = (b"0123456789\x00" * 10000 + b"\r\n") * 20
    _ok(raw.append(b"bin6", b"Subject: big nul\r\n\r\n" + body, binary=False))
    raw.cmd(b"NOOP")
    reply = _ok(raw.cmd(b"FETCH 1 (BODY.PEEK[TEXT] BINARY.PEEK[1])"))
    _noNulInPlainLiterals(reply)
    got = {label: (kind, data) for label, kind, data in literals(reply)}
    assert got[b"BODY[TEXT]"] == (b"", body.replace(b"\x00", b"\x80"))
    assert got[b"BINARY[1]"] == (b"~", body)


def test_a_big_binary_append(raw):
    _select(raw, b"bin7")
    payload = bytes(range(256)) * 4000 + b"\n\x00\r"
    message = (b"Subject: big binary\r\nContent-Type: application/octet-stream\r\n"
               b"Content-Transfer-Encoding: binary\r\n\r\n" + payload)
    _ok(raw.append(b"bin7", message))
    raw.cmd(b"NOOP")
    reply = _ok(raw.cmd(b"FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1] BODY.PEEK[])"))
    _noNulInPlainLiterals(reply)
    assert b"BINARY.SIZE[1] %d" % len(payload) in reply
    got = {label: (kind, data) for label, kind, data in literals(reply)}
    assert got[b"BINARY[1]"] == (b"~", payload)


# In process: the converter itself.


def _convert(data):
    out = encodeBinaryParts(io.BytesIO(data))
    return out.read()


def _parts(data):
    root = mime.scan(io.BytesIO(data))
    leaves = []

    def walk(p):
        if p.children is not None:
            for c in p.children:
                walk(c)
        elif p.message is not None:
            walk(p.message)
        else:
            leaves.append(p)

    walk(root)
    return [(p.encoding, b"".join(mime.decodedChunks(io.BytesIO(data), p.bodyStart, p.end, p.encoding)))
            for p in leaves]


def test_converter_leaves_clean_messages_alone():
    f = io.BytesIO(b"Subject: x\r\n\r\nhello\r\n")
    assert encodeBinaryParts(f) is f and f.tell() == 0
    qp = b"Subject: x\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\na=00b\r\n"
    f = io.BytesIO(qp)
    assert encodeBinaryParts(f) is f


def test_converter_encodes_what_could_not_be_kept():
    message = (b"Subject: t\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
               b"--XX\r\nContent-Type: text/plain\r\n\r\nclean\r\n"
               b"--XX\r\nContent-Type: text/plain\r\n\r\nbare\nlf\r\n"
               b"--XX\r\nContent-Type: application/x\r\nContent-Transfer-Encoding: BINARY (c)\r\n  \r\n\r\n\xff\xfe\r\n"
               b"--XX\r\nContent-Type: message/rfc822\r\n\r\nSubject: in\r\nContent-Transfer-Encoding: 8bit\r\n\r\nx\x00y\r\n"
               b"--XX\r\nContent-Type: text/plain\r\n\r\nbare\rcr\r\n"
               b"--XX--\r\n")
    out = _convert(message)
    assert b"\x00" not in out and b"\xff" not in out
    assert out.count(b"Content-Transfer-Encoding: base64\r\n") == 4
    assert b"BINARY" not in out
    assert _parts(out) == [("7bit", b"clean"), ("base64", b"bare\nlf"), ("base64", b"\xff\xfe"),
                           ("base64", b"x\x00y"), ("base64", b"bare\rcr")]


def test_converter_long_part_and_chunk_edges():
    for size in (0, 1, 56, 57, 58, 57 * 1024, 57 * 1024 + 1, 200001):
        payload = (bytes(range(256)) * (size // 256 + 1))[:size]
        message = b"Subject: s\nContent-Transfer-Encoding: binary\n\n" + payload
        out = _convert(message)
        head, _, body = out.partition(b"\n\n")
        assert b"base64" in head or size == 0
        if size:
            assert base64.b64decode(body) == payload
            assert all(len(line) <= 76 for line in body.split(b"\r\n"))
    # A CR at the end of one read and its LF at the start of the next are one CRLF.
    text = b"x" * (65535) + b"\r\n" + b"y\r\n"
    f = io.BytesIO(b"Subject: s\r\n\r\n" + text)
    assert encodeBinaryParts(f) is f


def test_converter_leaves_a_message_past_the_part_cap_alone():
    parts = b"".join(b"--XX\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00%d\r\n" % i for i in range(5))
    message = b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n" + parts + b"--XX--\r\n"
    f = io.BytesIO(message)
    assert encodeBinaryParts(f, maxParts=4) is f
    assert encodeBinaryParts(io.BytesIO(message), maxParts=100).read().count(b"base64") == 5


_ENCODINGS = ["binary", "8bit", "7bit", None]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_ENCODINGS),
                          st.binary(max_size=300).map(lambda b: b.replace(b"-", b"_"))),
                min_size=1, max_size=4))
def test_converter_round_trip(parts):
    """Whatever the parts hold, each comes back with the bytes sent (encoded or not), and nothing else moves."""
    body = b""
    for encoding, payload in parts:
        field = b"Content-Transfer-Encoding: %s\r\n" % encoding.encode() if encoding else b""
        body += b"--XX\r\nContent-Type: application/octet-stream\r\n" + field + b"\r\n" + payload + b"\r\n"
    message = b"Subject: p\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n" + body + b"--XX--\r\n"
    out = _convert(message)
    got = _parts(out)
    assert [data for _, data in got] == [payload for _, payload in parts]
    for (encoding, payload), (stored, _) in zip(parts, got):
        kept = b"\x00" not in payload and payload.count(b"\n") == payload.count(b"\r\n") == payload.count(b"\r")
        converted = payload and (encoding == "binary" or not kept)
        assert stored == ("base64" if converted else (encoding or "7bit"))
    assert b"\x00" not in out


def test_converter_does_not_open_a_container_past_the_depth_cap():
    inner = b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: binary\r\n\r\nSubject: in\r\n\r\n\x00x\r\n"
    f = io.BytesIO(inner)
    assert encodeBinaryParts(f, maxDepth=1) is f
    assert b"base64" in encodeBinaryParts(io.BytesIO(inner)).read()

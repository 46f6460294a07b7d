"""mailnet.mail.lines: CRLF conversion and dot-stuffing, against the copies they replaced."""

import io
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailnet.mail import lines
from mailnet.mail.lines import DotStuffer
from tests.mail import _reference as old

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Message-like bytes: line endings of every kind, dots, and other bytes.
texty = st.lists(st.sampled_from([b"\r\n", b"\n", b"\r", b".", b"..", b"a", b"\r\n.", b"\n.", b"x" * 7]),
                 max_size=40).map(b"".join)
sizes = st.lists(st.integers(1, 9), min_size=1, max_size=6)


def _split(data, sizes):
    chunks, i, k = [], 0, 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        chunks.append(data[i:i + n])
        i += n
        k += 1
    return chunks


@FUZZ
@given(texty, sizes)
def test_dot_stuffer_equals_both_old_copies(data, sizes):
    chunks = _split(data, sizes)
    outputs = []
    for stuffer in (lines.DotStuffer(), old.Pop3DotStuffer(), old.ClientDotStuffer()):
        outputs.append(b"".join(stuffer.feed(c) for c in chunks) + stuffer.end())
    assert outputs[0] == outputs[1] == outputs[2]


def test_dot_stuffer_examples():
    s = lines.DotStuffer()
    assert s.feed(b".a\r\n") + s.feed(b".b\r\n.") + s.feed(b"c") + s.end() == b"..a\r\n..b\r\n..c\r\n.\r\n"
    assert lines.DotStuffer().end() == b".\r\n"


def _unstuff(wire):
    assert wire.endswith(b".\r\n")
    body = wire[:-3]
    return b"\n".join(l[1:] if l.startswith(b".") else l for l in body.split(b"\n"))


@FUZZ
@given(texty, sizes)
def test_dot_stuffing_is_undone_by_the_receiver(data, sizes):
    # RFC 5321 s4.5.2: the receiver drops the first dot of each line.
    data = lines.toCRLF(data)
    s = lines.DotStuffer()
    wire = b"".join(s.feed(c) for c in _split(data, sizes)) + s.end()
    body = _unstuff(wire)
    assert body in (data, data + b"\r\n")


@FUZZ
@given(texty)
def test_to_crlf_leaves_no_bare_lf(data):
    out = lines.toCRLF(data)
    assert out.count(b"\n") == out.count(b"\r\n")
    assert out.replace(b"\r\n", b"\n") == data.replace(b"\r\n", b"\n")


@FUZZ
@given(texty)
def test_to_crlf_equals_the_dsn_copy(data):
    assert lines.toCRLF(data) == re.sub(rb"(?<!\r)\n", b"\r\n", data)


@FUZZ
@given(texty, st.integers(1, 9))
def test_crlf_reader_equals_to_crlf_across_chunks(data, chunk):
    reader = io.BufferedReader(lines.CRLFReader(io.BytesIO(data), chunk=chunk), 4)
    assert reader.read() == lines.toCRLF(data)
    assert lines.openCRLF(io.BytesIO(data)).read() == lines.toCRLF(data)


@FUZZ
@given(texty, st.integers(1, 9))
def test_canonical_file_across_chunks(data, limit):
    saved = lines.SPOOL_LIMIT
    lines.SPOOL_LIMIT = limit
    try:
        f = io.BytesIO(data)
        out = lines.canonicalFile(f)
        assert out.tell() == 0
        assert out.read() == lines.toCRLF(data)
        if data.count(b"\n") == data.count(b"\r\n"):
            assert out is f
    finally:
        lines.SPOOL_LIMIT = saved


# -- Dot-stuffing as the SMTP client sends it (from tests/queue/test_client.py) --


def unstuff(wire):
    assert wire.endswith(b"\r\n.\r\n")
    body = wire[:-3]
    lines = body.split(b"\r\n")
    return b"\r\n".join(l[1:] if l.startswith(b".") else l for l in lines)


@settings(max_examples=200)
@given(st.lists(st.sampled_from([b".", b"..", b"a", b"\r\n", b"\r\n.", b".\r\n", b"x.y"]), max_size=30),
       st.lists(st.integers(1, 7), max_size=10))
def test_stuffing_round_trips_at_any_chunking(parts, cuts):
    message = b"".join(parts) + b"\r\n"
    s = DotStuffer()
    out = b""
    pos = 0
    for cut in cuts:
        out += s.feed(message[pos:pos + cut])
        pos += cut
    out += s.feed(message[pos:]) + s.end()
    assert unstuff(out) == message
    assert b"\r\n.\r\n" not in out[:-5]


def test_stuffing_examples():
    s = DotStuffer()
    assert s.feed(b".start\r\nmid\r\n.\r\n") + s.end() == b"..start\r\nmid\r\n..\r\n.\r\n"
    s = DotStuffer()
    assert s.feed(b"no final newline") + s.end() == b"no final newline\r\n.\r\n"
    s = DotStuffer()
    assert s.feed(b"a\r") + s.feed(b"\n.b\r\n") + s.end() == b"a\r\n..b\r\n.\r\n"


def test_read_header_block_stops_at_the_empty_line_or_the_limit():
    f = io.BytesIO(b"Subject: a\r\n b\r\nFrom: x\r\n\r\nbody\r\n")
    assert lines.readHeaderBlock(f, 1000) == b"Subject: a\r\n b\r\nFrom: x\r\n\r\n"
    assert f.read() == b"body\r\n"
    assert lines.readHeaderBlock(io.BytesIO(b"A: 1\nB: 2\n\nbody"), 1000) == b"A: 1\nB: 2\n\n"
    # A hostile header is read only up to the limit (whole lines).
    assert lines.readHeaderBlock(io.BytesIO(b"X: y\r\n" * 1000), 14) == b"X: y\r\n" * 3
    assert lines.readHeaderBlock(io.BytesIO(b"No: end"), 1000) == b"No: end"

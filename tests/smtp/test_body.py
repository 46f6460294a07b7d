"""BodyReader: end of data, dot-unstuffing, bare CR/LF, long lines, size,
all independent of how the bytes are cut into buffers."""

import pytest
from hypothesis import given, settings, strategies as st

from mailnet.smtp import replies
from mailnet.smtp.parser import BodyReader


def stuff(lines):
    """What a client sends for these lines (RFC 5321 s4.5.2)."""
    return b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n" for l in lines) + b".\r\n"


def read(data, pieces=None, maxLine=1000, maxSize=10**6, dotted=True):
    out = []
    reader = BodyReader(out.append, maxLine, maxSize, dotted)
    rest = None
    cuts = sorted(set(pieces or []))
    start = 0
    for cut in cuts + [len(data)]:
        if cut <= start and cut != len(data):
            continue
        rest = reader.feed(data[start:cut])
        start = cut
        if rest is not None:
            rest += data[start:]
            break
    return b"".join(out), reader.error, rest


def test_simple_and_rest():
    body, error, rest = read(b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n")
    assert (body, error, rest) == (b"Subject: x\r\n\r\nhello\r\n", None, b"QUIT\r\n")


def test_empty_message():
    assert read(b".\r\nNOOP\r\n") == (b"", None, b"NOOP\r\n")


def test_unstuffing():
    assert read(b"..\r\n.x\r\na\r\n...\r\n.\r\n")[0] == b".\r\nx\r\na\r\n..\r\n"


def test_not_finished():
    assert read(b"a\r\n.\r")[2] is None
    assert read(b"a\r\n.")[2] is None


@pytest.mark.parametrize("data", [
    b"a\nb\r\n.\r\n",          # bare LF
    b"a\rb\r\n.\r\n",          # bare CR
    b"a\r\r\n.\r\n",           # CR CR LF
    b"a\r\n.\nMAIL FROM:<x@y>\r\n.\r\n",   # smuggling: <LF>.<LF>... hidden end
    b"a\n.\r\nMAIL FROM:<x@y>\r\n.\r\n",   # smuggling: <LF>.<CR><LF>
    b"a\r\n.\rMAIL FROM:<x@y>\r\n.\r\n",   # smuggling: <CR><LF>.<CR>
])
def test_bare_line_ends_rejected_and_end_is_only_crlf_dot_crlf(data):
    body, error, rest = read(data)
    assert error == replies.DATA_BARE_LINE_END
    assert rest == b""  # everything up to the real end marker was message


def test_long_line():
    ok = b"x" * 998 + b"\r\n"
    assert read(ok + b".\r\n", maxLine=1000)[1] is None
    body, error, rest = read(b"y" * 999 + b"\r\n.\r\nNOOP\r\n", maxLine=1000)
    assert error == replies.DATA_LONG_LINE and rest == b"NOOP\r\n"


def test_long_open_line_across_buffers():
    data = b"z" * 5000 + b"\r\n.\r\nNOOP\r\n"
    body, error, rest = read(data, pieces=range(100, 5000, 100), maxLine=1000)
    assert error == replies.DATA_LONG_LINE and rest == b"NOOP\r\n"


def test_too_big():
    data = b"0123456789\r\n" * 100 + b".\r\nQUIT\r\n"
    body, error, rest = read(data, pieces=range(7, 1300, 13), maxSize=1000)
    assert error == replies.MESSAGE_TOO_BIG and rest == b"QUIT\r\n"
    assert len(body) <= 1000


def test_bdat_mode():
    out = []
    reader = BodyReader(out.append, 1000, 10**6, dotted=False)
    assert reader.feed(b"a\r\n.\r\nb\r") is None
    assert reader.feed(b"\nc") is None
    reader.finish()
    assert (b"".join(out), reader.error) == (b"a\r\n.\r\nb\r\nc", None)


def test_bdat_bare_lf_and_trailing_cr():
    for data in (b"a\nb", b"ab\r"):
        reader = BodyReader(lambda d: None, 1000, 10**6, dotted=False)
        reader.feed(data)
        reader.finish()
        assert reader.error == replies.DATA_BARE_LINE_END


lines = st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")) |
                 st.sampled_from([b".", b"..", b".x", b""]), max_size=30)


@given(lines, st.lists(st.integers(0, 600), max_size=10), st.binary(max_size=20))
@settings(max_examples=200, deadline=None)
def test_fuzz_any_cutting_gives_the_same_message(body_lines, cuts, after):
    data = stuff(body_lines) + after
    body, error, rest = read(data, cuts)
    assert error is None
    assert body == b"".join(l + b"\r\n" for l in body_lines)
    assert rest == after


@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=8))
@settings(max_examples=300, deadline=None)
def test_fuzz_garbage_never_raises(data, cuts):
    body, error, rest = read(data + b"\r\n.\r\n", cuts, maxLine=80, maxSize=300)
    assert rest is not None
    if error is None:
        # what got through is clean: CRLF only, no line over the limit
        assert body.count(b"\n") == body.count(b"\r\n") == body.count(b"\r")
        assert all(len(line) <= 78 for line in body.split(b"\r\n"))
        assert len(body) <= 300

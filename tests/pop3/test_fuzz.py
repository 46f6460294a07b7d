"""Hypothesis: the parser and session never crash and always answer sanely."""

import io

from hypothesis import HealthCheck, given, settings, strategies as st

from mailnet.mail.lines import DotStuffer
from mailnet.pop3 import protocol as p

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

keywords = st.sampled_from([b"USER", b"PASS", b"AUTH", b"CAPA", b"STLS", b"QUIT", b"STAT", b"LIST", b"UIDL",
                            b"TOP", b"RETR", b"DELE", b"RSET", b"NOOP", b"APOP", b"user", b"Retr", b"XYZ"])
args = st.lists(st.one_of(st.integers(-3, 12).map(lambda n: str(n).encode()), st.binary(max_size=12),
                          st.sampled_from([b"PLAIN", b"=", b"*", b"AGFsaWNlAHB3"])), max_size=3)
commandLines = st.one_of(st.builds(lambda k, a: b" ".join([k] + a), keywords, args), st.binary(max_size=40))


@SETTINGS
@given(st.binary(max_size=300))
def test_parse_command_only_raises_command_error(line):
    try:
        c = p.parseCommand(line)
    except p.CommandError as e:
        assert str(e)
    else:
        assert c.name == c.name.upper() and c.name.isascii() and " " not in c.name


@SETTINGS
@given(st.lists(st.binary(max_size=80), max_size=20), st.integers(3, 60))
def test_line_buffer_matches_a_simple_model(chunks, limit):
    buf = p.LineBuffer()
    got = []
    for chunk in chunks:
        buf.feed(chunk)
        while (line := buf.next(limit)) is not None:
            got.append(line)
    data = b"".join(chunks)
    complete = data.split(b"\n")[:-1]
    expected = [p.OVERLONG if len(raw) + 1 > limit else raw.removesuffix(b"\r") for raw in complete]
    assert got == expected
    assert len(buf) <= limit


def check(actions):
    for action in actions:
        if isinstance(action, p.Send):
            data = action.data
            assert data.endswith(b"\r\n")
            assert data.startswith((b"+OK", b"-ERR ", b"+ \r\n"))
            first = data.split(b"\r\n", 1)[0]
            assert len(first) + 2 <= 512
            if data.startswith(b"-ERR"):
                assert data.count(b"\r\n") == 1


@SETTINGS
@given(st.lists(commandLines, max_size=25), st.booleans(), st.booleans(),
       st.lists(st.tuples(st.integers(1, 10**6), st.integers(0, 10**7)), max_size=6, unique_by=lambda e: e[0]))
def test_session_survives_any_command_sequence(lines, secure, plaintext, entries):
    s = p.POP3Session(p.POP3Settings(secure=secure, allowPlaintext=plaintext, maxAuthFailures=3))
    drop = p.Maildrop(sorted(entries), 12345)
    for line in lines:
        actions = s.receive(line)
        check(actions)
        for action in actions:
            if isinstance(action, p.Login):
                assert s.secure or plaintext
                good = action.password == b"pw"
                check(s.loginDone(action.username, drop) if good else s.loginFailed("auth"))
            elif isinstance(action, p.StartTLS):
                assert not s.secure
                s.tlsStarted()
                secure = True
            elif isinstance(action, p.Retrieve):
                assert s.state is p.State.TRANSACTION
                assert drop.entries[action.number - 1].uid == action.uid
            elif isinstance(action, p.Update):
                assert set(action.uids) <= {e.uid for e in drop.entries}
                check(s.updateDone(len(action.uids)))
        count, octets = drop.stat()
        assert count == len(drop.entries) - len(drop.deleted | drop.gone)
    assert s.authFailures <= 3


def unstuff(data):
    """A client's reading of a multi-line response body."""
    lines = data.split(b"\r\n")
    assert lines[-1] == b"" and lines[-2] == b"."
    out = []
    for line in lines[:-2]:
        out.append(line[1:] if line.startswith(b".") else line)
    return b"\r\n".join(out) + b"\r\n" if out else b""


crlfText = st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")), max_size=12).map(
    lambda ls: b"".join(line + b"\r\n" for line in ls))


@SETTINGS
@given(crlfText, st.lists(st.integers(1, 50), max_size=10))
def test_dot_stuffing_round_trips_in_any_chunking(message, cuts):
    stuffer = DotStuffer()
    out, pos = [], 0
    for cut in cuts:
        out.append(stuffer.feed(message[pos:pos + cut]))
        pos += cut
    out.append(stuffer.feed(message[pos:]))
    out.append(stuffer.end())
    data = b"".join(out)
    assert b"\r\n.\r\n" not in data[:-3] and not data[:-3].startswith(b".\r\n")
    assert unstuff(data) == message


headerText = st.lists(st.binary(min_size=1, max_size=30).map(lambda b: b.replace(b"\r", b"x").replace(b"\n", b"x")),
                      max_size=8).map(lambda ls: b"".join(line + b"\r\n" for line in ls))


@SETTINGS
@given(headerText, crlfText, st.integers(0, 15), st.integers(1, 40))
def test_top_is_a_prefix_with_the_right_lines(headers, body, n, chunk):
    message = headers + b"\r\n" + body
    got = b"".join(p.topChunks(io.BytesIO(message), n, chunk))
    bodyLines = body.split(b"\r\n")[:-1]
    assert got == headers + b"\r\n" + b"".join(line + b"\r\n" for line in bodyLines[:n])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(commandLines.filter(lambda l: b"\n" not in l and not l.upper().startswith((b"QUIT", b"STLS"))),
                max_size=15), st.integers(1, 30))
def test_server_survives_any_input_in_any_chunking(tmp_path_factory, lines, cut):
    """Random commands after login, split anywhere: no internal error, no hang."""
    from tests.pop3.helpers import Client, deliver, makeContext

    ctx = test_server_survives_any_input_in_any_chunking.ctx
    if ctx is None:
        ctx = test_server_survives_any_input_in_any_chunking.ctx = makeContext(tmp_path_factory.mktemp("fuzz"))
        deliver(ctx.store, "alice@example.test", b"Subject: a\r\n\r\n.body\r\n")
    c = Client(ctx)
    c.login()
    data = b"".join(line + b"\r\n" for line in lines) + b"NOOP\r\n"
    out = b""
    for i in range(0, len(data), cut):
        out += c.send(data[i:i + cut])
    assert b"Internal error" not in out
    assert out.endswith(b"+OK\r\n") or c.closed
    c.drop()


test_server_survives_any_input_in_any_chunking.ctx = None

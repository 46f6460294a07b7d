"""
The sans-I/O reader and parser, and the serializer: examples from the RFCs,
every limit, and Hypothesis fuzzing (random bytes never crash the reader;
any chunking of the input gives the same commands; generated commands
survive serialize -> parse).
"""

import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailnet.imap import serialize
from mailnet.imap.parser import (
    STAR,
    CommandReader,
    Frame,
    FrameError,
    Literal,
    NeedContinuation,
    ParseError,
    RawLine,
    SeqSet,
    parseCommand,
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def events(reader):
    out = []
    while True:
        e = reader.next()
        if e is None:
            return out
        out.append(e)


def frames(data, **kw):
    r = CommandReader(**kw)
    r.feed(data)
    return events(r)


# Framing


def test_simple_lines_and_crlf_or_lf():
    evs = frames(b"a1 NOOP\r\na2 CAPABILITY\n")
    assert [type(e) for e in evs] == [Frame, Frame]
    assert evs[0].tag == "a1" and evs[0].parts == [b"a1 NOOP"]
    assert evs[1].parts == [b"a2 CAPABILITY"]


def test_synchronizing_literal_asks_for_continuation_then_waits():
    r = CommandReader()
    r.feed(b"a LOGIN {5}\r\n")
    e = r.next()
    assert isinstance(e, NeedContinuation) and e.size == 5
    assert r.next() is None
    r.feed(b"ali")
    assert r.next() is None
    r.feed(b"ce pw\r\n")
    e = r.next()
    assert isinstance(e, Frame)
    cmd = parseCommand(e)
    assert (cmd.user, cmd.password) == (b"alice", b"pw")


def test_non_synchronizing_literal_needs_no_continuation():
    evs = frames(b"a LOGIN {5+}\r\nalice {2+}\r\npw\r\n")
    assert len(evs) == 1 and isinstance(evs[0], Frame)
    cmd = parseCommand(evs[0])
    assert cmd.password == b"pw"


def test_literal_may_contain_crlf_and_braces():
    evs = frames(b'a SEARCH TEXT {8+}\r\n{1}\r\nx\r\n\r\n')
    cmd = parseCommand(evs[0])
    assert cmd.keys == ("TEXT", b"{1}\r\nx\r\n")


def test_line_too_long_is_bad_and_session_continues():
    evs = frames(b"a1 NOOP " + b"x" * 3000 + b"\r\na2 NOOP\r\n", maxLine=1000)
    assert isinstance(evs[0], FrameError) and evs[0].tag == "a1" and evs[0].code == b"TOOBIG"
    assert isinstance(evs[1], Frame) and evs[1].tag == "a2"


def test_too_long_line_arriving_in_pieces_is_dropped_without_buffering():
    r = CommandReader(maxLine=1000)
    r.feed(b"a1 NOOP ")
    for _ in range(100):
        r.feed(b"y" * 1000)
        assert r.next() is None
        assert r.buffered() < 2000
    r.feed(b"\r\na2 NOOP\r\n")
    evs = events(r)
    assert isinstance(evs[0], FrameError) and evs[0].tag == "a1"
    assert evs[1].tag == "a2"


def test_sync_literal_over_limit_is_refused_without_continuation():
    evs = frames(b"a APPEND INBOX {5000}\r\nb NOOP\r\n", maxLiteral=1000)
    assert isinstance(evs[0], FrameError) and evs[0].tag == "a" and evs[0].code == b"TOOBIG"
    assert isinstance(evs[1], Frame) and evs[1].tag == "b"


def test_nonsync_literal_over_limit_is_skipped():
    # RFC 7888 s4: the client sends it anyway; the server must not run it as commands.
    evs = frames(b"a APPEND INBOX {20+}\r\nc DELETE INBOX\r\nxxxxxx\r\nb NOOP\r\n", maxLiteral=10)
    assert isinstance(evs[0], FrameError) and evs[0].tag == "a"
    assert [e.tag for e in evs[1:]] == ["b"]


def test_nonsync_literal_too_big_to_skip_is_fatal():
    # Skipping 10**20 bytes would swallow the session: BYE instead.
    r = CommandReader(maxLiteral=10, maxCommandLiterals=1000)
    r.feed(b"a APPEND INBOX {99999999999999999999+}\r\nb NOOP\r\n")
    ev = r.next()
    assert isinstance(ev, FrameError) and ev.fatal and ev.code == b"TOOBIG"
    assert r.buffered() == 0 and not r.midCommand
    # up to the most a command may carry, it is still read and dropped
    evs = frames(b"a APPEND INBOX {1000+}\r\n" + b"x" * 1000 + b"\r\nb NOOP\r\n", maxLiteral=10,
                 maxCommandLiterals=1000)
    assert isinstance(evs[0], FrameError) and not evs[0].fatal and evs[1].tag == "b"


def test_big_literal_goes_to_a_file():
    data = b"x" * (300 * 1024)
    evs = frames(b"a APPEND INBOX {%d+}\r\n" % len(data) + data + b"\r\n")
    cmd = parseCommand(evs[0])
    assert cmd.message._file is not None
    assert cmd.message.open().read() == data
    cmd.close()


def test_literal8_is_accepted():
    evs = frames(b"a APPEND INBOX ~{3+}\r\nabc\r\n")
    cmd = parseCommand(evs[0])
    assert cmd.message.binary and cmd.message.bytes() == b"abc"


def test_raw_mode_and_clear():
    r = CommandReader()
    r.feed(b"DONE\r\na NOOP\r\n")
    r.raw = True
    e = r.next()
    assert isinstance(e, RawLine) and e.line == b"DONE"
    r.raw = False
    r.feed(b"b NOOP\r\n")
    r.clear()
    assert r.next() is None and r.buffered() == 0


# Parsing


@pytest.mark.parametrize("line, name, fields", [
    (b"a CAPABILITY", "CAPABILITY", {}),
    (b'a LOGIN "al\\"ice" pw', "LOGIN", {"user": b'al"ice', "password": b"pw"}),
    (b"a AUTHENTICATE PLAIN AGFsaWNlAHB3", "AUTHENTICATE", {"mechanism": "PLAIN", "initial": b"AGFsaWNlAHB3"}),
    (b"a ENABLE CONDSTORE qresync", "ENABLE", {"capabilities": ["CONDSTORE", "QRESYNC"]}),
    (b"a SELECT inbox (CONDSTORE)", "SELECT", {"mailbox": b"inbox", "condstore": True, "qresync": None}),
    (b"a RENAME a b", "RENAME", {"old": b"a", "new": b"b"}),
    (b'a STATUS "x y" (MESSAGES UIDNEXT)', "STATUS", {"mailbox": b"x y", "items": ["MESSAGES", "UIDNEXT"]}),
    (b"a UID EXPUNGE 3:5", "EXPUNGE", {"seqset": SeqSet([(3, 5)])}),
    (b"a COPY 2:* Trash", "COPY", {"seqset": SeqSet([(2, STAR)]), "mailbox": b"Trash"}),
])
def test_commands(line, name, fields):
    cmd = parseCommand(line)
    assert cmd.tag == "a" and cmd.name == name
    for k, v in fields.items():
        assert getattr(cmd, k) == v


def test_fetch_items_and_macros():
    cmd = parseCommand(b"a FETCH 1:3,7 (UID BODY.PEEK[HEADER.FIELDS (Subject From)]<0.1024> BINARY.PEEK[1.2] BODY[2.MIME] RFC822.SIZE)")
    names = [a.name for a in cmd.atts]
    assert names == ["UID", "BODY[]", "BINARY[]", "BODY[]", "RFC822.SIZE"]
    assert cmd.atts[1].peek and cmd.atts[1].partial == (0, 1024)
    assert cmd.atts[1].section.spec() == b"HEADER.FIELDS (Subject From)"
    assert cmd.atts[2].section.part == (1, 2) and cmd.atts[2].peek
    assert cmd.atts[3].section.text == "MIME"
    cmd = parseCommand(b"a FETCH 1 FULL")
    assert [a.name for a in cmd.atts] == ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"]
    cmd = parseCommand(b"a UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)")
    assert cmd.uid and cmd.changedSince == 12345 and cmd.vanished


def test_search_program():
    cmd = parseCommand(b'a UID SEARCH RETURN (MIN COUNT) CHARSET UTF-8 OR (FROM x SEEN) NOT 1:3 '
                       b'HEADER X-Spam yes ON 5-Mar-2024 LARGER 10 KEYWORD $Label MODSEQ 5 UID $')
    assert cmd.returns == ["MIN", "COUNT"] and cmd.charset == "UTF-8"
    op, keys = cmd.keys
    assert op == "AND"
    assert keys[0] == ("OR", ("AND", [("ADDRESS", b"From", b"x"), ("FLAG", "\\Seen", True)]), ("NOT", ("SEQ", SeqSet([(1, 3)]))))
    assert keys[1] == ("HEADER", b"X-Spam", b"yes")
    assert keys[2] == ("ON", datetime.date(2024, 3, 5))
    assert keys[3:] == [("LARGER", 10), ("FLAG", "$Label", True), ("MODSEQ", 5), ("UID", SeqSet([], saved=True))]


def test_store_and_append():
    cmd = parseCommand(b"a UID STORE 1:* (UNCHANGEDSINCE 7) -FLAGS.SILENT (\\seen $Junk)")
    assert (cmd.mode, cmd.silent, cmd.flags, cmd.unchangedSince) == ("remove", True, ["\\Seen", "$Junk"], 7)
    cmd = parseCommand([b'a APPEND Sent (\\Seen) " 7-Feb-2024 10:11:12 +0100" ', _lit(b"msg"), b""])
    assert cmd.flags == ["\\Seen"] and cmd.date == 1707297072 and cmd.message.bytes() == b"msg"


def _lit(data):
    lit = Literal(len(data))
    lit._write(data)
    return lit


def test_list_extended():
    cmd = parseCommand(b'a LIST (SUBSCRIBED RECURSIVEMATCH) "" ("INBOX" %) RETURN (CHILDREN STATUS (MESSAGES))')
    assert cmd.selection == ["SUBSCRIBED", "RECURSIVEMATCH"] and cmd.patterns == [b"INBOX", b"%"]
    assert cmd.returns == ["CHILDREN", "STATUS"] and cmd.statusItems == ["MESSAGES"] and cmd.extended


@pytest.mark.parametrize("line, message", [
    (b"", "tag"),
    (b"a", "space"),
    (b"a FROB", "Unknown command"),
    (b"a FETCH", "space"),
    (b"a FETCH 0 FLAGS", "sequence set"),
    (b"a FETCH 1 (FLAGS", "Expected"),
    (b"a FETCH 1 BODY[9.FOO]", "Unknown section"),
    (b"a FETCH 1 (FLAGS) (VANISHED)", "VANISHED"),
    (b"a LOGIN alice", "space"),
    (b'a LOGIN "unterminated', "Unterminated"),
    # RFC 9051 s9: QUOTED-CHAR excludes NUL and CR; UTF-8 must be well formed
    (b'a LOGIN "al\x00ice" "pw"', "NUL"),
    (b'a LOGIN alice "p\rw"', "CR"),
    (b'a SELECT "\xc3\x28"', "UTF-8"),
    (b"a SEARCH FROB", "Unknown search key"),
    (b"a SEARCH ON 31-Feb-2024", "valid date"),
    (b"a STORE 1 FLAGZ (x)", "FLAGS"),
    (b"a UID FROB 1", "UID must be followed"),
    (b"a NOOP extra", "Unexpected"),
    (b"a SEARCH " + b"(" * 60 + b"ALL" + b")" * 60, "nested"),
])
def test_bad_commands(line, message):
    with pytest.raises(ParseError) as info:
        parseCommand(line)
    assert message.lower() in str(info.value).lower()


def test_bad_command_keeps_its_tag():
    with pytest.raises(ParseError) as info:
        parseCommand(b"x17 FETCH 1 (BOGUS)")
    assert info.value.tag == "x17" and info.value.name == "FETCH"


# Sequence sets


def test_seqset_resolve():
    assert SeqSet([(1, STAR)]).resolve(5) == [(1, 5)]
    assert SeqSet([(7, STAR)]).resolve(5) == [(5, 7)]  # RFC 3501: n:* with n > * means *:n
    assert SeqSet([(3, 4), (1, 2), (9, 9)]).resolve(10) == [(1, 4), (9, 9)]
    assert SeqSet([(1, STAR)]).resolve(0) == []


@given(st.lists(st.integers(1, 500), max_size=60))
@FUZZ
def test_seqset_format_parse_roundtrip(numbers):
    if not numbers:
        return
    text = serialize.seqset(numbers)
    cmd = parseCommand(b"a UID EXPUNGE " + text)
    got = set()
    for lo, hi in cmd.seqset.resolve(1000):
        got.update(range(lo, hi + 1))
    assert got == set(numbers)


# Modified UTF-7 (RFC 3501 s5.1.3)


@pytest.mark.parametrize("name, encoded", [
    ("INBOX", b"INBOX"),
    ("Entw\u00fcrfe", b"Entw&APw-rfe"),
    ("~peter/mail/\u53f0\u5317/\u65e5\u672c\u8a9e", b"~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
    ("A&B", b"A&-B"),
    ("\U0001F600", b"&2D3eAA-"),
])
def test_mutf7_examples(name, encoded):
    assert serialize.encodeMailbox(name) == encoded
    assert serialize.decodeMailbox(encoded) == name


@pytest.mark.parametrize("bad", [b"&Jjo!", b"&U,BTFw-&ZeVnLIqe-", b"\xc3\xa9", b"&AGE-", b"&A-"])
def test_mutf7_rejects_non_canonical(bad):
    with pytest.raises(ValueError):
        serialize.decodeMailbox(bad)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30))
@FUZZ
def test_mutf7_roundtrip(name):
    encoded = serialize.encodeMailbox(name)
    assert encoded.isascii()
    assert serialize.decodeMailbox(encoded) == name


# Serializer


def test_string_chooses_quoted_or_literal():
    assert serialize.string(b'a"b\\c') == b'"a\\"b\\\\c"'
    assert serialize.string(b"line\r\nbreak") == b"{11}\r\nline\r\nbreak"
    assert serialize.string("caf\u00e9".encode()) == b"{5}\r\ncaf\xc3\xa9"
    assert serialize.string("caf\u00e9".encode(), utf8=True) == b'"caf\xc3\xa9"'
    assert serialize.astring(b"INBOX") == b"INBOX"
    assert serialize.astring(b"NIL") == b'"NIL"'
    assert serialize.astring(b"a b") == b'"a b"'


@given(st.binary(max_size=200))
@FUZZ
def test_string_parses_back(value):
    # A serialized string, sent back as a LOGIN argument, is the same value.
    wire = serialize.string(value)
    if wire.startswith(b"{"):
        header, _, data = wire.partition(b"\r\n")
        parts = [b"a LOGIN " + header[:-1] + b"+}", _lit(data), b" x"]
        parts[0] = b"a LOGIN "
        parts = [b"a LOGIN ", _lit(value), b" x"]
    else:
        parts = [b"a LOGIN " + wire + b" x"]
    assert parseCommand(parts).user == value


# Fuzzing the reader and parser


@given(st.binary(max_size=400))
@FUZZ
def test_random_bytes_never_crash(data):
    r = CommandReader(maxLine=1000, maxLiteral=100)
    r.feed(data)
    for _ in range(1000):
        e = r.next()
        if e is None:
            break
        if isinstance(e, Frame):
            try:
                cmd = parseCommand(e)
            except ParseError:
                continue
            cmd.close()
    assert r.buffered() <= len(data)


_atoms = st.sampled_from([b"NOOP", b"CAPABILITY", b"SELECT INBOX", b"FETCH 1:* (FLAGS UID)", b"UID SEARCH ALL",
                          b"STORE 1 +FLAGS (\\Seen)", b"LIST \"\" *", b"STATUS INBOX (MESSAGES)", b"EXPUNGE"])


@st.composite
def command_streams(draw):
    """A stream of valid commands, some with literals, and the expected commands."""
    out = b""
    expected = []
    for i in range(draw(st.integers(1, 6))):
        tag = b"t%d" % i
        if draw(st.booleans()):
            value = draw(st.binary(max_size=40))
            plus = draw(st.booleans())
            out += tag + b" LOGIN {%d%s}\r\n" % (len(value), b"+" if plus else b"") + value + b" pw\r\n"
            expected.append(("LOGIN", value))
        else:
            atom = draw(_atoms)
            out += tag + b" " + atom + b"\r\n"
            expected.append((parseCommand(b"x " + atom).name, None))
    return out, expected


@given(command_streams(), st.lists(st.integers(1, 50), max_size=20))
@FUZZ
def test_any_chunking_gives_the_same_commands(stream, cuts):
    data, expected = stream
    r = CommandReader()
    got = []
    pos = 0
    chunks = []
    for c in cuts:
        chunks.append(data[pos:pos + c])
        pos += c
    chunks.append(data[pos:])
    for chunk in chunks:
        r.feed(chunk)
        for e in events(r):
            if isinstance(e, Frame):
                cmd = parseCommand(e)
                got.append((cmd.name, getattr(cmd, "user", None)))
    assert got == expected


@given(st.binary(min_size=1, max_size=60))
@FUZZ
def test_fuzzed_fetch_and_search_arguments(arg):
    for prefix in (b"a FETCH 1 ", b"a UID SEARCH ", b"a STORE 1 +FLAGS ", b"a LIST "):
        try:
            parseCommand(prefix + arg.replace(b"\r", b"").replace(b"\n", b""))
        except ParseError:
            pass


def test_structure_cache_is_bounded_by_bytes():
    import io

    from mailnet.imap import fetch

    cache = fetch.StructureCache(size=1000, maxBytes=100000)
    for uid in range(100):
        root = fetch.scan(io.BytesIO(b"Subject: " + b"x" * 5000 + b"\r\n\r\nbody\r\n"))
        cache.put(("u", "INBOX", 1, uid), fetch.Structure(root))
    assert cache.bytes <= 100000 and 10 <= len(cache) < 25
    assert cache.get(("u", "INBOX", 1, 99)) is not None and cache.get(("u", "INBOX", 1, 0)) is None

"""The sans-I/O layer: line splitting, command parsing, the session state
machine, dot-stuffing and TOP, without any transport."""

import base64
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies

from mailnet.mail.lines import DotStuffer
from mailnet.pop3 import protocol as p


def sent(actions):
    return b"".join(a.data for a in actions if isinstance(a, p.Send))


def session(**kw):
    kw.setdefault("tlsAvailable", True)
    return p.POP3Session(p.POP3Settings(**kw))


def loggedIn(entries=((1, 100), (2, 200), (5, 50)), uidValidity=7, **kw):
    s = session(secure=True, **kw)
    s.receive(b"USER alice@example.test")
    [auth] = s.receive(b"PASS pw")
    assert isinstance(auth, p.Login)
    s.loginDone("alice@example.test", p.Maildrop(entries, uidValidity))
    return s


# LineBuffer


def lines(buf, limit=255):
    out = []
    while (line := buf.next(limit)) is not None:
        out.append(line)
    return out


def test_lines_split_on_crlf_and_bare_lf():
    buf = p.LineBuffer()
    buf.feed(b"USER a\r\nPA")
    assert lines(buf) == [b"USER a"]
    buf.feed(b"SS b\nNOOP\r\n")
    assert lines(buf) == [b"PASS b", b"NOOP"]


def test_overlong_line_is_reported_once_and_the_next_line_is_intact():
    buf = p.LineBuffer()
    buf.feed(b"X" * 300)
    assert lines(buf) == []
    buf.feed(b"Y" * 300 + b"\r\nNOOP\r\n")
    assert lines(buf) == [p.OVERLONG, b"NOOP"]


def test_limit_counts_the_crlf():
    buf = p.LineBuffer()
    buf.feed(b"A" * 253 + b"\r\n" + b"B" * 254 + b"\r\n")
    assert lines(buf) == [b"A" * 253, p.OVERLONG]


def test_clear_forgets_everything():
    buf = p.LineBuffer()
    buf.feed(b"USER evil\r\nPASS x")
    buf.clear()
    buf.feed(b"\r\n")
    assert lines(buf) == [b""]


# parseCommand


def test_parse_command():
    c = p.parseCommand(b"top 1 10")
    assert (c.name, c.args) == ("TOP", (b"1", b"10"))
    assert p.parseCommand(b"PASS secret with spaces ").rest == b"secret with spaces "


@pytest.mark.parametrize("line", [b"", b"   ", b"NO\x00OP", b" NOOP", b"\xffAB", b"NOOP\x1b"])
def test_parse_refuses(line):
    with pytest.raises(p.CommandError):
        p.parseCommand(line)


# AUTHORIZATION


def test_greeting_and_capa_before_tls_hide_plaintext_logins():
    s = session()
    assert s.greeting().startswith(b"+OK ")
    capa = sent(s.receive(b"CAPA"))
    assert capa.startswith(b"+OK") and capa.endswith(b"\r\n.\r\n")
    caps = capa.split(b"\r\n")[1:-2]
    assert caps == [b"TOP", b"UIDL", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING", b"STLS", b"IMPLEMENTATION mailnet"]


def test_capa_after_tls():
    s = session()
    [_, tls] = s.receive(b"STLS")
    assert isinstance(tls, p.StartTLS)
    s.tlsStarted()
    caps = sent(s.receive(b"CAPA")).split(b"\r\n")[1:-2]
    assert caps == [b"TOP", b"UIDL", b"USER", b"SASL PLAIN", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING",
                    b"IMPLEMENTATION mailnet"]
    assert sent(s.receive(b"STLS")).startswith(b"-ERR")


def test_capa_with_allow_plaintext_lists_logins_and_stls():
    caps = sent(session(allowPlaintext=True).receive(b"CAPA")).split(b"\r\n")[1:-2]
    assert b"USER" in caps and b"SASL PLAIN" in caps and b"STLS" in caps


def test_passwords_refused_before_tls():
    s = session()
    for line in (b"USER alice", b"PASS x", b"AUTH PLAIN AGFsaWNlAHB3"):
        out = sent(s.receive(line))
        assert out.startswith(b"-ERR [AUTH] Plaintext authentication disallowed"), out
    assert s.state is p.State.AUTHORIZATION


def test_stls_forgets_user():
    s = session()
    s.settings.allowPlaintext = True
    s.receive(b"USER alice")
    s.receive(b"STLS")
    s.tlsStarted()
    assert sent(s.receive(b"PASS pw")) == b"-ERR Send USER first\r\n"


def test_user_pass_login_and_failures_close_at_the_limit():
    s = session(secure=True, maxAuthFailures=2)
    assert sent(s.receive(b"PASS x")).startswith(b"-ERR")
    assert sent(s.receive(b"USER alice")).startswith(b"+OK")
    [auth] = s.receive(b"PASS my secret")
    assert (auth.username, auth.password) == ("alice", b"my secret")
    assert "my secret" not in repr(auth)
    assert sent(s.loginFailed("auth")) == b"-ERR [AUTH] Authentication failed\r\n"
    s.receive(b"USER alice")
    s.receive(b"PASS again")
    out = s.loginFailed("auth")
    assert sent(out).startswith(b"-ERR [AUTH]") and isinstance(out[-1], p.Close)


def test_in_use_and_temp_failures_do_not_count():
    s = session(secure=True, maxAuthFailures=1)
    assert sent(s.loginFailed("in-use")).startswith(b"-ERR [IN-USE] ")
    assert sent(s.loginFailed("temp")).startswith(b"-ERR [SYS/TEMP] ")
    assert s.state is p.State.AUTHORIZATION


def test_auth_plain_initial_response():
    s = session(secure=True)
    [auth] = s.receive(b"AUTH PLAIN " + base64.b64encode(b"\0alice@example.test\0pw"))
    assert (auth.username, auth.password, auth.authzid) == ("alice@example.test", b"pw", "")


def test_auth_plain_with_challenge_and_cancel():
    s = session(secure=True)
    assert sent(s.receive(b"AUTH plain")) == b"+ \r\n"
    assert s.lineLimit > 255
    [auth] = s.receive(base64.b64encode(b"bob\0bob\0pw"))
    assert (auth.username, auth.authzid) == ("bob", "bob")
    s.receive(b"AUTH PLAIN")
    assert sent(s.receive(b"*")) == b"-ERR Authentication cancelled\r\n"
    assert sent(s.receive(b"NOOP")) == b"+OK\r\n"


@pytest.mark.parametrize("response", [b"!!!", base64.b64encode(b"no-nuls"), base64.b64encode(b"\0\0pw"), b"="])
def test_auth_plain_malformed(response):
    s = session(secure=True)
    assert sent(s.receive(b"AUTH PLAIN " + response)).startswith(b"-ERR ")


def test_auth_other_mechanism_and_listing():
    s = session(secure=True)
    assert sent(s.receive(b"AUTH CRAM-MD5")).startswith(b"-ERR Unsupported")
    assert sent(s.receive(b"AUTH")) == b"+OK Supported SASL mechanisms follow\r\nPLAIN\r\n.\r\n"


def test_transaction_commands_before_login():
    s = session(secure=True)
    for cmd in (b"STAT", b"LIST", b"RETR 1", b"DELE 1", b"RSET", b"UIDL", b"TOP 1 1"):
        assert sent(s.receive(cmd)) == b"-ERR Not logged in yet; log in first\r\n"
    assert sent(s.receive(b"XYZZY")) == b"-ERR Unknown command\r\n"


def test_quit_in_authorization():
    s = session()
    out = s.receive(b"QUIT")
    assert sent(out).startswith(b"+OK") and isinstance(out[-1], p.Close)
    assert s.receive(b"NOOP") == []


# TRANSACTION


def test_stat_list_uidl():
    s = loggedIn()
    assert sent(s.receive(b"STAT")) == b"+OK 3 350\r\n"
    assert sent(s.receive(b"LIST")) == b"+OK 3 messages (350 octets)\r\n1 100\r\n2 200\r\n3 50\r\n.\r\n"
    assert sent(s.receive(b"LIST 2")) == b"+OK 2 200\r\n"
    assert sent(s.receive(b"UIDL")) == (b"+OK 3 messages (350 octets)\r\n1 0000000100000007\r\n"
                                        b"2 0000000200000007\r\n3 0000000500000007\r\n.\r\n")
    assert sent(s.receive(b"UIDL 3")) == b"+OK 3 0000000500000007\r\n"


@pytest.mark.parametrize("cmd,text", [
    (b"LIST 0", b"-ERR No such message (there are 3)\r\n"),
    (b"LIST 4", b"-ERR No such message (there are 3)\r\n"),
    (b"LIST -1", b"-ERR Bad message number: expected a positive decimal number\r\n"),
    (b"LIST x", b"-ERR Bad message number: expected a positive decimal number\r\n"),
    (b"LIST 1 2", b"-ERR LIST takes at most one message number\r\n"),
    (b"RETR", b"-ERR RETR takes one message number\r\n"),
    (b"TOP 1", b"-ERR TOP takes a message number and a number of lines\r\n"),
    (b"TOP 1 -2", b"-ERR Bad number of lines: expected a non-negative decimal number\r\n"),
    (b"RSET 1", b"-ERR RSET takes no argument\r\n"),
    (b"USER bob", b"-ERR Already logged in\r\n"),
    (b"STLS", b"-ERR STLS is only allowed before login\r\n"),
])
def test_bad_arguments(cmd, text):
    s = loggedIn()
    assert sent(s.receive(cmd)) == text
    assert sent(s.receive(b"STAT")) == b"+OK 3 350\r\n"


def test_dele_rset_and_deleted_messages():
    s = loggedIn()
    assert sent(s.receive(b"DELE 2")) == b"+OK Message 2 deleted\r\n"
    assert sent(s.receive(b"DELE 2")) == b"-ERR Message 2 is already deleted\r\n"
    assert sent(s.receive(b"RETR 2")) == b"-ERR Message 2 is already deleted\r\n"
    assert sent(s.receive(b"STAT")) == b"+OK 2 150\r\n"
    assert sent(s.receive(b"LIST")) == b"+OK 2 messages (150 octets)\r\n1 100\r\n3 50\r\n.\r\n"
    assert sent(s.receive(b"RSET")) == b"+OK Maildrop has 3 messages (350 octets)\r\n"
    s.receive(b"DELE 1")
    s.receive(b"DELE 3")
    [update] = s.receive(b"QUIT")
    assert isinstance(update, p.Update) and update.uids == [1, 5]
    assert s.receive(b"NOOP") == []
    out = s.updateDone(2)
    assert sent(out) == b"+OK Bye; 2 messages deleted, 1 left\r\n" and isinstance(out[-1], p.Close)


def test_update_failure_says_so():
    s = loggedIn()
    s.receive(b"DELE 1")
    s.receive(b"QUIT")
    assert sent(s.updateDone(None)).startswith(b"-ERR [SYS/TEMP] Some deleted messages were not removed")


def test_retr_and_top_actions():
    s = loggedIn()
    [r] = s.receive(b"RETR 2")
    assert (r.number, r.uid, r.header, r.bodyLines) == (2, 2, b"+OK 200 octets\r\n", None)
    [t] = s.receive(b"TOP 3 0")
    assert (t.uid, t.bodyLines, t.isRetr) == (5, 0, False)


def test_message_gone_elsewhere():
    s = loggedIn()
    [r] = s.receive(b"RETR 1")
    assert sent(s.retrieveFailed(r, gone=True)) == b"-ERR Message 1 was removed by another client\r\n"
    assert sent(s.receive(b"STAT")) == b"+OK 2 250\r\n"
    assert sent(s.receive(b"DELE 1")) == b"-ERR Message 1 was removed by another client\r\n"
    s.messagesGone([5, 99])
    assert sent(s.receive(b"LIST")) == b"+OK 1 messages (200 octets)\r\n2 200\r\n.\r\n"
    [r] = s.receive(b"RETR 2")
    assert sent(s.retrieveFailed(r, gone=False)).startswith(b"-ERR [SYS/TEMP]")


def test_uidl_is_printable_and_short():
    # Dovecot's default format, as Dovecot 2.3 prints it (lower-case hex).
    assert p.makeUIDL(255, 10) == "0000000a000000ff"
    uidl = p.makeUIDL(2**32 - 1, 2**32 - 1)
    assert 1 <= len(uidl) <= 70 and all(0x21 <= ord(c) <= 0x7E for c in uidl)


def test_overlong_replies():
    s = loggedIn()
    assert sent(s.overlong()) == b"-ERR Command line too long (limit 255 octets, RFC 2449 s4)\r\n"
    s = session(secure=True)
    s.receive(b"AUTH PLAIN")
    assert sent(s.overlong()).startswith(b"-ERR Authentication response too long")
    assert not s.saslPending


# Bodies


def stuff(chunks):
    st = DotStuffer()
    return b"".join(st.feed(c) for c in chunks) + st.end()


@pytest.mark.parametrize("message,expected", [
    (b"", b".\r\n"),
    (b"a\r\n", b"a\r\n.\r\n"),
    (b".\r\n", b"..\r\n.\r\n"),
    (b"a\r\n.b\r\n..c\r\n", b"a\r\n..b\r\n...c\r\n.\r\n"),
    (b"no final crlf", b"no final crlf\r\n.\r\n"),
    (b"x\r\n.", b"x\r\n..\r\n.\r\n"),
])
def test_dot_stuffing(message, expected):
    assert stuff([message]) == expected
    # Byte by byte: line starts and the tail carry across chunks.
    assert stuff([message[i:i + 1] for i in range(len(message))]) == expected


def test_top_chunks():
    msg = b"Subject: x\r\nFrom: y\r\n\r\nline1\r\n.line2\r\nline3\r\n"
    assert b"".join(p.topChunks(io.BytesIO(msg), 0)) == b"Subject: x\r\nFrom: y\r\n\r\n"
    assert b"".join(p.topChunks(io.BytesIO(msg), 2)) == b"Subject: x\r\nFrom: y\r\n\r\nline1\r\n.line2\r\n"
    assert b"".join(p.topChunks(io.BytesIO(msg), 99)) == msg
    assert b"".join(p.topChunks(io.BytesIO(b"Subject: only\r\n"), 5)) == b"Subject: only\r\n"
    # Long lines read in small pieces still count as one line.
    long = b"H: " + b"v" * 50 + b"\r\n\r\n" + b"b" * 50 + b"\r\nnext\r\n"
    assert b"".join(p.topChunks(io.BytesIO(long), 1, chunkSize=8)) == long[: long.index(b"next")]


@settings(max_examples=150, deadline=None)
@given(strategies.lists(strategies.sampled_from([b".", b"..", b"\r\n", b"\n", b"\r", b"a", b"\r\n."]), max_size=30).map(b"".join),
       strategies.integers(1, 7))
def test_dot_stuffing_any_chunking(message, size):
    """Every line that starts with "." gets one more, however the message is cut."""
    lines = message.split(b"\n")
    expected = b"\n".join(b"." + line if line[:1] == b"." else line for line in lines)
    expected += b".\r\n" if message[-2:] == b"\r\n" or not message else b"\r\n.\r\n"
    assert stuff([message[i:i + size] for i in range(0, len(message), size)]) == expected

"""
RFC 6855 UTF8=ACCEPT (issue 12, "Missing extensions"): ENABLE in the
authenticated state only, mailbox names in UTF-8 (quoted) once enabled and
modified UTF-7 before, 8-bit header fields in APPEND refused with NO before
ENABLE and kept byte for byte after, the ``UTF8 (~{n})`` APPEND form.
Raw sockets and imaplib against the real server.
"""

from __future__ import annotations

import imaplib
import re

import pytest

from .test_multiappend import Raw

USER, PASSWORD = "alice@example.test", "alice-pw"

UTF8_HEADER = ("From: Jörg Müller <joerg@example.test>\r\nTo: alice@example.test\r\nSubject: Grüße aus Köln\r\n"
               "Message-ID: <utf8-1@example.test>\r\n\r\nHallo\r\n").encode("utf-8")
ASCII_HEADER_8BIT_BODY = "Subject: plain\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nGrüße\r\n".encode("utf-8")


@pytest.fixture
def raw(imap_server):
    c = Raw(imap_server.port("imap")).login()
    yield c
    c.close()


def _tagged(reply):
    return reply.rstrip(b"\r\n").split(b"\r\n")[-1]


def _append(raw, mailbox, data, utf8=False):
    raw.n += 1
    tag = b"t%d" % raw.n
    if utf8:
        raw.sock.sendall(b"%s APPEND %s UTF8 (~{%d+}\r\n%s)\r\n" % (tag, mailbox, len(data), data))
    else:
        raw.sock.sendall(b"%s APPEND %s {%d+}\r\n%s\r\n" % (tag, mailbox, len(data), data))
    return raw.readUntil(tag)


def test_capability(raw):
    assert b" UTF8=ACCEPT" in raw.cmd(b"CAPABILITY")


def test_enable_only_in_authenticated_state(raw):
    raw.cmd(b"SELECT INBOX")
    reply = raw.cmd(b"ENABLE UTF8=ACCEPT")
    assert b" BAD " in _tagged(reply) and b"authenticated state" in reply, reply
    raw.cmd(b"UNSELECT")
    reply = raw.cmd(b"ENABLE UTF8=ACCEPT")
    assert b"* ENABLED UTF8=ACCEPT\r\n" in reply and b" OK " in _tagged(reply), reply
    # RFC 5161: only what this command newly enabled.
    assert b"* ENABLED\r\n" in raw.cmd(b"ENABLE UTF8=ACCEPT")


def test_mailbox_names_utf8_after_enable(imap_server, raw):
    raw.cmd(b"ENABLE UTF8=ACCEPT")
    name = "Grüße/Köln".encode("utf-8")
    assert b" OK " in _tagged(raw.cmd(b'CREATE "' + name + b'"'))
    reply = raw.cmd(b'LIST "" "Gr*"')
    assert b'"/" "' + name + b'"\r\n' in reply, reply
    reply = raw.cmd(b'SELECT "' + name + b'"')
    assert b" OK " in _tagged(reply), reply
    reply = raw.cmd(b'STATUS "' + name + b'" (MESSAGES)')
    assert b'* STATUS "' + name + b'" (MESSAGES 0)' in reply, reply
    # A session that did not enable it sees modified UTF-7, as before.
    other = Raw(imap_server.port("imap")).login()
    try:
        reply = other.cmd(b'LIST "" "Gr*"')
        assert b"Gr&APwA3w-e/K&APY-ln" in reply, reply
        assert "ü".encode() not in reply
    finally:
        other.close()


def test_imaplib_enable_and_names(imap_server):
    c = imaplib.IMAP4("127.0.0.1", imap_server.port("imap"))
    try:
        c.login(USER, PASSWORD)
        typ, data = c.enable("UTF8=ACCEPT")
        assert typ == "OK" and c.utf8_enabled
        assert c.create('"Ĳsselmeer"')[0] == "OK"
        typ, data = c.list('""', '"Ĳ*"')
        assert typ == "OK"
        assert data == ['() "/" "Ĳsselmeer"'.replace("()", "(\\HasNoChildren)").encode("utf-8")], data
        assert c.select('"Ĳsselmeer"')[0] == "OK"
    finally:
        c.logout()


def test_8bit_header_refused_before_enable(raw):
    raw.cmd(b"CREATE Eight")
    reply = _append(raw, b"Eight", UTF8_HEADER)
    assert re.match(rb"t\d+ NO \[CANNOT\] .*8-bit characters in its header", _tagged(reply)), reply
    # 8-bit in the body is fine (8BITMIME), as before.
    assert b" OK " in _tagged(_append(raw, b"Eight", ASCII_HEADER_8BIT_BODY))
    reply = _append(raw, b"Eight", UTF8_HEADER, utf8=True)
    assert re.match(rb"t\d+ NO \[CANNOT\] APPEND UTF8 needs ENABLE", _tagged(reply)), reply
    reply = raw.cmd(b"STATUS Eight (MESSAGES)")
    assert b"(MESSAGES 1)" in reply


def test_8bit_header_kept_after_enable(raw):
    raw.cmd(b"ENABLE UTF8=ACCEPT")
    raw.cmd(b"CREATE Eight2")
    assert b"APPENDUID" in _tagged(_append(raw, b"Eight2", UTF8_HEADER))
    assert b"APPENDUID" in _tagged(_append(raw, b"Eight2", UTF8_HEADER.replace(b"utf8-1", b"utf8-2"), utf8=True))
    raw.cmd(b"SELECT Eight2")
    reply = raw.cmd(b"FETCH 1:2 (BODY.PEEK[])")
    assert reply.count(UTF8_HEADER[:60]) == 2
    assert UTF8_HEADER in reply and UTF8_HEADER.replace(b"utf8-1", b"utf8-2") in reply
    # The header fields as UTF-8 (RFC 6532), not U+FFFD: ENVELOPE byte for
    # byte, SEARCH on the text.
    reply = raw.cmd(b"FETCH 1 (ENVELOPE)")
    assert "Grüße aus Köln".encode() in reply and "Jörg Müller".encode() in reply, reply
    assert "\ufffd".encode() not in reply
    reply = raw.cmd('SEARCH SUBJECT "Grüße"'.encode("utf-8"))
    assert re.search(rb"\* SEARCH 1 2\r\n", reply), reply
    reply = raw.cmd('SEARCH FROM "jörg müller <joerg@"'.encode("utf-8"))
    assert re.search(rb"\* SEARCH 1 2\r\n", reply), reply


def test_utf8_item_forms(raw):
    raw.cmd(b"ENABLE UTF8=ACCEPT")
    raw.cmd(b"CREATE Forms")
    msg = UTF8_HEADER
    # UTF8 needs a literal8.
    raw.n += 1
    raw.sock.sendall(b"t%d APPEND Forms UTF8 ({%d+}\r\n%s)\r\n" % (raw.n, len(msg), msg))
    reply = raw.readUntil(b"t%d" % raw.n)
    assert b" BAD " in _tagged(reply) and b"literal8" in reply, reply
    # Missing ")".
    raw.n += 1
    raw.sock.sendall(b"t%d APPEND Forms UTF8 (~{%d+}\r\n%s\r\n" % (raw.n, len(msg), msg))
    reply = raw.readUntil(b"t%d" % raw.n)
    assert b" BAD " in _tagged(reply), reply
    # MULTIAPPEND mixing both forms, with flags.
    raw.n += 1
    raw.sock.sendall(b"t%d APPEND Forms (\\Seen) UTF8 (~{%d+}\r\n%s) {%d+}\r\n%s\r\n"
                     % (raw.n, len(msg), msg, len(ASCII_HEADER_8BIT_BODY), ASCII_HEADER_8BIT_BODY))
    reply = raw.readUntil(b"t%d" % raw.n)
    assert re.search(rb"OK \[APPENDUID \d+ 1:2\]", reply), reply
    assert b"(MESSAGES 2)" in raw.cmd(b"STATUS Forms (MESSAGES)")


def test_header_string_keeps_raw_bytes():
    from email import policy
    from email.parser import BytesHeaderParser

    from mailnet.mail.headers import decodeHeader, headerString

    m = BytesHeaderParser(policy=policy.compat32).parsebytes(
        "Subject: Grüße\r\nX-Latin: caf".encode() + b"\xe9\r\n\r\n")
    assert headerString(m.get("Subject")) == "Grüße"
    assert headerString(m.get("X-Latin")).encode("utf-8", "surrogateescape") == b"caf\xe9"
    assert decodeHeader(m.get("Subject")) == "grüsse"
    assert headerString("plain") == "plain"


def test_parser_utf8_append_forms():
    from mailnet.imap.parser import Literal, ParseError, parseCommand

    def lit(data, binary):
        m = Literal(len(data), binary)
        m._write(data)
        return m

    cmd = parseCommand([b"a APPEND box (\\Seen) UTF8 (", lit(b"one", True), b") ", lit(b"two", False), b""])
    assert [(m.utf8, m.flags, m.message.bytes()) for m in cmd.messages] == [(True, ["\\Seen"], b"one"),
                                                                          (False, [], b"two")]
    for parts in ([b"a APPEND box UTF8 (", lit(b"x", False), b")"],   # not a literal8
                  [b"a APPEND box UTF8 (", lit(b"x", True), b""],     # no ")"
                  [b"a APPEND box UTF8 ", lit(b"x", True), b""]):     # no "("
        with pytest.raises(ParseError):
            parseCommand(parts)


# RFC 6855 s3 (erratum 4029), s5, and UTF-8 credentials


INTL = ("From: Jörg Müller <joerg@bücher.example>\r\nTo: 用户@例子.test, Plain <plain@example.test>\r\n"
        "Subject: Grüße aus Köln\r\nMessage-ID: <intl-1@example.test>\r\n\r\nHallo\r\n").encode("utf-8")


def _intlMailbox(raw, name):
    raw.cmd(b"ENABLE UTF8=ACCEPT")
    raw.cmd(b"CREATE " + name)
    assert b"APPENDUID" in _tagged(_append(raw, name, INTL))


def test_charset_after_enable_is_bad(raw):
    raw.cmd(b"CREATE Charsets")
    raw.cmd(b"SELECT Charsets")
    # Before ENABLE, a CHARSET is fine.
    assert b" OK " in _tagged(raw.cmd(b"SEARCH CHARSET UTF-8 ALL"))
    raw.cmd(b"UNSELECT")
    raw.cmd(b"ENABLE UTF8=ACCEPT")
    raw.cmd(b"SELECT Charsets")
    for command in (b"SEARCH CHARSET UTF-8 ALL", b"SEARCH CHARSET US-ASCII ALL", b"UID SEARCH CHARSET UTF-8 ALL",
                    b"SORT (SUBJECT) US-ASCII ALL", b"THREAD REFERENCES US-ASCII ALL"):
        reply = raw.cmd(command)
        assert b" BAD " in _tagged(reply) and b"RFC 6855" in reply, (command, reply)
    for command in (b"SEARCH ALL", b"SORT (SUBJECT) UTF-8 ALL", b"THREAD REFERENCES UTF-8 ALL"):
        assert b" OK " in _tagged(raw.cmd(command)), command


def test_legacy_client_gets_a_downgraded_envelope(imap_server, raw):
    """RFC 6855 s5: a client that did not enable UTF8=ACCEPT gets ENVELOPE in ASCII (RFC 6858 s3)."""
    import email.header

    import imapclient

    _intlMailbox(raw, b"Intl")
    c = imapclient.IMAPClient("127.0.0.1", port=imap_server.port("imap"), ssl=False)
    try:
        c.login(USER, PASSWORD)
        c.select_folder("Intl", readonly=True)
        env = c.fetch("1", ["ENVELOPE"])[1][b"ENVELOPE"]
        raw_reply = c._imap.uid("FETCH", "1", "(ENVELOPE)")[1]
    finally:
        c.logout()
    assert all(isinstance(x, bytes) and x.isascii() for part in raw_reply for x in (part if isinstance(part, tuple) else (part,)))

    def decoded(value):
        return str(email.header.make_header(email.header.decode_header(value.decode("ascii"))))

    assert decoded(env.subject) == "Grüße aus Köln"
    sender = env.from_[0]
    assert decoded(sender.name) == "Jörg Müller"
    assert (sender.mailbox, sender.host) == (b"joerg", "bücher.example".encode("idna"))
    # The address with an 8-bit local part: an empty group named by it.
    to = env.to
    assert to[0].mailbox is not None and decoded(to[0].mailbox) == "用户@例子.test" and to[0].host is None
    assert (to[1].mailbox, to[1].host) == (None, None)  # the end of the group
    assert (to[2].name, to[2].mailbox, to[2].host) == (b"Plain", b"plain", b"example.test")
    assert env.message_id == b"<intl-1@example.test>"
    # The session that enabled it gets the UTF-8 as it is.
    raw.cmd(b"EXAMINE Intl")
    reply = raw.cmd(b"FETCH 1 ENVELOPE")
    assert "Grüße aus Köln".encode() in reply and "用户".encode() in reply and "bücher".encode() in reply, reply


def test_utf8_login_and_authenticate(imap_server):
    import base64

    imap_server.addUser("jörg@example.test", "pässwört")
    c = Raw(imap_server.port("imap"))
    try:
        reply = c.cmd('LOGIN "jörg@example.test" "pässwört"'.encode("utf-8"))
        assert b" OK " in _tagged(reply), reply
        c.cmd(b"LOGOUT")
    finally:
        c.sock.close()
    c = Raw(imap_server.port("imap"))
    try:
        user = "jörg@example.test".encode()
        # A literal works the same.
        c.n += 1
        c.sock.sendall(b"t%d LOGIN {%d+}\r\n%s {%d+}\r\n%s\r\n" % (c.n, len(user), user, len("pässwört".encode()),
                                                                    "pässwört".encode()))
        assert b" OK " in _tagged(c.readUntil(b"t%d" % c.n))
    finally:
        c.close()
    c = Raw(imap_server.port("imap"))
    try:
        token = base64.b64encode("\0jörg@example.test\0pässwört".encode())
        reply = c.cmd(b"AUTHENTICATE PLAIN " + token)
        assert b" OK " in _tagged(reply), reply
    finally:
        c.close()
    c = Raw(imap_server.port("imap"))
    try:
        assert b" NO " in _tagged(c.cmd('LOGIN "jörg@example.test" "pässwort"'.encode("utf-8")))
        # Bytes that are not UTF-8 in a quoted string: BAD, and the session goes on.
        assert b" BAD " in _tagged(c.cmd(b'LOGIN "j\xf6rg@example.test" "x"'))
        assert b" OK " in _tagged(c.cmd(b"NOOP"))
    finally:
        c.sock.close()

"""
RFC 4469 CATENATE (issue 12, "Missing extensions"): APPEND of a message
made of TEXT literals and URL parts (RFC 5092 IMAP URLs, relative form,
sections and PARTIAL), alone and in a MULTIAPPEND, ``[BADURL url]`` and
``[TOOBIG]`` storing nothing, a 3 MB part copied byte for byte, and the
``OK`` only once the store has the message.  Raw sockets and imaplib
against the real server; in process for the store's Deferred and the
grammar.
"""

from __future__ import annotations

import imaplib
import re
from urllib.parse import quote

import pytest
from twisted.internet import defer

from mailnet.imap import imapurl
from mailnet.imap.parser import CatPart, Literal, ParseError, parseCommand

from .helpers import World, lines
from .test_multiappend import Raw, _status

USER, PASSWORD = "alice@example.test", "alice-pw"

ORIGINAL = (b"From: Bob <bob@example.test>\r\nTo: alice@example.test\r\nSubject: the original\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"xx\"\r\n\r\n"
            b"preamble\r\n--xx\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nThe text part.\r\n"
            b"--xx\r\nContent-Type: application/octet-stream; name=\"a.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            b"AAECAwQFBgcICQ==\r\n--xx--\r\n")
TEXT_PART = b"The text part."
ATTACHMENT_MIME = b"Content-Type: application/octet-stream; name=\"a.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
ATTACHMENT = b"AAECAwQFBgcICQ=="


class CatRaw(Raw):
    def catenate(self, mailbox, messages, sync=True):
        """
        ``messages``: lists of parts, each ``(b"TEXT", data)``, ``(b"UTF8", data)``
        or ``(b"URL", url)``; a list may start with an options bytes item.
        Synchronizing literals wait for "+" (a refusal before one is the answer).
        """
        self.n += 1
        tag = b"t%d" % self.n
        head = tag + b" APPEND " + mailbox
        for parts in messages:
            if parts and isinstance(parts[0], bytes):
                head += b" " + parts[0]
                parts = parts[1:]
            head += b" CATENATE ("
            for i, (kind, data) in enumerate(parts):
                head += b"" if i == 0 else b" "
                if kind == b"URL":
                    head += b'URL "' + data + b'"'
                    continue
                marker = b"{%d%s}\r\n" % (len(data), b"" if sync else b"+")
                if kind == b"UTF8":
                    head += b"UTF8 (~" + marker
                else:
                    head += b"TEXT " + marker
                self.sock.sendall(head)
                if sync:
                    line = self.f.readline()
                    if not line.startswith(b"+"):
                        return line + (b"" if line.startswith(tag + b" ") else self.readUntil(tag))
                head = data + (b")" if kind == b"UTF8" else b"")
            head += b")"
        self.sock.sendall(head + b"\r\n")
        return self.readUntil(tag)

    def body(self, mailbox, uid):
        self.cmd(b"EXAMINE " + mailbox)
        reply = self.cmd(b"UID FETCH %d BODY.PEEK[]" % uid)
        m = re.search(rb"BODY\[\] \{(\d+)\}\r\n", reply)
        assert m, reply
        return reply[m.end():m.end() + int(m.group(1))]


def _tagged(reply):
    return reply.rstrip(b"\r\n").split(b"\r\n")[-1]


def _appendUid(reply):
    m = re.match(rb"t\d+ OK \[APPENDUID (\d+) (\S+)\]", _tagged(reply))
    assert m, reply
    return int(m.group(1)), m.group(2)


@pytest.fixture
def raw(imap_server):
    c = CatRaw(imap_server.port("imap")).login()
    yield c
    c.close()


@pytest.fixture
def source(raw):
    """A mailbox holding ORIGINAL as UID 1: (name, UIDVALIDITY)."""
    name = b"CatSrc%d" % raw.sock.getsockname()[1]
    raw.cmd(b"CREATE " + name)
    reply = raw.multiappend(name, [(b"", ORIGINAL)])
    validity, uids = _appendUid(reply)
    assert uids == b"1"
    return name, validity


# Real server


def test_capability(raw):
    assert b" CATENATE" in raw.cmd(b"CAPABILITY")


@pytest.mark.parametrize("sync", [True, False])
def test_text_and_url_parts(raw, source, sync):
    name, validity = source
    head = b"From: alice@example.test\r\nSubject: forwarded\r\nMIME-Version: 1.0\r\n" \
           b"Content-Type: multipart/mixed; boundary=\"yy\"\r\n\r\n--yy\r\n"
    middle = b"\r\n--yy\r\n"
    tail = b"\r\n--yy--\r\n"
    base = b"/" + name + b";UIDVALIDITY=%d/;UID=1" % validity
    reply = raw.catenate(b"INBOX", [[
        (b"TEXT", head),
        (b"URL", base + b"/;SECTION=1.MIME"),
        (b"URL", base + b"/;SECTION=1"),
        (b"TEXT", middle),
        (b"URL", b"/" + name + b"/;UID=1/;section=2.mime"),  # no UIDVALIDITY; any case
        (b"URL", base + b"/;SECTION=2"),
        (b"TEXT", tail),
    ]], sync=sync)
    _, uid = _appendUid(reply)
    got = raw.body(b"INBOX", int(uid))
    assert got == (head + b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + TEXT_PART + middle
                   + ATTACHMENT_MIME + ATTACHMENT + tail)
    # The new message is a proper MIME message (parts found by the server).
    reply = raw.cmd(b"UID FETCH %s (BODY.PEEK[1] BODY.PEEK[2])" % uid)
    assert b"{14}\r\n" + TEXT_PART in reply and ATTACHMENT in reply, reply


def test_whole_message_header_text_and_partial(raw, source):
    name, _ = source
    url = b"/" + name + b"/;UID=1"
    reply = raw.catenate(b"INBOX", [[(b"URL", url)]])
    assert raw.body(b"INBOX", int(_appendUid(reply)[1])) == ORIGINAL
    header, _, text = ORIGINAL.partition(b"\r\n\r\n")
    reply = raw.catenate(b"INBOX", [[(b"URL", url + b"/;SECTION=HEADER"), (b"TEXT", b"new body\r\n")]])
    assert raw.body(b"INBOX", int(_appendUid(reply)[1])) == header + b"\r\n\r\nnew body\r\n"
    reply = raw.catenate(b"INBOX", [[(b"TEXT", b"Subject: t\r\n\r\n"), (b"URL", url + b"/;SECTION=TEXT")]])
    assert raw.body(b"INBOX", int(_appendUid(reply)[1])) == b"Subject: t\r\n\r\n" + text
    # RFC 5092 ;PARTIAL=offset.length of a section
    reply = raw.catenate(b"INBOX", [[(b"TEXT", b"Subject: p\r\n\r\n"), (b"URL", url + b"/;SECTION=1/;PARTIAL=4.4")]])
    assert raw.body(b"INBOX", int(_appendUid(reply)[1])) == b"Subject: p\r\n\r\ntext"
    # HEADER.FIELDS, percent-encoded
    reply = raw.catenate(b"INBOX", [[(b"URL", url + b"/;SECTION=HEADER.FIELDS%20(SUBJECT)"),
                                     (b"TEXT", b"x\r\n")]])
    assert raw.body(b"INBOX", int(_appendUid(reply)[1])) == b"Subject: the original\r\n\r\nx\r\n"


def test_relative_to_selected_mailbox_and_utf8_name(raw, source):
    name, _ = source
    raw.cmd(b"SELECT " + name)
    reply = raw.catenate(name, [[(b"TEXT", b"Subject: rel\r\n\r\n"), (b"URL", b";UID=1/;SECTION=1")]])
    assert raw.body(name, int(_appendUid(reply)[1])) == b"Subject: rel\r\n\r\n" + TEXT_PART
    raw.cmd(b"UNSELECT")
    # A mailbox named in UTF-8: modified UTF-7 in the command, percent-encoded UTF-8 in the URL.
    box = "Entwürfe-%s" % name.decode()
    mutf7 = box.replace("ü", "&APw-").encode()
    assert b"OK" in _tagged(raw.cmd(b'CREATE "' + mutf7 + b'"'))
    _appendUid(raw.multiappend(b'"' + mutf7 + b'"', [(b"", ORIGINAL)]))
    url = b"/" + quote(box).encode() + b"/;UID=1/;SECTION=2"
    reply = raw.catenate(b"INBOX", [[(b"TEXT", b"Subject: u\r\n\r\n"), (b"URL", url)]])
    assert raw.body(b"INBOX", int(_appendUid(reply)[1])) == b"Subject: u\r\n\r\n" + ATTACHMENT


def test_multiappend_with_catenate(raw, source):
    name, _ = source
    box = name + b"M"
    raw.cmd(b"CREATE " + box)
    url = b"/" + name + b"/;UID=1"
    plain = b"Subject: plain\r\n\r\nplain\r\n"
    raw.n += 1
    tag = b"t%d" % raw.n
    raw.sock.sendall(tag + b" APPEND " + box + b" (\\Seen) {%d+}\r\n" % len(plain) + plain
                     + b' (\\Flagged) CATENATE (URL "' + url + b'") CATENATE (TEXT {14+}\r\nSubject: c\r\n\r\n URL "'
                     + url + b'/;SECTION=1")\r\n')
    reply = raw.readUntil(tag)
    assert _appendUid(reply)[1] == b"1:3"
    assert raw.body(box, 1) == plain
    assert raw.body(box, 2) == ORIGINAL
    assert raw.body(box, 3) == b"Subject: c\r\n\r\n" + TEXT_PART
    reply = raw.cmd(b"UID FETCH 1:3 FLAGS")
    assert re.search(rb"UID 2 FLAGS \(\\Flagged( \\Recent)?\)", reply), reply


@pytest.mark.parametrize("url, why", [
    (b"/{box}/;UID=99", b"no such message"),
    (b"/{box};UIDVALIDITY=1/;UID=1", b"UIDVALIDITY"),
    (b"/NoSuchBox/;UID=1", b"no such mailbox"),
    (b"/{box}/;UID=1/;SECTION=9", b"no such section"),
    (b"imap://bob%40example.test@localhost/INBOX/;UID=1", b"another user"),
    (b"/{box}/;UID=1/;URLAUTH=anonymous:internal:0123", b"URLAUTH"),
    (b"/{box}", b"not an IMAP message URL"),
    (b";UID=1", b"no mailbox is selected"),
])
def test_badurl_stores_nothing(raw, source, url, why):
    name, _ = source
    url = url.replace(b"{box}", name)
    box = name + b"B"
    raw.cmd(b"CREATE " + box)
    before = _status(raw, box)
    # The bad URL in the second message of a MULTIAPPEND: the first is not stored either.
    reply = raw.catenate(box, [[(b"URL", b"/" + name + b"/;UID=1")], [(b"TEXT", b"Subject: x\r\n\r\n"), (b"URL", url)]])
    assert _tagged(reply).startswith(b"t%d NO [BADURL " % raw.n + url + b"] "), reply
    assert why in _tagged(reply), reply
    assert _status(raw, box) == before
    # The session goes on.
    assert b"OK" in _tagged(raw.cmd(b"NOOP"))


def test_other_users_mailbox_is_badurl(imap_server, raw, source):
    bob = CatRaw(imap_server.port("imap"))
    try:
        assert b" OK " in bob.cmd(b"LOGIN bob@example.test bob-pw")
        reply = bob.catenate(b"INBOX", [[(b"URL", b"/" + source[0] + b"/;UID=1")]])
        assert b"NO [BADURL" in _tagged(reply), reply
    finally:
        bob.close()


def test_toobig_counts_the_whole(make_imap_server):
    server = make_imap_server(limits={"message_size": 20000})
    raw = CatRaw(server.port("imap")).login()
    try:
        raw.cmd(b"CREATE Big")
        big = b"Subject: big\r\n\r\n" + (b"y" * 76 + b"\r\n") * 150  # about 11.7 KB
        _appendUid(raw.multiappend(b"Big", [(b"", big)]))
        assert b"APPENDLIMIT=20000" in raw.cmd(b"CAPABILITY")
        before = _status(raw, b"Big")
        # Each part is under the limit; together they are not.
        reply = raw.catenate(b"Big", [[(b"URL", b"/Big/;UID=1"), (b"URL", b"/Big/;UID=1/;SECTION=TEXT")]])
        assert re.match(rb"t\d+ NO \[TOOBIG\] ", _tagged(reply)), reply
        reply = raw.catenate(b"Big", [[(b"URL", b"/Big/;UID=1"), (b"TEXT", b"x" * 12000)]], sync=False)
        assert re.match(rb"t\d+ NO \[TOOBIG\] ", _tagged(reply)), reply
        reply = raw.catenate(b"Big", [[(b"TEXT", b"x" * 12000), (b"TEXT", b"x" * 12000)]], sync=False)
        assert re.match(rb"t\d+ NO \[TOOBIG\] ", _tagged(reply)), reply
        assert _status(raw, b"Big") == before
        reply = raw.catenate(b"Big", [[(b"URL", b"/Big/;UID=1/;SECTION=HEADER"), (b"TEXT", b"small\r\n")]])
        _appendUid(reply)
    finally:
        raw.close()


def test_large_part_copied_exactly(raw):
    raw.cmd(b"CREATE Large")
    blob = b"".join(b"%07d " % i + b"z" * 70 + b"\r\n" for i in range(40000))  # 3.2 MB
    original = b"Subject: large\r\n\r\n" + blob
    _appendUid(raw.multiappend(b"Large", [(b"", original)]))
    reply = raw.catenate(b"INBOX", [[(b"TEXT", b"Subject: copy\r\n\r\n"), (b"URL", b"/Large/;UID=1/;SECTION=TEXT"),
                                     (b"TEXT", b"end\r\n")]])
    assert raw.body(b"INBOX", int(_appendUid(reply)[1])) == b"Subject: copy\r\n\r\n" + blob + b"end\r\n"


def test_imaplib(imap_server, raw, source):
    """imaplib sends the command and reads the APPENDUID and BADURL codes."""
    name, validity = source
    m = imaplib.IMAP4("127.0.0.1", imap_server.port("imap"))
    try:
        m.login(USER, PASSWORD)
        url = "/%s;UIDVALIDITY=%d/;UID=1/;SECTION=1" % (name.decode(), validity)
        typ, data = m._simple_command("APPEND", "INBOX", "CATENATE", '(URL "%s" URL "%s")' % (url, url))
        assert typ == "OK", data
        typ, data = m._untagged_response(typ, data, "APPENDUID")
        uid = int(data[0].split()[1])
        m.select("INBOX", readonly=True)
        typ, data = m.uid("FETCH", str(uid), "(BODY.PEEK[])")
        assert data[0][1] == TEXT_PART * 2
        typ, data = m._simple_command("APPEND", "INBOX", "CATENATE", '(URL "/%s/;UID=77")' % name.decode())
        assert typ == "NO" and data[0].startswith(b"[BADURL /%s/;UID=77] " % name), data
    finally:
        m.logout()


def test_utf8_part_needs_enable(raw, source):
    name, _ = source
    data = "Subject: Grüße\r\n\r\nx\r\n".encode()
    reply = raw.catenate(b"INBOX", [[(b"UTF8", data), (b"URL", b"/" + name + b"/;UID=1/;SECTION=1")]], sync=False)
    assert b"NO [CANNOT]" in _tagged(reply), reply
    # A TEXT part with an 8-bit header is refused before ENABLE too (RFC 6855 s4).
    reply = raw.catenate(b"INBOX", [[(b"TEXT", data)]], sync=False)
    assert b"NO [CANNOT]" in _tagged(reply), reply
    assert b"OK" in _tagged(raw.cmd(b"ENABLE UTF8=ACCEPT"))
    reply = raw.catenate(b"INBOX", [[(b"UTF8", data), (b"URL", b"/" + name + b"/;UID=1/;SECTION=1")]], sync=False)
    assert raw.body(b"INBOX", int(_appendUid(reply)[1])) == data + TEXT_PART


# In process


def test_in_process_ok_only_after_the_store_has_it():
    world = World()
    world.deliver(ORIGINAL)
    a = world.client(login="alice@example.test")
    account = world.account()
    opened = []
    account.openFolder("INBOX").addBoth(opened.append)
    folder = opened[0]
    original = type(folder).append
    waiting = []

    def slowAppend(self, source, flags=(), internalDate=None):
        d = defer.Deferred()
        waiting.append((d, lambda: original(self, source, flags, internalDate)))
        return d

    type(folder).append = slowAppend
    try:
        reply = a.feed(b'x APPEND INBOX CATENATE (TEXT {14+}\r\nSubject: s\r\n\r\n URL "/INBOX/;UID=1/;SECTION=1")\r\n')
        assert b"x OK" not in reply and len(waiting) == 1, reply
    finally:
        type(folder).append = original
    d, store = waiting[0]
    store().chainDeferred(d)
    reply = a.take()
    assert lines(reply)[-1].startswith(b"x OK [APPENDUID "), reply


def test_in_process_relative_url_and_literals_closed():
    world = World()
    world.deliver(ORIGINAL)
    a = world.client(login="alice@example.test")
    a.ok("SELECT INBOX")
    reply = a.feed(b'x APPEND INBOX CATENATE (URL ";UID=1/;SECTION=2.MIME" URL ";UID=1/;SECTION=2")\r\n')
    assert lines(reply)[-1].startswith(b"x OK [APPENDUID "), reply
    reply = a.cmd("FETCH 2 BODY.PEEK[]")
    assert ATTACHMENT_MIME + ATTACHMENT in reply


def _lit(data, binary=False):
    lit = Literal(len(data), binary)
    lit._write(data)
    return lit


def test_parser_catenate_grammar():
    cmd = parseCommand([b'a APPEND box (\\Seen) CATENATE (TEXT ', _lit(b"one"), b' URL "/INBOX/;UID=1" url /x/;UID=2 '
                        b'UTF8 (', _lit(b"two", True), b')) ', _lit(b"three"), b""])
    first, second = cmd.messages
    assert first.flags == ["\\Seen"] and first.message is None
    assert [type(p) for p in first.parts] == [CatPart] * 4
    assert first.parts[0].literal.bytes() == b"one"
    assert [p.url for p in first.parts[1:3]] == [b"/INBOX/;UID=1", b"/x/;UID=2"]
    assert first.parts[3].utf8 and first.parts[3].literal.bytes() == b"two"
    assert second.message.bytes() == b"three"
    assert len(list(cmd.literals())) == 3
    for bad in ([b"a APPEND box CATENATE ()"], [b"a APPEND box CATENATE (FOO x)"],
                [b'a APPEND box CATENATE (URL "/x/;UID=1"'], [b"a APPEND box CATENATE (TEXT x)"],
                [b"a APPEND box CATENATE (UTF8 (", _lit(b"x"), b"))"]):
        with pytest.raises(ParseError):
            parseCommand(bad)


def test_url_parser():
    u = imapurl.parse(b"/INBOX;UIDVALIDITY=785799047/;UID=113330/;SECTION=1.5.9")
    assert (u.mailbox, u.uidValidity, u.uid, u.section.part, u.partial) == ("INBOX", 785799047, 113330, (1, 5, 9), None)
    u = imapurl.parse(b"/Drafts;UIDVALIDITY=385759045/;UID=20/;section=1.mime")
    assert u.section.part == (1,) and u.section.text == "MIME"
    u = imapurl.parse(b"/INBOX;UIDVALIDITY=1;UID=2;SECTION=HEADER")  # older, slash-less form
    assert (u.uid, u.section.text) == (2, "HEADER")
    u = imapurl.parse(b"/a%20b/c/;UID=3/;PARTIAL=10.20")
    assert (u.mailbox, u.section, u.partial) == ("a b/c", None, (10, 20))
    assert imapurl.parse(b"/Entw%C3%BCrfe/;UID=1").mailbox == "Entwürfe"
    assert imapurl.parse(b";UID=4/;PARTIAL=5").mailbox is None
    assert imapurl.parse(b"imap://me@host/INBOX/;UID=1", user="ME").mailbox == "INBOX"
    for bad in (b"", b"INBOX/;UID=1", b"/INBOX", b"/INBOX/;UID=0", b"/INBOX/;UID=99999999999", b"/%FF/;UID=1",
                b"/INBOX/;UID=1/;SECTION=1.FOO", b"/INBOX/;UID=1/;EXPIRE=2030-01-01T00:00:00Z",
                b"imap://other@host/INBOX/;UID=1", b"/IN BOX/;UID=1", b"/INBOX?SUBJECT%20x", b"http://x/INBOX/;UID=1"):
        with pytest.raises(imapurl.BadURL):
            imapurl.parse(bad, user="me")
    assert imapurl.responseText(b"a]b\x00") == b"a%5Db%00"

"""
SORT (RFC 5256), SORT=DISPLAY (RFC 5957) and ESORT (RFC 5267 s3): the
pure key code of mailnet.imap.sort (base subject, i;unicode-casemap,
dates, addresses, ordering, the cache), in-process sessions, and the real
server driven by imapclient and raw sockets.
"""

import email.utils
import os
import re
import socket
import time

import imapclient
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailnet.imap import sort
from mailnet.imap.parser import ParseError, parseCommand
from mailnet.mail.headers import parseAddresses
from mailnet.store.interfaces import MessageInfo
from tests.imap.helpers import World

# Base subject (RFC 5256 s2.1)


@pytest.mark.parametrize("subject, base", [
    ("Hello world", "Hello world"),
    ("Re: Hello", "Hello"),
    ("RE: re: Fwd: FW: Hello", "Hello"),
    ("Re[2]: Hello", "Hello"),
    ("re [list]: Hello", "Hello"),
    ("[list] Re: Hello", "Hello"),
    ("[list] [other] Hello", "Hello"),
    ("[PATCH]", "[PATCH]"),  # the last blob is the base when nothing follows
    ("[a] [b]", "[b]"),
    ("Hello (fwd)", "Hello"),
    ("Hello (FWD) (fwd)  ", "Hello"),
    ("[fwd: Re: Hello]", "Hello"),
    ("[Fwd: [fwd: Hello (fwd)]]", "Hello"),
    ("Re:Hello", "Hello"),
    ("Fwdx", "Fwdx"),
    ("Reply: Hello", "Reply: Hello"),  # not in the grammar
    ("Re (3): Hello", "Re (3): Hello"),
    ("  Hello\t  world  ", "Hello world"),
    ("Hello\r\n world", "Hello world"),
    ("=?utf-8?q?Re=3A_R=C3=A9sum=C3=A9?=", "Résumé"),
    ("Re: =?utf-8?b?w4ljbGFpcg==?= (fwd)", "Éclair"),
    ("Re:", ""),
    ("", ""),
])
def test_base_subject(subject, base):
    assert sort.baseSubject(subject) == base


def test_base_subject_is_linear_on_hostile_subjects():
    # Runs of blobs, prefixes, trailers and [fwd: ...] wrappers, 200 KB
    # each: each step works on indices, so none costs quadratic time (a
    # regex or slicing version took minutes on the first two).
    for subject in ("[a]" * 70000 + "x", "[fwd:" * 40000 + "x" + "]" * 40000, "Re: " * 50000 + "x",
                    "x" + "(fwd)" * 40000, "[" * 200000, "re" + " " * 200000 + "x"):
        started = time.perf_counter()
        sort.baseSubject(subject)
        assert time.perf_counter() - started < 10


# i;unicode-casemap (RFC 5051)


def test_casemap():
    assert sort.casemap("hello World") == "HELLO WORLD"
    assert sort.casemap("élan") == sort.casemap("ÉLAN") == sort.casemap("E\u0301LAN")
    assert sort.casemap("straße") == "STRAßE"  # the simple titlecase of ß is ß, not "Ss"
    assert sort.casemap("\ufb01") == "fi"  # titlecase first (none), then the compatibility decomposition
    # dž, ǅ and Ǆ all titlecase to ǅ, which decomposes to D, z, combining caron.
    assert sort.casemap("\u01c6") == sort.casemap("\u01c5") == sort.casemap("\u01c4") == "Dz\u030c"
    # Order is that of the prepared strings' code points (= their UTF-8
    # octets); decomposition puts Ä with A.
    assert sort.casemap("apple") < sort.casemap("Äpfel") < sort.casemap("Banana") < sort.casemap("cherry")


# Header fields, dates, addresses


def test_header_fields():
    header = (b"Subject: first\r\n folded\r\nSubject: second\r\nX-From: no\r\nFROM : a@b\r\n"
              b"Date: Tue, 2 Jan 2024 10:00:00 +0100\r\n\r\nTo: body@x\r\n")
    date, subject, frm, to, cc = sort.headerFields(header)
    assert (date, subject, frm, to, cc) == ("Tue, 2 Jan 2024 10:00:00 +0100", "first folded", "a@b", None, None)
    assert sort.headerFields(b"Subject: bare\n lf\nTo: t@x\n\nCc: c@x\n")[1:] == ["bare lf", None, "t@x", None]
    assert sort.headerFields(b"Subject: no body")[1] == "no body"
    assert sort.headerFields(b"Subject: \xe9t\xc3\xa9\r\n\r\n")[1] == "\ufffdt\u00e9"


def test_one_header_field_scanner_for_sort_and_thread():
    """mailnet.mail.headers.headerFields finds the fields; SORT and THREAD only unfold them their way."""
    from mailnet.mail import headers, threading

    header = (b"Message-ID: <a@x>\r\nSubject: Re: one\r\n two\r\nsubject: later\r\nX-Subject: no\r\n"
              b"References: <r@x>\r\n\t<s@x>\r\n\r\nDate: body\r\n")
    fields = headers.headerFields(header, (b"subject", b"references", b"date", b"message-id"))
    assert fields == {b"message-id": b" <a@x>\r", b"subject": b" Re: one\r\n two\r", b"references": b" <r@x>\r\n\t<s@x>\r"}
    assert headers.headerFields(header, (b"subject",), limit=37) == {b"subject": b" Re: one\r"}
    assert sort.headerFields(header)[:2] == [None, "Re: one two"]
    assert threading.headerFields(header) == {"messageId": b"<a@x>", "subject": b"Re: one two",
                                              "references": b"<r@x> <s@x>"}
    # A message that starts with an empty line has no header fields, for SORT too.
    assert headers.headerFields(b"\r\nSubject: body\r\n", (b"subject",)) == {}
    assert sort.headerFields(b"\nSubject: body\n")[1] is None


def test_sent_date():
    assert sort.sentDate("Tue, 2 Jan 2024 10:00:00 +0100") == 1704186000
    assert sort.sentDate("2 Jan 2024 10:00 -0130") == 1704186000 + 3600 + 5400 - 0
    assert sort.sentDate("Tue, 2 Jan 2024 09:00:00 GMT") == 1704186000
    assert sort.sentDate("Tue, 2 Jan 2024 09:00:00") == 1704186000  # no zone: UTC
    assert sort.sentDate("Tue, 2 Jan 2024 10:00:00 +0100 (CET)") == 1704186000
    assert sort.sentDate("yesterday") is None and sort.sentDate("") is None and sort.sentDate(None) is None


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=__import__("datetime").datetime(1971, 1, 1)),
       st.integers(min_value=-14 * 60, max_value=14 * 60), st.booleans(), st.booleans())
def test_sent_date_fast_path_agrees_with_the_email_package(when, zone, weekday, seconds):
    text = email.utils.format_datetime(when.replace(microsecond=0)).rsplit(" ", 1)[0]
    if not weekday:
        text = text.split(", ", 1)[1]
    if not seconds:
        text = text[:-3]
    text += " %s%02d%02d" % ("-" if zone < 0 else "+", abs(zone) // 60, abs(zone) % 60)
    parsed = email.utils.parsedate_tz(text)
    assert sort.sentDate(text) == email.utils.mktime_tz(parsed)


@pytest.mark.parametrize("value", [
    "a@b", ' "Bob X" <b@c>, d@e', "Bob  Smith <b@c>", "J. Smith <j@s>", "b@c (Bob)", "<b@c>", '"" <b@c>',
    "=?utf-8?q?J=C3=B6rg?= <j@x>", '"Smith, J" <j@x>', "Group: a@b, c@d;", "undisclosed-recipients:;",
    "<@route:a@b>", '"quoted local"@x', "a@b, Zed <z@x>",
])
def test_first_address_fast_path_agrees_with_parse_addresses(value):
    items = parseAddresses(value)
    first = items[0]
    expected = (None, first[1], None) if len(first) == 3 else (first[0], first[2], first[3])
    assert sort._firstAddress(value) == expected


def test_record_keys():
    record = sort.recordFromHeader(
        b"From: =?utf-8?q?J=C3=B6rg?= <joerg@example.org>\r\nTo: undisclosed-recipients:;\r\n"
        b"Cc: \"Bob\" <BOB@x>, c@d\r\nSubject: Re: [x] hi\r\n there\r\nDate: Tue, 2 Jan 2024 10:00:00 +0100\r\n\r\n")
    assert (record.date, record.subject, record.from_, record.to, record.cc) == \
        (1704186000, "HI THERE", "JOERG", "UNDISCLOSED-RECIPIENTS", "BOB")
    assert (record.displayFrom, record.displayTo) == ("JO\u0308RG", "UNDISCLOSED-RECIPIENTS")
    record = sort.recordFromHeader(b"From: amy@example.org\r\nTo: \"  \" <t@x>\r\n\r\n")
    # RFC 5957 s3: no display name -> mailbox@host
    assert (record.displayFrom, record.displayTo, record.subject, record.date) == \
        ("AMY@EXAMPLE.ORG", "T@X", "", None)


# Ordering


def entries(*rows):
    """(infos, records) from (internalDate, size, date, subject) rows."""
    infos, records = [], []
    for i, (arrival, size, date, subject) in enumerate(rows, 1):
        infos.append(MessageInfo(i * 10, frozenset(), arrival, size, 1))
        records.append(sort.SortRecord(date, subject))
    return infos, records


def msns(rows, criteria):
    return [i + 1 for i in sort.order(*rows, criteria)]


def test_order():
    rows = entries((30, 100, None, "B"), (10, 300, 5, "A"), (20, 100, 50, "B"), (40, 200, 20, "A"))
    assert msns(rows, [("ARRIVAL", False)]) == [2, 3, 1, 4]
    assert msns(rows, [("DATE", False)]) == [2, 4, 1, 3]  # no Date: INTERNALDATE (30)
    # Ties stay in sequence order, under REVERSE too.
    assert msns(rows, [("SIZE", False)]) == [1, 3, 4, 2]
    assert msns(rows, [("SIZE", True)]) == [2, 4, 1, 3]
    assert msns(rows, [("SUBJECT", False), ("SIZE", True)]) == [2, 4, 1, 3]
    assert msns(rows, [("SUBJECT", True), ("ARRIVAL", True)]) == [1, 3, 4, 2]
    # A repeated key changes nothing (and costs no pass).
    assert msns(rows, [("SIZE", False), ("SIZE", True), ("SIZE", False)] * 100) == [1, 3, 4, 2]


def test_ordered_set():
    assert sort.orderedSet([5, 6, 7, 3, 2, 1, 9]) == b"5:7,3,2,1,9"
    assert sort.orderedSet([1]) == b"1"


def test_cache_bound_and_prune():
    cache = sort.SortCache(maxRecords=5)
    cache.store("a", {1: sort.EMPTY, 2: sort.EMPTY, 3: sort.EMPTY})
    cache.store("b", {1: sort.EMPTY, 2: sort.EMPTY})
    assert len(cache) == 5
    cache.store("b", {3: sort.EMPTY})  # "a" goes: least recently used
    assert len(cache) == 3 and cache.folder("a") == {}
    cache.store("c", {i: sort.EMPTY for i in range(10)})  # "b" goes, then only the room left
    assert len(cache) == 5 and len(cache.folder("c")) <= 5
    cache.prune("c", {0, 1})
    assert set(cache.folder("c")) == {0, 1} and len(cache) == 2


def test_cache_keeps_orders_for_the_same_messages():
    cache = sort.SortCache(maxOrders=5)
    criteria = (("DATE", False),)
    cache.keepOrder("a", criteria, [1, 2, 3], [2, 0, 1])
    assert cache.order("a", criteria, [1, 2, 3]) == [2, 0, 1]
    assert cache.order("a", criteria, [1, 2, 4]) is None  # other messages
    assert cache.order("a", (("DATE", True),), [1, 2, 3]) is None
    assert cache.order("b", criteria, [1, 2, 3]) is None
    cache.keepOrder("b", criteria, [1, 2, 3], [0, 1, 2])  # over maxOrders: "a" goes
    assert cache.order("a", criteria, [1, 2, 3]) is None and cache.order("b", criteria, [1, 2, 3]) == [0, 1, 2]
    cache.keepOrder("c", criteria, list(range(6)), list(range(6)))  # larger than the bound: not kept
    assert cache.order("c", criteria, list(range(6))) is None


# The SORT command (parser)


def test_parse_sort():
    cmd = parseCommand(b"a UID SORT RETURN (MIN ALL) (REVERSE DATE subject DISPLAYFROM) utf-8 SEEN FROM x")
    assert cmd.name == "SORT" and cmd.uid and cmd.returns == ["MIN", "ALL"] and cmd.charset == "UTF-8"
    assert cmd.criteria == [("DATE", True), ("SUBJECT", False), ("DISPLAYFROM", False)]
    assert cmd.keys == parseCommand(b"a SEARCH SEEN FROM x").keys  # SEARCH's program
    for bad in (b"a SORT () UTF-8 ALL", b"a SORT (DATE) ALL", b"a SORT (NAME) UTF-8 ALL", b"a SORT DATE UTF-8 ALL",
                b"a SORT (REVERSE) UTF-8 ALL", b"a SORT RETURN (PARTIAL 1:5 ALL) (DATE) UTF-8 ALL", b"a SORT (DATE) UTF-8"):
        with pytest.raises(ParseError):
            parseCommand(bad)


# In-process sessions

MESSAGES = [
    # (From, To, Cc, Subject, Date)
    ("Zed <zed@x.test>", "Yan <b@x.test>", "m@x.test", "Re: Banana", "Wed, 3 Jan 2024 10:00:00 +0000"),
    ("=?utf-8?q?=C3=9Crsula?= <amy@x.test>", "c@x.test", "", "apple", "Tue, 2 Jan 2024 10:00:00 -0500"),
    ("bob@x.test", "Abe <z@x.test>", "a@x.test", "[list] Cherry (fwd)", "not a date"),
    ("Carl <carl@x.test>", "", "", "=?utf-8?q?Fwd=3A_APPLE?=", "Tue, 2 Jan 2024 12:00:00 +0000"),
    ("Bea <amy@y.test>", "d@x.test", "", "[fwd: Re: banana]", "Mon, 1 Jan 2024 10:00:00 +0000"),
]


def sortMessage(frm, to, cc, subject, date, body="body\r\n"):
    head = "From: %s\r\n" % frm
    if to:
        head += "To: %s\r\n" % to
    if cc:
        head += "Cc: %s\r\n" % cc
    return (head + "Subject: %s\r\nDate: %s\r\n\r\n%s" % (subject, date, body)).encode()


@pytest.fixture
def world():
    return World()


def session(world):
    for i, row in enumerate(MESSAGES):
        world.deliver(sortMessage(*row, body="x" * (100 * ((i * 3) % 5))))
    a = world.client(login="alice@example.test")
    a.ok("SELECT INBOX")
    return a


def sorted_(reply):
    m = re.search(rb"\* SORT([ \d]*)\r\n", reply)
    assert m, reply
    return [int(n) for n in m.group(1).split()]


def test_sort_keys(world):
    a = session(world)
    assert sorted_(a.ok("SORT (SUBJECT) UTF-8 ALL")) == [2, 4, 1, 5, 3]
    assert sorted_(a.ok("SORT (REVERSE SUBJECT) UTF-8 ALL")) == [3, 1, 5, 2, 4]
    # DATE in UTC; "not a date" is the INTERNALDATE (now, the latest).
    assert sorted_(a.ok("SORT (DATE) UTF-8 ALL")) == [5, 4, 2, 1, 3]
    assert sorted_(a.ok("SORT (FROM) UTF-8 ALL")) == [2, 5, 3, 4, 1]  # amy amy bob carl zed
    assert sorted_(a.ok("SORT (TO) UTF-8 ALL")) == [4, 1, 2, 5, 3]  # "" b c d z
    assert sorted_(a.ok("SORT (CC) UTF-8 ALL")) == [2, 4, 5, 3, 1]  # "" "" "" a m
    assert sorted_(a.ok("SORT (DISPLAYFROM) UTF-8 ALL")) == [5, 3, 4, 2, 1]  # Bea bob@ Carl Ürsula Zed
    assert sorted_(a.ok("SORT (DISPLAYTO) UTF-8 ALL")) == [4, 3, 2, 5, 1]  # "" Abe c@ d@ Yan
    assert sorted_(a.ok("SORT (SIZE ARRIVAL) UTF-8 ALL")) == [1, 3, 5, 2, 4]
    assert sorted_(a.ok("SORT (REVERSE SIZE) UTF-8 ALL")) == [4, 2, 5, 3, 1]
    assert sorted_(a.ok("UID SORT (SUBJECT) US-ASCII ALL")) == [2, 4, 1, 5, 3]
    # The search program as for SEARCH.
    assert sorted_(a.ok("SORT (SUBJECT) UTF-8 OR FROM amy SUBJECT cherry")) == [2, 5, 3]
    assert sorted_(a.ok("SORT (SUBJECT) UTF-8 2:4 NOT 3")) == [2, 4]
    assert sorted_(a.ok("SORT (SUBJECT) UTF-8 SUBJECT nothing")) == []
    # Again (the orders now come from the cache), after a flag change too.
    a.ok("STORE 1:* +FLAGS (\\Seen)")
    assert sorted_(a.ok("SORT (DISPLAYFROM) UTF-8 ALL")) == [5, 3, 4, 2, 1]
    assert sorted_(a.ok("SORT (SUBJECT) UTF-8 OR FROM amy SUBJECT cherry")) == [2, 5, 3]
    assert sorted_(a.ok("SORT (SUBJECT) UTF-8 OR FROM amy SUBJECT banana")) == [2, 1, 5]


def test_sort_errors(world):
    a = session(world)
    assert re.search(rb"^t\d+ NO \[BADCHARSET \(UTF-8 US-ASCII\)\]", a.cmd("SORT (DATE) KOI8-R ALL"), re.M)
    assert re.search(rb"^t\d+ BAD .*sort key", a.cmd("SORT (NAME) UTF-8 ALL"), re.M)
    assert re.search(rb"^t\d+ BAD .*charset", a.cmd("SORT (DATE) ALL"), re.M)
    assert re.search(rb"^t\d+ OK", a.cmd("NOOP"), re.M)
    b = world.client(login="alice@example.test")
    assert re.search(rb"^t\d+ BAD", b.cmd("SORT (DATE) UTF-8 ALL"), re.M)  # not selected


def esort(reply):
    m = re.search(rb"\* ESEARCH \(TAG \"t\d+\"\)(.*)\r\n", reply)
    assert m, reply
    return m.group(1).decode()


def test_esort(world):
    a = session(world)
    assert esort(a.ok("SORT RETURN (MIN MAX COUNT ALL) (SUBJECT) UTF-8 ALL")) == " MIN 2 MAX 3 ALL 2,4,1,5,3 COUNT 5"
    assert esort(a.ok("UID SORT RETURN () (REVERSE SUBJECT) UTF-8 ALL")) == " UID ALL 3,1,5,2,4"
    # Only runs going up by one are ranges: FROM order is 2 5 3 4 1.
    assert esort(a.ok("SORT RETURN (ALL) (FROM) UTF-8 2:5")) == " ALL 2,5,3:4"
    assert esort(a.ok("SORT RETURN (COUNT) (DATE) UTF-8 SUBJECT nothing")) == " COUNT 0"
    assert esort(a.ok("SORT RETURN (MIN) (DATE) UTF-8 SUBJECT nothing")) == ""
    # No ESEARCH without RETURN, also for IMAP4rev2.
    a.ok("ENABLE IMAP4rev2")
    assert b"* SORT 5 4 2 1 3\r\n" in a.ok("SORT (DATE) UTF-8 ALL")
    # SAVE keeps the set (RFC 5182), for FETCH $.
    a.ok("SORT RETURN (SAVE) (REVERSE DATE) UTF-8 1:2")
    assert re.findall(rb"\* (\d) FETCH", a.ok("FETCH $ (UID)")) == [b"1", b"2"]
    a.ok("SORT RETURN (SAVE MIN) (DATE) UTF-8 ALL")
    assert re.findall(rb"\* (\d) FETCH", a.ok("FETCH $ (UID)")) == [b"5"]


def test_esort_and_sort_modseq(world):
    a = session(world)
    a.ok("SELECT INBOX (CONDSTORE)")
    a.ok("STORE 2 +FLAGS (\\Flagged)")
    a.ok("STORE 4 +FLAGS (\\Flagged)")
    modseq = {int(n): int(m) for n, m in re.findall(rb"\* (\d+) FETCH \(MODSEQ \((\d+)\)\)", a.ok("FETCH 1:* (MODSEQ)"))}
    assert modseq[4] > modseq[2]
    # RFC 4731 s3.2 for ESORT: MIN alone is the returned message's; SUBJECT order is 2 4 1 5 3.
    assert esort(a.ok("SORT RETURN (MIN) (SUBJECT) UTF-8 MODSEQ 1")) == " MIN 2 MODSEQ %d" % modseq[2]
    assert esort(a.ok("SORT RETURN (MAX) (SUBJECT) UTF-8 MODSEQ 1")) == " MAX 3 MODSEQ %d" % modseq[3]
    assert esort(a.ok("SORT RETURN (ALL) (SUBJECT) UTF-8 MODSEQ 1")) == " ALL 2,4,1,5,3 MODSEQ %d" % modseq[4]
    assert b"* SORT 2 4 1 5 3 (MODSEQ %d)\r\n" % modseq[4] in a.ok("SORT (SUBJECT) UTF-8 MODSEQ 1")


def test_second_sort_reads_no_message(world):
    a = session(world)
    folder = a.session.view.folder
    opened = []
    real = folder.openMessage

    def counting(uid):
        opened.append(uid)
        return real(uid)

    folder.openMessage = counting
    assert sorted_(a.ok("SORT (SUBJECT) UTF-8 ALL")) == [2, 4, 1, 5, 3]
    assert sorted(opened) == [1, 2, 3, 4, 5]
    del opened[:]
    # Any header key, any session of the user: from the cache.
    for key in ("DATE", "FROM", "DISPLAYTO", "REVERSE SUBJECT", "CC"):
        a.ok("SORT (%s) UTF-8 ALL" % key)
    assert opened == []
    # A new message: only that one is read.
    world.deliver(sortMessage("Al <al@x.test>", "", "", "aardvark", "Mon, 1 Jan 2024 09:00:00 +0000"))
    a.ok("NOOP")
    assert sorted_(a.ok("SORT (SUBJECT) UTF-8 ALL")) == [6, 2, 4, 1, 5, 3]
    assert opened == [6]
    # Index keys read nothing.
    del opened[:]
    a.ok("SORT (ARRIVAL SIZE) UTF-8 ALL")
    assert opened == []


def test_expunge_waits_until_after_sort(world):
    a = session(world)
    b = world.client(login="alice@example.test")
    b.ok("SELECT INBOX")
    b.ok("STORE 1 +FLAGS (\\Deleted)")
    b.ok("EXPUNGE")
    reply = a.ok("SORT (SUBJECT) UTF-8 ALL")
    # Sequence numbers in the answer are those the client knows (RFC 3501 s7.4.1).
    assert b"EXPUNGE" not in reply
    assert b"* 1 EXPUNGE" in a.ok("NOOP")
    assert sorted_(a.ok("SORT (SUBJECT) UTF-8 ALL")) == [1, 3, 4, 2]


# The real server


def append_all(c, folder="INBOX"):
    for i, row in enumerate(MESSAGES):
        # ARRIVAL: internal dates out of the append order.
        when = __import__("datetime").datetime(2024, 2, 1 + (i * 2) % 5, 12, 0, 0)
        c.append(folder, sortMessage(*row, body="x" * (100 * ((i * 3) % 5))), msg_time=when)


@pytest.mark.slow
def test_imapclient_sort(imap_server):
    user = "sort%d@example.test" % (time.monotonic_ns() % 1000000)
    imap_server.addUser(user, "pw")
    c = imapclient.IMAPClient("127.0.0.1", port=imap_server.port("imap"), ssl=False, timeout=20, use_uid=False)
    c.login(user, "pw")
    try:
        caps = c.capabilities()
        assert b"SORT" in caps and b"SORT=DISPLAY" in caps and b"ESORT" in caps
        c.create_folder("Sorted")
        append_all(c, "Sorted")
        c.select_folder("Sorted")
        assert c.sort(["SUBJECT"]) == [2, 4, 1, 5, 3]
        assert c.sort("REVERSE DATE") == [3, 1, 2, 4, 5]
        assert c.sort(["ARRIVAL"]) == [1, 4, 2, 5, 3]
        assert c.sort(["FROM", "REVERSE SIZE"], ["NOT", "FROM", "zed"]) == [2, 5, 3, 4]
        c.use_uid = True
        assert c.sort(["DISPLAYFROM"]) == [5, 3, 4, 2, 1]
        with pytest.raises(imapclient.exceptions.IMAPClientError):
            c.sort(["SUBJECT"], charset="ISO-2022-JP")
        assert c.noop()[0].startswith(b"NOOP")
    finally:
        c.logout()


def raw(port, user, password):
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    f = s.makefile("rb")
    f.readline()

    def command(tag, text):
        if text is not None:
            s.sendall(tag + b" " + text + b"\r\n")
        out = []
        while True:
            line = f.readline()
            assert line, out
            out.append(line)
            if line.startswith(tag + b" "):
                return b"".join(out)

    command(b"l", b"LOGIN %s %s" % (user.encode(), password.encode()))
    return s, command


@pytest.mark.slow
def test_esort_and_display_over_a_socket(imap_server):
    user = "esort%d@example.test" % (time.monotonic_ns() % 1000000)
    imap_server.addUser(user, "pw")
    c = imapclient.IMAPClient("127.0.0.1", port=imap_server.port("imap"), ssl=False, timeout=20)
    c.login(user, "pw")
    append_all(c)
    c.logout()
    s, command = raw(imap_server.port("imap"), user, "pw")
    try:
        assert b"l1 OK" in command(b"l1", b"SELECT INBOX")
        reply = command(b"e1", b"UID SORT RETURN (MIN MAX COUNT ALL) (DISPLAYTO) UTF-8 ALL")
        assert b'* ESEARCH (TAG "e1") UID MIN 4 MAX 1 ALL 4,3,2,5,1 COUNT 5\r\n' in reply
        reply = command(b"e2", b"SORT (REVERSE DISPLAYFROM) UTF-8 UNSEEN")
        assert b"* SORT 1 2 4 3 5\r\n" in reply
        # Pipelined: answered in order, nothing lost.
        s.sendall(b"p1 SORT (SUBJECT) UTF-8 ALL\r\np2 SORT (SIZE) UTF-8 ALL\r\n")
        reply = command(b"p2", None)
        assert reply.index(b"* SORT 2 4 1 5 3") < reply.index(b"p1 OK") < reply.index(b"* SORT 1 3 5 2 4")
        assert b"e3 BAD" in command(b"e3", b"SORT (DATE)")
        assert b"e4 OK" in command(b"e4", b"NOOP")
    finally:
        s.close()


def test_first_address_of_a_long_list():
    value = ", ".join("(c%d) \"User, %d\" <user%d@example.org>" % (i, i, i) for i in range(3000))
    assert sort._firstAddress(value) == ("User, 0", "user0", "example.org")
    started = time.perf_counter()
    record = sort.recordFromHeader(b"To: " + value.encode() + b"\r\n\r\n")
    assert record.to == "USER0" and record.displayTo == "USER, 0"
    assert time.perf_counter() - started < 5


# RFC 5256 s2.1 transcribed literally (regular expressions, slicing, one
# removal at a time): slow, but plainly the RFC's text.  The index-based
# baseSubject must agree with it on any mix of the grammar's pieces.
_REF_BLOB = r"\[[^\[\]]*\][ \t]*"
_REF_LEADER = re.compile(r"(?:%s)*(?:re|fwd?)[ \t]*(?:%s)?:|[ \t]" % (_REF_BLOB, _REF_BLOB), re.I)
_REF_BLOB_RE = re.compile(_REF_BLOB)
_REF_TRAILER = re.compile(r"(?:\(fwd\)|[ \t])$", re.I)


def reference_base_subject(s):
    s = re.sub(r"[ \t\r\n]+", " ", s)  # (1), no encoded words here
    while True:
        while _REF_TRAILER.search(s):  # (2)
            s = _REF_TRAILER.sub("", s, count=1)
        while True:  # (5)
            changed = False
            while True:  # (3)
                m = _REF_LEADER.match(s)
                if not m:
                    break
                s = s[m.end():]
                changed = True
            m = _REF_BLOB_RE.match(s)  # (4)
            if m and s[m.end():].strip(" \t"):
                s = s[m.end():]
                changed = True
            if not changed:
                break
        if s[:5].lower() == "[fwd:" and s.endswith("]"):  # (6)
            s = s[5:-1]
            continue
        return s


PIECES = ["Re", "rE", "Fw", "FWD", "fwd", "d", ":", "[", "]", " ", "  ", "\t", "(fwd)", "(FWD)", "[fwd:", "[Fwd: ",
          "x", "ab", "(", ")", "re:", "[list]", "é"]


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=14))
def test_base_subject_agrees_with_the_rfc_text(pieces):
    subject = "".join(pieces)
    assert sort.baseSubject(subject) == reference_base_subject(subject)


def test_cache_counts_long_keys_for_more():
    cache = sort.SortCache(maxRecords=100)
    huge = sort.SortRecord(0, "x" * 200 * 1024)
    cache.store("a", {1: huge, 2: sort.EMPTY})
    assert cache.folder("a") == {2: sort.EMPTY} and len(cache) == 1  # 401 units: not kept
    cache.store("a", {3: sort.SortRecord(0, "y" * 5000)})
    assert len(cache) == 1 + 10
    cache.prune("a", {2})
    assert len(cache) == 1


# Over the Maildir store: mail from another program, files that vanish.


@pytest.mark.slow
def test_sort_over_maildir_files_from_another_program(imap_server):
    from tests.imap.conftest import BACKEND
    from tests.imap.test_maildir import drop_into_maildir

    if BACKEND != "maildir":
        pytest.skip("Maildir store not in this build")
    user = "sortmd%d@example.test" % (time.monotonic_ns() % 1000000)
    imap_server.addUser(user, "pw")
    c = imapclient.IMAPClient("127.0.0.1", port=imap_server.port("imap"), ssl=False, timeout=20, use_uid=False)
    c.login(user, "pw")
    try:
        c.select_folder("INBOX")
        # Bare LF line ends (like mutt), a folded Subject, no Date, a 300 KB body.
        drop_into_maildir(imap_server, user, b"From: Zed <z@x.test>\nSubject: Re: bb\n\nlf only\n")
        drop_into_maildir(imap_server, user,
                          b"From: amy@x.test\r\nSubject: Fwd: [x]\r\n aa\r\n\r\n" + b"y" * 300000)
        drop_into_maildir(imap_server, user,
                          b"From: Bo <b@x.test>\r\nSubject: cc\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n")
        c.noop()
        label = {n: d[b"BODY[HEADER.FIELDS (SUBJECT)]"].split()[-1].decode()
                 for n, d in c.fetch(c.search(), ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"]).items()}

        def sorted_labels(criteria):
            return [label[n] for n in c.sort(criteria)]

        assert sorted_labels(["SUBJECT"]) == ["aa", "bb", "cc"]  # "Fwd: [x] aa" -> "aa"
        assert sorted_labels(["DISPLAYFROM"]) == ["aa", "cc", "bb"]  # amy@x.test, Bo, Zed
        assert sorted_labels(["DATE"])[0] == "cc"  # the others have no Date: their INTERNALDATE (now)
        # A file removed behind the server's back: gone at the next command; SORT orders the rest.
        root = imap_server.maildir(user)
        for sub in ("cur", "new"):
            for name in os.listdir(os.path.join(root, sub)):
                with open(os.path.join(root, sub, name), "rb") as f:
                    if b"Subject: cc" in f.read():
                        os.unlink(os.path.join(root, sub, name))
        c.noop()
        label = {n: d[b"BODY[HEADER.FIELDS (SUBJECT)]"].split()[-1].decode()
                 for n, d in c.fetch(c.search(), ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"]).items()}
        assert sorted_labels(["REVERSE SUBJECT"]) == ["bb", "aa"]
        assert c.noop()[0].startswith(b"NOOP")
    finally:
        c.logout()


def test_keys_made_on_demand():
    header = (b"From: =?utf-8?q?J=C3=B6rg?= <joerg@example.org>\r\nTo: Ann <a@x>\r\nCc: c@d\r\n"
              b"Subject: Re: hi\r\nDate: Tue, 2 Jan 2024 10:00:00 +0100\r\n\r\n")
    full = sort.recordFromHeader(header)
    lazy = sort.recordFromHeader(header, 5.0, {"DATE"})
    assert lazy.date == full.date and lazy.subject is None and not lazy.has({"SUBJECT"}) and lazy.has({"DATE"})
    lazy.complete({"DISPLAYFROM"})
    assert (lazy.from_, lazy.displayFrom) == (full.from_, full.displayFrom) and lazy.to is None
    assert lazy.has({"FROM", "DISPLAYFROM"}) and not lazy.has({"TO"})
    size = lazy.size
    lazy.complete(sort.HEADER_KEYS)
    slots = ("date", "subject", "from_", "to", "cc", "displayFrom", "displayTo")
    assert [getattr(lazy, k) for k in slots] == [getattr(full, k) for k in slots]
    assert lazy.has(sort.HEADER_KEYS) and lazy.size == size  # the cache's accounting does not move
    assert sort.recordFromHeader(b"Subject: x\r\n\r\n", 7.0, {"DATE"}).date == 7.0  # no Date: INTERNALDATE

"""
The MIME caps (fetch.MAX_PARTS / MAX_DEPTH, [limits] mime_parts and
mime_depth), the work budget that sends a large scan to a worker thread,
and the bounded SEARCH decoding (issue 10, item 5).  In process; the real
server is driven in test_hostile_mime.py.
"""

import email.header
import io
import time

import pytest
from twisted.internet import defer

from mailnet.imap import fetch, search
from mailnet.mail import mime
from mailnet.store.interfaces import MessageInfo
from tests.imap.helpers import World

# Dovecot's own test messages for its limits (lib-mail/test-message-parser.c):
# the same sizes come out here.
NESTED = (b'Content-Type: multipart/mixed; boundary="1"\n\n--1\n'
          b'Content-Type: multipart/mixed; boundary="2"\n\n--2\n'
          b"Content-Type: text/plain\n\n1\n--2\nContent-Type: text/plain\n\n22\n"
          b"--1\nContent-Type: text/plain\n\n333\n")


def scan(data, **kw):
    return fetch.scan(io.BytesIO(data), len(data), **kw)


def manyParts(count, boundary=b"zz"):
    return (b"Subject: many\r\nContent-Type: multipart/mixed; boundary=" + boundary + b"\r\n\r\n"
            + (b"--" + boundary + b"\r\n\r\nx\r\n") * count + b"--" + boundary + b"--\r\n")


def test_uncapped_structure_unchanged():
    root = scan(NESTED)
    assert fetch.bodystructure(root) == (
        b'((("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 1 1 NIL NIL NIL NIL)'
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 2 1 NIL NIL NIL NIL) "mixed" ("boundary" "2") NIL NIL NIL)'
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 4 1 NIL NIL NIL NIL) "mixed" ("boundary" "1") NIL NIL NIL)')


def test_part_cap_makes_the_last_part_run_to_the_end():
    # Dovecot, max_total_mime_parts = 4: root, 1, 1.1, 1.2; 1.2 holds the rest (37 bytes, 5 lines).
    root = scan(NESTED, maxParts=4)
    inner = root.children[0]
    assert len(root.children) == 1 and len(inner.children) == 2
    last = inner.children[1]
    assert (last.maintype, last.subtype) == ("text", "plain")
    assert last.size == 37 and last.lines == 5
    assert last.end == len(NESTED) == inner.end == root.end
    assert fetch.resolve(root, _section((1, 2)))[1:] == (len(NESTED) - 37, len(NESTED))
    with pytest.raises(fetch.SectionError):
        fetch.locate(root, (2,))


def test_part_cap_on_a_container_shows_it_opaque():
    # The third part is itself a multipart: it cannot be opened, and is the rest of the message.
    root = scan(NESTED, maxParts=2)
    only = root.children[0]
    assert only.children is None and (only.maintype, only.subtype) == ("application", "octet-stream")
    assert only.end == len(NESTED)
    assert fetch.bodystructure(root).startswith(b'(("application" "octet-stream" NIL NIL NIL "7bit" ')
    root = scan(b"Content-Type: message/rfc822\n\nContent-Type: text/plain\n\nx\n", maxParts=1)
    assert root.message is None and root.maintype == "application"


def test_depth_cap_shows_the_deepest_container_opaque():
    # Dovecot, max_nested_mime_parts = 2: part 1 is opaque (64 bytes up to --1), part 2 is normal.
    root = scan(NESTED, maxDepth=2)
    first, second = root.children
    assert first.children is None and (first.maintype, first.subtype) == ("application", "octet-stream")
    assert first.size == 64
    assert second.size == 4 and second.lines == 1
    # message/rfc822 nesting counts too.
    msg = b"Content-Type: message/rfc822\n\nContent-Type: message/rfc822\n\nContent-Type: text/plain\n\n1\n"
    root = scan(msg, maxDepth=2)
    assert root.message is not None and root.message.message is None
    assert root.message.maintype == "application" and root.message.size == 28


def test_default_caps():
    root = scan(manyParts(fetch.MAX_PARTS + 500))
    assert len(root.children) == fetch.MAX_PARTS - 1
    assert root.children[-1].end == root.end
    deep = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(500))
    root = scan(deep + b"\r\nleaf\r\n")
    levels = 1
    while root.children:
        root = root.children[0]
        levels += 1
    assert levels == fetch.MAX_DEPTH and root.maintype == "application"
    assert fetch.bodystructure(scan(deep + b"\r\nleaf\r\n")).count(b'"mixed"') == fetch.MAX_DEPTH - 1


def test_capped_structure_is_cheap():
    data = manyParts(200000)
    started = time.process_time()
    entry = fetch.build(io.BytesIO(data), len(data), True, render=True)
    # Uncapped, these 200,000 parts took about 4 s to scan and render on an
    # idle machine; capped at 10,000 about 0.4 s.  CPU time, generous bound.
    assert time.process_time() - started < 3.0
    assert entry.bodystructure().count(b'("text" "plain"') == fetch.MAX_PARTS - 1


def test_budget_sends_large_work_elsewhere():
    small = b"Subject: hi\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n\r\nx\r\n--a--\r\n"
    entry = fetch.build(io.BytesIO(small), len(small), True, budget=fetch.INLINE_BUDGET)
    assert len(entry.root.children) == 1
    for data, full in [(manyParts(100), True),
                       (b"Subject: " + b"x" * 100000 + b"\r\n\r\nbody\r\n", False),
                       (b"Subject: " + b"x" * 100000 + b"\r\n\r\nbody\r\n", True),
                       (b"Subject: big\r\n\r\n" + b"y" * (9 * 1024 * 1024), True),
                       (b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n\r\n" + b"x\r\n" * 80000, True)]:
        with pytest.raises(mime.OverBudget):
            fetch.build(io.BytesIO(data), len(data), full, budget=fetch.INLINE_BUDGET)
    # Rendered in the worker: nothing of the tree's size is left for the reactor.
    data = manyParts(100)
    entry = fetch.build(io.BytesIO(data), len(data), True, render=True)
    assert entry._bodystructure is not None and entry._body is not None and entry._envelope is not None


def _section(part, text=None):
    from mailnet.imap.parser import Section

    return Section(part, text)


# The session: small structures inline, large ones in the worker thread.


def test_session_builds_large_structures_in_a_thread():
    calls = []

    def inThread(f, *args):
        calls.append(f)
        return defer.maybeDeferred(f, *args)

    world = World()
    world.shared.inThread = inThread
    world.shared.settings.mimeParts = 500
    world.deliver(b"Subject: small\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n\r\nx\r\n--a--\r\n")
    world.deliver(manyParts(1000))
    c = world.client(login="alice@example.test")
    c.ok("SELECT INBOX")
    reply = c.ok("FETCH 1 (BODYSTRUCTURE)")
    assert calls == [] and b'"mixed"' in reply
    reply = c.ok("FETCH 2 (BODYSTRUCTURE ENVELOPE BODY.PEEK[499])")
    assert calls == [fetch.build]
    # mime_parts = 500: the root and 499 parts, the 499th running to the end.
    assert reply.count(b'("text" "plain"') == 499
    assert b"--zz--\r\n)\r\n" in reply
    c.ok("FETCH 2 (BODY BODYSTRUCTURE)")
    assert calls == [fetch.build]  # cached


# SEARCH


def _candidate(data):
    c = search.Candidate(1, 1, MessageInfo(uid=1, flags=frozenset(), internalDate=0.0, size=len(data), modseq=1), False)
    c.data = data
    return c


def test_header_search_looks_at_the_first_256k():
    data = (b"Subject: =?utf-8?q?first?=\r\nX-Pad: " + b"p" * search.MAX_HEADER
            + b"\r\nX-Late: =?utf-8?q?late?=\r\n\r\nbody\r\n")
    s = search.Searcher(("HEADER", "subject", "first"), 1, 1)
    assert s.match(_candidate(data))
    s = search.Searcher(("HEADER", "x-late", "late"), 1, 1)
    assert not s.match(_candidate(data))


def test_body_search_decodes_at_most_mime_parts_then_raw():
    encoded = b"--zz\r\nContent-Transfer-Encoding: base64\r\n\r\nbmVlZGxl\r\n"  # "needle"
    data = (b"Subject: s\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n"
            + b"--zz\r\n\r\nx\r\n" * 20 + encoded + b"--zz\r\n\r\nhaystack\r\n--zz--\r\n")
    for maxParts, decoded in [(100, True), (10, False)]:
        s = search.Searcher(("BODY", "needle"), 1, 1, maxParts=maxParts)
        assert s.match(_candidate(data)) == decoded
        s = search.Searcher(("BODY", "haystack"), 1, 1, maxParts=maxParts)
        assert s.match(_candidate(data))


def test_budget_stops_reading_a_header_early():
    # No blank line: 20 MB of header.  The inline attempt gives up after
    # 64 KB instead of reading all of it on the reactor thread.
    data = b"X-Pad: yes\r\n" * (20 * 1024 * 1024 // 12)
    f = io.BytesIO(data)
    with pytest.raises(mime.OverBudget):
        fetch.build(f, len(data), False, budget=fetch.INLINE_BUDGET)
    assert f.tell() < 1024 * 1024


def test_configured_depth_has_a_ceiling():
    levels = mime.DEPTH_CEILING + 200
    deep = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(levels))
    entry = fetch.build(io.BytesIO(deep), len(deep), True, maxDepth=10 ** 6, render=True)
    assert entry.bodystructure().count(b'"mixed"') == mime.DEPTH_CEILING - 1


def test_budget_counts_the_header_fields_of_all_parts():
    # 20 parts with a 10 KB header each: every header is small, together they are not.
    part = b"--zz\r\nX-Pad: " + b"p" * 10000 + b"\r\n\r\nx\r\n"
    data = b"Subject: s\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n" + part * 20 + b"--zz--\r\n"
    with pytest.raises(mime.OverBudget):
        fetch.build(io.BytesIO(data), len(data), True, budget=fetch.INLINE_BUDGET)
    assert len(fetch.build(io.BytesIO(data), len(data), True).root.children) == 20

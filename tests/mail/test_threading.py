"""mailnet.mail.threading: RFC 5256 base subject, ORDEREDSUBJECT and REFERENCES (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailnet.mail.threading import (
    Item, baseSubject, headerFields, messageIds, references, referencesThreads, sentDate, thread,
)


@pytest.mark.parametrize("subject, base, reply", [
    ("hello", "hello", False),
    ("Re: hello", "hello", True),
    ("RE: Fwd: [list] Re:  Hello \t  World  ", "hello world", True),
    ("Re: [fwd: Re: hello (fwd)]", "hello", True),
    ("hello (fwd)", "hello", True),
    ("[list] hello", "hello", False),
    ("[list]", "[list]", False),
    ("[a][b]", "[b]", False),
    ("Fw[x]: y", "y", True),
    ("Re[2]: y", "y", True),
    ("re:re:re: x", "x", True),
    ("=?utf-8?q?Re=3A_caf=C3=A9?=", "café", True),
    ("Reply: x", "reply: x", False),
    ("", "", False),
    (None, "", False),
])
def test_base_subject(subject, base, reply):
    assert baseSubject(subject) == (base, reply)


def test_base_subject_of_a_huge_subject_is_fast():
    # a trailer search from the end would be quadratic
    s, _ = baseSubject("x" + " " * 200000 + "y" + " (fwd)" * 1000)
    assert s.startswith("x") and s.endswith("y")


def test_message_ids_are_normalised():
    assert messageIds('<"01KF8JCEOCBS0045PS"@xxx.yyy.com>') == ["01KF8JCEOCBS0045PS@xxx.yyy.com"]
    assert messageIds(b"<a@b> (comment <c@d>) <nope> <e@f>") == ["a@b", "e@f"]
    assert references("<a@b> <c@d> <a@b>", "<x@y>") == ["a@b", "c@d"]
    assert references("garbage", "<x@y> <z@w>") == ["x@y"]
    assert references(None, None) == []


def test_header_fields():
    h = (b"Subject: Re: one\r\n two\r\nReferences: <a@b>\r\n\t<c@d>\r\nX: y\r\n"
         b"Message-ID: <m@h>\r\nMessage-ID: <second@h>\r\n\r\nReferences: <body@b>\r\n")
    f = headerFields(h)
    assert f["subject"] == b"Re: one two"
    assert f["references"] == b"<a@b> <c@d>"
    assert f["messageId"] == b"<m@h>"
    assert "inReplyTo" not in f


def test_sent_date_falls_back_to_the_internal_date():
    assert sentDate(b"Thu, 1 Jan 1970 01:00:00 +0100", 5.0) == 0.0
    assert sentDate(b"not a date", 5.0) == 5.0
    assert sentDate(None, 7.0) == 7.0


def item(n, subject="s", mid=None, refs=(), date=None):
    base, reply = baseSubject(subject)
    return Item(n, float(n if date is None else date), base, reply, mid, list(refs))


def test_ordered_subject():
    items = [item(1, "A", date=3), item(2, "Re: B", date=1), item(3, "a", date=2), item(4, "B", date=5),
             item(5, "c", date=4), item(6, "A", date=9)]
    # RFC 5256 s2.1: by base subject, first message the parent of the others; threads by first date
    assert thread("ORDEREDSUBJECT", items) == b"(2 4)(3 (1)(6))(5)"


def test_references_tree():
    items = [item(1, "t", "a@x"), item(2, "Re: t", "b@x", ["a@x"]), item(3, "Re: t", "c@x", ["a@x", "b@x"]),
             item(4, "Re: t", "d@x", ["a@x"]), item(5, "other", "e@x")]
    assert thread("REFERENCES", items) == b"(1 (2 3)(4))(5)"


def test_references_missing_parent_makes_a_dummy():
    items = [item(1, "Re: t", "b@x", ["gone@x"]), item(2, "Re: t", "c@x", ["gone@x"])]
    assert thread("REFERENCES", items) == b"((1)(2))"
    # one child of a dummy at the root is promoted
    assert thread("REFERENCES", items[:1]) == b"(1)"


def test_references_late_parent_and_arrival_order():
    # the reply comes first (lower number) and the parent later: same tree
    items = [item(1, "Re: t", "b@x", ["a@x"], date=2), item(2, "t", "a@x", date=1)]
    assert thread("REFERENCES", items) == b"(2 1)"


def test_references_subject_merge():
    # step 5: a reply by subject joins the original; two originals get a dummy
    assert thread("REFERENCES", [item(1, "hello"), item(2, "Re: hello")]) == b"(1 2)"
    assert thread("REFERENCES", [item(1, "hello"), item(2, "hello")]) == b"((1)(2))"
    assert thread("REFERENCES", [item(1, ""), item(2, "")]) == b"(1)(2)"


def test_references_truncated_references_are_replaced():
    items = [item(1, "t", "a@x"), item(2, "u", "b@x"), item(3, "Re: u", "c@x", ["a@x", "b@x"]),
             item(4, "Re: u", "d@x", ["b@x"])]
    # 1A made a@x the parent of b@x (from message 3's References)
    assert thread("REFERENCES", items) == b"(1 2 (3)(4))"


def test_references_loops_and_duplicates():
    items = [item(1, "p", "a@x", ["b@x"]), item(2, "q", "b@x", ["a@x"]), item(3, "r", "a@x"),
             item(4, "s", None, ["a@x"])]
    out = thread("REFERENCES", items)
    numbers = sorted(int(n) for n in out.replace(b"(", b" ").replace(b")", b" ").split())
    assert numbers == [1, 2, 3, 4]


_ids = st.sampled_from(["a@x", "b@x", "c@x", "d@x", None])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["t", "Re: t", "u", ""]), _ids, st.lists(_ids.filter(bool), max_size=3),
                          st.integers(0, 5)), max_size=12))
def test_every_message_appears_once(specs):
    items = [item(n, s, m, r, d) for n, (s, m, r, d) in enumerate(specs, 1)]
    for algorithm in ("REFERENCES", "ORDEREDSUBJECT"):
        out = thread(algorithm, items)
        assert out.count(b"(") == out.count(b")")
        numbers = sorted(int(n) for n in out.replace(b"(", b" ").replace(b")", b" ").split())
        assert numbers == list(range(1, len(items) + 1))
        assert b"()" not in out


def test_real_headers():
    a = Item.fromHeader(7, b"Message-ID: <a@x>\r\nSubject: Hi\r\nDate: Thu, 1 Jan 2026 00:00:00 +0000\r\n\r\n", 1.0)
    b = Item.fromHeader(9, b"Message-ID: <b@x>\r\nIn-Reply-To: <a@x>\r\nSubject: Re: Hi\r\n\r\n", 2e9)
    assert (a.messageId, a.subject, a.reply) == ("a@x", "hi", False)
    assert (b.refs, b.reply, b.date) == (["a@x"], True, 2e9)
    assert thread("REFERENCES", [a, b]) == b"(7 9)"
    assert referencesThreads([])  == []


def test_deep_threads_need_no_recursion():
    # a chain of 3000 replies, each referencing its last 50 ancestors, and a tree branching at every level
    chain = [item(k, "Re: x" if k > 1 else "x", "m%d@x" % k, ["m%d@x" % j for j in range(max(1, k - 50), k)])
             for k in range(1, 3001)]
    out = thread("REFERENCES", chain)
    assert out == b"(" + b" ".join(b"%d" % k for k in range(1, 3001)) + b")"
    # every odd message has two replies: nesting 1500 deep
    branching = [item(k, "x", "m%d@x" % k, ["m%d@x" % (k - 1 - k % 2)] if k > 2 else []) for k in range(1, 3001)]
    out = thread("REFERENCES", branching)
    assert out.count(b"(") == out.count(b")") > 1500
    numbers = sorted(int(n) for n in out.replace(b"(", b" ").replace(b")", b" ").split())
    assert numbers == list(range(1, 3001))

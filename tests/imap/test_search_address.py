"""
SEARCH FROM/TO/CC/BCC match the addresses as the envelope has them
(RFC 3501 s6.4.4), not the raw field (issue 12, defect 9): comments and
quoting are not part of them, encoded-word display names are decoded,
each address is ``Name <mailbox@host>`` as Dovecot matches it.

What Dovecot 2.3 answered on this machine for the first message below:
FROM joe@example.test, Joe, "Joe <joe", example.test match; "joe(comment)",
comment, "\\"Joe\\"" do not; TO jj@x matches, TO =?utf-8 does not; CC Group
and CC a@b.test match.
"""

from __future__ import annotations

import imaplib

import pytest

from mailnet.imap import search
from mailnet.imap.parser import parseCommand
from mailnet.store.interfaces import MessageInfo

USER, PASSWORD = "alice@example.test", "alice-pw"

COMMENTED = (b'From: "Joe" <joe(comment)@example.test>\r\n'
             b"To: joe@(c)example.test, =?utf-8?q?J=C3=BCrgen?= <jj@x.test>\r\n"
             b"Cc: Group: a@b.test, c@d.test;\r\n"
             b"Bcc: (hidden) secret . agent @ spy . test\r\n"
             b"Subject: commented\r\n\r\nbody\r\n")
FOLDED = (b"From: =?iso-8859-1?q?Ren=E9?=\r\n <rene@example.test>\r\n"
          b"To: \"Smith, John\" <john.smith@example.test>\r\nSubject: folded\r\n\r\nbody\r\n")


def run(program, data):
    cmd = parseCommand(b"a SEARCH CHARSET UTF-8 " + program)
    searcher = search.Searcher(search.decodeStrings(cmd.keys, "utf-8"), 1, 1)
    c = search.Candidate(1, 1, MessageInfo(1, frozenset(), 1700000000.0, len(data), 1), False)
    c.data = data
    return searcher.match(c)


@pytest.mark.parametrize("key, hit", [
    (b"FROM joe@example.test", True),
    (b"FROM Joe", True),
    (b'FROM "Joe <joe@"', True),
    (b"FROM example.test", True),
    (b'FROM "joe(comment)"', False),
    (b"FROM comment", False),
    (b'FROM "\\"Joe\\""', False),
    (b"TO joe@example.test", True),
    (b"TO jj@x.test", True),
    ('TO "Jürgen"'.encode(), True),
    (b"TO =?utf-8", False),
    (b"CC Group", True),
    (b"CC c@d.test", True),
    (b"BCC secret.agent@spy.test", True),
    (b"BCC hidden", True),  # a comment with no phrase is the name, as in Dovecot's envelope
    (b"BCC nobody", False),
    (b"SUBJECT commented", True),
    (b'HEADER From "joe(comment)"', True),  # HEADER is the raw field
])
def test_address_keys_in_process(key, hit):
    assert run(key, COMMENTED) is hit


def test_folded_and_quoted_names_in_process():
    assert run('FROM "René"'.encode(), FOLDED)
    assert run(b'FROM "rene@example"', FOLDED)
    assert run(b'TO "Smith, John <john.smith@"', FOLDED)
    assert not run(b"FROM iso-8859-1", FOLDED)


def test_address_search_through_the_server(imap_server):
    c = imaplib.IMAP4("127.0.0.1", imap_server.port("imap"), timeout=30)
    try:
        c.login(USER, PASSWORD)
        c.create("addr")
        assert c.append("addr", None, None, COMMENTED)[0] == "OK"
        assert c.append("addr", None, None, FOLDED)[0] == "OK"
        c.select("addr")

        def found(*criteria):
            typ, data = c.uid("SEARCH", *criteria)
            assert typ == "OK", data
            return len(data[0].split())

        assert found("FROM", "joe@example.test") == 1
        assert found("TO", "joe@example.test") == 1
        assert found("FROM", '"joe(comment)"') == 0
        assert found("FROM", "rene@example.test") == 1
        c.literal = "René".encode()
        assert found("CHARSET", "UTF-8", "FROM") == 1
        assert found("CC", "Group") == 1
        assert found("OR", "FROM", "joe", "FROM", "rene") == 2
        c.logout()
    finally:
        c.shutdown() if c.state != "LOGOUT" else None

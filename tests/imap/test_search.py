"""
SEARCH: the raw fast path must agree with decoding.  The decoding itself
(mailnet.mail.mime.quickText against the email package) is tested in
tests/mail/test_mime.py.
"""

from mailnet.imap import search
from mailnet.imap.parser import parseCommand
from mailnet.store.interfaces import MessageInfo

def run(program_bytes, data, flags=frozenset()):
    cmd = parseCommand(b"a SEARCH CHARSET UTF-8 " + program_bytes)
    program = search.decodeStrings(cmd.keys, "utf-8")
    searcher = search.Searcher(program, 1, 1)
    c = search.Candidate(1, 1, MessageInfo(1, flags, 1700000000.0, len(data), 1), False)
    c.data = data
    return searcher.match(c)


def test_fast_path_and_decoding_agree():
    plain = b"From: a@b\r\nSubject: Hello World\r\n\r\nThe Quick brown fox\r\n"
    assert run(b"BODY quick", plain) and run(b"TEXT hello", plain) and not run(b"BODY hello", plain)
    assert run(b'HEADER subject "world"', plain) and not run(b"HEADER to x", plain)
    encoded = (b"Subject: =?utf-8?b?w4lsw6ht?=\r\nContent-Type: text/plain; charset=utf-8\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\nw6l0w6kgYnLDu2xhbnQ=\r\n")
    assert run('SUBJECT "élèm"'.encode(), encoded)
    assert run('BODY "BRÛLANT"'.encode(), encoded) and run('TEXT "été"'.encode(), encoded)
    assert not run(b"BODY w6l0", encoded)  # the base64 itself is not the text

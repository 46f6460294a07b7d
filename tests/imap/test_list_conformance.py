"""
LIST and LSUB conformance with the real server (issue 12 defects 5-7):
LSUB ``%`` shows the ``\\Noselect`` parents of subscribed children (RFC 3501
s6.3.9), RECURSIVEMATCH only with another selection option than REMOTE
(RFC 5258 s3.1), a pattern that is not modified UTF-7 matches nothing.
"""

import socket

import pytest

from tests.imap.test_clients import fresh_user


class Raw:
    """A line-level IMAP client on a socket: exact bytes in, exact lines out."""

    def __init__(self, server, user=None):
        self.sock = socket.create_connection(("127.0.0.1", server.port("imap")), timeout=20)
        self.f = self.sock.makefile("rb")
        self.greeting = self.f.readline()
        self.n = 0
        if user is not None:
            self.ok("LOGIN %s %s" % user)

    def cmd(self, text):
        """Send a command; return (tagged line, [untagged lines]) without CRLF."""
        self.n += 1
        tag = b"r%d" % self.n
        self.sock.sendall(tag + b" " + (text.encode() if isinstance(text, str) else text) + b"\r\n")
        untagged = []
        while True:
            line = self.f.readline()
            assert line, "connection closed after %r: %r" % (text, untagged)
            line = line.rstrip(b"\r\n")
            if line.startswith(tag + b" "):
                return line[len(tag) + 1:], untagged
            untagged.append(line)

    def ok(self, text):
        tagged, untagged = self.cmd(text)
        assert tagged.startswith(b"OK"), (text, tagged, untagged)
        return untagged

    def close(self):
        try:
            self.cmd("LOGOUT")
        except (AssertionError, OSError):
            pass
        self.sock.close()


@pytest.fixture(scope="module")
def folders(imap_server):
    """A user with d5/a/b (parent implied), d5/c and d5/c/d, subscribed to the leaves and d5/x/y (no folder)."""
    user = fresh_user(imap_server)
    c = Raw(imap_server, user)
    for name in ("d5/a/b", "d5/c", "d5/c/d"):
        c.ok('CREATE "%s"' % name)
    c.ok('UNSUBSCRIBE "d5/c"')  # the server may subscribe what CREATE made
    c.ok('UNSUBSCRIBE "d5/a"')
    for name in ("d5/a/b", "d5/c/d", "d5/x/y"):
        c.ok('SUBSCRIBE "%s"' % name)
    yield c
    c.close()


def listed(lines, keyword=b"LSUB"):
    """{name: attributes} of the LIST/LSUB lines."""
    out = {}
    for line in lines:
        assert line.startswith(b"* " + keyword + b" ("), line
        attrs, _, rest = line[len(keyword) + 4:].partition(b") ")
        name = rest.split(b" ", 1)[1]
        out[name.decode()] = set(attrs.split())
    return out


def test_lsub_percent_shows_noselect_parents(folders):
    # RFC 3501 s6.3.9: "foo/bar" subscribed, "foo" not: LSUB "%" returns
    # foo, flagged \Noselect, whether foo exists, is implied or is nowhere.
    got = listed(folders.ok('LSUB "" "d5/%"'))
    assert got == {"d5/a": {b"\\Noselect"}, "d5/c": {b"\\Noselect"}, "d5/x": {b"\\Noselect"}}, got
    got = listed(folders.ok('LSUB "d5/" "%"'))
    assert set(got) == {"d5/a", "d5/c", "d5/x"}, got
    # "*" reaches the subscribed names themselves, no parents.
    got = listed(folders.ok('LSUB "" "d5/*"'))
    assert set(got) == {"d5/a/b", "d5/c/d", "d5/x/y"}, got
    assert got["d5/x/y"] == {b"\\Noselect"} and got["d5/a/b"] == set(), got


def test_list_recursivematch_childinfo_for_missing_parent(folders):
    # RFC 5258 s3.1: a parent with subscribed children gets CHILDINFO even
    # when it does not exist (\NonExistent).
    lines = folders.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" "d5/%"')
    text = b"\n".join(lines)
    for name in (b"d5/a", b"d5/c", b"d5/x"):
        assert b'"/" ' + name + b' ("CHILDINFO" ("SUBSCRIBED"))' in text, text
    assert b"\\NonExistent" in [line for line in lines if b" d5/x " in line][0], lines


@pytest.mark.parametrize("selection", ["(RECURSIVEMATCH REMOTE)", "(REMOTE RECURSIVEMATCH)", "(RECURSIVEMATCH)"])
def test_recursivematch_alone_or_with_remote_is_bad(folders, selection):
    # RFC 5258 s3.1: RECURSIVEMATCH MUST NOT occur as the only selection
    # option (or only with REMOTE); the server MUST answer BAD.
    tagged, untagged = folders.cmd('LIST %s "" "*"' % selection)
    assert tagged.startswith(b"BAD"), tagged
    assert untagged == []
    assert folders.cmd("NOOP")[0].startswith(b"OK")


def test_recursivematch_with_subscribed_and_remote_is_fine(folders):
    lines = folders.ok('LIST (RECURSIVEMATCH SUBSCRIBED REMOTE) "" "d5/%"')
    assert len(lines) == 3, lines


@pytest.mark.parametrize("pattern", ["&Jjo", "a&b", "&AGE-", "d5/&Jjo*", "&ZeVnLIqe"])
def test_invalid_mutf7_pattern_matches_nothing(folders, pattern):
    # The pattern is valid syntax (list-mailbox); it names no mailbox, so
    # the answer is OK with nothing listed.
    for command in ('LIST "" "%s"', 'LSUB "" "%s"', 'LIST (SUBSCRIBED) "" "%s"'):
        tagged, untagged = folders.cmd(command % pattern)
        assert tagged.startswith(b"OK"), (command, tagged)
        assert untagged == [], (command, untagged)
    # Other patterns of the same command still match.
    lines = folders.ok('LIST "" ("%s" "INBOX")' % pattern)
    assert lines == [b'* LIST (\\HasNoChildren) "/" INBOX'], lines


def test_invalid_utf8_pattern_matches_nothing_in_rev2(imap_server):
    c = Raw(imap_server, fresh_user(imap_server))
    try:
        c.ok("ENABLE IMAP4rev2")
        # 8-bit data other than UTF-8 goes in a literal (RFC 9051 s4.3).
        tagged, untagged = c.cmd(b'LIST "" {3+}\r\n\xff\xfe*')
        assert tagged.startswith(b"OK") and untagged == [], (tagged, untagged)
    finally:
        c.close()


def test_in_process_lsub_list_patterns():
    """The same rules in process (memory store, fake output)."""
    from tests.imap.helpers import World, lines

    c = World().client(login="alice@example.test")
    c.ok("CREATE p/q/r")
    c.ok("UNSUBSCRIBE p")
    c.ok("UNSUBSCRIBE p/q")
    c.ok("SUBSCRIBE p/q/r")
    c.ok("SUBSCRIBE m/n")
    got = [line for line in lines(c.ok('LSUB "" %')) if line.startswith(b"* LSUB")]
    assert b'* LSUB (\\Noselect) "/" p' in got and b'* LSUB (\\Noselect) "/" m' in got, got
    got = lines(c.ok('LSUB "p/" %'))
    assert got[0] == b'* LSUB (\\Noselect) "/" p/q' and len(got) == 2, got
    for selection in ("(RECURSIVEMATCH REMOTE)", "(REMOTE RECURSIVEMATCH)"):
        assert lines(c.cmd('LIST %s "" *' % selection))[0].startswith(b"t%d BAD " % c.n)
    got = lines(c.ok('LIST "" ("&Jjo" "a&b")'))
    assert got == [b"t%d OK LIST completed" % c.n], got

"""
RFC 3502 MULTIAPPEND (issue 12, "Missing extensions"): several messages in
one APPEND, all stored or none, APPENDUID with a uid-set (RFC 4315 s3).
Raw sockets against the real server (synchronizing and non-synchronizing
literals, a failure in the middle, a full disk after the first message), and
in process with a store that fails on the second message.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import subprocess

import pytest
from twisted.internet import defer

from mailnet.imap.parser import parseCommand

from .conftest import BACKEND, _server
from .helpers import World, lines, message

USER, PASSWORD = "alice@example.test", "alice-pw"


class Raw:
    """A raw connection that sends synchronizing literals the proper way (waiting for "+")."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.f = self.sock.makefile("rb")
        self.f.readline()
        self.n = 0

    def readUntil(self, tag):
        out = []
        while True:
            line = self.f.readline()
            if not line:
                raise EOFError(b"".join(out))
            out.append(line)
            m = re.search(rb"\{(\d+)\}\r\n$", line)
            if m:
                out.append(self.f.read(int(m.group(1))))
                continue
            if line.startswith(tag + b" "):
                return b"".join(out)

    def cmd(self, text):
        self.n += 1
        tag = b"t%d" % self.n
        self.sock.sendall(tag + b" " + text + b"\r\n")
        return self.readUntil(tag)

    def login(self):
        assert b" OK " in self.cmd(b"LOGIN %s %s" % (USER.encode(), PASSWORD.encode()))
        return self

    def multiappend(self, mailbox, messages, sync=True):
        """``messages``: (options bytes, data) pairs; returns everything up to the tagged answer."""
        self.n += 1
        tag = b"t%d" % self.n
        head = tag + b" APPEND " + mailbox
        for i, (opts, data) in enumerate(messages):
            head += b" " + (opts + b" " if opts else b"") + b"{%d%s}\r\n" % (len(data), b"" if sync else b"+")
            self.sock.sendall(head)
            if sync:
                line = self.f.readline()
                if not line.startswith(b"+"):
                    # Refused before the literal: that is the answer.
                    return line + (b"" if line.startswith(tag + b" ") else self.readUntil(tag))
            head = data
        self.sock.sendall(head + b"\r\n")
        return self.readUntil(tag)

    def close(self):
        try:
            self.cmd(b"LOGOUT")
        except OSError:
            pass
        self.sock.close()


def _tagged(reply):
    return reply.rstrip(b"\r\n").split(b"\r\n")[-1]


def _status(raw, mailbox):
    reply = raw.cmd(b"STATUS " + mailbox + b" (MESSAGES UIDNEXT)")
    m = re.search(rb"MESSAGES (\d+) UIDNEXT (\d+)", reply)
    assert m, reply
    return int(m.group(1)), int(m.group(2))


@pytest.fixture
def raw(imap_server):
    c = Raw(imap_server.port("imap")).login()
    yield c
    c.close()


# Real server


def test_capability(raw):
    assert b" MULTIAPPEND" in raw.cmd(b"CAPABILITY")


@pytest.mark.parametrize("sync", [True, False])
def test_three_messages_in_one_append(raw, sync):
    box = b"Multi%d" % sync
    raw.cmd(b"CREATE " + box)
    msgs = [
        (b"(\\Seen)", message("first")),
        (b'(\\Flagged $Work) "05-Mar-2024 10:11:12 +0100"', message("second", body="x" * 300000 + "\r\n")),
        (b"", message("third")),
    ]
    reply = raw.multiappend(box, msgs, sync=sync)
    m = re.match(rb"t\d+ OK \[APPENDUID (\d+) (\S+)\]", _tagged(reply))
    assert m, reply
    assert m.group(2) == b"1:3"
    raw.cmd(b"SELECT " + box)
    reply = raw.cmd(b"UID FETCH 1:* (UID FLAGS INTERNALDATE BODY.PEEK[])")
    for data in (msgs[0][1], msgs[1][1], msgs[2][1]):
        assert data in reply
    assert reply.index(b"first") < reply.index(b"second") < reply.index(b"third")
    found = {int(u): (set(f.split()) - {b"\\Recent"}, d)
             for u, f, d in re.findall(rb'UID (\d+) FLAGS \(([^)]*)\) INTERNALDATE "([^"]+)"', reply)}
    assert found[1][0] == {b"\\Seen"}
    assert found[2] == ({b"\\Flagged", b"$Work"}, b"05-Mar-2024 09:11:12 +0000")
    assert found[3][0] == set()


def test_uid_set_after_earlier_messages(raw):
    raw.cmd(b"CREATE UidSet")
    assert b"OK" in _tagged(raw.multiappend(b"UidSet", [(b"", message("a"))]))
    reply = raw.multiappend(b"UidSet", [(b"", message("b")), (b"", message("c"))])
    assert re.search(rb"APPENDUID \d+ 2:3\]", reply), reply
    reply = raw.multiappend(b"UidSet", [(b"", message("d"))])
    assert re.search(rb"APPENDUID \d+ 4\]", reply), reply


def test_too_big_second_message_stores_nothing(make_imap_server):
    server = make_imap_server(limits={"message_size": 20000})
    raw = Raw(server.port("imap")).login()
    try:
        raw.cmd(b"CREATE Atomic")
        before = _status(raw, b"Atomic")
        reply = raw.multiappend(b"Atomic", [(b"", message("ok one")), (b"", message("too big", body="y" * 30000)),
                                            (b"", message("ok three"))])
        assert re.match(rb"t\d+ NO \[TOOBIG\] Message 2 too big", _tagged(reply)), reply
        assert _status(raw, b"Atomic") == before
        # The session goes on, and a good MULTIAPPEND still works.
        reply = raw.multiappend(b"Atomic", [(b"", message("ok one")), (b"", message("ok two"))])
        assert re.search(rb"OK \[APPENDUID \d+ 1:2\]", reply), reply
    finally:
        raw.close()


def test_bad_flag_or_empty_message_in_the_middle(raw):
    raw.cmd(b"CREATE Atomic2")
    before = _status(raw, b"Atomic2")
    reply = raw.multiappend(b"Atomic2", [(b"", message("one")), (b"(\\Recent)", message("two"))])
    assert b" BAD " in _tagged(reply), reply
    assert _status(raw, b"Atomic2") == before
    reply = raw.multiappend(b"Atomic2", [(b"", message("one")), (b"", b""), (b"", message("three"))], sync=False)
    assert re.match(rb"t\d+ NO Message 2 is empty", _tagged(reply)), reply
    assert _status(raw, b"Atomic2") == before


def test_missing_mailbox_trycreate(raw):
    reply = raw.multiappend(b"NoSuchBox", [(b"", message("one")), (b"", message("two"))], sync=False)
    assert b"NO [TRYCREATE]" in _tagged(reply)


def test_garbage_between_messages_is_bad(raw):
    raw.cmd(b"CREATE Atomic3")
    before = _status(raw, b"Atomic3")
    data = message("one")
    raw.n += 1
    raw.sock.sendall(b"t%d APPEND Atomic3 {%d+}\r\n%s junk {3+}\r\nabc\r\n" % (raw.n, len(data), data))
    reply = raw.readUntil(b"t%d" % raw.n)
    assert b" BAD " in _tagged(reply), reply
    assert _status(raw, b"Atomic3") == before


@pytest.fixture
def small_disk(tmp_path):
    if BACKEND != "maildir":
        pytest.skip("the Maildir store is not in this build")
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: " + done.stderr.decode(errors="replace").strip())
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _fillLeaving(directory, spare):
    st = os.statvfs(directory)
    free = st.f_bavail * st.f_frsize
    with open(os.path.join(directory, "filler"), "wb") as f:
        try:
            f.write(b"\0" * max(0, free - spare))
        except OSError as e:
            assert e.errno == errno.ENOSPC


@pytest.mark.slow
def test_full_disk_after_the_first_message_takes_it_out(tmp_path, small_disk):
    """The store fails on the second message: the first, stored, is removed again."""
    server = _server(tmp_path / "srv", store={"mail_dir": str(small_disk / "mail")})
    try:
        raw = Raw(server.port("imap")).login()
        raw.cmd(b"CREATE Disk")
        before = _status(raw, b"Disk")
        _fillLeaving(small_disk, 1024 * 1024)
        first = message("fits", body="a" * 200000 + "\r\n")
        second = message("does not fit", body="b" * 2000000 + "\r\n")
        reply = raw.multiappend(b"Disk", [(b"", first), (b"", second)])
        assert re.match(rb"t\d+ NO \[OVERQUOTA\]", _tagged(reply)), reply
        count, uidnext = _status(raw, b"Disk")
        assert count == before[0] == 0
        # (The server's output is read by a thread: wait for the line rather than race it.)
        server.waitForLog("MULTIAPPEND failed, its 1 stored messages were removed")
        # Once there is room again, the same MULTIAPPEND works.
        os.unlink(small_disk / "filler")
        reply = raw.multiappend(b"Disk", [(b"", first), (b"", second)])
        assert re.search(rb"OK \[APPENDUID \d+ %d:%d\]" % (uidnext, uidnext + 1), reply), reply
        raw.close()
    finally:
        server.stop()


# Parser and in process


def test_parser_multiappend_forms():
    from mailnet.imap.parser import Literal

    def lit(data):
        m = Literal(len(data))
        m._write(data)
        return m

    cmd = parseCommand([b"a APPEND box (\\Seen) ", lit(b"one"), b' "05-Mar-2024 10:11:12 +0100" ', lit(b"two"),
                        b" ", lit(b"three"), b""])
    assert [m.message.bytes() for m in cmd.messages] == [b"one", b"two", b"three"]
    assert [m.flags for m in cmd.messages] == [["\\Seen"], [], []]
    assert cmd.messages[0].date is None and cmd.messages[1].date is not None
    assert cmd.message is cmd.messages[0].message and cmd.flags == ["\\Seen"]
    assert len(list(cmd.literals())) == 3
    with pytest.raises(Exception):
        parseCommand([b"a APPEND box ", lit(b"one"), b" ", lit(b"two"), b" junk"])


def test_in_process_store_failure_on_the_second_message():
    world = World()
    a = world.client(login="alice@example.test")
    b = world.client(login="alice@example.test")
    a.ok("CREATE Roll")
    b.ok("SELECT Roll")
    account = world.account()
    opened = []
    account.openFolder("Roll").addBoth(opened.append)
    folder = opened[0]
    calls = []
    original = type(folder).append

    def failingAppend(self, source, flags=(), internalDate=None):
        calls.append(1)
        if len(calls) == 2:
            return defer.fail(OSError(errno.EIO, "I/O error"))
        return original(self, source, flags, internalDate)

    type(folder).append = failingAppend
    try:
        m1, m2 = message("one"), message("two")
        reply = a.feed(b"x APPEND Roll {%d+}\r\n%s {%d+}\r\n%s\r\n" % (len(m1), m1, len(m2), m2))
    finally:
        type(folder).append = original
    assert len(calls) == 2
    assert lines(reply)[-1].startswith(b"x NO [UNAVAILABLE]"), reply
    # The selected session sees no message come (the add and the removal
    # happened between two of its commands).
    reply = b.cmd("NOOP")
    assert b"EXISTS" not in reply and b"EXPUNGE" not in reply, reply
    assert b"(MESSAGES 0)" in a.cmd("STATUS Roll (MESSAGES)")

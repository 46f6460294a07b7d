"""
A Maildir someone else damaged, with the real server and imaplib: entries
in new/ and cur/ that are not regular files (a directory, a fifo, a
symlink) are skipped with a log line, never followed, and do not hide the
other messages (docs/store.md, "Opening").
"""

import imaplib
import os
import tempfile

import pytest

from tests.imap.conftest import BACKEND
from tests.imap.test_clients import fresh_user, imaplib_login, message
from tests.imap.test_maildir import drop_into_maildir

pytestmark = [pytest.mark.slow, pytest.mark.skipif(BACKEND != "maildir", reason="Maildir store not in this build")]


def new_user(server):
    """A user whose Maildir exists (the first login creates it)."""
    user = fresh_user(server)
    imaplib_login(server, user).logout()
    return user


def subjects(m):
    typ, data = m.select("INBOX")
    assert typ == "OK", data
    count = int(data[0])
    if not count:
        return []
    typ, data = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK", data
    return sorted(part[1].strip().decode() for part in data if isinstance(part, tuple))


@pytest.mark.parametrize("where", ["new", "cur"])
def test_directory_in_maildir_is_skipped(imap_server, where):
    user = new_user(imap_server)
    root = imap_server.maildir(user[0])
    drop_into_maildir(imap_server, user[0], message("first"))
    os.mkdir(os.path.join(root, where, "1700000000.M1P1.stray-dir"))
    drop_into_maildir(imap_server, user[0], message("second"))
    m = imaplib_login(imap_server, user)
    try:
        assert subjects(m) == ["Subject: first", "Subject: second"]
        # The folder stays usable; a later delivery is seen at the next look.
        drop_into_maildir(imap_server, user[0], message("third"))
        assert subjects(m) == ["Subject: first", "Subject: second", "Subject: third"]
        typ, data = m.noop()
        assert typ == "OK"
    finally:
        m.logout()
    imap_server.waitForLog("not a regular file")


def test_fifo_and_socket_are_skipped(imap_server, tmp_path):
    import socket

    user = new_user(imap_server)
    root = imap_server.maildir(user[0])
    drop_into_maildir(imap_server, user[0], message("one"))
    os.mkfifo(os.path.join(root, "new", "1700000000.M2P1.fifo"))
    s = socket.socket(socket.AF_UNIX)
    try:
        # Bound at a short path (sun_path holds 108 bytes), then moved in.
        short = os.path.join(tempfile.mkdtemp(dir=tmp_path), "s")
        s.bind(short)
        os.rename(short, os.path.join(root, "cur", "1700000000.M3P1.sock:2,S"))
        m = imaplib_login(imap_server, user)
        try:
            assert subjects(m) == ["Subject: one"]
        finally:
            m.logout()
    finally:
        s.close()


def test_symlink_is_not_followed(imap_server, tmp_path):
    user = new_user(imap_server)
    root = imap_server.maildir(user[0])
    secret = tmp_path / "secret"
    secret.write_bytes(b"Subject: secret\r\n\r\nroot:x:0:0:root:/root:/bin/sh\r\n")
    os.symlink(secret, os.path.join(root, "new", "1700000000.M4P1.link"))
    os.symlink(secret, os.path.join(root, "cur", "1700000000.M5P1.link:2,S"))
    drop_into_maildir(imap_server, user[0], message("real"))
    m = imaplib_login(imap_server, user)
    try:
        assert subjects(m) == ["Subject: real"]
        typ, data = m.fetch("1:*", "(BODY.PEEK[])")
        assert b"root:x:0" not in b"".join(p[1] for p in data if isinstance(p, tuple))
    finally:
        m.logout()


def test_directory_appearing_in_selected_folder(imap_server):
    """A directory showing up while a session has the folder open hides nothing, then or later."""
    user = new_user(imap_server)
    root = imap_server.maildir(user[0])
    m = imaplib_login(imap_server, user)
    try:
        assert subjects(m) == []
        stray = os.path.join(root, "new", "1700000000.M6P1.stray-dir")
        os.mkdir(stray)
        drop_into_maildir(imap_server, user[0], message("alpha"))
        typ, data = m.noop()
        assert typ == "OK", data
        assert subjects(m) == ["Subject: alpha"]
        os.rmdir(stray)
        drop_into_maildir(imap_server, user[0], message("beta"))
        assert subjects(m) == ["Subject: alpha", "Subject: beta"]
    finally:
        m.logout()


def test_message_replaced_by_symlink_is_not_served(imap_server, tmp_path):
    user = new_user(imap_server)
    root = imap_server.maildir(user[0])
    drop_into_maildir(imap_server, user[0], message("victim"))
    m = imaplib_login(imap_server, user)
    try:
        assert subjects(m) == ["Subject: victim"]
        (name,) = os.listdir(os.path.join(root, "cur"))
        secret = tmp_path / "secret"
        secret.write_bytes(b"Subject: secret\r\n\r\nroot:x:0:0\r\n")
        os.unlink(os.path.join(root, "cur", name))
        os.symlink(secret, os.path.join(root, "cur", name))
        typ, data = m.fetch("1", "(BODY.PEEK[])")
        assert b"root:x:0" not in b"".join(p[1] if isinstance(p, tuple) else p for p in data if p)
        typ, data = m.noop()
        assert typ == "OK", data
    finally:
        m.logout()

"""
IMAP over the Maildir store, with the real server: UIDs and UIDVALIDITY
across restarts and kill -9, APPEND durability, mail dropped into the
Maildir by another program, and a 50 MB message served with flat memory.
"""

import os
import socket
import time

import imapclient
import pytest

from tests.imap.conftest import BACKEND
from tests.imap.test_clients import fresh_user, message

pytestmark = [pytest.mark.slow, pytest.mark.skipif(BACKEND != "maildir", reason="Maildir store not in this build")]


def connect(server, user, use_uid=True):
    c = imapclient.IMAPClient("127.0.0.1", port=server.port("imap"), ssl=False, timeout=30, use_uid=use_uid)
    c.login(*user)
    return c


def drop_into_maildir(server, user, data, name=None):
    """Deliver like an external MDA: write in tmp/, rename into new/."""
    root = server.maildir(user)
    name = name or "%d.M%dP%d.external" % (time.time(), time.monotonic_ns() % 1000000, os.getpid())
    tmp = os.path.join(root, "tmp", name)
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, os.path.join(root, "new", name))


def test_uids_survive_restart_and_kill(make_imap_server):
    server = make_imap_server()
    user = fresh_user(server)
    c = connect(server, user)
    for i in range(3):
        c.append("INBOX", message("m%d" % i))
    info = c.select_folder("INBOX")
    validity = info[b"UIDVALIDITY"]
    before = {uid: d[b"BODY[HEADER.FIELDS (SUBJECT)]"] for uid, d in c.fetch(c.search(), ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"]).items()}
    c.logout()

    server.stop()
    server.start()
    c = connect(server, user)
    assert c.select_folder("INBOX")[b"UIDVALIDITY"] == validity
    after = {uid: d[b"BODY[HEADER.FIELDS (SUBJECT)]"] for uid, d in c.fetch(c.search(), ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"]).items()}
    assert after == before
    # APPEND is durable once OK'd: kill -9 right after it.
    result = c.append("INBOX", message("after restart"))
    c.logout()
    server.kill()
    server.start()
    c = connect(server, user)
    assert c.select_folder("INBOX")[b"UIDVALIDITY"] == validity
    uids = c.search()
    assert len(uids) == 4 and uids[-1] > max(before)
    assert str(uids[-1]).encode() in result
    c.logout()


def test_external_delivery_seen_at_next_command_and_in_idle(imap_server):
    user = fresh_user(imap_server)
    a = connect(imap_server, user, use_uid=False)
    a.select_folder("INBOX")
    drop_into_maildir(imap_server, user[0], b"Subject: dropped\r\n\r\nfrom another MDA\r\n")
    responses = a.noop()[1]
    assert (1, b"EXISTS") in responses
    a.idle()
    start = time.monotonic()
    drop_into_maildir(imap_server, user[0], b"Subject: dropped 2\n\nLF only, like mutt\n")
    responses = a.idle_check(timeout=10)
    assert (2, b"EXISTS") in responses, responses
    assert time.monotonic() - start < 5
    a.idle_done()
    data = a.fetch([2], ["BODY.PEEK[]", "RFC822.SIZE", "BODY.PEEK[TEXT]<3.7>"])[2]
    assert data[b"BODY[]"] == b"Subject: dropped 2\r\n\r\nLF only, like mutt\r\n"
    assert data[b"RFC822.SIZE"] == len(data[b"BODY[]"])
    assert data[b"BODY[TEXT]<3>"] == b"only, l"
    a.logout()


def test_flags_set_by_another_program_are_seen(imap_server):
    user = fresh_user(imap_server)
    c = connect(imap_server, user, use_uid=False)
    c.append("INBOX", message("flag me"))
    c.select_folder("INBOX")
    c.noop()
    cur = os.path.join(imap_server.maildir(user[0]), "cur")
    new = os.path.join(imap_server.maildir(user[0]), "new")
    names = [(new, n) for n in os.listdir(new)] + [(cur, n) for n in os.listdir(cur)]
    assert len(names) == 1
    d, name = names[0]
    base = name.split(":2,")[0]
    os.rename(os.path.join(d, name), os.path.join(cur, base + ":2,FS"))
    responses = c.noop()[1]
    flags = [r[2] for r in responses if r[1] == b"FETCH"]
    assert flags and b"\\Flagged" in flags[0][flags[0].index(b"FLAGS") + 1]
    c.logout()


def rss_peak(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_fifty_megabyte_message_with_flat_memory(make_imap_server):
    server = make_imap_server(limits={"message_size": 60 * 1024 * 1024, "imap_literal_size": 60 * 1024 * 1024})
    user = fresh_user(server)
    size = 50 * 1024 * 1024
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ab\r\n"
    body = line * (size // len(line))
    data = b"Subject: huge\r\n\r\n" + body
    # Upload by socket in chunks (a non-synchronizing literal).
    sock = socket.create_connection(("127.0.0.1", server.port("imap")), timeout=60)
    f = sock.makefile("rb")
    f.readline()
    sock.sendall(("a LOGIN %s %s\r\n" % user).encode())
    assert f.readline().startswith(b"a OK")
    # Forget the peak so far (argon2 at login uses 64 MB), then measure.
    with open("/proc/%d/clear_refs" % server.process.pid, "w") as refs:
        refs.write("5")
    baseline = rss_peak(server.process.pid)
    sock.sendall(b"b APPEND INBOX {%d+}\r\n" % len(data))
    view = memoryview(data)
    for i in range(0, len(data), 1 << 20):
        sock.sendall(view[i:i + (1 << 20)])
    sock.sendall(b"\r\n")
    reply = f.readline()
    assert reply.startswith(b"b OK [APPENDUID"), reply
    sock.sendall(b"c SELECT INBOX\r\nd FETCH 1 (RFC822.SIZE BODY.PEEK[]<52000000.10> BODY.PEEK[])\r\n")
    line_ = f.readline()
    while not line_.startswith(b"c OK"):
        line_ = f.readline()
    head = f.readline()
    assert head.startswith(b"* 1 FETCH (RFC822.SIZE %d BODY[]<52000000> {10}" % len(data)), head[:100]
    got = f.read(10)
    assert got == data[52000000:52000010]
    rest = f.read(len(b" BODY[] {%d}\r\n" % len(data)))
    assert rest == b" BODY[] {%d}\r\n" % len(data)
    received = 0
    # Read slowly at first so that the server has to wait for us.
    while received < len(data):
        chunk = f.read(min(1 << 20, len(data) - received))
        assert chunk == data[received:received + len(chunk)]
        received += len(chunk)
    assert f.readline() == b")\r\n"
    assert f.readline().startswith(b"d OK")
    grown = rss_peak(server.process.pid) - baseline
    print("server peak RSS grew by %.1f MB for a %d MB message" % (grown / 1048576, len(data) // 1048576))
    assert grown < 20 * 1024 * 1024, "server grew by %d MB" % (grown // (1024 * 1024))
    sock.close()


def test_reselect_after_outside_changes(imap_server):
    """SELECT reuses what it computed for an unchanged folder; any change must show."""
    user = fresh_user(imap_server)
    c = connect(imap_server, user, use_uid=False)
    for i in range(3):
        c.append("INBOX", message("r%d" % i))
    assert c.select_folder("INBOX")[b"EXISTS"] == 3
    c.unselect_folder()
    assert c.select_folder("INBOX")[b"EXISTS"] == 3
    c.unselect_folder()
    root = imap_server.maildir(user[0])
    victim = sorted(os.listdir(os.path.join(root, "cur")) + os.listdir(os.path.join(root, "new")))[0]
    for sub in ("cur", "new"):
        if os.path.exists(os.path.join(root, sub, victim)):
            os.unlink(os.path.join(root, sub, victim))
    info = c.select_folder("INBOX")
    assert info[b"EXISTS"] == 2
    drop_into_maildir(imap_server, user[0], b"Subject: new\r\n\r\nx\r\n")
    c.unselect_folder()
    assert c.select_folder("INBOX")[b"EXISTS"] == 3
    c.logout()

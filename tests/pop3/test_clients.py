"""
A real mailnet process on 127.0.0.1, driven by clients we did not write:
poplib, getmail6; raw sockets for what they cannot send.  fetchmail's and
getmail6's plain runs are in tests/test_clients_on_both_stores.py (on the
Maildir and the PostgreSQL store; their helpers in clients.py).

Mail gets into the maildrop the way an external delivery agent puts it
there: a file written in the Maildir's tmp/ and renamed into new/.
"""

import os
import poplib
import shutil
import socket
import threading
import time

import pytest

from tests.pop3.clients import (Raw, delivered, getmailSetup, mimeMessage, newUser, pop3s, pop3stls, putMessage, retr,
                                runGetmail, tlsContext)

pytest.importorskip("mailnet.store.maildir", reason="the maildir store is not on this branch yet")

pytestmark = pytest.mark.slow


@pytest.fixture
def user(server):
    return newUser(server)


def test_poplib_pop3s_full_session(server, user):
    name, pw = user
    m1, m2 = mimeMessage("one"), mimeMessage("two", attachment=b"")
    putMessage(server, name, m1)
    putMessage(server, name, m2)
    c = pop3s(server, name, pw)
    assert c.stat() == (2, len(m1) + len(m2))
    _, listing, _ = c.list()
    assert listing == [b"1 %d" % len(m1), b"2 %d" % len(m2)]
    assert retr(c, 1) == m1
    assert retr(c, 2) == m2
    _, top, _ = c.top(1, 0)
    assert b"".join(line + b"\r\n" for line in top) == m1[: m1.index(b"\r\n\r\n") + 4]
    c.dele(1)
    assert c.quit().startswith(b"+OK")
    files = server.messageFiles(name)
    assert len(files) == 1
    c = pop3s(server, name, pw)
    assert c.stat() == (1, len(m2)) and retr(c, 1) == m2
    c.quit()


def test_poplib_stls_and_capa(server, user):
    name, pw = user
    putMessage(server, name, mimeMessage())
    c = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=30)
    caps = c.capa()
    assert "STLS" in caps and "USER" not in caps and "SASL" not in caps
    assert {"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "IMPLEMENTATION"} <= set(caps)
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\] Plaintext authentication disallowed"):
        c.user(name)
    c.stls(tlsContext(server))
    caps = c.capa()
    assert "STLS" not in caps and "USER" in caps and caps["SASL"] == ["PLAIN"]
    c.user(name)
    c.pass_(pw)
    assert c.stat()[0] == 1
    c.quit()


def test_poplib_stls_download_and_delete(server, user):
    name, pw = user
    sent = [mimeMessage(f"stls {i}") for i in range(3)]
    for m in sent:
        putMessage(server, name, m)
    c = pop3stls(server, name, pw)
    got = []
    for n in range(1, c.stat()[0] + 1):
        got.append(retr(c, n))
        c.dele(n)
    assert c.quit().startswith(b"+OK Bye; 3 messages deleted")
    assert got == sent
    assert server.messageFiles(name) == []


def test_bad_password_gets_auth_code(server, user):
    name, _ = user
    c = pop3s(server)
    c.user(name)
    with pytest.raises(poplib.error_proto, match=r"-ERR \[AUTH\] Authentication failed"):
        c.pass_("wrong")
    c.quit()


def test_retr_marks_seen_and_keep_mode_keeps(server, user):
    name, pw = user
    putMessage(server, name, mimeMessage())
    c = pop3s(server, name, pw)
    retr(c, 1)
    c.quit()
    [path] = server.messageFiles(name)
    # Maildir: \Seen is the S in the info part, in cur/ (any program sees it).
    assert os.path.basename(os.path.dirname(path)) == "cur" and path.split(":2,")[1].count("S") == 1


def test_uidl_is_stable_across_sessions_flag_changes_and_restart(make_server):
    server = make_server()
    name, pw = newUser(server)
    paths = [putMessage(server, name, mimeMessage(f"m{i}")) for i in range(3)]
    c = pop3s(server, name, pw)
    _, first, _ = c.uidl()
    c.quit()
    uidls = [line.split()[1] for line in first]
    assert len(set(uidls)) == 3
    for u in uidls:
        assert 1 <= len(u) <= 70 and all(0x21 <= b <= 0x7E for b in u)
    # Like mutt: mark read and flagged by renaming the file (wherever it is
    # now, new/ or cur/) to cur/<base>:2,FS.
    current = {os.path.basename(p).split(":")[0]: p for p in server.messageFiles(name)}
    for path in paths[:2]:
        base = os.path.basename(path)
        os.rename(current[base], os.path.join(server.maildir(name), "cur", base + ":2,FS"))
    c = pop3s(server, name, pw)
    assert c.uidl()[1] == first
    retr(c, 3)  # we mark it \Seen ourselves: a rename too
    c.quit()
    c = pop3s(server, name, pw)
    assert c.uidl()[1] == first
    c.dele(2)
    c.quit()
    server.stop()
    server.start()
    c = pop3s(server, name, pw)
    assert [line.split()[1] for line in c.uidl()[1]] == [uidls[0], uidls[2]]
    c.quit()


def test_files_renamed_or_deleted_by_another_program_during_a_session(server, user):
    """
    The store opens a file at the name its index last saw; a name that is
    gone sends it looking (a rename: the right message), or the message is
    reported removed (a deletion), and the session goes on.
    """
    name, pw = user
    msgs = [mimeMessage(f"m{i}") for i in range(3)]
    bases = [os.path.basename(putMessage(server, name, m)) for m in msgs]  # LF files, as an MDA writes them
    c = pop3s(server, name, pw)
    assert c.stat()[0] == 3
    files = {os.path.basename(p).split(":")[0]: p for p in server.messageFiles(name)}
    first, second, _ = bases
    # Like mutt, while we hold the maildrop: flag one, delete another.
    os.rename(files[first], os.path.join(server.maildir(name), "cur", first + ":2,FS"))
    os.unlink(files[second])
    assert retr(c, 1) == msgs[0]
    with pytest.raises(poplib.error_proto, match="removed by another client"):
        c.retr(2)
    assert retr(c, 3) == msgs[2]
    c.quit()


def test_maildrop_lock(server, user):
    name, pw = user
    first = pop3s(server, name, pw)
    second = pop3s(server)
    second.user(name)
    with pytest.raises(poplib.error_proto, match=r"-ERR \[IN-USE\]"):
        second.pass_(pw)
    first.quit()
    second.user(name)
    second.pass_(pw)
    second.quit()


def test_dropped_connection_deletes_nothing(server, user):
    name, pw = user
    for i in range(3):
        putMessage(server, name, mimeMessage(f"m{i}"))
    c = pop3s(server, name, pw)
    for n in (1, 2, 3):
        c.dele(n)
    c.file.close()  # no QUIT: the socket goes once its file is closed too
    c.sock.close()
    deadline = time.monotonic() + 10
    while True:  # the server notices the close and frees the lock
        try:
            c = pop3s(server, name, pw)
            break
        except poplib.error_proto as e:
            assert b"IN-USE" in e.args[0] and time.monotonic() < deadline
            time.sleep(0.05)
    assert c.stat()[0] == 3
    c.quit()
    assert len(server.messageFiles(name)) == 3


def test_stls_injection_is_not_executed(server, user):
    name, pw = user
    putMessage(server, name, mimeMessage())
    raw = Raw(server.port("pop3"))
    # One packet: STLS and, behind it, commands a man in the middle added.
    raw.send(f"STLS\r\nUSER {name}\r\nPASS {pw}\r\nDELE 1\r\nQUIT\r\n".encode())
    assert raw.line() == b"+OK Begin TLS negotiation\r\n"
    raw.starttls(tlsContext(server))
    raw.send(b"CAPA\r\n")
    assert raw.line() == b"+OK Capability list follows\r\n"  # not an answer to USER
    raw.multiline()
    raw.send(f"PASS {pw}\r\n".encode())
    assert raw.line() == b"-ERR Send USER first\r\n"
    raw.send(f"USER {name}\r\nPASS {pw}\r\nSTAT\r\nQUIT\r\n".encode())
    assert raw.line().startswith(b"+OK")
    assert raw.line().startswith(b"+OK Logged in; 1 messages")
    assert raw.line().startswith(b"+OK 1 ")
    assert raw.line().startswith(b"+OK Bye; 0 messages deleted")
    raw.close()
    assert len(server.messageFiles(name)) == 1


def test_overlong_line_and_garbage(server, user):
    name, pw = user
    raw = Raw(server.port("pop3s"), tlsContext(server))
    raw.send(b"NOOP " + b"x" * 400 + b"\r\nNOOP\r\n\x00\x01\xff\r\nSTAT\r\nXYZZY\r\n")
    assert raw.line() == b"-ERR Command line too long (limit 255 octets, RFC 2449 s4)\r\n"
    assert raw.line() == b"+OK\r\n"
    assert raw.line() == b"-ERR Control characters are not allowed in commands\r\n"
    assert raw.line() == b"-ERR Not logged in yet; log in first\r\n"
    assert raw.line() == b"-ERR Unknown command\r\n"
    raw.send(f"USER {name}\r\nPASS {pw}\r\nSTAT\r\nQUIT\r\n".encode())
    assert [raw.line()[:3] for _ in range(4)] == [b"+OK"] * 4
    raw.close()


def test_pipelining(server, user):
    name, pw = user
    msgs = [mimeMessage(f"m{i}") for i in range(5)]
    for m in msgs:
        putMessage(server, name, m)
    raw = Raw(server.port("pop3s"), tlsContext(server))
    raw.send(f"USER {name}\r\nPASS {pw}\r\n".encode() + b"".join(b"RETR %d\r\n" % n for n in range(1, 6)) + b"QUIT\r\n")
    assert raw.line().startswith(b"+OK")
    assert raw.line().startswith(b"+OK Logged in")
    for m in msgs:
        assert raw.line() == b"+OK %d octets\r\n" % len(m)
        lines = raw.multiline()
        assert b"".join(line[1:] if line.startswith(b".") else line for line in lines) == m
    assert raw.line().startswith(b"+OK Bye")
    raw.close()


def test_too_many_connections(make_server):
    server = make_server(config={"limits": {"connections_per_ip": 2}})
    a, b = Raw(server.port("pop3")), Raw(server.port("pop3"))
    c = socket.create_connection(("127.0.0.1", server.port("pop3")), timeout=10)
    assert c.makefile("rb").readline() == b"-ERR [SYS/TEMP] Too many connections\r\n"
    for x in (a, b):
        x.close()
    c.close()


# getmail6 (its plain runs and fetchmail's: tests/test_clients_on_both_stores.py)


def test_getmail_with_a_slow_parent_after_fork(tmp_path, server, request):
    """
    getmail 6.18 on a loaded machine: its delivery child ends before the
    parent has set its SIGCHLD handler.  Plain getmail then waits 180 s
    after RETR 1 (the message delivered); run through getmail_reaped.py it
    goes on.  (This was the getmail test's occasional 60 s timeout, not the
    server.)
    """
    if not shutil.which("getmail"):
        pytest.skip("getmail is not installed")
    name, pw = newUser(server)
    sent = [mimeMessage(f"slow parent {i}") for i in range(2)]
    for m in sent:
        putMessage(server, name, m)
    gdir, dest = getmailSetup(tmp_path, server, name, pw, False, request)
    proc = runGetmail(gdir, slowParent=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert delivered(dest) == sorted(m.replace(b"\r\n", b"\n") for m in sent)


# Crash safety


def test_kill_9_after_quit_keeps_deletions_and_without_quit_deletes_nothing(make_server):
    server = make_server()
    name, pw = newUser(server)
    sent = [mimeMessage(f"k{i}") for i in range(4)]
    for m in sent:
        putMessage(server, name, m)
    c = pop3s(server, name, pw)
    c.dele(1)
    c.dele(3)
    assert c.quit().startswith(b"+OK")
    server.kill()  # SIGKILL right after the +OK
    server.start()
    c = pop3s(server, name, pw)
    assert c.stat()[0] == 2
    assert [retr(c, 1), retr(c, 2)] == [sent[1], sent[3]]
    c.dele(1)
    c.dele(2)  # ... and no QUIT: the process dies
    server.kill()
    server.start()
    c = pop3s(server, name, pw)
    assert c.stat()[0] == 2
    c.quit()
    assert len(server.messageFiles(name)) == 2


def rss(pid) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_retr_of_50mb_keeps_memory_flat(make_server):
    """Resident memory sampled every 5 ms while a slow client reads 50 MB.
    (Peak-ever memory would not do: argon2id takes 64 MiB at each login.)"""
    server = make_server()
    name, pw = newUser(server)
    line = b"x" * 76 + b"\r\n"
    big = b"Subject: big\r\n\r\n" + line * (50 * 1024 * 1024 // len(line))
    putMessage(server, name, big)
    c = pop3s(server, name, pw)
    assert c.stat() == (1, len(big))
    pid = server.process.pid
    before = rss(pid)
    peak = [before]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss(pid))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        c._putcmd("RETR 1")
        assert c._getline()[0] == b"+OK %d octets" % len(big)
        received = lines = 0
        while True:
            data, _ = c._getline()
            if data == b".":
                break
            received += len(data) + 2
            lines += 1
            if lines % 60000 == 0:
                time.sleep(0.05)  # a slow reader: the server must wait, not buffer
    finally:
        stop.set()
        sampler.join()
    assert received == len(big)
    grown = peak[0] - before
    assert grown < 20 * 1024 * 1024, f"resident memory grew by {grown / 1e6:.1f} MB"
    c.quit()

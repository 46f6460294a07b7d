"""
A real mailnet process on 127.0.0.1, driven by clients we did not write:
poplib, fetchmail, getmail6; raw sockets for what they cannot send.

Mail gets into the maildrop the way an external delivery agent puts it
there: a file written in the Maildir's tmp/ and renamed into new/.
"""

import os
import poplib
import shlex
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from tests.pop3.clients import Raw, mimeMessage, newUser, pop3s, pop3stls, putMessage, retr, tlsContext

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


# fetchmail and getmail


def runFetchmail(tmp_path, server, name, pw, mode, keep):
    home = tmp_path / "fetchmail"
    out = tmp_path / "fetched"
    home.mkdir(exist_ok=True)
    out.mkdir(exist_ok=True)
    port = server.port("pop3s" if mode == "ssl" else "pop3")
    tls = "ssl" if mode == "ssl" else "sslproto tls1.2+"
    rc = home / "fetchmailrc"
    rc.write_text(textwrap.dedent(f"""\
        set no bouncemail
        poll localhost via 127.0.0.1 proto pop3 port {port} uidl
          user "{name}" there with password "{pw}" is "nobody" here
          {tls} sslcertck sslcommonname "localhost" sslcertfile "{server.certFile}"
          {"keep" if keep else "nokeep flush"}
          mda "/bin/sh -c 'cat > {out}/msg.$$'"
        """))
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(home), FETCHMAILHOME=str(home))
    # Its own lock file: as root fetchmail would use /var/run/fetchmail.pid
    # (FETCHMAILHOME or not), and one running elsewhere (another xdist
    # worker's test) makes it exit 8, "another foreground fetchmail is running".
    command = ["fetchmail", "-v", "--nosyslog", "--pidfile", str(home / "fetchmail.pid"), "-f", str(rc)]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    messages = [(p.read_bytes()) for p in sorted(out.iterdir())]
    for p in out.iterdir():
        p.unlink()
    return proc, messages


def withoutReceived(lfMessage: bytes) -> bytes:
    """fetchmail adds a Received: header (folded) at the top; drop it."""
    lines = lfMessage.split(b"\n")
    assert lines[0].startswith(b"Received: ")
    i = 1
    while lines[i][:1] in (b" ", b"\t"):
        i += 1
    return b"\n".join(lines[i:])


@pytest.mark.parametrize("mode", ["ssl", "stls"])
def test_fetchmail_keep_then_delete(tmp_path, server, mode):
    if not shutil.which("fetchmail"):
        pytest.skip("fetchmail is not installed")
    name, pw = newUser(server)
    sent = [mimeMessage(f"fetch {mode} {i}") for i in range(3)]
    for m in sent:
        putMessage(server, name, m)
    proc, got = runFetchmail(tmp_path, server, name, pw, mode, keep=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if mode == "stls":
        assert "upgrade to TLS succeeded" in proc.stderr + proc.stdout
    assert sorted(withoutReceived(m) for m in got) == sorted(m.replace(b"\r\n", b"\n") for m in sent)
    assert len(server.messageFiles(name)) == 3
    # Keep mode with UIDL: a second run fetches nothing new.
    proc, got = runFetchmail(tmp_path, server, name, pw, mode, keep=True)
    assert proc.returncode == 1 and got == [], proc.stdout + proc.stderr  # 1: no mail
    # One more message; delete mode ("nokeep flush": fetch what is new,
    # delete what was fetched before too) empties the maildrop.
    extra = mimeMessage("late")
    putMessage(server, name, extra)
    proc, got = runFetchmail(tmp_path, server, name, pw, mode, keep=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [withoutReceived(m) for m in got] == [extra.replace(b"\r\n", b"\n")]
    assert server.messageFiles(name) == []


GETMAIL_REAPED = os.path.join(os.path.dirname(__file__), "getmail_reaped.py")

# In the getmail process: the parent sleeps a moment after each fork(), as
# when the scheduler runs the child first on a loaded machine.
SLOW_PARENT = """\
import os, runpy, sys, time
fork = os.fork
def slowFork():
    pid = fork()
    if pid:
        time.sleep(0.5)
    return pid
os.fork = slowFork
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def getmailCommand(*args, slowParent=False):
    """
    The installed getmail, run through getmail_reaped.py: getmail 6.18 can
    miss the end of its delivery child and stall (see that file).
    """
    getmail = shutil.which("getmail")
    with open(getmail) as f:
        first = f.readline()
    python = shlex.split(first[2:]) if first.startswith("#!") else [sys.executable]
    shim = ["-c", SLOW_PARENT] if slowParent else []
    return [*python, *shim, GETMAIL_REAPED, getmail, *args]


def getmailSetup(tmp_path, server, name, pw, delete, request):
    """A getmailrc fetching ``name``'s maildrop over POP3S into a fresh
    Maildir; returns (getmail's directory, the Maildir)."""
    deliverAs = ""
    if os.geteuid() == 0:
        # getmail refuses to deliver as root; it switches to "user" for the
        # delivery, which must be able to reach the Maildir (pytest's
        # tmp_path is private to root).
        import pathlib
        import pwd
        import tempfile

        nobody = pwd.getpwnam("nobody")
        dest = pathlib.Path(tempfile.mkdtemp(prefix="getmail-dest-", dir="/tmp")) / "Maildir"
        request.addfinalizer(lambda: shutil.rmtree(dest.parent, ignore_errors=True))
        for sub in ("tmp", "new", "cur"):
            (dest / sub).mkdir(parents=True)
        for d in (dest.parent, dest, dest / "tmp", dest / "new", dest / "cur"):
            os.chown(d, nobody.pw_uid, nobody.pw_gid)
        deliverAs = "user = nobody"
    else:
        dest = tmp_path / "Maildir"
        for sub in ("tmp", "new", "cur"):
            (dest / sub).mkdir(parents=True)
    gdir = tmp_path / "getmail"
    gdir.mkdir()
    (gdir / "getmailrc").write_text(textwrap.dedent(f"""\
        [retriever]
        type = SimplePOP3SSLRetriever
        server = 127.0.0.1
        port = {server.port("pop3s")}
        username = {name}
        password = {pw}
        ca_certs = {server.certFile}
        ssl_cert_hostname = localhost

        [destination]
        type = Maildir
        path = {dest}/
        {deliverAs}

        [options]
        read_all = false
        delete = {str(delete).lower()}
        received = false
        delivered_to = false
        verbose = 2
        """))
    return gdir, dest


def runGetmail(gdir, slowParent=False):
    return subprocess.run(getmailCommand("--getmaildir", str(gdir), "--rcfile", "getmailrc", slowParent=slowParent),
                          capture_output=True, text=True, timeout=60)


def delivered(dest):
    # getmail puts a Return-Path: (the envelope sender, unknown to POP3) on top.
    return sorted(p.read_bytes().removeprefix(b"Return-Path: <unknown>\n") for p in (dest / "new").iterdir())


@pytest.mark.parametrize("delete", [False, True])
def test_getmail_pop3s_to_maildir(tmp_path, server, delete, request):
    if not shutil.which("getmail"):
        pytest.skip("getmail is not installed")
    name, pw = newUser(server)
    sent = [mimeMessage(f"getmail {i}") for i in range(3)]
    for m in sent:
        putMessage(server, name, m)
    gdir, dest = getmailSetup(tmp_path, server, name, pw, delete, request)
    proc = runGetmail(gdir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert delivered(dest) == sorted(m.replace(b"\r\n", b"\n") for m in sent)
    assert len(server.messageFiles(name)) == (0 if delete else 3)
    # Again: nothing new (getmail remembers UIDLs; with delete, nothing is left).
    proc = runGetmail(gdir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(list((dest / "new").iterdir())) == 3


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

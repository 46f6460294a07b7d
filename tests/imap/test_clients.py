"""
The real server (the twistd plugin in a subprocess) driven by clients we did
not write: the stdlib's imaplib and imapclient, plus raw sockets where a
test is about bytes on the wire (STARTTLS injection, pipelining).
"""

import email
import imaplib
import itertools
import re
import socket
import time

import imapclient
import pytest

from tests.imap.conftest import tls_context

pytestmark = pytest.mark.slow

_counter = itertools.count()


def fresh_user(server):
    name = "u%d-%d@example.test" % (time.monotonic_ns() % 100000, next(_counter))
    server.addUser(name, "pw-" + name)
    return name, "pw-" + name


def message(subject, body="Hello\r\n", sender="bob@example.test"):
    return ("From: Bob <%s>\r\nTo: alice@example.test\r\nSubject: %s\r\nDate: Tue, 2 Jan 2024 10:00:00 +0100\r\n"
            "Message-ID: <%s@example.test>\r\n\r\n%s" % (sender, subject, subject.replace(" ", "."), body)).encode()


def imaplib_login(server, user):
    m = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=20)
    m.login(*user)
    return m


def client(server, user, use_uid=True):
    c = imapclient.IMAPClient("127.0.0.1", port=server.port("imap"), ssl=False, timeout=20, use_uid=use_uid)
    c.login(*user)
    return c


# TLS and authentication


def test_logindisabled_until_starttls(strict_server):
    user = fresh_user(strict_server)
    m = imaplib.IMAP4("127.0.0.1", strict_server.port("imap"), timeout=20)
    assert "LOGINDISABLED" in m.capabilities and "STARTTLS" in m.capabilities
    with pytest.raises(imaplib.IMAP4.error):
        m.login(*user)
    m.starttls(tls_context(strict_server))
    assert "AUTH=PLAIN" in m.capabilities and "LOGINDISABLED" not in m.capabilities
    assert m.login(*user)[0] == "OK"
    m.logout()


def test_imaps_and_authenticate_plain(strict_server):
    user = fresh_user(strict_server)
    m = imaplib.IMAP4_SSL("127.0.0.1", strict_server.port("imaps"), ssl_context=tls_context(strict_server), timeout=20)
    typ, data = m.authenticate("PLAIN", lambda challenge: b"\0" + user[0].encode() + b"\0" + user[1].encode())
    assert typ == "OK"
    m.logout()


def test_starttls_injection_is_not_executed(strict_server):
    """A command pipelined after STARTTLS in the same packet must never run (CVE-2011-0411 class)."""
    user = fresh_user(strict_server)
    sock = socket.create_connection(("127.0.0.1", strict_server.port("imap")), timeout=20)
    f = sock.makefile("rb")
    assert f.readline().startswith(b"* OK")
    login = ("b LOGIN %s %s\r\n" % user).encode()
    sock.sendall(b"a STARTTLS\r\n" + login + b"c CREATE Injected\r\n")
    assert f.readline() == b"a OK Begin TLS negotiation now\r\n"
    tls = tls_context(strict_server).wrap_socket(sock, server_hostname="localhost")
    tf = tls.makefile("rb")
    tls.sendall(b"d CAPABILITY\r\n")
    caps = tf.readline()
    assert caps.startswith(b"* CAPABILITY") and b"AUTH=PLAIN" in caps
    assert tf.readline() == b"d OK CAPABILITY completed\r\n"  # nothing from b or c came first
    tls.sendall(b"e SELECT INBOX\r\n")
    assert tf.readline().startswith(b"e BAD Command SELECT needs authentication")
    tls.close()
    c = imapclient.IMAPClient("127.0.0.1", port=strict_server.port("imaps"), ssl=True,
                              ssl_context=tls_context(strict_server), timeout=20)
    c.login(*user)
    assert not c.folder_exists("Injected")
    c.logout()


def test_logout_over_tls_closes_the_connection(strict_server):
    sock = socket.create_connection(("127.0.0.1", strict_server.port("imaps")), timeout=10)
    tls = tls_context(strict_server).wrap_socket(sock, server_hostname="localhost")
    f = tls.makefile("rb")
    assert f.readline().startswith(b"* OK")
    tls.sendall(b"a LOGOUT\r\n")
    assert f.readline() == b"* BYE Logging out\r\n"
    assert f.readline() == b"a OK LOGOUT completed\r\n"
    assert f.readline() == b""  # the server closed (it does not wait for us)


def test_failed_login_then_success(imap_server):
    user = fresh_user(imap_server)
    m = imaplib.IMAP4("127.0.0.1", imap_server.port("imap"), timeout=20)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        m.login(user[0], "wrong")
    assert m.login(*user)[0] == "OK"
    m.logout()


# The command set through imaplib


def test_imaplib_command_set(imap_server):
    user = fresh_user(imap_server)
    m = imaplib_login(imap_server, user)
    assert m.create("Projects/2024")[0] == "OK"
    typ, data = m.list()
    names = b"\n".join(data)
    assert b'(\\HasChildren) "/" Projects' in names and b'"/" Projects/2024' in names
    assert b"\\Sent" in names and b"\\Trash" in names
    for i in range(3):
        typ, data = m.append("INBOX", "(\\Flagged)" if i == 0 else None, None, message("msg %d" % i))
        assert typ == "OK" and b"APPENDUID" in data[0]
    typ, data = m.select("INBOX")
    assert data == [b"3"]
    typ, data = m.fetch("1:3", "(UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"Subject: msg 0" in data[0][1] and b"\\Flagged" in data[0][0]
    typ, data = m.search(None, "FLAGGED")
    assert data == [b"1"]
    typ, data = m.search(None, '(OR SUBJECT "msg 1" SUBJECT "msg 2")')
    assert data == [b"2 3"]
    typ, data = m.uid("SEARCH", None, "ALL")
    uids = data[0].split()
    assert len(uids) == 3
    typ, data = m.fetch("2", "(RFC822)")
    msg = email.message_from_bytes(data[0][1])
    assert msg["Subject"] == "msg 1"
    assert b"\\Seen" in m.fetch("2", "(FLAGS)")[1][0]
    assert m.store("3", "+FLAGS", "(\\Deleted)")[0] == "OK"
    assert m.copy("1", "Projects/2024")[0] == "OK"
    typ, data = m.uid("MOVE", uids[1].decode(), "Archive")
    assert typ == "OK"
    typ, data = m.expunge()
    assert data == [b"2", b"2"]  # imaplib keeps MOVE's EXPUNGE (message 2) too; then message 3, now 2
    typ, data = m.status("Archive", "(MESSAGES UIDNEXT UNSEEN)")
    assert data[0].startswith(b"Archive (MESSAGES 1 UIDNEXT 2 UNSEEN 0")
    assert m.rename("Projects", "Work")[0] == "OK"
    assert m.status("Work/2024", "(MESSAGES)")[1][0].endswith(b"(MESSAGES 1)")
    assert m.subscribe("Work/2024")[0] == "OK"
    assert b"Work/2024" in b"".join(m.lsub()[1])
    assert m.unsubscribe("Work/2024")[0] == "OK"
    assert m.delete("Work/2024")[0] == "OK"
    assert m.namespace()[0] == "OK"
    assert m.check()[0] == "OK"
    assert m.close()[0] == "OK"
    assert m.noop()[0] == "OK"
    m.logout()


def test_utf7_mailbox_names(imap_server):
    user = fresh_user(imap_server)
    c = client(imap_server, user)
    c.create_folder("Entw\u00fcrfe/\u65e5\u672c")
    names = [f[2] for f in c.list_folders()]
    assert "Entw\u00fcrfe/\u65e5\u672c" in names and "Entw\u00fcrfe" in names
    c.select_folder("Entw\u00fcrfe/\u65e5\u672c")
    with pytest.raises(imapclient.exceptions.IMAPClientError, match="Invalid mailbox name"):
        c.create_folder("../../escape")
    c.logout()


def test_imapclient_envelope_bodystructure_and_sections(imap_server):
    user = fresh_user(imap_server)
    c = client(imap_server, user)
    mime = (b"From: =?utf-8?q?J=C3=BCrgen?= <j@example.test>\r\nTo: a@example.test, b@example.test\r\n"
            b"Subject: report\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n"
            b"--zz\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee attached.\r\n"
            b"--zz\r\nContent-Type: application/pdf; name=r.pdf\r\nContent-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment; filename=r.pdf\r\n\r\nJVBERi0xLjQK\r\n--zz--\r\n")
    c.append("INBOX", mime)
    c.select_folder("INBOX")
    data = c.fetch([1], ["ENVELOPE", "BODYSTRUCTURE", "BODY.PEEK[1]", "BINARY.PEEK[2]", "BODY.PEEK[2.MIME]"])[1]
    env = data[b"ENVELOPE"]
    assert env.subject == b"report" and [a.mailbox for a in env.to] == [b"a", b"b"]
    assert env.from_[0].name == b"=?utf-8?q?J=C3=BCrgen?=" and env.from_[0].host == b"example.test"
    bs = data[b"BODYSTRUCTURE"]
    assert bs.is_multipart and bs[1] == b"mixed"
    assert bs[0][1][0] == b"application" and bs[0][1][1] == b"pdf"
    assert data[b"BODY[1]"] == b"See attached."
    assert data[b"BINARY[2]"] == b"%PDF-1.4\n"
    assert data[b"BODY[2.MIME]"].startswith(b"Content-Type: application/pdf")
    c.logout()


def test_search_decodes_mime(imap_server):
    user = fresh_user(imap_server)
    c = client(imap_server, user)
    c.append("INBOX", b"Subject: =?iso-8859-1?q?Gr=FC=DFe?=\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
                      b"Content-Transfer-Encoding: quoted-printable\r\n\r\nSch=F6ne Gr=FC=DFe\r\n")
    c.append("INBOX", b"Subject: plain\r\n\r\nnothing here\r\n")
    c.select_folder("INBOX")
    assert c.search(["SUBJECT", "Gr\u00fc\u00dfe"], charset="UTF-8") == [1]
    assert c.search(["BODY", "sch\u00f6ne"], charset="UTF-8") == [1]
    assert c.search(["TEXT", "nothing"]) == [2]
    assert c.search(["NOT", "BODY", "nothing"]) == [1]
    c.logout()


def test_condstore_through_imapclient(imap_server):
    user = fresh_user(imap_server)
    c = client(imap_server, user)
    for i in range(3):
        c.append("INBOX", message("c%d" % i))
    info = c.select_folder("INBOX")
    highest = info[b"HIGHESTMODSEQ"]
    c.add_flags([2], [b"\\Seen"])
    changed = c.fetch([1, 2, 3], ["FLAGS"], modifiers=["CHANGEDSINCE %d" % highest])
    assert list(changed) == [2] and changed[2][b"MODSEQ"][0] > highest
    c.logout()


# Several sessions on one mailbox


def test_concurrent_sessions_see_each_others_changes(imap_server):
    user = fresh_user(imap_server)
    # Sequence numbers, not UIDs: the interesting part of the rules.
    a, b = client(imap_server, user, use_uid=False), client(imap_server, user, use_uid=False)
    a.select_folder("INBOX")
    b.select_folder("INBOX")
    b.append("INBOX", message("one"))
    b.append("INBOX", message("two"))
    responses = a.noop()[1]
    assert (2, b"EXISTS") in responses
    b.add_flags([1], [b"\\Flagged"])
    responses = a.noop()[1]
    assert any(r[1] == b"FETCH" and r[0] == 1 and b"\\Flagged" in r[2][r[2].index(b"FLAGS") + 1] for r in responses)
    b.delete_messages([1])
    b.expunge()
    # No EXPUNGE during FETCH (RFC 3501 s7.4.1): message 1 keeps its number
    # but cannot be read any more; the FETCH serves the others and is OK
    # [EXPUNGEISSUED] (RFC 5530), as Dovecot answers.
    # (imapclient merges in the unsolicited FETCH FLAGS of the NOOP above.)
    fetched = a.fetch([1, 2], ["RFC822.SIZE"])
    assert b"RFC822.SIZE" not in fetched.get(1, {}) and b"RFC822.SIZE" in fetched[2]
    assert a.fetch([2], ["UID"])[2][b"UID"] == 2
    responses = a.noop()[1]
    assert (1, b"EXPUNGE") in responses
    assert a.search() == [1]
    a.logout()
    b.logout()


def test_idle_gets_new_mail_within_a_second(imap_server):
    user = fresh_user(imap_server)
    a, b = client(imap_server, user), client(imap_server, user)
    a.select_folder("INBOX")
    b.select_folder("INBOX")
    a.idle()
    time.sleep(0.05)
    start = time.monotonic()
    b.append("INBOX", message("ping"))
    responses = a.idle_check(timeout=5)
    elapsed = time.monotonic() - start
    assert (1, b"EXISTS") in responses, responses
    assert elapsed < 1.0
    b.add_flags([1], [b"\\Answered"])
    responses = a.idle_check(timeout=5)
    assert any(r[1] == b"FETCH" for r in responses)
    a.idle_done()
    a.logout()
    b.logout()


def test_uidvalidity_and_uids_stable_across_reconnects(imap_server):
    user = fresh_user(imap_server)
    c = client(imap_server, user)
    c.append("INBOX", message("a"))
    info = c.select_folder("INBOX")
    uids = c.search()
    c.logout()
    c = client(imap_server, user)
    info2 = c.select_folder("INBOX")
    assert info2[b"UIDVALIDITY"] == info[b"UIDVALIDITY"]
    c.append("INBOX", message("b"))
    c.noop()
    new = c.search(["UID", "%d:*" % (max(uids) + 1)])  # imapclient works in UIDs
    assert len(new) == 1 and new[0] > max(uids)
    c.logout()


# Raw protocol behaviour


def raw(server, user=None):
    sock = socket.create_connection(("127.0.0.1", server.port("imap")), timeout=20)
    f = sock.makefile("rb")
    assert f.readline().startswith(b"* OK")
    if user:
        sock.sendall(("L LOGIN %s %s\r\n" % user).encode())
        assert f.readline().startswith(b"L OK")
    return sock, f


def read_until(f, tag):
    out = []
    while True:
        line = f.readline()
        assert line, out
        out.append(line)
        if line.startswith(tag + b" "):
            return out


def test_pipelined_commands_in_order(imap_server):
    user = fresh_user(imap_server)
    sock, f = raw(imap_server, user)
    sock.sendall(b"a APPEND INBOX {11+}\r\nSubject: x\r\r\nb SELECT INBOX\r\nc FETCH 1 (FLAGS)\r\nd LOGOUT\r\n")
    tags = [line.split(b" ")[0] for line in read_until(f, b"d") if not line.startswith(b"*")]
    assert tags == [b"a", b"b", b"c", b"d"]


def test_bad_input_session_stays_usable(imap_server):
    user = fresh_user(imap_server)
    sock, f = raw(imap_server, user)
    sock.sendall(b"x1 FETCH\r\n")
    assert f.readline().startswith(b"x1 BAD")
    sock.sendall(b"x2 BOGUS\r\n")
    assert f.readline() == b"x2 BAD Unknown command BOGUS\r\n"
    sock.sendall(b"x3 LIST \"\" \"\\\"\r\n")
    assert f.readline().startswith(b"x3 BAD")
    sock.sendall(b"x4 NOOP\r\n")
    assert f.readline() == b"x4 OK NOOP completed\r\n"


def test_literal_continuation(imap_server):
    user = fresh_user(imap_server)
    sock, f = raw(imap_server, user)
    sock.sendall(b"a CREATE {4}\r\n")
    assert f.readline().startswith(b"+ ")
    sock.sendall(b"Lit1\r\n")
    # RFC 8474 s4.1: the new mailbox's id in the tagged OK
    assert re.fullmatch(rb"a OK \[MAILBOXID \([A-Za-z0-9_-]+\)\] CREATE completed\r\n", f.readline())


def test_too_many_connections_get_bye(make_imap_server):
    server = make_imap_server(limits={"connections_per_ip": 2})
    socks = [raw(server) for _ in range(2)]
    s = socket.create_connection(("127.0.0.1", server.port("imap")), timeout=20)
    assert s.makefile("rb").readline() == b"* BYE Too many connections\r\n"
    for sock, _ in socks:
        sock.close()


def test_big_fetch_over_imaps(imap_server):
    user = fresh_user(imap_server)
    c = imapclient.IMAPClient("127.0.0.1", port=imap_server.port("imaps"), ssl=True,
                              ssl_context=tls_context(imap_server), timeout=30)
    c.login(*user)
    body = b"".join(b"line %07d of a big message\r\n" % i for i in range(200000))  # ~6 MB
    c.append("INBOX", b"Subject: big\r\n\r\n" + body)
    c.append("INBOX", message("after"))
    c.select_folder("INBOX")
    data = c.fetch(c.search(), ["BODY.PEEK[]", "BODY.PEEK[TEXT]<1000000.29>"])
    big, small = sorted(data.items())
    assert big[1][b"BODY[]"] == b"Subject: big\r\n\r\n" + body
    assert big[1][b"BODY[TEXT]<1000000>"] == body[1000000:1000029]
    assert b"Subject: after" in small[1][b"BODY[]"]
    c.logout()

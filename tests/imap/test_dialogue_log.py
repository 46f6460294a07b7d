"""
The IMAP dialogue at ``[log] level = "debug"`` (issue 12 defect 14):
commands and responses are logged, passwords and literal contents never,
long lines cut; with debug off the session's output methods are the plain
ones (nothing paid on the FETCH path).
"""

import base64
import imaplib
import re
import socket

import pytest

from mailnet.imap import dialogue
from mailnet.imap.parser import Literal
from tests.imap.helpers import World
from tests.imap.test_clients import fresh_user

SECRET_BODY = b"BODY-SECRET-4711 must not reach the log"


@pytest.fixture(scope="module")
def debug_server(tmp_path_factory):
    from tests.imap.conftest import _server

    s = _server(tmp_path_factory.mktemp("imapdebug"), log={"level": "debug"})
    yield s
    s.stop()


def imapLines(server):
    return [line for line in server.output if "imap: 127.0.0.1: " in line]


def test_dialogue_logged_without_secrets(debug_server):
    user, password = fresh_user(debug_server)
    m = imaplib.IMAP4("127.0.0.1", debug_server.port("imap"), timeout=20)
    m.login(user, password)
    m.append("INBOX", None, None, b"Subject: log test\r\n\r\n" + SECRET_BODY + b"\r\n")
    m.select("INBOX")
    m.fetch("1", "(FLAGS BODY.PEEK[] BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    m.search(None, "SUBJECT", "x" * 300)
    m.logout()
    # AUTHENTICATE PLAIN, with an initial response and with a continuation.
    token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())
    sock = socket.create_connection(("127.0.0.1", debug_server.port("imap")), timeout=20)
    f = sock.makefile("rb")
    f.readline()
    sock.sendall(b"s1 AUTHENTICATE PLAIN " + token + b"\r\n")
    assert f.readline().startswith(b"s1 OK")
    sock.sendall(b"s2 LOGOUT\r\n")
    sock.close()
    sock = socket.create_connection(("127.0.0.1", debug_server.port("imap")), timeout=20)
    f = sock.makefile("rb")
    f.readline()
    sock.sendall(b"s3 AUTHENTICATE PLAIN\r\n")
    assert f.readline().startswith(b"+")
    sock.sendall(token + b"\r\n")
    assert f.readline().startswith(b"s3 OK")
    # LOGIN with the password in a literal.
    sock.sendall(b"s4 LOGOUT\r\n")
    sock.close()
    sock = socket.create_connection(("127.0.0.1", debug_server.port("imap")), timeout=20)
    f = sock.makefile("rb")
    f.readline()
    sock.sendall(b"s5 LOGIN %s {%d+}\r\n%s\r\n" % (user.encode(), len(password), password.encode()))
    assert f.readline().startswith(b"s5 OK")
    sock.sendall(b"s6 LOGOUT\r\n")
    f.readline()
    sock.close()
    debug_server.waitForLog("S: s6 OK")

    log = "\n".join(imapLines(debug_server))
    # Commands and responses are there.
    assert re.search(r"C: \w+ SELECT INBOX", log), log
    assert re.search(r"S: \w+ OK \[READ-WRITE\]", log), log
    assert re.search(r"C: \w+ APPEND INBOX \{\d+\}", log), log
    assert re.search(r"S: \* 1 FETCH \(FLAGS \(.*\) BODY\[\] \{\d+\} BODY\[HEADER.FIELDS \(SUBJECT\)\] \{\d+\}\)", log), log
    assert re.search(r"C: \w+ LOGIN %s \*\*\*" % re.escape(user), log) or re.search(r'C: \w+ LOGIN "%s" \*\*\*' % re.escape(user), log), log
    assert "C: s1 AUTHENTICATE PLAIN ***" in log and "C: s3 AUTHENTICATE PLAIN ***" in log
    assert "C: ***" in log  # the continued SASL response
    assert "C: s5 LOGIN %s ***" % user in log
    # Never a password, a SASL token or a literal's contents.
    assert password not in log and token.decode() not in log
    assert "BODY-SECRET-4711" not in log and "log test" not in log
    # Long lines are cut, with their size.
    assert re.search(r"C: \w+ SEARCH SUBJECT x{100,}\.\.\. \(\d+ bytes\)", log), log
    assert all(len(line) < 400 for line in log.splitlines()), max(log.splitlines(), key=len)


def test_debug_off_costs_nothing():
    """With debug off the session keeps its plain output methods."""
    world = World()
    c = world.client()
    assert not dialogue.enabled()
    assert c.session._dialogue is None
    for name in ("send", "sendLines", "sendPieces"):
        assert name not in vars(c.session), name


class Captured:
    def __init__(self, monkeypatch):
        self.lines = []
        monkeypatch.setattr(dialogue.Dialogue, "_line", lambda d, who, data, size: self.lines.append(
            (who, dialogue._shown(data, size))))


def test_response_literals_left_out_across_writes(monkeypatch):
    got = Captured(monkeypatch)
    d = dialogue.Dialogue("peer")
    body = b"Secret: yes\r\n\r\nline {7}\r\n"
    data = b"* 3 FETCH (UID 9 BODY[] {%d}\r\n%s FLAGS (\\Seen))\r\nt1 OK FETCH completed\r\n" % (len(body), body)
    for i in range(len(data)):  # one byte per write: the worst case
        d.response(data[i:i + 1])
    assert got.lines == [("S", "* 3 FETCH (UID 9 BODY[] {%d} FLAGS (\\Seen))" % len(body)),
                         ("S", "t1 OK FETCH completed")], got.lines
    got.lines.clear()
    d.response(b"* OK [ALERT] name{3}\r\nt2 NO no such mailbox: a{2}\r\n* LIST () \"/\" {3}\r\na b\r\n")
    assert got.lines == [("S", "* OK [ALERT] name{3}"), ("S", "t2 NO no such mailbox: a{2}"),
                         ("S", '* LIST () "/" {3}')], got.lines


def test_long_response_cut(monkeypatch):
    got = Captured(monkeypatch)
    d = dialogue.Dialogue("peer")
    line = b"* SEARCH" + b" 12345" * 10000
    d.response(line[:30000])
    d.response(line[30000:] + b"\r\n")
    [(who, text)] = got.lines
    assert text.startswith("* SEARCH 12345") and text.endswith("... (%d bytes)" % len(line)), text
    assert len(text) < dialogue.LINE + 40


@pytest.mark.parametrize("parts,shown", [
    ([b"a LOGIN alice secret"], "a LOGIN alice ***"),
    ([b'a login "al ice" "pw"'], 'a login "al ice" ***'),
    ([b"a LOGIN ", Literal(5), b" ", Literal(6), b""], "a LOGIN ***"),
    ([b"a LOGIN alice ", Literal(6), b""], "a LOGIN alice ***"),
    ([b"a LOGIN secret"], "a LOGIN ***"),
    ([b"a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA=="], "a AUTHENTICATE PLAIN ***"),
    ([b"a APPEND INBOX (\\Seen) ", Literal(12), b""], "a APPEND INBOX (\\Seen) {12}"),
    ([b"a APPEND INBOX ", Literal(3, binary=True), b""], "a APPEND INBOX ~{3}"),
])
def test_commands_shown(monkeypatch, parts, shown):
    got = Captured(monkeypatch)
    for part in parts:
        if isinstance(part, Literal):
            part._write(b"x" * part.size)
    dialogue.Dialogue("peer").command(parts)
    assert got.lines == [("C", shown)], got.lines

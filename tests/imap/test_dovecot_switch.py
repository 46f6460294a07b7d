"""
Switching a user's Maildir between mailnet and Dovecot's IMAP server, both
ways, with nothing lost: folders (nested, non-ASCII), UIDVALIDITY, UIDNEXT,
UIDs, system flags and keywords, sizes, internal dates, bodies and
subscriptions (a subscribed name whose folder is gone included), all as seen
over IMAP with imaplib.

The admin's switch: stop one server, move the account's Maildir under the
other's mail root (a rename: same files, same inodes, same mtimes; chown to
the mail user when Dovecot's turn comes, as Dovecot runs mail processes as
nobody when we are root), start the other.  Dovecot's own index files
(``dovecot.index*``) stay in the Maildir and come back to mailnet with it.

Hierarchy separator: mailnet's IMAP shows ``/`` (NAMESPACE (("" "/"))) and
stores ``.`` on disk (Maildir++); Dovecot's namespace is configured with
``separator = /`` (tests/pop3/dovecot.py), its Maildir++ layout also puts
``.`` on disk, so both show the same names for the same directories.
"""

from __future__ import annotations

import hashlib
import imaplib
import os
import re
import shutil
import smtplib
import tempfile
from datetime import datetime

import pytest
from imapclient import imap_utf7

from mailnet import passwords
from tests.pop3.dovecot import DOVECOT, Dovecot

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        DOVECOT is None or not any(os.path.exists(d + "/dovecot/imap") for d in ("/usr/lib", "/usr/libexec")),
        reason="Dovecot's IMAP server is not installed (Debian: dovecot-imapd)",
    ),
]

USER, PASSWORD = "alice@example.test", "alice-pw"
PLAIN = {"auth": {"allow_plaintext": True}, "store": {"backend": "maildir"}}

NESTED = "Work/Projects"
NON_ASCII = "Entwürfe & Ideen"


# IMAP helpers (imaplib; folder names in modified UTF-7 by imapclient's codec)


def q(name):
    """A folder name as an IMAP quoted string."""
    return '"' + imap_utf7.encode(name).decode("ascii").replace("\\", "\\\\").replace('"', '\\"') + '"'


def ok(result):
    typ, data = result
    assert typ == "OK", data
    return data


def login(port):
    c = imaplib.IMAP4("127.0.0.1", port, timeout=30)
    ok(c.login(USER, PASSWORD))
    return c


_LIST = re.compile(rb'^\((?P<attrs>[^)]*)\) (?P<sep>NIL|"(?:[^"\\]|\\.)") (?P<name>.*)$')


def _name(raw: bytes) -> str:
    if raw.startswith(b'"'):
        raw = re.sub(rb"\\(.)", rb"\1", raw[1:-1])
    return imap_utf7.decode(raw)


def folders(c, command="LIST"):
    """{name: separator} from LIST (or LSUB) "" "*"."""
    out = {}
    for line in ok(c.lsub('""', "*") if command == "LSUB" else c.list('""', "*")):
        if line is None:
            continue
        if isinstance(line, tuple):  # a name sent as a literal
            line = line[0].rsplit(b"{", 1)[0] + b'"' + line[1] + b'"'
        m = _LIST.match(line)
        assert m, line
        out[_name(m["name"])] = m["sep"]
    return out


_ITEM = {
    "uid": re.compile(rb"\bUID (\d+)"),
    "flags": re.compile(rb"\bFLAGS \(([^)]*)\)"),
    "size": re.compile(rb"\bRFC822\.SIZE (\d+)"),
    "date": re.compile(rb'\bINTERNALDATE "([^"]+)"'),
}


def _status(c, name):
    data = ok(c.status(q(name), "(UIDVALIDITY UIDNEXT MESSAGES)"))
    text = data[0].decode()
    return {k: int(re.search(k + r" (\d+)", text).group(1)) for k in ("UIDVALIDITY", "UIDNEXT", "MESSAGES")}


def folderState(c, name):
    """UIDVALIDITY, UIDNEXT and every message of a folder, read-only."""
    status = _status(c, name)
    ok(c.select(q(name), readonly=True))
    messages = {}
    if status["MESSAGES"]:
        data = ok(c.uid("FETCH", "1:*", "(UID FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[])"))
        # imaplib: (b'n (UID .. BODY[] {size}', body), then b' FLAGS (..))' or b')'.
        pending = None
        for part in data + [None]:
            if isinstance(part, tuple) or part is None:
                if pending is not None:
                    head, body, tail = pending
                    text = head + b" " + tail
                    items = {k: r.search(text) for k, r in _ITEM.items()}
                    assert all(items.values()), text
                    flags = frozenset(items["flags"].group(1).decode().split()) - {"\\Recent"}
                    uid = int(items["uid"].group(1))
                    assert int(items["size"].group(1)) == len(body), text  # RFC822.SIZE is what BODY[] gives
                    messages[uid] = {
                        "flags": flags,
                        "size": int(items["size"].group(1)),
                        "date": datetime.strptime(items["date"].group(1).decode().strip(), "%d-%b-%Y %H:%M:%S %z"),
                        "sha256": hashlib.sha256(body).hexdigest(),
                        "bodySize": len(body),
                    }
                pending = None if part is None else [part[0], part[1], b""]
            elif pending is not None:
                pending[2] += part
        assert len(messages) == status["MESSAGES"], (name, status, sorted(messages))
    ok(c.close())
    return {"uidvalidity": status["UIDVALIDITY"], "uidnext": status["UIDNEXT"], "messages": messages}


def snapshot(port):
    """Everything an IMAP client can see of the account, over a fresh login."""
    c = login(port)
    try:
        listed = folders(c)
        assert set(listed.values()) == {b'"/"'}, listed
        state = {"folders": {name: folderState(c, name) for name in listed},
                 "subscribed": set(folders(c, "LSUB"))}
    finally:
        c.logout()
    return state


def uidsOf(c, criteria):
    return [int(u) for u in ok(c.uid("SEARCH", None, criteria))[0].split()]


def assertSameState(before, after, who):
    """Folder by folder, so that a failure names what differs."""
    assert sorted(after["folders"]) == sorted(before["folders"]), who
    for name, old in before["folders"].items():
        new = after["folders"][name]
        assert (new["uidvalidity"], new["uidnext"]) == (old["uidvalidity"], old["uidnext"]), (who, name)
        assert sorted(new["messages"]) == sorted(old["messages"]), (who, name)
        for uid, m in old["messages"].items():
            assert new["messages"][uid] == m, (who, name, uid)
    # LSUB lists names whose folder is gone too (RFC 3501 s6.3.9), as both do.
    assert after["subscribed"] == before["subscribed"], who


# Fixtures


@pytest.fixture
def dovecot_base():
    """A directory Dovecot's unprivileged processes can reach (pytest's are 0700)."""
    base = tempfile.mkdtemp(prefix="imap-dovecot-", dir="/tmp")
    yield base
    shutil.rmtree(base, ignore_errors=True)


def message(n, extra=""):
    body = f"Message {n}.\r\n{extra}" + "".join(f"line {i} of message {n}\r\n" for i in range(n * 7))
    return (f"From: Bob <bob@example.org>\r\nTo: {USER}\r\nSubject: switch {n}\r\n"
            f"Message-ID: <switch.{n}@example.test>\r\n\r\n{body}").encode()


def moveMaildir(src, dst):
    """The admin moves the account's Maildir (a rename on one file system)."""
    if os.path.exists(dst):
        shutil.rmtree(dst)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.move(src, dst)


# The test


def test_switch_to_dovecot_and_back(make_server, dovecot_base):
    server = make_server(config=PLAIN)
    server.addUser(USER, PASSWORD)

    # 1. mailnet: deliver over SMTP, then arrange over IMAP.
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as smtp:
        for n in range(1, 8):
            smtp.sendmail("bob@example.org", [USER], message(n))
    c = login(server.port("imap"))
    for name in ("Work", NESTED, NON_ASCII):
        ok(c.create(q(name)))
    ok(c.subscribe(q(NESTED)))
    ok(c.subscribe(q(NON_ASCII)))
    ok(c.select("INBOX"))
    assert uidsOf(c, "ALL") == [1, 2, 3, 4, 5, 6, 7]
    ok(c.uid("COPY", "1", q("Work")))
    ok(c.uid("COPY", "1:2", q(NESTED)))
    ok(c.uid("MOVE", "3", q(NON_ASCII)))
    ok(c.uid("STORE", "4", "+FLAGS", r"(\Seen \Answered $Forwarded)"))
    ok(c.uid("STORE", "5", "+FLAGS", r"(\Flagged \Deleted Project-X)"))  # \Deleted, not expunged
    ok(c.uid("STORE", "6", "+FLAGS", r"(\Draft $Label1 Project-X)"))
    ok(c.uid("STORE", "7", "+FLAGS", r"(\Deleted)"))
    ok(c.uid("EXPUNGE", "7"))
    ok(c.uid("COPY", "6", q("Work")))  # keywords by name, not by INBOX's letters
    ok(c.select(q(NESTED)))
    ok(c.uid("STORE", "1", "+FLAGS", r"(\Seen $Forwarded)"))
    ok(c.uid("STORE", "2", "+FLAGS", r"(\Deleted)"))
    ok(c.expunge())
    ok(c.select(q(NON_ASCII)))
    ok(c.uid("STORE", "1", "+FLAGS", r"(\Answered Ideas)"))
    c.logout()
    fromMailnet = snapshot(server.port("imap"))
    inbox = fromMailnet["folders"]["INBOX"]["messages"]
    assert sorted(inbox) == [1, 2, 4, 5, 6]
    assert inbox[4]["flags"] == {"\\Seen", "\\Answered", "$Forwarded"}
    assert inbox[5]["flags"] == {"\\Flagged", "\\Deleted", "Project-X"}
    assert inbox[6]["flags"] == {"\\Draft", "$Label1", "Project-X"}
    assert sorted(fromMailnet["folders"][NESTED]["messages"]) == [1]
    assert fromMailnet["folders"][NON_ASCII]["messages"][1]["flags"] == {"\\Answered", "Ideas"}
    server.stop()

    # 2. Dovecot on the same files.
    dovecot = Dovecot(dovecot_base, server.certFile, os.path.join(server.dataDir, "tls", "key.pem"),
                      protocols=("imap",))
    try:
        dovecot.addUser(USER, passwords.make(PASSWORD, "sha512-crypt"))
        moveMaildir(server.maildir(USER), dovecot.maildir(USER))
        dovecot.start()
        fromDovecot = snapshot(dovecot.imapPort)
        assertSameState(fromMailnet, fromDovecot, "mailnet -> Dovecot")

        # 3. Changes in Dovecot.
        c = login(dovecot.imapPort)
        ok(c.select("INBOX"))
        ok(c.uid("STORE", "4", "-FLAGS", r"(\Answered)"))
        ok(c.uid("STORE", "5", "-FLAGS", r"(\Deleted)"))
        ok(c.uid("STORE", "6", "FLAGS", r"(\Seen Later)"))
        ok(c.uid("STORE", "1", "+FLAGS", r"(Later $Forwarded)"))
        ok(c.uid("STORE", "2", "+FLAGS", r"(\Deleted)"))
        ok(c.expunge())
        ok(c.select("Work"))
        ok(c.uid("STORE", "1", "+FLAGS", r"(Later)"))  # Work's next keyword letter
        ok(c.close())
        ok(c.create(q("Travel")))
        ok(c.subscribe(q("Travel")))
        typ, data = c.append("INBOX", r"(\Flagged $Forwarded Appended)",
                             imaplib.Time2Internaldate(1_600_000_000), message(20, "From Dovecot.\r\n"))
        assert typ == "OK", data
        appendUid = int(re.search(rb"APPENDUID \d+ (\d+)", data[0]).group(1))
        ok(c.rename("Work", "Job"))  # with its child Work/Projects
        c.logout()
        fromDovecot = snapshot(dovecot.imapPort)
    finally:
        dovecot.stop()
    assert appendUid == fromMailnet["folders"]["INBOX"]["uidnext"] >= 8
    assert "Job/Projects" in fromDovecot["folders"] and "Work" not in fromDovecot["folders"]
    assert fromDovecot["folders"]["INBOX"]["messages"][appendUid]["flags"] == {"\\Flagged", "$Forwarded", "Appended"}
    assert fromDovecot["folders"]["INBOX"]["messages"][4]["flags"] == {"\\Seen", "$Forwarded"}
    assert {u: m["flags"] for u, m in fromDovecot["folders"]["Job"]["messages"].items()} == {
        1: {"Later"}, 2: {"\\Draft", "$Label1", "Project-X"}}
    names = os.listdir(dovecot.maildir(USER))
    assert any(n.startswith("dovecot.index") for n in names), names
    # Dovecot's RENAME leaves subscriptions alone (mailnet's renames them).
    assert fromDovecot["subscribed"] - set(fromDovecot["folders"]) == {NESTED}

    assert fromDovecot["folders"]["INBOX"]["messages"][appendUid]["date"].timestamp() == 1_600_000_000

    # 4. Back to mailnet: the files as Dovecot left them (owned by its user).
    moveMaildir(dovecot.maildir(USER), server.maildir(USER))
    owners = {os.stat(os.path.join(d, n)).st_uid for d, _, ns in os.walk(server.maildir(USER)) for n in ns}
    assert owners == {dovecot.owner.pw_uid}
    server.start()
    backInMailnet = snapshot(server.port("imap"))
    assertSameState(fromDovecot, backInMailnet, "Dovecot -> mailnet")
    assert NESTED in backInMailnet["subscribed"]  # listed though its folder is gone

    # mailnet keeps working on what Dovecot wrote: flags on Dovecot's
    # message, a delivery above every UID either server gave.
    c = login(server.port("imap"))
    ok(c.select("INBOX"))
    ok(c.uid("STORE", str(appendUid), "+FLAGS", r"(\Seen)"))
    ok(c.uid("COPY", str(appendUid), q("Travel")))
    c.logout()
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as smtp:
        smtp.sendmail("bob@example.org", [USER], message(30))
    c = login(server.port("imap"))
    ok(c.select("INBOX"))
    uids = uidsOf(c, "ALL")
    assert uids[:-1] == sorted(fromDovecot["folders"]["INBOX"]["messages"])
    assert uids[-1] == fromDovecot["folders"]["INBOX"]["uidnext"]
    assert uidsOf(c, r"KEYWORD Appended SEEN") == [appendUid]
    ok(c.select(q("Job")))
    assert uidsOf(c, "KEYWORD Later") == [1]
    ok(c.select(q("Travel")))
    assert len(uidsOf(c, "ALL")) == 1
    c.logout()
    with open(os.path.join(server.maildir(USER), "subscriptions"), "rb") as f:
        assert b"\nWork\tProjects\n" in f.read()

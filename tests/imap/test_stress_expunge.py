"""
Ten sessions on one mailbox against the real server, by sequence number:
SELECT, FETCH, STORE, EXPUNGE, APPEND, NOOP at random (issue 12, defect 15).

Sequence-number FETCHes and STOREs race other sessions' EXPUNGEs all the
time here.  As Dovecot, the server keeps a message expunged by another
session addressable until it may announce the EXPUNGE (RFC 3501 s7.4.1): a
STORE on it does nothing and is OK, a FETCH skips it and is OK
[EXPUNGEISSUED] (RFC 2180 s4.1, RFC 5530).  So no command may get NO or BAD.

Each client keeps a client's view (the message count, changed only by the
EXISTS and EXPUNGE responses it receives, in order) and picks its sequence
numbers from it, as a client must; imaplib is given an ordered record of
the untagged responses it parses.  Also checked: no EXPUNGE during a FETCH
or STORE by sequence number, no FETCH response for a number beyond the
view, and at the end every view has the count of a fresh SELECT.
"""

import imaplib
import random
import re
import threading
import time

import pytest

pytestmark = pytest.mark.slow

CLIENTS = 10
OPS = 150  # per client, at most
BUDGET = 12.0  # seconds of random work per client, at most
USER, PASSWORD = "alice@example.test", "alice-pw"


def message(n):
    return (b"From: bob@example.test\r\nTo: alice@example.test\r\nSubject: stress %d\r\n"
            b"Message-ID: <stress-%d@example.test>\r\n\r\nBody of message %d.\r\n" % (n, n, n))


class Recording(imaplib.IMAP4):
    """imaplib, plus the untagged responses in the order they came."""

    def __init__(self, *args, **kw):
        self.record = []
        super().__init__(*args, **kw)

    def _append_untagged(self, typ, dat):
        self.record.append((typ, dat))
        super()._append_untagged(typ, dat)


class Client:
    def __init__(self, server, seed, errors):
        self.rng = random.Random(seed)
        self.errors = errors
        self.m = Recording("127.0.0.1", server.port("imap"), timeout=60)
        self.m.login(USER, PASSWORD)
        self.count = 0
        self.issued = 0  # FETCHes answered OK [EXPUNGEISSUED]
        self.select()

    def error(self, text):
        self.errors.append(text)

    def take(self, command, bySequence):
        """Apply the untagged responses of one command to the view, in order."""
        record, self.m.record = self.m.record, []
        self.m.untagged_responses.clear()
        for typ, dat in record:
            if typ == "EXISTS":
                self.count = int(dat)
            elif typ == "EXPUNGE":
                if bySequence:
                    self.error("EXPUNGE during %s (RFC 3501 s7.4.1)" % command)
                self.count -= 1
            elif typ == "FETCH":
                head = dat[0] if isinstance(dat, tuple) else dat
                found = re.match(rb"(\d+) \(", head)
                if found and int(found.group(1)) > self.count:
                    self.error("%s: FETCH for %s beyond the %d messages known" % (command, found.group(1), self.count))
            elif typ == "EXPUNGEISSUED":
                self.issued += 1

    def run(self, command, call, *args, bySequence=False):
        try:
            typ, data = call(*args)
        except imaplib.IMAP4.error as e:  # BAD
            self.take(command, bySequence)
            self.error("%s: %s" % (command, e))
            return
        self.take(command, bySequence)
        if typ != "OK":
            self.error("%s: %s %r" % (command, typ, data))

    def select(self):
        self.run("SELECT", self.m.select, "INBOX")

    def someNumbers(self):
        n = self.count
        first = self.rng.randint(1, n)
        if self.rng.random() < 0.5:
            return str(first)
        return "%d:%d" % (first, min(n, first + self.rng.randint(1, 5)))

    def step(self, n):
        rng = self.rng
        roll = rng.random()
        if self.count == 0 or roll < 0.15:
            self.run("APPEND", self.m.append, "INBOX", None, None, message(n))
        elif roll < 0.50:
            items = rng.choice(["(UID FLAGS)", "(FLAGS BODY.PEEK[HEADER])", "(BODY.PEEK[])", "(UID RFC822.SIZE)"])
            self.run("FETCH", self.m.fetch, self.someNumbers(), items, bySequence=True)
        elif roll < 0.80:
            flag = rng.choice(["\\Seen", "\\Flagged", "\\Deleted", "\\Deleted"])
            how = rng.choice(["+FLAGS", "+FLAGS", "-FLAGS", "+FLAGS.SILENT"])
            self.run("STORE", self.m.store, self.someNumbers(), how, "(%s)" % flag, bySequence=True)
        elif roll < 0.90:
            self.run("EXPUNGE", self.m.expunge)
        elif roll < 0.95:
            self.select()
        else:
            self.run("NOOP", self.m.noop)

    def close(self):
        try:
            self.m.logout()
        except Exception:
            pass


def test_ten_sessions_by_sequence_number_never_get_no(make_imap_server):
    server = make_imap_server()
    setup = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=60)
    setup.login(USER, PASSWORD)
    for n in range(40):
        assert setup.append("INBOX", None, None, message(n))[0] == "OK"
    errors = []
    clients = [Client(server, seed, errors) for seed in range(CLIENTS)]
    start = threading.Barrier(CLIENTS)
    crashed = []

    def work(c, seed):
        try:
            start.wait(timeout=60)
            deadline = time.monotonic() + BUDGET
            for n in range(OPS):
                if time.monotonic() > deadline:
                    break
                c.step(1000 * (seed + 1) + n)
        except Exception as e:  # a timeout or a dropped connection
            crashed.append(repr(e))

    threads = [threading.Thread(target=work, args=(c, i), daemon=True) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=BUDGET + 120)
    assert not any(t.is_alive() for t in threads), "a client hung"
    assert not crashed, crashed
    assert not errors, "%d errors, the first ones: %s" % (len(errors), errors[:10])
    # Quiet now: each view, brought up to date, is the mailbox as it is.
    typ, data = setup.select("INBOX")
    assert typ == "OK"
    final = int(data[0])
    for c in clients:
        c.run("NOOP", c.m.noop)
        assert c.count == final
        c.close()
    assert not errors, errors[:10]
    setup.logout()
    assert "Traceback" not in server.log()

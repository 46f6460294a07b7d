"""
Many clients at once on one mailbox, against the real server.

Two SMTP senders deliver 200 messages (unique Message-IDs) to alice's INBOX
while ten IMAP sessions (imapclient over TLS, each in its own thread with a
fixed random seed) work on it: UID FETCH, UID STORE +/-FLAGS, UID COPY,
UID MOVE, UID EXPUNGE of what they marked \\Deleted, FETCH by sequence
number, NOOP; two of them sit in IDLE collecting untagged responses; one
POP3 session keeps reconnecting to read (STAT, UIDL, RETR; download and
keep).

Every IMAP session keeps a client's view of the mailbox, as RFC 3501
s7.4.1 / RFC 9051 s7.5 demand of a client: a list of UIDs indexed by
message sequence number, changed only by the untagged EXISTS, EXPUNGE and
FETCH responses it receives (in the order it receives them).  At the end,
when everyone is quiescent, each does a final NOOP and its view must be the
view of a fresh session: same UIDs in the same order, same flags.

Also checked: no UID ever names two Message-IDs in a folder; every message
that got a 250 is in exactly one place (INBOX or Moved) unless a session
expunged it, and Copies holds exactly the copies COPYUID reported; UIDs
grow in arrival order; UIDNEXT is above every UID ever seen; EXPUNGE never
comes during a FETCH by sequence number (RFC 3501 s7.4.1); the server logs
no traceback; no command gets BAD or an unexpected NO.

Accepted refusals, per RFC:
- IMAP ``[EXPUNGEISSUED]`` (RFC 5530 s3, RFC 2180 s4.1; mailnet answers OK
  with it, as Dovecot) to a FETCH, STORE or SEARCH by sequence number that names a message another session
  expunged, which this session cannot be told about during those commands
  (RFC 3501 s7.4.1).  A UID command may carry the EXPUNGE in its answer,
  and a UID that is gone is ignored without an error (RFC 3501 s6.4.8), so
  a NO to a UID command is a failure.
- POP3 ``-ERR`` to RETR of a message IMAP expunged after the POP3 session
  took its snapshot (RFC 1939 has no concurrent deletion; the message is
  gone, -ERR is the only honest answer).  The message must then indeed be
  gone from INBOX at the end.
"""

import email
import poplib
import random
import re
import smtplib
import ssl
import threading
import time

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

USER, PASSWORD = "alice@example.test", "alice-pw"
SENDERS = 2
PER_SENDER = 100
WORKERS = 8  # IMAP sessions doing random operations
IDLERS = 2  # IMAP sessions in IDLE
EXTRA_OPS = 40  # operations each worker does after the last delivery
TIMEOUT = 20  # socket timeout: a hang fails the test instead of freezing it
KEYWORD = "$Stress"
MUTABLE = ["\\Seen", "\\Flagged", KEYWORD]

FETCH_RE = re.compile(rb"^(\d+) \(", re.S)
UID_RE = re.compile(rb"\bUID (\d+)")
FLAGS_RE = re.compile(rb"\bFLAGS \(([^)]*)\)")
MSGID_RE = re.compile(rb"(?im)^Message-ID:[ \t]*(<[^>\r\n]+>)")
COPYUID_RE = re.compile(rb"\[COPYUID (\d+) ([0-9:,]+) ([0-9:,]+)\]")


def uidset(text):
    out = []
    for part in text.decode().split(","):
        lo, _, hi = part.partition(":")
        lo, hi = int(lo), int(hi or lo)
        out.extend(range(min(lo, hi), max(lo, hi) + 1))
    return out


def copyuid(text):
    """``{source uid: destination uid}`` from a COPYUID response code (RFC 4315 s3)."""
    m = COPYUID_RE.search(text)
    if not m:
        return None
    src, dst = uidset(m.group(2)), uidset(m.group(3))
    assert len(src) == len(dst), text
    return dict(zip(src, dst))


FAILED = object()  # what Session.run answers for a refused command


class World:
    """What everyone saw, shared between threads (under one lock)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.errors = []
        self.byUid = {"INBOX": {}, "Copies": {}, "Moved": {}}  # folder -> uid -> Message-ID
        self.accepted = {}  # Message-ID -> (sender, index), after the 250
        self.moved = {}  # INBOX uid -> Moved uid (from COPYUID)
        self.copies = []  # (INBOX uid, Copies uid) from COPYUID
        self.expunged = set()  # INBOX uids marked \Deleted and UID EXPUNGEd, both OK
        self.expungeIssued = 0
        self.ops = 0
        self.popGone = set()  # POP3 UIDLs whose RETR got -ERR
        self.popUidl = {}  # POP3 UIDL -> Message-ID
        self.sendersDone = threading.Event()
        self.mutators = WORKERS + 1  # workers and the POP3 reader (RETR sets \Seen)
        self.quiet = threading.Event()

    def error(self, who, text):
        with self.lock:
            self.errors.append(f"{who}: {text}")

    def saw(self, who, folder, uid, msgid):
        with self.lock:
            known = self.byUid[folder].setdefault(uid, msgid)
        if known != msgid:
            self.error(who, f"{folder} UID {uid} is {msgid} now but was {known}")

    def mutatorDone(self):
        with self.lock:
            self.mutators -= 1
            if self.mutators == 0:
                self.quiet.set()


class Tracker:
    """
    A client's view of the selected mailbox (RFC 3501 s7.4.1, RFC 9051
    s7.5): UIDs by message sequence number (None until a FETCH tells),
    changed only by untagged EXISTS, EXPUNGE and FETCH, in arrival order.
    """

    def __init__(self, who, world):
        self.who = who
        self.world = world
        self.uids = []
        self.flags = {}
        self.context = None  # the command whose responses are coming in

    def error(self, text):
        self.world.error(self.who, f"{text} (during {self.context})")

    def exists(self, n):
        if n < len(self.uids):
            # RFC 3501 s7.3.1: only EXPUNGE makes the mailbox smaller.
            self.error(f"EXISTS {n} below the {len(self.uids)} messages known")
        self.uids.extend([None] * (n - len(self.uids)))

    def expunge(self, msn):
        if self.context in ("FETCH", "STORE", "SEARCH"):
            # RFC 3501 s7.4.1: no EXPUNGE during a FETCH, STORE or SEARCH by
            # sequence number, or the numbers would shift under the client.
            self.error(f"EXPUNGE {msn} during {self.context}")
        if not 1 <= msn <= len(self.uids):
            self.error(f"EXPUNGE {msn} beyond {len(self.uids)}")
            return
        uid = self.uids.pop(msn - 1)
        self.flags.pop(uid, None)

    def fetch(self, msn, uid, flags, msgid):
        if not 1 <= msn <= len(self.uids):
            self.error(f"FETCH {msn} beyond {len(self.uids)}")
            return
        known = self.uids[msn - 1]
        if uid is None:
            uid = known
        elif known is None:
            # UIDs strictly ascend with the sequence numbers (RFC 3501 s2.3.1.1).
            before = [u for u in self.uids[:msn - 1] if u is not None]
            after = [u for u in self.uids[msn:] if u is not None]
            if (before and before[-1] >= uid) or (after and after[0] <= uid):
                self.error(f"UID {uid} at {msn} out of order")
            self.uids[msn - 1] = uid
        elif known != uid:
            self.error(f"FETCH {msn} says UID {uid}, the view says {known}")
            return
        if uid is None:
            return
        if flags is not None:
            self.flags[uid] = flags
        if msgid is not None:
            self.world.saw(self.who, "INBOX", uid, msgid)

    def known(self):
        return [u for u in self.uids if u is not None]


def parseFlags(raw):
    return frozenset(f for f in raw.decode().split() if f != "\\Recent")


class Session:
    """One IMAP session (imapclient) with INBOX selected and a Tracker fed
    from every untagged response imaplib sees."""

    def __init__(self, server, world, who, seed):
        self.who = who
        self.world = world
        self.rng = random.Random(seed)
        self.tracker = Tracker(who, world)
        self.lastCopyuid = None
        self._pending = None
        self.landed = {"Copies": [], "Moved": []}  # destination UIDs, in order
        ctx = ssl.create_default_context(cafile=server.certFile)
        self.c = IMAPClient("127.0.0.1", port=server.port("imaps"), ssl_context=ctx, timeout=TIMEOUT)
        imap = self.c._imap
        original = imap._append_untagged

        def hook(typ, dat):
            original(typ, dat)
            self.untagged(typ, dat)

        imap._append_untagged = hook
        self.c.login(USER, PASSWORD)
        self.tracker.context = "SELECT"
        self.c.select_folder("INBOX")
        self.clear()

    def clear(self):
        self.c._imap.untagged_responses.clear()

    # Untagged responses, as imaplib hands them over

    def untagged(self, typ, dat):
        t = self.tracker
        if typ == "EXISTS":
            t.exists(int(dat))
        elif typ == "EXPUNGE":
            t.expunge(int(dat))
        elif typ == "FETCH":
            if isinstance(dat, tuple):  # text up to a literal, the literal
                self._pending = dat
                return
            if self._pending is not None:  # the rest after a literal
                head, literal = self._pending
                self._pending = None
                self.fetched(head + dat, literal)
            else:
                self.fetched(dat, None)
        elif typ == "OK" and b"COPYUID" in dat:
            self.lastCopyuid = dat  # RFC 6851 s4.3: MOVE sends it untagged

    def fetched(self, text, literal):
        m = FETCH_RE.match(text)
        if not m:
            self.tracker.error(f"unparsable FETCH {text!r}")
            return
        uid = UID_RE.search(text)
        flags = FLAGS_RE.search(text)
        msgid = MSGID_RE.search(literal) if literal is not None else None
        self.tracker.fetch(int(m.group(1)), int(uid.group(1)) if uid else None,
                           parseFlags(flags.group(1)) if flags else None,
                           msgid.group(1).decode() if msgid else None)

    def idleResponse(self, r):
        """One response from imapclient's IDLE parser."""
        if len(r) >= 2 and isinstance(r[0], int):
            kind = r[1]
            if kind == b"EXISTS":
                self.tracker.exists(r[0])
            elif kind == b"EXPUNGE":
                self.tracker.expunge(r[0])
            elif kind == b"FETCH":
                items = r[2]
                d = dict(zip(items[0::2], items[1::2]))
                flags = d.get(b"FLAGS")
                self.tracker.fetch(r[0], d.get(b"UID"),
                                   frozenset(f.decode() for f in flags if f != b"\\Recent") if flags is not None else None,
                                   None)

    # Commands

    def run(self, context, call, *args):
        """Run one command; a NO [EXPUNGEISSUED] is fine (see the module
        docstring), anything else that is not OK is an error."""
        self.tracker.context = context
        try:
            return call(*args)
        except IMAPClientError as e:
            if "EXPUNGEISSUED" in str(e) and context in ("FETCH", "STORE", "SEARCH"):
                with self.world.lock:
                    self.world.expungeIssued += 1
            else:
                self.tracker.error(f"{context} failed: {e}")
            return FAILED
        finally:
            self.tracker.context = None
            self.clear()

    def msnFetch(self, seqset, items):
        """FETCH by sequence number (imapclient only fetches listed numbers)."""
        typ, data = self.c._imap.fetch(seqset, items)
        if typ != "OK":
            raise IMAPClientError(f"FETCH {typ}: {data}")
        if self.c._imap.untagged_responses.pop("EXPUNGEISSUED", None):
            # OK [EXPUNGEISSUED] (as Dovecot): the gone messages were skipped.
            raise IMAPClientError("FETCH OK [EXPUNGEISSUED]")
        return data

    def uidCopy(self, uids, folder):
        """UID COPY, answering the tagged text: imapclient's copy() answers an
        unsolicited FETCH instead when one came with it (imaplib's uid())."""
        typ, data = self.c._raw_command(b"COPY", [",".join(map(str, uids)).encode(), folder.encode()])
        if typ != "OK":
            raise IMAPClientError(f"COPY {typ}: {data}")
        return data[0]

    def learn(self):
        """Fetch what EXISTS announced (a client must, to know the UIDs)."""
        t = self.tracker
        if None not in t.uids:
            return
        first = t.uids.index(None)
        known = len(t.uids)
        ok = self.run("FETCH", self.msnFetch, f"{first + 1}:*",
                      "(UID FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        # After NO [EXPUNGEISSUED] a message expunged meanwhile stays unknown
        # until its EXPUNGE comes (RFC 2180 s4.1.2); after OK none may.
        # (An EXISTS may come with the answer: those are for the next time.)
        if ok is not FAILED and None in t.uids[:known]:
            t.error(f"FETCH {first + 1}:* did not tell the UIDs of the new messages: {t.uids}")

    def sample(self, k):
        with self.world.lock:
            named = self.world.byUid["INBOX"]
            known = [u for u in self.tracker.known() if u in named]
        return self.rng.sample(known, min(k, len(known))) if known else []

    def step(self):
        rng = self.rng
        c = self.c
        self.learn()
        op = rng.choices(
            ["fetch", "store", "delete", "copy", "move", "noop", "msnfetch"],
            [25, 30, 8, 10, 8, 10, 9])[0]
        if op == "fetch":
            uids = self.sample(rng.randint(1, 5))
            if uids:
                self.run("UID FETCH", c.fetch, uids, ["FLAGS", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
        elif op == "store":
            uids = self.sample(rng.randint(1, 3))
            if uids:
                how = c.add_flags if rng.random() < 0.6 else c.remove_flags
                self.run("UID STORE", how, uids, [rng.choice(MUTABLE)])
        elif op == "delete":
            uids = self.sample(1)
            if uids:
                if self.run("UID STORE", c.add_flags, uids, ["\\Deleted"]) is not FAILED:
                    if self.run("UID EXPUNGE", c.uid_expunge, uids) is not FAILED:
                        with self.world.lock:
                            self.world.expunged.update(uids)
        elif op == "copy":
            uids = self.sample(rng.randint(1, 2))
            if uids:
                answer = self.run("UID COPY", self.uidCopy, uids, "Copies")
                if answer is FAILED:
                    return
                mapping = copyuid(answer)
                if mapping is None and set(uids) & set(self.tracker.known()):
                    self.tracker.error(f"UID COPY {uids} without COPYUID: {answer!r}")
                for src, dst in sorted((mapping or {}).items()):
                    with self.world.lock:
                        self.world.copies.append((src, dst))
                    self.landed["Copies"].append(dst)
        elif op == "move":
            uids = self.sample(1)
            if uids:
                self.lastCopyuid = None
                if self.run("UID MOVE", c.move, uids, "Moved") is not FAILED:
                    mapping = copyuid(self.lastCopyuid) if self.lastCopyuid else {}
                    with self.world.lock:
                        self.world.moved.update(mapping)
                    self.landed["Moved"] += [mapping[u] for u in sorted(mapping)]
                    if uids[0] in self.tracker.known():
                        # RFC 6851 s3.3: the mover is told at once.
                        self.tracker.error(f"UID MOVE {uids} left it in the view")
        elif op == "noop":
            self.run("NOOP", c.noop)
        elif op == "msnfetch":
            self.run("FETCH", self.msnFetch, "1:*", "(UID FLAGS)")

    def finish(self):
        self.run("NOOP", self.c.noop)
        self.learn()


def worker(server, world, n, reports):
    who = f"imap{n}"
    try:
        s = Session(server, world, who, seed=1000 + n)
        s.learn()
        extra = ops = 0
        while extra < EXTRA_OPS:
            if world.sendersDone.is_set():
                extra += 1
            s.step()
            ops += 1
        with world.lock:
            world.ops += ops
    except Exception as e:  # noqa: BLE001 - reported, the test fails
        world.error(who, f"{type(e).__name__}: {e}")
        world.mutatorDone()
        return
    world.mutatorDone()
    if not world.quiet.wait(60):
        world.error(who, "others never became quiet")
        return
    try:
        s.finish()
        reports[who] = s.tracker
        for folder, uids in s.landed.items():
            # Later copies get higher UIDs in the destination (RFC 4315 s3).
            if uids != sorted(set(uids)):
                world.error(who, f"{folder} UIDs from COPYUID not ascending: {uids}")
        s.c.logout()
    except Exception as e:  # noqa: BLE001
        world.error(who, f"{type(e).__name__}: {e}")


def idler(server, world, n, reports):
    who = f"idle{n}"
    try:
        s = Session(server, world, who, seed=2000 + n)
        s.learn()
        announced = 0
        while not world.quiet.is_set():
            s.tracker.context = "IDLE"
            s.c.idle()
            # Collect what comes; leave IDLE now and then to learn the new
            # UIDs, as a client would (RFC 2177: re-issue IDLE after that).
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline and not world.quiet.is_set():
                for r in s.c.idle_check(timeout=0.2):
                    if len(r) >= 2 and r[1] == b"EXISTS":
                        announced += 1
                    s.idleResponse(r)
            s.c.idle_done()
            s.tracker.context = None
            s.clear()
            s.learn()
        s.finish()
        if not announced:
            world.error(who, "IDLE never announced a new message")
        reports[who] = s.tracker
        s.c.logout()
    except Exception as e:  # noqa: BLE001
        world.error(who, f"{type(e).__name__}: {e}")


def sender(server, world, n):
    who = f"smtp{n}"
    try:
        for batch in range(0, PER_SENDER, 25):
            with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=TIMEOUT) as smtp:
                for i in range(batch, batch + 25):
                    msgid = f"<{n}.{i}@stress.test>"
                    msg = (f"From: x@remote.test\r\nTo: {USER}\r\nSubject: stress {n} {i}\r\n"
                           f"Message-ID: {msgid}\r\n\r\nbody {n} {i}\r\n")
                    refused = smtp.sendmail("x@remote.test", [USER], msg)
                    if refused:
                        world.error(who, f"{msgid} refused: {refused}")
                        continue
                    with world.lock:
                        world.accepted[msgid] = (n, i)
    except Exception as e:  # noqa: BLE001
        world.error(who, f"{type(e).__name__}: {e}")


def popReader(server, world):
    who = "pop3"
    rng = random.Random(3000)
    ctx = ssl.create_default_context(cafile=server.certFile)
    try:
        rounds = after = 0
        while after < 2:
            if world.sendersDone.is_set():
                after += 1
            rounds += 1
            p = poplib.POP3_SSL("127.0.0.1", server.port("pop3s"), context=ctx, timeout=TIMEOUT)
            p.user(USER)
            p.pass_(PASSWORD)
            count, _ = p.stat()
            listing = [line.split() for line in p.uidl()[1]]
            # mailnet leaves messages IMAP expunged meanwhile out of the
            # listings (docs/pop3.md "Other clients"), so the count can only go down; the
            # message numbers stay those of the login (RFC 1939 s4).
            if len(listing) > count:
                world.error(who, f"STAT says {count}, UIDL lists {len(listing)}")
            if [int(num) for num, _ in listing] != sorted(int(num) for num, _ in listing):
                world.error(who, f"UIDL out of order: {listing}")
            for num, uidl in rng.sample(listing, min(3, len(listing))):
                try:
                    lines = p.retr(int(num))[1]
                except poplib.error_proto as e:
                    with world.lock:
                        world.popGone.add(uidl.decode())
                    if not str(e).startswith("b'-ERR"):
                        world.error(who, f"RETR {num}: {e}")
                    continue
                msgid = email.message_from_bytes(b"\r\n".join(lines))["Message-ID"]
                with world.lock:
                    known = world.popUidl.setdefault(uidl.decode(), msgid)
                if known != msgid:
                    world.error(who, f"UIDL {uidl!r} is {msgid} now but was {known}")
            p.quit()  # download and keep: no DELE
        if rounds < 3:
            world.error(who, f"only {rounds} POP3 sessions")
    except Exception as e:  # noqa: BLE001
        world.error(who, f"{type(e).__name__}: {e}")
    finally:
        world.mutatorDone()


def freshView(server, folder):
    """``[(uid, flags, Message-ID)]`` in sequence order, and UIDNEXT."""
    ctx = ssl.create_default_context(cafile=server.certFile)
    with IMAPClient("127.0.0.1", port=server.port("imaps"), ssl_context=ctx, timeout=TIMEOUT) as c:
        c.login(USER, PASSWORD)
        uidnext = c.folder_status(folder, ["UIDNEXT"])[b"UIDNEXT"]
        c.select_folder(folder, readonly=True)
        data = c.fetch(c.search(["ALL"]), ["FLAGS", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
    rows = []
    for uid, d in sorted(data.items(), key=lambda kv: kv[1][b"SEQ"]):
        m = MSGID_RE.search(d[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"])
        rows.append((uid, frozenset(f.decode() for f in d[b"FLAGS"] if f != b"\\Recent"),
                     m.group(1).decode() if m else None))
    return rows, uidnext


@pytest.fixture
def stressServer(make_server):
    # Ten sessions of one user plus setup and fresh checkers.
    s = make_server(config={"limits": {"imap_connections_per_user": 40}})
    s.addUser(USER, PASSWORD)
    ctx = ssl.create_default_context(cafile=s.certFile)
    with IMAPClient("127.0.0.1", port=s.port("imaps"), ssl_context=ctx, timeout=TIMEOUT) as c:
        c.login(USER, PASSWORD)
        c.create_folder("Copies")
        c.create_folder("Moved")
    return s


def test_many_sessions_on_one_mailbox_agree(stressServer):
    server = stressServer
    world = World()
    reports = {}
    threads = [threading.Thread(target=worker, args=(server, world, n, reports), name=f"imap{n}")
               for n in range(WORKERS)]
    threads += [threading.Thread(target=idler, args=(server, world, n, reports), name=f"idle{n}")
                for n in range(IDLERS)]
    threads.append(threading.Thread(target=popReader, args=(server, world), name="pop3"))
    senders = [threading.Thread(target=sender, args=(server, world, n), name=f"smtp{n}")
               for n in range(SENDERS)]
    for t in threads + senders:
        t.daemon = True
        t.start()
    for t in senders:
        t.join(120)
        assert not t.is_alive(), f"{t.name} hangs"
    world.sendersDone.set()
    for t in threads:
        t.join(120)
        assert not t.is_alive(), f"{t.name} hangs"
    assert not world.errors, "\n".join(world.errors[:40])
    assert len(world.accepted) == SENDERS * PER_SENDER

    views = {}
    for folder in ("INBOX", "Copies", "Moved"):
        views[folder] = freshView(server, folder)
        rows, uidnext = views[folder]
        for uid, _, msgid in rows:
            world.saw("fresh", folder, uid, msgid)
        seen = world.byUid[folder]
        # RFC 3501 s2.3.1.1: UIDNEXT above every UID ever given out here.
        assert not seen or uidnext > max(seen), (folder, uidnext, max(seen))
        assert [r[0] for r in rows] == sorted(r[0] for r in rows), folder
    assert len({dst for _, dst in world.copies}) == len(world.copies), "a Copies UID given twice"
    assert len(set(world.moved.values())) == len(world.moved), "a Moved UID given twice"
    for (src, dst) in world.copies:
        world.saw("COPYUID", "Copies", dst, world.byUid["INBOX"].get(src))
    for src, dst in world.moved.items():
        world.saw("COPYUID", "Moved", dst, world.byUid["INBOX"].get(src))
    assert not world.errors, "\n".join(world.errors[:40])

    inbox, _ = views["INBOX"]
    # Every session's view, tracked from its untagged responses only, is the
    # fresh view: same UIDs in the same order, same flags.
    freshUids = [uid for uid, _, _ in inbox]
    freshFlags = {uid: flags for uid, flags, _ in inbox}
    assert set(reports) == {f"imap{n}" for n in range(WORKERS)} | {f"idle{n}" for n in range(IDLERS)}
    for who, tracker in sorted(reports.items()):
        assert tracker.uids == freshUids, who
        wrong = {uid: (tracker.flags.get(uid), freshFlags[uid]) for uid in freshUids
                 if tracker.flags.get(uid) != freshFlags[uid]}
        assert not wrong, (who, wrong)

    # The ledger: every accepted message in exactly one place unless expunged.
    inboxIds = [m for _, _, m in inbox]
    movedIds = [m for _, _, m in views["Moved"][0]]
    copyIds = [m for _, _, m in views["Copies"][0]]
    assert None not in inboxIds + movedIds + copyIds
    assert set(inboxIds + movedIds + copyIds) <= set(world.accepted)
    uidOf = {}
    for uid, msgid in world.byUid["INBOX"].items():
        assert uidOf.setdefault(msgid, uid) == uid, f"{msgid} had two INBOX UIDs"
    expungedIds = {world.byUid["INBOX"][u] for u in world.expunged}
    for msgid in world.accepted:
        places = inboxIds.count(msgid) + movedIds.count(msgid)
        if msgid in expungedIds:
            assert msgid not in inboxIds, f"{msgid} was expunged but is still in INBOX"
            assert places <= 1, msgid
        else:
            assert places == 1, f"{msgid} is in {places} places"
    movedFrom = {world.byUid["INBOX"][src] for src in world.moved}
    assert set(movedIds) == movedFrom, (set(movedIds) - movedFrom, movedFrom - set(movedIds))
    expectedCopies = sorted(world.byUid["INBOX"][src] for src, _ in world.copies)
    assert sorted(copyIds) == expectedCopies
    # UIDs grow in arrival order (each sender delivers one after the other).
    for n in range(SENDERS):
        mine = sorted((i, uidOf[m]) for m, (s, i) in world.accepted.items() if s == n and m in uidOf)
        assert [u for _, u in mine] == sorted(u for _, u in mine), f"sender {n}"
    # POP3 -ERR only for messages that really went away.
    assert set(world.popUidl.values()) <= set(world.accepted)
    for uidl in world.popGone:
        if uidl in world.popUidl:
            assert world.popUidl[uidl] not in inboxIds, f"POP3 RETR -ERR for {uidl}, still in INBOX"

    log = server.log()
    assert "Traceback" not in log and "Unhandled" not in log, log[-5000:]
    print(f"\n{world.ops} operations; INBOX {len(inbox)}, Moved {len(movedIds)}, Copies {len(copyIds)}, "
          f"expunged {len(world.expunged)}, NO [EXPUNGEISSUED] {world.expungeIssued}, "
          f"POP3 RETR -ERR {len(world.popGone)}")

"""
``mailnet migrate maildir-to-postgres USER|--all``: copy accounts from the
Maildir store to the PostgreSQL store (docs/scaling.md "Moving users").

Both stores are read and written through the store contract with
synchronous runners (no reactor): the Maildir side as our server reads it
(Dovecot's uidlist and keywords, a folder dropped in by hand gets its UIDs
on first open), the PostgreSQL side as IMAP APPEND writes.  Kept: folder
names (made when missing), subscriptions, every message's flags and
keywords and internal date.  Not kept: UIDs and UIDVALIDITY (the folders
on PostgreSQL have their own; IMAP clients resync once), ``\\Recent``.

Resumable: each copied message is recorded in ``migrated`` (schema version
5) under its Maildir folder, UIDVALIDITY and UID; a run skips what is
recorded.  A message copied but not yet recorded when a run was killed is
found again by its body's SHA-256 among the folder's unrecorded messages
and recorded, not copied twice.

Verified per folder: the count of the Maildir's messages equals the count
of recorded messages present on PostgreSQL, and the multiset of the
messages' SHA-256 (the canonical bytes) equals that of their bodies on
PostgreSQL.  One summary line per user.
"""

from __future__ import annotations

import collections
import hashlib
import os

from twisted.python.failure import Failure

from mailnet.store.base import parentsOf
from mailnet.store.interfaces import INBOX, FolderExists, NoSuchAccount

READ = 256 * 1024


def _now(d):
    """The result of a Deferred fired already (synchronous runners); raises its failure."""
    box = []
    d.addBoth(box.append)
    if not box:
        raise RuntimeError("a store operation did not finish synchronously")
    if isinstance(box[0], Failure):
        box[0].raiseException()
    return box[0]


def maildirUsers(root):
    """Every ``local@domain`` with an account directory under ``root`` (``<root>/<domain>/<local>``)."""
    found = []
    for domain in sorted(os.listdir(root)) if os.path.isdir(root) else ():
        path = os.path.join(root, domain)
        if domain.startswith(".") or not os.path.isdir(path):
            continue
        for local in sorted(os.listdir(path)):
            if not local.startswith(".") and os.path.isdir(os.path.join(path, local, "cur")):
                found.append(f"{local}@{domain}")
    return found


def _hashOf(f):
    h = hashlib.sha256()
    while True:
        piece = f.read(READ)
        if not piece:
            return h.digest()
        h.update(piece)


def _recorded(conn, account, folder):
    return dict(conn.execute("SELECT source, uid FROM migrated WHERE account = %s AND folder = %s",
                             (account, folder)).fetchall())


def _bodies(conn, folder):
    return {uid: bytes(h) for uid, h in conn.execute("SELECT uid, body_hash FROM messages WHERE folder = %s",
                                                      (folder,)).fetchall()}


def _record(conn, account, source, folder, uid):
    conn.execute("INSERT INTO migrated (account, source, folder, uid) VALUES (%s, %s, %s, %s)"
                 " ON CONFLICT (account, source) DO NOTHING", (account, source, folder, uid))


def _folderId(conn, account, name):
    return conn.execute("SELECT id FROM folders WHERE account = %s AND name = %s", (account, name)).fetchone()[0]


class Migration:
    """One run: ``user(name)`` copies and verifies one account and returns its summary line."""

    def __init__(self, maildir, postgres):
        self.maildir = maildir  # a MaildirStore with a synchronous runner
        self.postgres = postgres  # a PostgresStore with a synchronous runner
        self.db = postgres.db

    def user(self, username):
        try:
            source = _now(self.maildir.getAccount(username, create=False))
        except NoSuchAccount:
            return False, f"{username}: no Maildir account"
        target = _now(self.postgres.getAccount(username, create=True))
        aid = target.accountId
        names = [info.name for info in _now(source.listFolders())]
        if INBOX not in names:
            names.insert(0, INBOX)
        have = {info.name for info in _now(target.listFolders())}
        for name in names:
            for part in list(parentsOf(name)) + [name]:
                if part not in have:
                    try:
                        _now(target.createFolder(part))
                    except FolderExists:
                        pass
                    have.add(part)
        for name in _now(source.listSubscriptions()):
            _now(target.setSubscribed(name, True))
        total = copied = skipped = 0
        bad = []
        for name in names:
            n, c, s, ok = self._folder(source, target, aid, name)
            total, copied, skipped = total + n, copied + c, skipped + s
            if not ok:
                bad.append(name)
        line = (f"{username}: {total} messages in {len(names)} folders: {copied} copied, {skipped} there already; ")
        if bad:
            return False, line + "MISMATCH (counts or SHA-256 of bodies) in " + ", ".join(bad)
        return True, line + "verified (message counts and SHA-256 of bodies match)"

    def _folder(self, source, target, aid, name):
        src = _now(source.openFolder(name))
        dst = _now(target.openFolder(name))
        try:
            fid = self.db.call(_folderId, aid, name)
            done = self.db.call(_recorded, aid, fid)
            bodies = self.db.call(_bodies, fid)
            claimed = set(done.values())
            unclaimed = collections.defaultdict(list)  # hash -> uids on PostgreSQL no record names
            for uid, h in sorted(bodies.items()):
                if uid not in claimed:
                    unclaimed[h].append(uid)
            wanted = collections.Counter()
            copied = skipped = 0
            infos = src.messages()
            for info in infos:
                key = f"{src.uidValidity}:{info.uid}:{name}"  # two numbers first: unambiguous
                f = _now(src.openMessage(info.uid))
                try:
                    h = _hashOf(f)
                    wanted[h] += 1
                    if key in done:
                        skipped += 1
                        continue
                    if unclaimed.get(h):
                        uid = unclaimed[h].pop(0)  # copied by a run that died before recording it
                        skipped += 1
                    else:
                        f.seek(0)
                        uid = _now(dst.append(f, flags=info.flags, internalDate=info.internalDate))
                        copied += 1
                finally:
                    f.close()
                self.db.call(_record, aid, key, fid, uid)
            # Verify: what the records point at, as it is on PostgreSQL now.
            done = self.db.call(_recorded, aid, fid)
            bodies = self.db.call(_bodies, fid)
            got = collections.Counter(bodies[uid] for uid in done.values() if uid in bodies)
            ok = len(infos) == sum(got.values()) and got == wanted
            return len(infos), copied, skipped, ok
        finally:
            src.close()
            dst.close()


def main(conf, users, everyone=False, maildirRoot=None, out=None):
    """The command: exit status 0 when every user verified, 1 otherwise."""
    import sys

    from mailnet.store.base import FolderLimits
    from mailnet.store.maildir.store import MaildirStore
    from mailnet.store.postgres import objects
    from mailnet.store.postgres.db import Database, Settings
    from mailnet.store.postgres.schema import SchemaError, checkVersion
    from mailnet.store.postgres.store import PostgresStore
    from mailnet.store.interfaces import StoreError
    from twisted.internet import defer

    out = out or sys.stdout

    def sync(f, *args, **kw):
        return defer.maybeDeferred(f, *args, **kw)

    root = maildirRoot or conf.mailDir
    if not os.path.isdir(root):
        print(f"mailnet: no Maildir store at {root}", file=sys.stderr)
        return 1
    # Bodies go where the nodes put them ([postgres] bodies).
    db = Database(Settings.fromConfig(conf), runner=sync, objects=objects.fromConfig(conf))
    try:
        try:
            db.call(checkVersion)
        except SchemaError as e:
            print(f"mailnet: {e}", file=sys.stderr)
            return 1
        except StoreError as e:
            print(f"mailnet: {e}", file=sys.stderr)
            return 1
        maildir = MaildirStore(root, runner=sync, schedule=lambda f, delay=0: f(), changesPoll=0)
        postgres = PostgresStore(db, FolderLimits.fromConfig(conf), changesKept=conf.store.changes_kept,
                                 runner=sync)
        run = Migration(maildir, postgres)
        status = 0
        for user in (maildirUsers(root) if everyone else users):
            try:
                ok, line = run.user(user)
            except StoreError as e:
                ok, line = False, f"{user}: failed: {e}"
            print(line, file=out, flush=True)
            status |= 0 if ok else 1
        return status
    finally:
        db.close()

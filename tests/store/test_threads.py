"""
mailnet.store.threads: the rules of thread ids beyond the conformance
suite (subject, subject fallback, merges) and the Maildir index file
(deleted, corrupt, kept beside Dovecot's files).
"""

from __future__ import annotations

import os

from mailnet.store.conformance_threads import mail
from mailnet.store.maildir import MaildirStore
from mailnet.store.testing import result, syncRunner
from mailnet.store.threads import FILE_NAME, ThreadIndex, keyOf

USER = "alice@example.test"


def key(mid, subject="Plans", refs=(), inReplyTo=None):
    return keyOf(mail(mid, subject, refs, inReplyTo))


def test_key_of_a_header():
    assert key("a", "Re: [x] Plans", ["p", "q"]) == ("a@example.test", ["p@example.test", "q@example.test"],
                                                      "plans", True)
    assert key(None, "", inReplyTo="p") == (None, ["p@example.test"], "", False)


def test_references_need_the_same_base_subject():
    ix = ThreadIndex()
    ids, _ = ix.add([("M1", key("a")), ("M2", key("b", "Re: plans", ["a"])),
                     ("M3", key("c", "Something else", ["a"]))])
    assert ids == {"M1": "TM1", "M2": "TM1", "M3": "TM3"}


def test_a_reply_by_subject_alone_joins_the_latest_thread_of_its_subject():
    ix = ThreadIndex()
    ids, _ = ix.add([("M1", key("a", "Lunch")), ("M2", key("b", "Lunch")), ("M3", key("c", "Re: lunch")),
                     ("M4", key("d", "lunch")), ("M5", key("e", "Re: dinner"))])
    # M2 is not a reply: its own thread; M3 has no references: the latest "lunch" thread
    assert ids == {"M1": "TM1", "M2": "TM2", "M3": "TM2", "M4": "TM4", "M5": "TM5"}


def test_merges_keep_the_oldest_thread():
    ix = ThreadIndex()
    ix.add([("M1", key("c", "Re: Plans", inReplyTo="b")), ("M2", key("a"))])
    assert ix.lookup(["M1", "M2"]) == {"M1": "TM1", "M2": "TM2"}
    generation = ix.generation
    ids, merged = ix.add([("M3", key("b", "Re: Plans", inReplyTo="a"))])
    assert merged and ix.generation > generation
    assert ids == {"M3": "TM1"} and ix.lookup(["M1", "M2", "M3"]) == {"M1": "TM1", "M2": "TM1", "M3": "TM1"}
    assert ix.members("TM1") == ["M1", "M2", "M3"] and ix.members("TM2") == []
    # an id indexed already keeps its thread
    assert ix.add([("M2", key("zzz", "Other"))])[0] == {"M2": "TM1"}


def _store(tmp_path):
    return MaildirStore(str(tmp_path / "mail"), runner=syncRunner)


def _fill(tmp_path):
    store = _store(tmp_path)
    account = result(store.getAccount(USER))
    inbox = result(account.openFolder("INBOX"))
    uids = [result(inbox.append(mail("a"))), result(inbox.append(mail("b", "Re: Plans", ["a"]))),
            result(inbox.append(mail("x", "Other")))]
    ids = result(inbox.threadIds(uids))
    inbox.close()
    result(store.close())
    return account.path, uids, ids


def _threadIds(tmp_path, uids):
    store = _store(tmp_path)
    try:
        inbox = result(result(store.getAccount(USER)).openFolder("INBOX"))
        ids = result(inbox.threadIds(uids))
        inbox.close()
        return ids
    finally:
        result(store.close())


def test_maildir_index_file_is_beside_dovecots_files(tmp_path):
    umask = os.umask(0o022)
    try:
        path, uids, ids = _fill(tmp_path)
    finally:
        os.umask(umask)
    assert os.path.isfile(os.path.join(path, FILE_NAME))
    for suffix in ("", "-wal"):
        if os.path.exists(os.path.join(path, FILE_NAME + suffix)):
            assert os.stat(os.path.join(path, FILE_NAME + suffix)).st_mode & 0o777 == 0o600, suffix
    assert ids[uids[0]] == ids[uids[1]] != ids[uids[2]]


def test_maildir_index_deleted_is_rebuilt(tmp_path):
    path, uids, ids = _fill(tmp_path)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(os.path.join(path, FILE_NAME + suffix)):
            os.unlink(os.path.join(path, FILE_NAME + suffix))
    # worked out again in the same order: the same ids
    assert _threadIds(tmp_path, uids) == ids


def test_maildir_index_corrupt_is_set_aside_and_rebuilt(tmp_path):
    path, uids, ids = _fill(tmp_path)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(os.path.join(path, FILE_NAME + suffix)):
            os.unlink(os.path.join(path, FILE_NAME + suffix))
    with open(os.path.join(path, FILE_NAME), "wb") as f:
        f.write(b"this is not a database" * 100)
    assert _threadIds(tmp_path, uids) == ids
    assert os.path.isfile(os.path.join(path, FILE_NAME + ".corrupt"))


def test_a_full_disk_is_a_temporary_error_and_nothing_is_set_aside(tmp_path, monkeypatch):
    import sqlite3

    from mailnet.store.interfaces import TemporaryStoreError
    from mailnet.store.testing import failure

    path, uids, ids = _fill(tmp_path)
    store = _store(tmp_path)
    inbox = result(result(store.getAccount(USER)).openFolder("INBOX"))
    new = result(inbox.append(mail("n", "New")))

    def full(db, entries):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr("mailnet.store.threads._add", full)
    failure(inbox.threadIds([new]), TemporaryStoreError)
    assert not os.path.exists(os.path.join(path, FILE_NAME + ".corrupt"))
    monkeypatch.undo()
    assert result(inbox.threadIds(uids)) == ids
    inbox.close()
    result(store.close())


def test_a_huge_references_field_is_cut():
    refs = ["r%d" % i for i in range(3000)]
    mid, kept, subject, reply = key("big", "Re: Plans", refs)
    assert len(kept) == 500 and kept[0] == "r0@example.test" and kept[-1] == "r2999@example.test"
    ix = ThreadIndex()
    assert ix.add([("M1", key("r2999")), ("M2", (mid, kept, subject, reply))])[0] == {"M1": "TM1", "M2": "TM1"}


def test_indexing_a_message_does_not_read_every_message_of_its_subject():
    # Many messages without a subject (or with one subject): each new one is
    # looked up by its ids, not among all of them (it was quadratic).
    ix = ThreadIndex()

    def steps(mid):
        count = [0]

        def tick():
            count[0] += 1
            return 0

        ix._open().set_progress_handler(tick, 1)
        try:
            ix.add([("M" + mid, keyOf(mail(mid, "")))])
        finally:
            ix._open().set_progress_handler(None, 1)
        return count[0]

    ix.add([("A%d" % i, keyOf(mail("a%d" % i, ""))) for i in range(100)])
    few = steps("x1")
    ix.add([("B%d" % i, keyOf(mail("b%d" % i, ""))) for i in range(5000)])
    many = steps("x2")
    assert many < few * 3, (few, many)

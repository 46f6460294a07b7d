"""
The Maildir store on Maildirs other programs made: Dovecot's (uidlist v1 and
v3, keywords, subscriptions) and mutt's (no uidlist), foreign files, a broken
uidlist; keyword letters per folder as Dovecot reads them.  Deferreds are
driven as described in ``tests/store/helpers.py``.
"""

from __future__ import annotations

import os

from mailnet.store.interfaces import FLAGGED, INBOX, SEEN
from tests.store.helpers import msg, result
from tests.store.maildir_helpers import (CRLF_BODY, LF_BODY, USER, acct, makeMaildir, newStore, openf, read,
                                         uidlistRecords, write)
from tests.store.maildir_helpers import root  # noqa: F401 (a fixture)


def test_dovecot_maildir_keeps_uids_and_uidvalidity(root):
    a = acct(root)
    makeMaildir(a)
    s, w = len(LF_BODY), len(CRLF_BODY)
    n1 = f"1276528487.M364837P9451.kurkku,S={s},W={w}"
    n2 = "1276533073.M242911P3632.kurkku"  # no S=/W=: vsize in the record
    n3 = "1276540000.M1P2.kurkku"  # no record: gets a new UID
    write(f"{a}/cur/{n1}:2,Sb", LF_BODY, mtime=1_276_528_487)
    write(f"{a}/cur/{n2}:2,F", CRLF_BODY, mtime=1_276_533_073)
    write(f"{a}/new/{n3}", LF_BODY, mtime=1_276_540_000)
    write(f"{a}/dovecot-keywords", b"0 $Junk\n1 $NonJunk\n")
    write(
        f"{a}/dovecot-uidlist",
        b"3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1 Xfuture\n"
        + f"25006 :{n1}:2,S\n".encode()  # old Dovecot wrote the info too
        + f"25017 W{w} Zunknown :{n2}\n".encode(),
    )
    store = newStore(root)
    result(store.getAccount(USER, create=False))
    folder = openf(store)
    assert folder.uidValidity == 1275660208
    infos = {i.uid: i for i in folder.messages()}
    assert sorted(infos) == [25006, 25017, 25022]
    assert folder.uidNext == 25023
    assert infos[25006].flags == {SEEN, "$NonJunk"}
    assert infos[25017].flags == {FLAGGED}
    assert infos[25022].flags == frozenset()
    for uid in infos:
        assert infos[uid].size == w
        assert read(folder, uid) == CRLF_BODY
    assert infos[25006].internalDate == 1_276_528_487
    assert infos[25022].internalDate == 1_276_540_000
    # The uidlist is still Dovecot's, with the new record appended and
    # everything else (unknown fields too) kept.
    ul, byBase = uidlistRecords(a)
    assert (ul.uidValidity, ul.guid) == (1275660208, "3085f01b7f11094c501100008c4a11c1")
    assert byBase == {n1: 25006, n2: 25017, n3: 25022}
    text = open(f"{a}/dovecot-uidlist").read()
    assert "Xfuture" in text and "Zunknown" in text
    assert f"25022 W{w} :{n3}\n" in text
    # new/ was moved to cur/ (as Dovecot does), keeping the UID.
    assert os.listdir(f"{a}/new") == []
    assert f"{n3}:2," in os.listdir(f"{a}/cur")
    folder.close()
    # A fresh process sees the same.
    again = openf(newStore(root))
    assert {i.uid: i.flags for i in again.messages()} == {i.uid: i.flags for i in infos.values()}
    assert again.uidValidity == 1275660208
    again.close()


def test_v1_uidlist_and_crlf_lines(root):
    a = acct(root)
    makeMaildir(a)
    write(f"{a}/cur/100.M1P1.host:2,S", CRLF_BODY)
    write(f"{a}/cur/101.M1P1.host:2,", LF_BODY)
    write(f"{a}/dovecot-uidlist", b"1 424242 9\r\n7 100.M1P1.host:2,S\r\n8 101.M1P1.host\r\n")
    folder = openf(newStore(root))
    assert folder.uidValidity == 424242
    assert [(i.uid, i.size) for i in folder.messages()] == [(7, len(CRLF_BODY)), (8, len(CRLF_BODY))]
    assert read(folder, 8) == CRLF_BODY
    folder.close()


def test_mutt_maildir_without_uidlist(root):
    a = acct(root)
    makeMaildir(a)
    for i in range(3):
        write(f"{a}/cur/{1000 + i}.mutt.host:2,{'S' if i else ''}", LF_BODY + b"%d\n" % i)
    write(f"{a}/new/1003.mutt.host", LF_BODY)
    folder = openf(newStore(root))
    infos = folder.messages()
    assert [i.uid for i in infos] == [1, 2, 3, 4]
    assert [i.flags for i in infos] == [frozenset(), {SEEN}, {SEEN}, frozenset()]
    assert read(folder, 2) == CRLF_BODY + b"1\r\n"
    assert infos[1].size == len(CRLF_BODY) + 3
    validity = folder.uidValidity
    folder.close()
    again = openf(newStore(root))
    assert [i.uid for i in again.messages()] == [1, 2, 3, 4]
    assert again.uidValidity == validity
    again.close()


def test_files_from_other_programs_get_uids_in_arrival_order(root):
    """Names begin with numbers (seconds, M<usec> or a counter): UIDs follow
    their numeric order, not the string order ("M9" before "M10")."""
    a = acct(root)
    makeMaildir(a)
    order = [(1700000000, 9), (1700000000, 10), (1700000000, 100), (1700000001, 2)]
    for n, (secs, counter) in enumerate(order):
        write(f"{a}/new/{secs}.M{counter}P77.host", LF_BODY + b"%d\n" % n)
    folder = openf(newStore(root))
    assert [read(folder, i.uid)[-3:] for i in folder.messages()] == [b"0\r\n", b"1\r\n", b"2\r\n", b"3\r\n"]
    folder.close()


def test_broken_uidlist_is_recreated(root):
    a = acct(root)
    makeMaildir(a)
    write(f"{a}/cur/1.x.host:2,", CRLF_BODY)
    write(f"{a}/dovecot-uidlist", b"garbage\n")
    folder = openf(newStore(root))
    assert [i.uid for i in folder.messages()] == [1]
    ul, byBase = uidlistRecords(a)
    assert byBase == {"1.x.host": 1} and ul.uidValidity == folder.uidValidity
    folder.close()


def test_keywords_are_mapped_per_folder(root):
    store = newStore(root)
    account = result(store.getAccount(USER))
    a = acct(root)
    # Archive already knows other keywords at other letters.
    write(os.path.join(a, ".Archive", "dovecot-keywords"), b"0 $Other\n1 Work\n")
    inbox = openf(store)
    archive = openf(store, "Archive")
    uid = result(inbox.append(msg(), flags=["work", "$Junk"]))
    [(_, copied)] = result(inbox.copyTo([uid], archive))
    assert archive.get(copied).flags == {"Work", "$Junk"}
    names = os.listdir(os.path.join(a, ".Archive", "cur"))
    assert len(names) == 1 and names[0].endswith(":2,bc")
    assert open(os.path.join(a, ".Archive", "dovecot-keywords")).read() == "0 $Other\n1 Work\n2 $Junk\n"
    inbox.close()
    archive.close()
    del account


def test_forwarded_is_a_keyword_letter_as_in_dovecot(root):
    # Dovecot reads only D F R S T and keyword letters: $Forwarded as "P"
    # was invisible to it.  "P" (mutt's "passed") still reads as $Forwarded.
    store = newStore(root)
    folder = openf(store)
    uid = result(folder.append(msg(), flags=["$Forwarded"]))
    [name] = os.listdir(os.path.join(acct(root), "cur"))
    assert name.endswith(":2,a")
    assert open(os.path.join(acct(root), "dovecot-keywords")).read() == "0 $Forwarded\n"
    folder.close()
    base = name.split(":")[0]
    cur = os.path.join(acct(root), "cur")
    os.rename(os.path.join(cur, name), os.path.join(cur, base + ":2,PS"))
    folder = openf(newStore(root))
    assert folder.get(uid).flags == {"$Forwarded", SEEN}
    # While $Forwarded stays, "P" stays (for mutt) and the letter is added
    # (for Dovecot); when it goes, both go.
    result(folder.setFlags([uid], [FLAGGED], "add"))
    assert os.listdir(cur) == [base + ":2,FPSa"]
    result(folder.setFlags([uid], ["$Forwarded"], "remove"))
    assert os.listdir(cur) == [base + ":2,FS"]
    assert folder.get(uid).flags == {FLAGGED, SEEN}
    folder.close()


def test_forwarded_without_a_free_letter_is_p(root):
    store = newStore(root)
    result(store.getAccount(USER))
    write(os.path.join(acct(root), "dovecot-keywords"), "".join(f"{i} k{i}\n" for i in range(26)).encode())
    folder = openf(store)
    uid = result(folder.append(msg(), flags=["$Forwarded", "k3"]))
    [name] = os.listdir(os.path.join(acct(root), "cur"))
    assert name.endswith(":2,Pd")
    assert folder.get(uid).flags == {"$Forwarded", "k3"}
    folder.close()


def test_copy_does_not_carry_the_source_folders_keyword_letters(root):
    # Letters are per folder: "c" in INBOX means nothing in a new folder,
    # and must not come to mean the next keyword that folder learns.
    store = newStore(root)
    account = result(store.getAccount(USER))
    result(account.createFolder("Work"))
    inbox = openf(store)
    work = openf(store, "Work")
    for n, kw in enumerate(["k0", "k1", "k2"]):
        result(inbox.append(msg(n), flags=[kw]))
    [uid] = [m.uid for m in inbox.messages() if m.flags == {"k2"}]
    [(_, copied)] = result(inbox.copyTo([uid], work))
    [(_, moved)] = result(inbox.moveTo([uid - 1], work))
    cur = os.path.join(acct(root), ".Work", "cur")
    assert sorted(n.split(":2,")[1] for n in os.listdir(cur)) == ["a", "b"]
    other = result(work.append(msg(9), flags=["x", "y", "z"]))
    work.close()
    work = openf(newStore(root), "Work")
    assert {m.uid: m.flags for m in work.messages()} == {copied: {"k2"}, moved: {"k1"}, other: {"x", "y", "z"}}
    inbox.close()
    work.close()


def test_dovecot_v1_subscriptions(root):
    store = newStore(root)
    account = result(store.getAccount(USER))
    result(account.createFolder("Lists/Python"))
    write(os.path.join(acct(root), "subscriptions"), b"INBOX\nLists.Python\nEntw&APw-rfe\n")
    subscribed = {f.name for f in result(account.listFolders()) if f.subscribed}
    assert subscribed == {INBOX, "Lists/Python"}
    result(account.setSubscribed("Trash", True))
    text = open(os.path.join(acct(root), "subscriptions"), "rb").read()
    assert text == b"V\t2\n\nINBOX\nLists\tPython\nEntw&APw-rfe\nTrash\n"

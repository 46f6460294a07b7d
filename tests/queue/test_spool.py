"""The spool files, the lock, and the operator commands on files (no server)."""

import json
import os
import stat
import time

import pytest
from twisted.internet import defer

from mailnet import config as configmod
from mailnet.queue import cli, control
from mailnet.queue.spool import Spool, SpoolLock, validId


def sync(f, *a, **kw):
    return defer.maybeDeferred(f, *a, **kw)


@pytest.fixture
def spool(tmp_path):
    return Spool(str(tmp_path / "queue"), runInThread=sync)


def put(spool, sender="alice@example.test", rcpts=("bob@remote.test",), data=b"Subject: x\r\n\r\nbody\r\n", **kw):
    w = spool.newMessage(sender, [{"address": r} for r in rcpts], **kw)
    w.write(data)
    out = []
    w.commit().addCallback(out.append)
    return out[0]


def test_commit_makes_a_whole_item(spool):
    heard = []
    spool.addListener(heard.append)
    qid = put(spool, envid="E", ret="HDRS", smtputf8=False, body="8BITMIME", client="c [127.0.0.1]", auth="alice@example.test")
    assert heard == [qid] and spool.ids() == [qid]
    env = spool.load(qid)
    assert env.size == len(b"Subject: x\r\n\r\nbody\r\n")
    assert (env.envid, env.ret, env.body, env.auth) == ("E", "HDRS", "8BITMIME", "alice@example.test")
    assert env.recipients[0].status == "pending" and env.id == qid
    with spool.openData(qid) as f:
        assert f.read() == b"Subject: x\r\n\r\nbody\r\n"
    for path in (spool.envelopePath(qid), spool.dataPath(qid)):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.listdir(spool.tmpDir) == []


def test_abort_leaves_nothing(spool):
    w = spool.newMessage("a@b.test", [{"address": "c@d.test"}])
    w.write(b"x")
    w.abort()
    assert spool.ids() == [] and os.listdir(spool.tmpDir) == []


def test_save_is_atomic_and_readable(spool):
    qid = put(spool)
    env = spool.load(qid)
    env.recipients[0].status = "delayed"
    env.recipients[0].last_error = "451 4.7.1 later, ünïcode"
    spool.save(env)
    text = open(spool.envelopePath(qid), encoding="utf-8").read()
    assert "ünïcode" in text and text.endswith("}\n")
    assert json.loads(text)["recipients"][0]["status"] == "delayed"
    assert not [n for n in os.listdir(spool.path) if n.startswith(".tmp-")]


def test_cleanup_removes_only_old_leftovers(spool):
    qid = put(spool)
    old = time.time() - 7200
    orphan = os.path.join(spool.path, "abcdef.msg")
    stale = os.path.join(spool.tmpDir, "0123")
    fresh = os.path.join(spool.tmpDir, "4567")
    for path in (orphan, stale, fresh):
        open(path, "wb").close()
    os.utime(orphan, (old, old))
    os.utime(stale, (old, old))
    removed = spool.cleanup()
    assert sorted(removed) == sorted([orphan, stale])
    assert os.path.exists(fresh) and spool.exists(qid)


@pytest.mark.parametrize("bad", ["../x", "", "ABC", "a" * 65, "12/34", None, "0x1"])
def test_ids_never_name_other_files(spool, bad):
    assert not validId(bad)
    assert not spool.exists(bad)
    with pytest.raises(FileNotFoundError):
        spool.load(bad)


def test_lock_is_exclusive(spool):
    a, b = SpoolLock(spool.lockPath), SpoolLock(spool.lockPath)
    assert a.acquire()
    assert not b.acquire()
    assert a.holder() == str(os.getpid())
    a.release()
    assert b.acquire()
    b.release()


# -- Operator commands without a server -------------------------------------------


@pytest.fixture
def conf(tmp_path):
    return configmod.fromDict({"server": {"data_dir": str(tmp_path / "data")}})


def test_direct_commands(conf, capsys):
    spool = Spool(conf.spoolDir, runInThread=sync)
    qid = put(spool)
    assert cli.main(conf, ["list"]) == 0
    out = capsys.readouterr().out
    assert qid in out and "bob@remote.test  pending" in out and "1 item(s), 1 recipient(s) waiting" in out
    assert cli.main(conf, ["hold", qid]) == 0
    assert spool.load(qid).held is True
    capsys.readouterr()
    cli.main(conf, ["flush"])
    assert "flushed: 0 recipient(s)" in capsys.readouterr().out  # held items stay
    cli.main(conf, ["release", qid])
    assert spool.load(qid).held is False
    before = spool.load(qid).recipients[0].next_attempt
    cli.main(conf, ["flush", qid])
    out = capsys.readouterr().out
    assert "flushed: 1 recipient(s) due now (no server is running" in out
    assert spool.load(qid).recipients[0].next_attempt >= before
    cli.main(conf, ["show", qid])
    out = capsys.readouterr().out
    assert "Subject: x" in out and "body" not in out.split("Subject: x")[1]
    cli.main(conf, ["show", "--json", qid])
    assert json.loads(capsys.readouterr().out)["id"] == qid
    cli.main(conf, ["delete", qid])
    assert not spool.exists(qid)
    cli.main(conf, ["list"])
    assert "the queue is empty" in capsys.readouterr().out


def test_unknown_item_fails_with_one_line(conf, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(conf, ["delete", "abcdef"])
    assert e.value.code == 1
    assert capsys.readouterr().err == "mailnet: queue delete: no queue item abcdef\n"
    with pytest.raises(SystemExit) as e:
        cli.main(conf, ["show", "../../etc/passwd"])
    assert e.value.code == 1


def test_locked_without_socket_says_so(conf):
    spool = Spool(conf.spoolDir)
    lock = SpoolLock(spool.lockPath)
    assert lock.acquire()
    try:
        with pytest.raises(control.AdminError, match="locked by another process"):
            control.run(conf, "list", wait=0.3)
    finally:
        lock.release()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to change owners")
def test_root_leaves_files_the_spool_owner_can_open(spool):
    import pwd

    nobody = pwd.getpwnam("nobody")
    os.chown(spool.path, nobody.pw_uid, nobody.pw_gid)
    lock = SpoolLock(spool.lockPath)
    assert lock.acquire()
    lock.release()
    assert os.stat(spool.lockPath).st_uid == nobody.pw_uid
    qid = put(spool)
    env = spool.load(qid)
    spool.save(env)
    assert os.stat(spool.envelopePath(qid)).st_uid == nobody.pw_uid

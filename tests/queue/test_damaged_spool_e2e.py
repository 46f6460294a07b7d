"""
Issue 10 items 1, 2 and 10 with the real server and the real ``mailnet queue``
command: a spool holding wrongly shaped, truncated, unreadable and
path-naming envelopes (and an item whose message is gone) neither stops the
server nor the queue tools, and nothing is written outside the spool.
"""

import json
import os
import smtplib

import pytest
from twisted.internet import defer

from mailnet.queue.spool import Spool
from tests.harness import MailServer
from tests.queue.e2e import DNSServer, Sink, waitFor

pytestmark = pytest.mark.slow


def sync(f, *a, **kw):
    return defer.maybeDeferred(f, *a, **kw)


def spoolOf(server):
    return Spool(os.path.join(server.dataDir, "queue"), runInThread=sync)


def put(spool, rcpt, n):
    writer = spool.newMessage("alice@example.test", [{"address": rcpt}])
    writer.write(f"From: alice@example.test\r\nTo: {rcpt}\r\nSubject: {n}\r\nMessage-ID: <d{n}@example.test>\r\n\r\nhi\r\n"
                 .encode())
    out = []
    writer.commit().addBoth(out.append)
    assert isinstance(out[0], str), out
    return out[0]


def rewrite(spool, qid, change):
    path = spool.envelopePath(qid)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    with open(path, "w", encoding="utf-8") as f:
        f.write(change(text))


def shape(**fields):
    return lambda text: json.dumps(dict(json.loads(text), **fields))


def damage(spool):
    """Bad items of every kind; returns {id: words expected in its reason}."""
    bad = {}
    qid = put(spool, "shape@ok.test", 1)
    rewrite(spool, qid, lambda text: json.dumps([json.loads(text)]))
    bad[qid] = "not an object"
    qid = put(spool, "string@ok.test", 2)
    rewrite(spool, qid, shape(recipients="string@ok.test"))
    bad[qid] = "\"recipients\" is str"
    qid = put(spool, "nostatus@ok.test", 3)
    rewrite(spool, qid, shape(recipients=[{"address": "nostatus@ok.test"}]))
    bad[qid] = "missing \"status\""
    qid = put(spool, "truncated@ok.test", 4)
    rewrite(spool, qid, lambda text: text[:40])
    bad[qid] = "not JSON"
    # Deferred at first (grey.test answers 451 once), so the old code wrote
    # the envelope back to the path its "id" named.
    qid = put(spool, "pathid@grey.test", 5)
    rewrite(spool, qid, shape(id="../../../escaped"))
    bad[qid] = "differs from the file name"
    qid = put(spool, "nomsg@ok.test", 6)
    os.unlink(spool.dataPath(qid))
    bad[qid] = "message file (.msg) is missing"
    qid = put(spool, "unreadable@ok.test", 7)
    os.unlink(spool.envelopePath(qid))
    os.mkdir(spool.envelopePath(qid))  # cannot be read, even by root
    bad[qid] = "not a regular file"
    qid = put(spool, "fifo@ok.test", 8)
    os.unlink(spool.envelopePath(qid))
    os.mkfifo(spool.envelopePath(qid))  # opening it for reading would block for ever
    bad[qid] = "not a regular file"
    qid = put(spool, "link@ok.test", 9)
    os.unlink(spool.envelopePath(qid))
    os.symlink("/etc/passwd", spool.envelopePath(qid))
    bad[qid] = "symbolic link"
    return bad


@pytest.fixture(scope="module")
def dns(tmp_path_factory):
    server = DNSServer(str(tmp_path_factory.mktemp("dns")))
    yield server
    server.stop()


@pytest.fixture
def setup(tmp_path, dns):
    sink = Sink().start()
    server = MailServer(tmp_path / "m" / "mailnet", config={
        "relay": {"mx_port": sink.port, "connect_timeout": 3, "reply_timeout": 10},
        "dns": {"nameservers": [f"127.0.0.1:{dns.port}"], "timeout": 2},
        "queue": {"retry_initial": 1, "retry_max": 2, "delay_warning": 0},
    })
    yield server, sink
    server.stop()
    sink.stop()


def listing(server):
    result = server.mailnet("queue", "list", check=False)
    assert "Traceback" not in result.stderr
    return result


def test_server_starts_over_a_damaged_spool(setup, tmp_path):
    server, sink = setup
    os.makedirs(os.path.join(server.dataDir, "queue"), exist_ok=True)
    spool = spoolOf(server)
    good = [put(spool, f"good{n}@ok.test", 10 + n) for n in range(2)]
    bad = damage(spool)

    server.start()  # before the fix: KeyError out of the queue's start, no listener
    server.addUser("bob@example.test", "pw")
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as c:
        assert c.sendmail("x@remote.test", ["bob@example.test"], b"Subject: still serving\r\n\r\nhi\r\n") == {}
    waitFor(lambda: len(server.messageFiles("bob@example.test")) == 1, what="local delivery")

    got = sink.handler.wait(2)
    assert sorted(r for m in got for r in m["rcpts"]) == ["good0@ok.test", "good1@ok.test"]
    waitFor(lambda: spoolOf(server).ids() == [], what="empty queue")
    assert not any(g in os.listdir(spool.path) for g in good)

    corruptDir = os.path.join(spool.path, "corrupt")
    names = set(os.listdir(corruptDir))
    for qid, words in bad.items():
        assert f"{qid}.reason" in names and f"{qid}.json" in names
        assert (f"{qid}.msg" in names) == (words != "message file (.msg) is missing")
        with open(os.path.join(corruptDir, qid + ".reason")) as f:
            assert words in f.read()
        [line] = [line for line in server.output if f"queue {qid}:" in line]  # logged once
        assert words in line and "set aside" in line
    # Nothing written outside the spool, wherever "../../../escaped" points.
    for root in (spool.path, server.dataDir, server.directory, str(tmp_path / "m"), str(tmp_path)):
        assert "escaped.json" not in os.listdir(root)
    assert not os.path.exists(os.path.join(spool.path, "../../../escaped.json"))

    # `mailnet queue` through the control socket: every bad item, one line each.
    result = listing(server)
    assert result.returncode == 0, result.stderr
    for qid, words in bad.items():
        [line] = [line for line in result.stdout.splitlines() if line.startswith(qid)]
        assert "CORRUPT" in line and words in line
    assert "0 item(s), 0 recipient(s) waiting, 9 corrupt" in result.stdout
    entries = json.loads(server.mailnet("queue", "list", "--json").stdout)
    assert {e["id"]: e["corrupt"] for e in entries}.keys() == bad.keys()

    # A bad item that reaches the spool while the server runs is set aside by the next command.
    late = put(spoolOf(server), "late@ok.test", 20)
    rewrite(spool, late, shape(recipients=[{"address": 3, "status": "pending"}]))
    result = listing(server)
    assert f"{late}  CORRUPT: recipient 1: \"address\" is int, not a string" in result.stdout
    assert os.path.exists(os.path.join(corruptDir, late + ".json"))
    qid = next(iter(bad))
    result = server.mailnet("queue", "show", qid, check=False)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "corrupt" in result.stderr
    assert server.mailnet("queue", "delete", qid).stdout == f"deleted {qid}\n"
    assert not any(n.startswith(qid) for n in os.listdir(corruptDir))


def test_queue_commands_without_a_server_on_a_damaged_spool(setup):
    server, _ = setup
    os.makedirs(os.path.join(server.dataDir, "queue"), exist_ok=True)
    spool = spoolOf(server)
    good = put(spool, "good@ok.test", 1)
    bad = damage(spool)

    result = listing(server)
    assert result.returncode == 0 and result.stderr == ""
    assert f"{good} " in result.stdout and "good@ok.test  pending" in result.stdout
    for qid, words in bad.items():
        [line] = [line for line in result.stdout.splitlines() if line.startswith(qid)]
        assert "CORRUPT" in line and words in line
    assert "1 item(s), 1 recipient(s) waiting, 9 corrupt" in result.stdout
    entries = json.loads(server.mailnet("queue", "list", "--json").stdout)
    assert [e["id"] for e in entries if "corrupt" not in e] == [good]

    result = server.mailnet("queue", "flush", check=False)
    assert "Traceback" not in result.stderr
    assert result.stdout.startswith("flushed: 1 recipient(s) due now")
    errors = result.stderr.splitlines()
    assert len(errors) == len(bad) and result.returncode == 1
    for qid in bad:
        assert any(line.startswith(f"mailnet: queue flush: {qid} is corrupt: ") for line in errors)

    for command in ("show", "hold", "release", "flush"):
        for qid, words in bad.items():
            result = server.mailnet("queue", command, qid, check=False)
            assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
            assert result.stderr.count("\n") == 1 and words in result.stderr
    # The read-only commands moved nothing; the server sets the items aside when it starts.
    assert not os.path.exists(os.path.join(spool.path, "corrupt"))
    assert server.mailnet("queue", "hold", good).stdout == f"held {good}\n"

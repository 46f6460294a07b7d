"""mailnet/http/userdata.py: per-user JSON documents on disk (Identity's fields)."""

import os

from twisted.internet import defer

from mailnet.http.userdata import JSONUserData
from mailnet.jmap.core import accountIdFor


def now(f, *args):
    return defer.maybeDeferred(f, *args)


def result(d):
    out = []
    d.addBoth(out.append)
    assert out, "the Deferred did not fire"
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


def test_update_writes_a_private_file_and_load_reads_it(tmp_path):
    data = JSONUserData(str(tmp_path), runInThread=now)
    assert result(data.load("Alice@example.test", "identities")) is None
    result(data.update("alice@example.test", "identities", lambda old: {"n": (old or {}).get("n", 0) + 1}))
    result(data.update("ALICE@example.test", "identities", lambda old: {"n": old["n"] + 1}))
    assert result(data.load("alice@example.test", "identities")) == {"n": 2}
    path = tmp_path / accountIdFor("alice@example.test") / "identities.json"
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert result(data.load("bob@example.test", "identities")) is None


def test_corrupt_file_is_set_aside(tmp_path):
    data = JSONUserData(str(tmp_path), runInThread=now)
    path = tmp_path / accountIdFor("alice@example.test") / "identities.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"{not json")
    assert result(data.load("alice@example.test", "identities")) is None
    assert (path.parent / "identities.json.corrupt").read_bytes() == b"{not json"
    path.write_bytes(b"[1, 2]")
    assert result(data.update("alice@example.test", "identities", lambda old: {"was": old})) == {"was": None}


def test_updates_of_one_user_run_one_at_a_time(tmp_path):
    gates = []

    def later(f, *args):
        d = defer.Deferred()
        gates.append((d, f, args))
        return d

    data = JSONUserData(str(tmp_path), runInThread=later)
    first = data.update("alice@example.test", "identities", lambda old: {"n": 1})
    second = data.update("alice@example.test", "identities", lambda old: {"n": old["n"] + 1})
    while gates:
        d, f, args = gates.pop(0)
        d.callback(f(*args))
    assert result(first) == {"n": 1} and result(second) == {"n": 2}
    assert data.locks == {}


def test_outbox_journal_saves_loads_removes_and_sets_aside(tmp_path):
    from mailnet.http.userdata import OutboxJournal

    journal = OutboxJournal(str(tmp_path / "outbox"), runInThread=now)
    assert result(journal.load()) == []
    i = "S" + "0" * 20
    entry = {"username": "alice@example.test", "mailFrom": "alice@example.test", "rcptTo": ["b@x.test"],
             "due": 12.5, "record": {"id": i, "undoStatus": "pending"}}
    result(journal.save(i, entry, b"Subject: x\r\n\r\nbody\r\n"))
    assert oct(os.stat(tmp_path / "outbox" / (i + ".msg")).st_mode & 0o777) == "0o600"
    assert result(journal.load()) == [(entry, b"Subject: x\r\n\r\nbody\r\n")]
    broken = "S" + "1" * 20
    (tmp_path / "outbox" / (broken + ".json")).write_bytes(b'{"username": 1}')
    (tmp_path / "outbox" / (broken + ".msg")).write_bytes(b"x")
    assert result(journal.load()) == [(entry, b"Subject: x\r\n\r\nbody\r\n")]
    assert sorted(os.listdir(tmp_path / "outbox" / "corrupt")) == [broken + ".json", broken + ".msg"]
    result(journal.remove(i))
    result(journal.remove(i))  # twice: nothing to do
    assert result(journal.load()) == [] and sorted(os.listdir(tmp_path / "outbox")) == ["corrupt"]
    try:
        result(journal.save("../../etc", entry, b""))
    except ValueError:
        pass
    else:
        raise AssertionError("a bad id was accepted")

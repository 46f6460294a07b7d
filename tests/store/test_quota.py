"""
Quotas (mailnet.store.conformance_quota) for both builtin backends, and the
Maildir++ ``maildirsize`` file beyond the suite: its parser (corrupt files
are recounted, never a crash), the recount rules, compatibility of the
format with Courier and Dovecot, the per-user rules of the users file.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailnet.store.conformance_quota import USER, QuotaConformance, deliver
from mailnet.store.maildir import MaildirStore
from mailnet.store.maildir.quota import FILE_NAME, MAX_AGE, parseMaildirsize, renderHeader
from mailnet.store.memory import MemoryStore
from mailnet.store.quota import QuotaLimits, QuotaPolicy, parseRule, parseSize, rulesFromFields
from mailnet.store.testing import msg, result, syncRunner


def _now(f, delay=0):
    f()


def maildirStore(root):
    return MaildirStore(str(root), runner=syncRunner, schedule=_now, changesPoll=0)


class TestMemoryQuota(QuotaConformance):
    def makeStore(self, tmp_path):
        return MemoryStore()


class TestMaildirQuota(QuotaConformance):
    def makeStore(self, tmp_path):
        return maildirStore(tmp_path / "mail")

    def restartStore(self, tmp_path, store):
        return maildirStore(tmp_path / "mail")


# The maildirsize format


def test_parse_dovecot_and_courier_files():
    assert parseMaildirsize(b"1073741824S,1000C\n      1843200        120\n4096 1\n-4096 -1\n") == (
        QuotaLimits(1073741824, 1000), 1843200, 120, 3)
    assert parseMaildirsize(b"500S\n10 1\n")[:3] == (QuotaLimits(500, 0), 10, 1)
    assert parseMaildirsize(b"20C\n")[:3] == (QuotaLimits(0, 20), 0, 0)
    assert renderHeader(QuotaLimits(1 << 30, 0)) == b"1073741824S\n"
    assert renderHeader(QuotaLimits(100, 7)) == b"100S,7C\n"


@pytest.mark.parametrize("data", [
    b"", b"garbage\n", b"100S\n12 x\n", b"100S\n12 1", b"100X\n", b"100S\n-50 -1\n", b"\xff\xfe\n1 1\n",
    b"100S,,7C\n", b"100S\n1 2 3\n",
])
def test_corrupt_files_are_not_trusted(data):
    assert parseMaildirsize(data) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_parser_never_raises(data):
    out = parseMaildirsize(data)
    assert out is None or (out[1] >= 0 and out[2] >= 0)


def _setup(tmp_path, limits=(10_000, 100)):
    store = maildirStore(tmp_path / "mail")
    store.quotaPolicy = QuotaPolicy(storage=limits[0], messages=limits[1], grace=0)
    account = result(store.getAccount(USER))
    return store, account, os.path.join(account.path, FILE_NAME)


@pytest.mark.parametrize("junk", [b"nonsense\n", b"100S\n1 1", b"\x00" * 40])
def test_corrupt_maildirsize_is_recounted(tmp_path, junk):
    store, account, path = _setup(tmp_path)
    deliver(store, msg(1))
    deliver(store, msg(2))
    with open(path, "wb") as f:
        f.write(junk)
    usage = result(account.quota())
    assert (usage.storage, usage.messages) == (len(msg(1)) + len(msg(2)), 2)
    assert parseMaildirsize(open(path, "rb").read())[1:3] == (usage.storage, 2)


def test_deliveries_append_one_line_each(tmp_path):
    store, account, path = _setup(tmp_path)
    result(account.quota())  # the file is made by the first count
    lines = open(path, "rb").read().splitlines()
    assert lines[0] == b"10000S,100C"
    deliver(store, msg(1))
    deliver(store, msg(2))
    lines = open(path, "rb").read().splitlines()
    assert len(lines) == 4
    assert [int(x) for x in lines[-1].split()] == [len(msg(2)), 1]


def test_big_file_other_limits_and_old_over_quota_file_are_recounted(tmp_path):
    store, account, path = _setup(tmp_path)
    deliver(store, msg(1))
    result(account.quota())
    # 5120 bytes or more: recounted into two lines.
    with open(path, "ab") as f:
        f.write(b"0 0\n" * 1300)
    assert result(account.quota()).messages == 1
    assert len(open(path, "rb").read().splitlines()) == 2
    # New limits for the user: a new header.
    store.quotaPolicy = QuotaPolicy(storage=20_000, messages=100)
    result(account.quota())
    assert open(path, "rb").read().startswith(b"20000S,100C\n")
    # Over quota by a count older than 15 minutes: recounted.
    with open(path, "ab") as f:
        f.write(b"50000 0\n")
    assert result(account.quota()).storage >= 50_000  # fresh: believed
    old = os.stat(path).st_mtime - MAX_AGE - 60
    os.utime(path, (old, old))
    assert result(account.quota()).storage == len(msg(1))


def test_no_file_for_users_without_limits(tmp_path):
    store, account, path = _setup(tmp_path, limits=(0, 0))
    deliver(store, msg(1))
    assert result(account.quota()).messages == 1
    assert not os.path.exists(path)


def test_no_account_scan_to_check_a_user_without_limits(tmp_path, monkeypatch):
    # IMAP asks checkQuota at every APPEND and COPY, local delivery
    # quotaWarning at every message: without limits neither may count the
    # whole account (a scan of every folder, per message).
    from mailnet.store.maildir import quota as maildirQuota

    store, account, path = _setup(tmp_path, limits=(0, 0))
    deliver(store, msg(1))
    scans = []
    original = maildirQuota.scanAccount
    monkeypatch.setattr(maildirQuota, "scanAccount", lambda p: scans.append(p) or original(p))
    assert result(account.checkQuota(10 ** 12, 10 ** 6)) is None
    assert result(account.quotaWarning()) is False
    assert scans == []
    assert result(account.quota()).messages == 1  # the usage itself still counts
    assert len(scans) == 1


def test_our_file_as_dovecot_reads_it(tmp_path):
    # Dovecot's maildir quota reads the header limits and sums the lines.
    store, account, path = _setup(tmp_path)
    deliver(store, msg(1))
    result(account.quota())
    deliver(store, msg(2))
    data = open(path, "rb").read()
    header, *lines = data.decode().splitlines()
    assert header == "10000S,100C"
    total = [sum(int(line.split()[i]) for line in lines) for i in (0, 1)]
    assert total == [len(msg(1)) + len(msg(2)), 2]


# Rules (the users file's extra fields)


def test_rules():
    assert parseSize("1G") == 1 << 30 and parseSize("500m") == 500 << 20 and parseSize("100") == 100
    assert parseSize("10kB") == 10240
    assert parseRule("*:storage=1G") == {"storage": 1 << 30}
    assert parseRule("*:storage=10M:messages=1000") == {"storage": 10 << 20, "messages": 1000}
    assert parseRule("*:bytes=100") == {"storage": 100}
    assert parseRule("Trash:storage=+100M") == {}
    assert parseRule("*:ignore") == {"storage": 0, "messages": 0}
    for bad in ("storage=1G", "*:storage=lots", "*:frogs=1", "*:messages=x"):
        with pytest.raises(ValueError):
            parseRule(bad)
    fields = {"userdb_quota_rule": "*:storage=1G", "userdb_quota_rule2": "*:messages=50", "home": "/x"}
    assert rulesFromFields(fields) == {"storage": 1 << 30, "messages": 50}
    assert rulesFromFields({"uid": "5"}) is None


def test_users_file_extra_fields(tmp_path):
    from mailnet.auth import UserDB

    path = tmp_path / "users"
    path.write_text(
        "a@example.test:{PLAIN}x::::::userdb_quota_rule=*:storage=1M userdb_quota_rule2=*:messages=10\n"
        "b@example.test:{PLAIN}x\n"
        "c@example.test:{PLAIN}x:1000:1000::/home/c::userdb_quota_rule=*:storage=lots\n"
        "d@example.test:{PLAIN}x::::::quota_rule=*:storage=2G home=/x\n")
    users = UserDB(str(path), clock=object())
    assert users.exists("c@example.test")  # a bad rule does not lock the user out
    assert users.quotaRules("A@example.test") == {"storage": 1 << 20, "messages": 10}
    assert users.quotaRules("b@example.test") is None
    assert users.quotaRules("c@example.test") is None
    policy = QuotaPolicy(storage=5000, messages=3, rulesFor=users.quotaRules)
    assert policy.limitsFor("a@example.test") == QuotaLimits(1 << 20, 10)
    assert policy.limitsFor("b@example.test") == QuotaLimits(5000, 3)
    assert policy.limitsFor("d@example.test") == QuotaLimits(2 << 30, 3)

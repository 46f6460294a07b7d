"""
Helpers of the Maildir store's own tests (test_maildir_*.py): a store on a
temporary root driven synchronously (``tests/store/helpers.py``), the test
user's account directory, delivering, reading, hand-made Maildirs, and a
delivering child process to kill.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mailnet.store.interfaces import INBOX
from mailnet.store.maildir import MaildirStore, tuning
from mailnet.store.maildir.files import UidList
from tests.store.helpers import result, syncRunner


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
USER = "carol@example.test"


@pytest.fixture
def root(tmp_path):
    return str(tmp_path / "mail")


def newStore(root):
    return MaildirStore(root, runner=syncRunner)


def acct(root):
    return os.path.join(root, "example.test", "carol")


def openf(store, name=INBOX, user=USER):
    return result(result(store.getAccount(user)).openFolder(name))


def read(folder, uid):
    f = result(folder.openMessage(uid))
    try:
        return f.read()
    finally:
        f.close()


def deliver(store, data, user=USER, folder=INBOX, **kw):
    d = store.newDelivery()
    d.addRecipient(user, folder)
    d.write(data)
    return result(d.commit(**kw))[0][2]


def nonEmpty(directory):
    """Files with data (empty ones are made ahead of time for deliveries)."""
    return [n for n in os.listdir(directory) if os.path.getsize(os.path.join(directory, n))]


def settle(monkeypatch):
    """Trust directory mtimes at once (no 1.5 s settling window)."""
    monkeypatch.setattr(tuning, "DIR_SETTLE_SECS", -1)


def uidlistRecords(path):
    ul = UidList(path)
    _, records = ul.readNew()
    uids = [r[0] for r in records]
    assert uids == sorted(uids), "uidlist records must ascend"
    return ul, {base: uid for uid, base, _ in records}


LF_BODY = b"From: a@example.test\nSubject: lf\n\nline one\nline two\n"
CRLF_BODY = LF_BODY.replace(b"\n", b"\r\n")


def makeMaildir(path, dirs=("cur", "new", "tmp")):
    for d in dirs:
        os.makedirs(os.path.join(path, d), exist_ok=True)


def write(path, data, mtime=None):
    with open(path, "wb") as f:
        f.write(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def child(*args):
    """A process delivering through tests/store/_deliver_proc.py (``args``: its command line), to kill."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.Popen(
        [sys.executable, "-m", "tests.store._deliver_proc", *args],
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )

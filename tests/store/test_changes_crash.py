"""
Account changes across kill -9 (Maildir): of the real server while it
delivers over SMTP, and of a process writing the change journal.  After
the crash no change is lost and the state never goes backwards.
"""

from __future__ import annotations

import os
import signal
import smtplib
import threading

import pytest

from mailnet.store.interfaces import INBOX
from mailnet.store.maildir import MaildirStore
from mailnet.store.testing import result, syncRunner
from tests.store.maildir_helpers import child

pytestmark = pytest.mark.slow

USER = "bob@example.test"


def _now(f, delay=0):
    f()


def _store(root):
    return MaildirStore(root, runner=syncRunner, schedule=_now, changesPoll=0)


def _seq(state):
    # The builtin journal's states are "<epoch>.<counter>" (docs/store.md).
    epoch, _, n = state.rpartition(".")
    return epoch, int(n)


def _inboxIds(root):
    store = _store(root)
    account = result(store.getAccount(USER))
    inbox = result(account.openFolder(INBOX))
    ids = set(inbox.emailIds([i.uid for i in inbox.messages()]).values())
    inbox.close()
    return store, account, ids


def test_kill_9_of_the_server_while_it_delivers(make_server):
    server = make_server()
    server.addUser(USER, "bob-pw")
    port = server.port("smtp")
    root = os.path.join(server.dataDir, "mail")
    watcher = _store(root)
    account = result(watcher.getAccount(USER))
    s0 = _state0 = result(account.currentState())
    acked = []
    progress = threading.Condition()

    def client(n):
        i = 0
        try:
            while True:
                with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
                    for _ in range(3):
                        token = f"c{n}x{i}"
                        i += 1
                        c.sendmail("s@remote.test", [USER], f"Subject: {token}\r\n\r\nbody\r\n".encode())
                        with progress:
                            acked.append(token)
                            progress.notify_all()
        except (OSError, smtplib.SMTPException):
            return

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(4)]
    for t in threads:
        t.start()
    # Meanwhile this process takes the changes in, again and again, while
    # the server writes the folder: states only grow.
    states = [s0]
    while True:
        with progress:
            if len(acked) >= 40:
                break
            progress.wait(0.2)
        states.append(result(account.currentState()))
    server.kill()
    for t in threads:
        t.join(15)
    assert len(acked) >= 40
    assert [_seq(s) for s in states] == sorted(_seq(s) for s in states)
    result(watcher.close())

    store, account, ids = _inboxIds(root)
    assert len(ids) >= len(acked)
    final = result(account.currentState())
    assert _seq(final) >= _seq(states[-1])
    c = result(account.changesSince(_state0))
    assert set(c.emails.created) == ids
    assert c.emails.updated == c.emails.destroyed == []
    # From any state seen during the deliveries: exactly what came after.
    for s in states[1:]:
        later = result(account.changesSince(s))
        assert set(later.emails.created) <= ids
        assert not later.emails.destroyed
    result(store.close())


def test_kill_9_of_a_process_writing_the_journal(tmp_path):
    root = str(tmp_path / "mail")
    store = _store(root)
    account = result(store.getAccount(USER))
    s0 = result(account.currentState())
    result(store.close())
    told = [s0]
    for round_ in range(3):
        p = child(root, USER, f"j{round_}", "100000", "states")
        lines = [p.stdout.readline() for _ in range(4 + 5 * round_)]
        p.send_signal(signal.SIGKILL)
        p.wait()
        told += [line.split()[3].decode() for line in lines if line.strip()]
    assert [_seq(s) for s in told] == sorted(_seq(s) for s in told)
    store, account, ids = _inboxIds(root)
    assert _seq(result(account.currentState())) >= _seq(told[-1])
    c = result(account.changesSince(s0))
    assert set(c.emails.created) == ids and len(ids) >= 4 + 9 + 14
    assert c.emails.updated == c.emails.destroyed == []
    result(store.close())

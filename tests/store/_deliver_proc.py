"""
A child process for the maildir crash and concurrency tests (not a test).

    python -m tests.store._deliver_proc ROOT USER TAG COUNT [partial|ids|states]

Delivers COUNT messages to USER's INBOX with a synchronous runner and
prints ``<tag> <n> <uid>`` after each commit (flushed, so the parent knows
which UIDs were reported).  ``ids``: print ``<tag> <n> <uid> <email id>``,
the id as an open INBOX handle reports it.  ``partial``: start one delivery, write half of
the body, print ``ready`` and wait to be killed.  ``states``: after each
commit take the account's changes in (``currentState``, which writes its
change journal) and print ``<tag> <n> <uid> <state>``.
"""

from __future__ import annotations

import sys
import time

from mailnet.store.maildir import MaildirStore
from tests.store.helpers import result, syncRunner


def body(tag, n, size=4000):
    head = f"From: {tag}@example.test\r\nSubject: {tag} {n}\r\n\r\n".encode()
    line = f"{tag}-{n} ".encode() * 8 + b"\r\n"
    out = head
    while len(out) < size:
        out += line
    return out


def main(argv):
    root, user, tag, count = argv[1], argv[2], argv[3], int(argv[4])
    partial = len(argv) > 5 and argv[5] == "partial"
    ids = len(argv) > 5 and argv[5] == "ids"
    states = len(argv) > 5 and argv[5] == "states"
    store = MaildirStore(root, runner=syncRunner)
    account = result(store.getAccount(user))
    inbox = result(account.openFolder("INBOX")) if ids else None
    if partial:
        d = store.newDelivery()
        d.addRecipient(user)
        data = body(tag, 0)
        d.write(data[: len(data) // 2])
        d._flushBuffer()
        print("ready", flush=True)
        time.sleep(60)
        return
    for n in range(count):
        d = store.newDelivery()
        d.addRecipient(user)
        d.write(body(tag, n))
        [(_, _, uid)] = result(d.commit())
        if states:
            print(f"{tag} {n} {uid} {result(account.currentState())}", flush=True)
        elif ids:
            print(f"{tag} {n} {uid} {inbox.emailIds([uid])[uid]}", flush=True)
        else:
            print(f"{tag} {n} {uid}", flush=True)


if __name__ == "__main__":
    main(sys.argv)

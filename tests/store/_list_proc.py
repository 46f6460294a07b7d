"""
A child process for the list index's kill -9 test (not a test).

    python -m tests.store._list_proc ROOT USER COUNT

Appends COUNT messages to USER's INBOX with a synchronous runner, and
after each lists the account (which indexes the new message in a SQLite
transaction), printing ``listed <n>`` (flushed) each time.
"""

from __future__ import annotations

import sys

from mailnet.store.maildir import MaildirStore
from mailnet.store.testing import msg, result, syncRunner


def main(argv):
    root, user, count = argv[1], argv[2], int(argv[3])
    store = MaildirStore(root, runner=syncRunner)
    account = result(store.getAccount(user))
    inbox = result(account.openFolder("INBOX"))
    for n in range(count):
        result(inbox.append(msg(n)))
        listed = result(account.listEmails(limit=5))
        print(f"listed {listed.total}", flush=True)


if __name__ == "__main__":
    main(sys.argv)

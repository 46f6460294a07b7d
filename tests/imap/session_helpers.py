"""
Shared by the in-process session tests (test_session*.py): the ``world``
fixture (an IMAPSession world on the memory store, tests/imap/helpers.py),
the tagged line of a reply, a session with a mailbox selected.
"""

import pytest

from tests.imap.helpers import World, lines


@pytest.fixture
def world():
    return World()


def tagged(reply, tag=None):
    last = lines(reply)[-1]
    if tag:
        assert last.startswith(tag.encode() + b" "), reply
    return last


def selected(world, user="alice@example.test", mailbox="INBOX", examine=False):
    c = world.client(login=user)
    c.ok(("EXAMINE " if examine else "SELECT ") + mailbox)
    return c

"""
ESEARCH and CONDSTORE together (RFC 4731 s3.2): the MODSEQ of a MIN or MAX
result is that of the message returned; with ALL or COUNT, and for plain
SEARCH (RFC 7162 s3.1.5), the highest of all the matches.
"""

import re

import pytest

from tests.imap.helpers import World, message


@pytest.fixture
def world():
    return World()


def modseqs(world):
    """A session with INBOX selected (CONDSTORE) and 3 messages whose mod-sequences differ: 2 highest, then 3, then 1."""
    for i in range(3):
        world.deliver(message("m%d" % i))
    a = world.client(login="alice@example.test")
    a.ok("SELECT INBOX (CONDSTORE)")
    a.ok("STORE 3 +FLAGS (\\Answered)")
    a.ok("STORE 2 +FLAGS (\\Flagged)")
    reply = a.ok("FETCH 1:* (MODSEQ)")
    found = {int(n): int(m) for n, m in re.findall(rb"\* (\d+) FETCH \(MODSEQ \((\d+)\)\)", reply)}
    assert found[2] > found[3] > found[1]
    return a, found


def esearch(reply):
    m = re.search(rb"\* ESEARCH \(TAG \"t\d+\"\)(.*)\r\n", reply)
    assert m, reply
    return m.group(1).decode()


def test_min_max_modseq_is_the_returned_messages(world):
    a, modseq = modseqs(world)
    low = min(modseq.values())
    assert esearch(a.ok("SEARCH RETURN (MIN) MODSEQ %d" % low)) == " MIN 1 MODSEQ %d" % modseq[1]
    assert esearch(a.ok("SEARCH RETURN (MAX) MODSEQ %d" % low)) == " MAX 3 MODSEQ %d" % modseq[3]
    assert esearch(a.ok("SEARCH RETURN (MIN MAX) MODSEQ %d" % low)) == " MIN 1 MAX 3 MODSEQ %d" % modseq[3]
    assert esearch(a.ok("UID SEARCH RETURN (MIN) MODSEQ %d" % low)) == " UID MIN 1 MODSEQ %d" % modseq[1]


def test_all_count_and_plain_search_give_the_highest(world):
    a, modseq = modseqs(world)
    low = min(modseq.values())
    assert esearch(a.ok("SEARCH RETURN (MIN COUNT) MODSEQ %d" % low)) == " MIN 1 COUNT 3 MODSEQ %d" % modseq[2]
    assert esearch(a.ok("SEARCH RETURN (ALL) MODSEQ %d" % low)) == " ALL 1:3 MODSEQ %d" % modseq[2]
    assert b"* SEARCH 1 2 3 (MODSEQ %d)" % modseq[2] in a.ok("SEARCH MODSEQ %d" % low)
    # No match: no MODSEQ (RFC 4731 s3.2 has nothing to report).
    assert esearch(a.ok("SEARCH RETURN (MIN) MODSEQ %d" % (modseq[2] + 1))) == ""

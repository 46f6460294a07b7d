"""The SMTP session's quota check at RCPT (in-process): per recipient, SIZE= honoured, aliases to several left alone."""

from __future__ import annotations

from mailnet.errors import DeliveryError
from tests.smtp.helpers import makeDirectory, makeSession

FULL = DeliveryError(452, "4.2.2", "Mailbox full (over quota); try again later", True)
LARGE = DeliveryError(552, "5.2.2", "Mailbox full: the message is larger than the mailbox quota", False)


def quota(username, size):
    """alice is full; bob takes up to 1000 bytes."""
    if username == "alice@example.test":
        return FULL
    if size > 1000:
        return LARGE
    return None


def test_rcpt_refused_per_recipient(tmp_path):
    directory = makeDirectory(tmp_path, aliases={"team@example.test": ["alice@example.test", "bob@example.test"]})
    s, r = makeSession(tmp_path, directory=directory, quota=quota)
    s.feed(b"EHLO c\r\nMAIL FROM:<x@elsewhere.example>\r\nRCPT TO:<alice@example.test>\r\n"
           b"RCPT TO:<bob@example.test>\r\nRCPT TO:<team@example.test>\r\n")
    replies = r.take()
    assert [x.code for x in replies[-4:]] == [250, 452, 250, 250]
    assert replies[-3].enhanced == "4.2.2" and "<alice@example.test>" in str(replies[-3])
    assert s.errors == 0  # a full mailbox is not the client's error
    s.feed(b"RSET\r\nMAIL FROM:<x@elsewhere.example> SIZE=5000\r\nRCPT TO:<bob@example.test>\r\n")
    last = r.take()[-1]
    assert (last.code, last.enhanced) == (552, "5.2.2")


def test_without_quota_nothing_is_checked(tmp_path):
    s, r = makeSession(tmp_path)
    s.feed(b"EHLO c\r\nMAIL FROM:<x@elsewhere.example>\r\nRCPT TO:<alice@example.test>\r\n")
    assert r.take()[-1].code == 250

"""
Body reads of the real server on PostgreSQL (mailnet/store/postgres/reader.py)
with a small body cache and short read-ahead batches, so that batches,
cache evictions and a body too large for either all happen: imapclient's
FETCH of every body, SEARCH TEXT and a second FETCH get each message's own
bytes; POP3 (poplib) RETR agrees.
"""

from __future__ import annotations

import poplib
import smtplib

import pytest

from tests.harness import MailServer
from tests.store import postgres_fixture
from tests.test_postgres_server import ALICE, imap, pgConfig, tls

pgServer = postgres_fixture.pgServer
pgDatabase = postgres_fixture.pgDatabase

pytestmark = pytest.mark.slow


def message(i):
    word = "needle" if i % 7 == 0 else "hay"
    size = 1_500_000 if i == 20 else 200 + 97 * i  # one over the 1 MiB that is cached and batched
    body = (f"{word} {i} " + "x" * 60 + "\r\n") * (size // 70 + 1)
    return (f"From: someone@remote.test\r\nTo: {ALICE[0]}\r\nSubject: read {i}\r\n"
            f"Message-ID: <read.{i}@remote.test>\r\n\r\n{body}").encode()


@pytest.fixture
def node(pgServer, pgDatabase, tmp_path):
    config = pgConfig(pgServer, pgDatabase)
    config["postgres"].update({"body_cache_bytes": 64 * 1024, "read_ahead": 8})
    server = MailServer(tmp_path / "node", config=config)
    server.start()
    server.addUser(*ALICE)
    yield server
    server.stop()


def test_fetch_and_search_read_every_body_right_through_batches_and_a_small_cache(node):
    sent = [message(i) for i in range(45)]
    with smtplib.SMTP("127.0.0.1", node.port("smtp"), timeout=60) as s:
        for data in sent:
            s.sendmail("someone@remote.test", [ALICE[0]], data)
    c = imap(node)
    try:
        c.select_folder("INBOX", readonly=True)
        uids = sorted(c.search("ALL"))
        assert len(uids) == len(sent)
        for _ in range(2):  # the second time partly from the cache
            got = c.fetch(uids, ["BODY.PEEK[]"])
            assert all(got[u][b"BODY[]"].endswith(data) for u, data in zip(uids, sent))  # after Received:
        hits = c.search(["TEXT", "needle"])
        assert sorted(hits) == [uids[i] for i in range(len(sent)) if i % 7 == 0]
        # One at a time, out of order.
        for i in (44, 3, 20, 3):
            assert c.fetch([uids[i]], ["BODY.PEEK[]"])[uids[i]][b"BODY[]"].endswith(sent[i])
    finally:
        c.logout()
    p = poplib.POP3_SSL("127.0.0.1", node.port("pop3s"), context=tls(node), timeout=60)
    try:
        p.user(ALICE[0])
        p.pass_(ALICE[1])
        for n in (1, 21, 45):
            assert (b"\r\n".join(p.retr(n)[1]) + b"\r\n").endswith(sent[n - 1])
    finally:
        p.quit()

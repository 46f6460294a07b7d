"""SMTP over a store whose disk is full: 452 4.3.1, one log line, no traceback."""

from twisted.logger import globalLogPublisher

from mailnet.store.interfaces import StorageFull
from tests.smtp.test_server import Client, SlowStore, clock, mailbox, makeContext  # noqa: F401 (clock: fixture)


class FullStore(SlowStore):
    def newDelivery(self):
        delivery = super().newDelivery()
        real = delivery.commit

        def commit(internalDate=None, flags=()):
            d = real(internalDate, flags)
            self.pending[-1] = lambda: d.errback(StorageFull("mail storage is full"))
            return d

        delivery.commit = commit
        return delivery


def test_store_full_gives_452_with_one_log_line(tmp_path, clock):
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        store = FullStore()
        context = makeContext(tmp_path, clock, store=store)
        c = Client(context)
        c.send(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
        c.send(b"x\r\n.\r\n")
        store.release()
        assert c.read() == b"452 4.3.1 Mail system full; try again later\r\n"
        assert mailbox(context, "bob@example.test") == []
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert not [e for e in events if e.get("log_failure") is not None]
    assert any("mail storage is full" in str(e.get("error", "")) for e in events)

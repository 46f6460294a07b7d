"""
Reading messages for FETCH and SEARCH (mailnet.imap.commands.reading) and
the store contract it relies on: a message a backend holds in memory
(``io.BytesIO``) is taken whole through ``interfaces.messageBytes``,
without a copy.
"""

import io

from mailnet.imap.commands.reading import readRange
from mailnet.store.interfaces import messageBytes

from .helpers import World, message


def test_message_bytes_of_an_in_memory_message_is_the_same_object():
    data = b"Subject: x\r\n\r\nbody\r\n" * 100
    f = io.BytesIO(data)
    f.read(7)
    assert messageBytes(f) is data
    assert f.tell() == 7  # the position does not move


def test_message_bytes_of_other_readers_is_none(tmp_path):
    class Other(io.BytesIO):
        pass

    path = tmp_path / "m"
    path.write_bytes(b"x\r\n")
    with open(path, "rb") as f:
        assert messageBytes(f) is None
    assert messageBytes(Other(b"x\r\n")) is None


def test_read_range_takes_an_in_memory_message_without_a_copy():
    data = b"Subject: x\r\n\r\nbody\r\n"
    assert readRange(io.BytesIO(data), 0, len(data)) is data
    assert readRange(io.BytesIO(data), 0, len(data) + 10) is data
    assert readRange(io.BytesIO(data), 0, 7) == data[:7]
    assert readRange(io.BytesIO(data), 9, 5) == data[9:14]


def test_the_memory_store_gives_the_fast_path():
    w = World()
    data = message("hello")
    w.deliver(data)
    results = []
    w.account().openFolder("INBOX").addCallback(lambda folder: folder.openMessage(folder.messages()[0].uid)).addBoth(
        results.append)
    f = results[0]
    assert messageBytes(f) == data
    assert readRange(f, 0, len(data)) is messageBytes(f)

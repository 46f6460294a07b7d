"""
The part of the store conformance suite about reading ahead:
``IFolder.prefetch`` is a hint, so whatever a backend reads ahead (the
PostgreSQL store: many small bodies per query, into its body cache), every
``openMessage`` after it gives that message's bytes, and gone or unknown
UIDs in the hint do no harm.  :class:`~mailnet.store.conformance.StoreConformance`
includes it.
"""

from __future__ import annotations

from mailnet.store.interfaces import INBOX, NoSuchMessage
from mailnet.store.testing import failure, msg, result


def _body(folder, uid):
    f = result(folder.openMessage(uid))
    try:
        return f.read()
    finally:
        f.close()


class ReadConformance:
    """Mixed into StoreConformance (which provides the ``account`` fixture)."""

    def test_prefetch_then_open_gives_each_message(self, account):
        folder = result(account.openFolder(INBOX))
        datas = [msg(i, b"line %d\r\n" % i * (i * 37 + 1)) for i in range(12)]
        datas.append(datas[3])  # the same bytes twice
        datas.append(msg(99, b"y" * 1_100_000))  # over 1 MiB
        uids = [result(folder.append(d)) for d in datas]
        result(folder.expunge([uids[5]]))
        assert folder.prefetch(list(reversed(uids)) + [uids[-1] + 100]) is None
        for uid, data in zip(uids, datas):
            if uid == uids[5]:
                failure(folder.openMessage(uid), NoSuchMessage)
            else:
                assert _body(folder, uid) == data
        folder.prefetch(uids)
        assert [_body(folder, uid) for uid in uids[:3]] == datas[:3]
        folder.close()

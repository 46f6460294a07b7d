"""mailnet.localdelivery: the one local delivery and the one storage-failure mapping."""

import errno
import io

import pytest
from twisted.python.failure import Failure

from mailnet.errors import DeliveryError
from mailnet.localdelivery import LocalDelivery, deliverFile, diskProblem, storeFailure
from mailnet.store.interfaces import NoSuchAccount, StorageFull, TemporaryStoreError
from mailnet.store.memory import MemoryStore


def stored(store, user):
    out = []
    store.getAccount(user).addCallback(out.append)
    folder = []
    out[0].openFolder("INBOX").addCallback(folder.append)
    data = []
    for info in folder[0].messages():
        folder[0].openMessage(info.uid).addCallback(lambda f: data.append((f.read(), info.internalDate)))
    return data


# Today's replies, kept as they were before the two copies became one: SMTP
# answers for the whole message (always a retry), the queue per recipient.
@pytest.mark.parametrize("error,smtp,queue", [
    (StorageFull("full"), "452 4.3.1 Mail system full; try again later",
     "451 4.2.0 mailbox temporarily unavailable: StorageFull"),
    (OSError(errno.ENOSPC, "No space left on device"), "452 4.3.1 Mail system full; try again later",
     "451 4.2.0 mailbox temporarily unavailable: OSError"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), "452 4.3.1 Mail system full; try again later",
     "451 4.2.0 mailbox temporarily unavailable: OSError"),
    (OSError(errno.EIO, "Input/output error"), "451 4.3.0 Error storing the message; try again later",
     "451 4.2.0 mailbox temporarily unavailable: OSError"),
    (TemporaryStoreError("lock timeout"), "451 4.3.0 Error storing the message; try again later",
     "451 4.2.0 mailbox temporarily unavailable: TemporaryStoreError"),
    (NoSuchAccount("bob"), "451 4.3.0 Error storing the message; try again later", "550 5.2.0 mailbox error: bob"),
    (ValueError("a bug"), "451 4.3.0 Error storing the message; try again later",
     "451 4.2.0 mailbox temporarily unavailable: ValueError"),
])
def test_store_failure_replies(error, smtp, queue):
    assert str(storeFailure(error)) == smtp and storeFailure(error).temporary
    mapped = storeFailure(error, perRecipient=True)
    assert str(mapped) == queue and mapped.temporary == (queue[0] == "4")


def test_delivery_error_passes_through():
    e = DeliveryError(554, "5.4.6", "loop")
    assert storeFailure(e) is e and storeFailure(e, perRecipient=True) is e


def test_disk_problem_is_one_line_without_path():
    assert diskProblem(OSError(errno.ENOSPC, "No space left on device", "/secret/path")) == \
        "ENOSPC (No space left on device)"
    assert diskProblem(StorageFull("mail storage is full")) == "mail storage is full"
    assert diskProblem(ValueError("bug")) is None


def test_return_path_and_trace_then_body():
    store = MemoryStore()
    d = LocalDelivery(store, ["bob@example.test", "alice@example.test"], "carol@example.test", b"Received: x\r\n")
    d.write(b"Subject: hi\r\n\r\nbody\r\n")
    done = []
    d.commit(1_700_000_000.0).addBoth(done.append)
    assert len(done) == 1 and not isinstance(done[0], Failure)
    for user in ("bob@example.test", "alice@example.test"):
        [(data, when)] = stored(store, user)
        assert data == b"Return-Path: <carol@example.test>\r\nReceived: x\r\nSubject: hi\r\n\r\nbody\r\n"
        assert when == pytest.approx(1_700_000_000.0)


def test_deliver_file_copies_in_chunks_with_null_sender():
    store = MemoryStore()
    body = b"Subject: big\r\n\r\n" + b"x" * 200_000 + b"\r\n"
    done = []
    deliverFile(store, ["bob@example.test"], "", lambda: io.BytesIO(body), 5.0).addBoth(done.append)
    assert done == [None]
    [(data, when)] = stored(store, "bob@example.test")
    assert data == b"Return-Path: <>\r\n" + body and when == 5.0


class Broken:
    def __init__(self, failOn):
        self.failOn = failOn
        self.aborted = 0

    def newDelivery(self):
        store = self

        class Delivery:
            def addRecipient(self, name, folder="INBOX"):
                if store.failOn == "addRecipient":
                    raise NoSuchAccount(name)

            def write(self, data):
                if store.failOn == "write":
                    raise OSError(errno.ENOSPC, "No space left on device")

            def commit(self, internalDate=None, flags=()):
                raise TemporaryStoreError("lock timeout")

            def abort(self):
                store.aborted += 1

        return Delivery()


@pytest.mark.parametrize("failOn,kind", [("addRecipient", NoSuchAccount), ("write", OSError),
                                         ("commit", TemporaryStoreError)])
def test_failure_aborts_the_store_delivery_once(failOn, kind):
    store = Broken(failOn)
    failed = []
    deliverFile(store, ["bob"], "a@b", lambda: io.BytesIO(b"x\r\n")).addErrback(failed.append)
    assert failed[0].check(kind) and store.aborted == 1

"""Uploaded blobs on disk: durable save, ids, expiry, copy, names that cannot escape."""

import io
import os

from twisted.internet import defer

from mailnet.http.blobstore import UploadStore


class Now:
    def __init__(self):
        self.t = 1_000_000.0

    def __call__(self):
        return self.t


def store(tmp_path, now=None):
    return UploadStore(str(tmp_path / "blobs"), 3600, runInThread=lambda f, *a: defer.maybeDeferred(f, *a),
                       now=now or Now())


def result(d):
    out = []
    d.addBoth(out.append)
    value = out[0]
    if hasattr(value, "raiseException"):
        value.raiseException()
    return value


def test_save_find_and_ids(tmp_path):
    s = store(tmp_path)
    blobId, size = result(s.save("a1", io.BytesIO(b"hello")))
    assert size == 5 and blobId.startswith("G") and len(blobId) == 65
    assert result(s.save("a1", io.BytesIO(b"hello")))[0] == blobId  # same bytes, same blob
    blob = result(s.find("a1", blobId))
    with blob.open() as f:
        assert f.read() == b"hello"
    assert result(s.find("a2", blobId)) is None
    assert os.listdir(tmp_path / "blobs" / "a1" / "tmp") == []


def test_names_never_escape(tmp_path):
    s = store(tmp_path)
    (tmp_path / "secret").write_text("x")
    for accountId, blobId in (("..", "secret"), ("a1", "../../secret"), ("a1", "."), ("a/b", "Gx"), ("a1", "secret")):
        try:
            assert result(s.find(accountId, blobId)) is None
        except ValueError:
            pass


def test_expiry_and_sweep(tmp_path):
    now = Now()
    s = store(tmp_path, now)
    blobId, _ = result(s.save("a1", io.BytesIO(b"x")))
    path = tmp_path / "blobs" / "a1" / blobId
    os.utime(path, (now.t, now.t))
    now.t += 3599
    assert result(s.find("a1", blobId)) is not None
    now.t += 2
    assert result(s.find("a1", blobId)) is None
    assert result(s.sweep()) == 1 and not path.exists()


def test_copy(tmp_path):
    s = store(tmp_path)
    blobId, _ = result(s.save("a1", io.BytesIO(b"data")))
    assert result(s.copy("a1", "a2", blobId)) is True
    assert result(s.copy("a1", "a2", blobId)) is True
    assert result(s.copy("a1", "a2", "Gmissing")) is False
    with result(s.find("a2", blobId)).open() as f:
        assert f.read() == b"data"

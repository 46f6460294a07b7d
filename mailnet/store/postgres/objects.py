"""
Message bodies in an S3-compatible object store (``[postgres] bodies =
"s3"``): one object per distinct message, named by the SHA-256 of its bytes
(hex, after ``s3_prefix``), so a COPY or a second delivery of the same bytes
stores nothing new.

The database keeps the ``bodies`` row (hash, size) as before; ``chunks = 0``
with a size above zero says "the bytes are in the object store" (a body
stored while ``bodies = "database"`` keeps its ``body_chunks`` and is still
read from there, so turning S3 on needs no migration).

Client: boto3 (the maintained AWS SDK; its S3 client is thread-safe).  Every
call is blocking and runs where the queries run, in the database's bounded
worker pool (``[postgres] pool_size``), never on the reactor thread.  The
object is PUT inside the transaction that first inserts the body's row,
before that transaction commits: a 250 never refers to a missing object.
A failed PUT or GET (server down, timeout, 5xx, a missing object) is
:class:`~mailnet.store.interfaces.TemporaryStoreError` (SMTP 451, IMAP NO,
POP3 -ERR) and rolls the transaction back.  Reads stream the object into
an unlinked temporary file one chunk at a time past ``IN_MEMORY`` bytes.

Objects are not deleted when their row goes (a concurrent delivery of the
same bytes could race a delete): objects whose ``bodies`` row is gone are
removed by the sweep (gc.py: ``mailnet db gc``, ``[postgres]
gc_interval``), which uses :meth:`ObjectStore.listing` and
:meth:`ObjectStore.delete`.
"""

from __future__ import annotations

import dataclasses
import io
import re
import tempfile

from twisted.logger import Logger

from mailnet.store.interfaces import TemporaryStoreError

log = Logger()
UNAVAILABLE = "the object store is unavailable; try again later"


@dataclasses.dataclass(frozen=True)
class ObjectSettings:
    """What ``[postgres] s3_*`` says (see mailnet/config.py)."""

    endpoint: str = ""
    bucket: str = ""
    region: str = "us-east-1"
    access_key_id: str = ""
    secret_file: str = ""
    prefix: str = ""
    timeout: float = 10.0
    pool_size: int = 8

    @classmethod
    def fromConfig(cls, config):
        pg = config.postgres
        return cls(pg.s3_endpoint, pg.s3_bucket, pg.s3_region, pg.s3_access_key_id, pg.s3_secret_file,
                   pg.s3_prefix, pg.s3_timeout, pg.pool_size)


def fromConfig(config):
    """The ObjectStore ``[postgres] bodies = "s3"`` describes, or None (bodies in the database)."""
    if config.postgres.bodies != "s3":
        return None
    return ObjectStore(ObjectSettings.fromConfig(config))


class ObjectStore:
    """Bodies as objects (blocking calls: run them in the worker pool)."""

    def __init__(self, settings: ObjectSettings, client=None):
        self.settings = settings
        self.bucket = settings.bucket
        self.prefix = settings.prefix
        self._client = client

    @property
    def client(self):
        if self._client is None:
            import boto3
            from botocore.config import Config

            secret = None
            if self.settings.secret_file:
                with open(self.settings.secret_file, encoding="utf-8") as f:
                    secret = f.read().strip()
            cfg = Config(connect_timeout=self.settings.timeout, read_timeout=self.settings.timeout,
                         retries={"max_attempts": 2, "mode": "standard"},
                         max_pool_connections=max(1, self.settings.pool_size),
                         s3={"addressing_style": "path"})
            self._client = boto3.session.Session().client(
                "s3", endpoint_url=self.settings.endpoint or None, region_name=self.settings.region or None,
                aws_access_key_id=self.settings.access_key_id or None, aws_secret_access_key=secret,
                config=cfg)
        return self._client

    def key(self, h):
        return self.prefix + bytes(h).hex()

    def check(self):
        """The bucket is there and answers (at start); TemporaryStoreError if not."""
        self._call("checking the bucket", lambda: self.client.head_bucket(Bucket=self.bucket))

    def put(self, h, spool):
        """Store the spool's bytes as the object for hash ``h`` (streamed from the spool)."""
        spool.file.seek(0)
        self._call("storing a body", lambda: self.client.put_object(
            Bucket=self.bucket, Key=self.key(h), Body=_Reader(spool.file, spool.size),
            ContentLength=spool.size, ContentType="message/rfc822"))

    def read(self, h, size, inMemory, chunk):
        """
        The object's bytes: ``io.BytesIO`` up to ``inMemory`` bytes, else an
        unlinked temporary file filled ``chunk`` bytes at a time.
        """

        def get():
            body = self.client.get_object(Bucket=self.bucket, Key=self.key(h))["Body"]
            try:
                if size <= inMemory:
                    data = body.read()
                    if len(data) != size:
                        raise _Short()
                    return io.BytesIO(data)
                out = tempfile.TemporaryFile()
                try:
                    got = 0
                    for piece in body.iter_chunks(chunk):
                        out.write(piece)
                        got += len(piece)
                    if got != size:
                        raise _Short()
                    out.seek(0)
                except BaseException:
                    out.close()
                    raise
                return out
            finally:
                body.close()

        return self._call("reading a body", get)

    def listing(self):
        """
        The objects under the prefix that are ours (the prefix and 64 hex
        digits), one list per page of the listing: ``[(hash bytes,
        LastModified as Unix seconds, size)]``.  Other names are left alone.
        """
        pages = self._call("listing the bucket", lambda: iter(self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix)))
        while True:
            page = self._call("listing the bucket", lambda: next(pages, None))
            if page is None:
                return
            out = []
            for o in page.get("Contents", []):
                name = o["Key"][len(self.prefix):]
                if _HEX.fullmatch(name):
                    out.append((bytes.fromhex(name), o["LastModified"].timestamp(), o.get("Size", 0)))
            yield out

    def delete(self, h):
        """Remove the object for hash ``h`` (the sweep, under the body's lock)."""
        self._call("deleting an object", lambda: self.client.delete_object(Bucket=self.bucket, Key=self.key(h)))

    def _call(self, what, f):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return f()
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "?")
            log.warn("s3: {what} failed: {code}", what=what, code=code)
            raise TemporaryStoreError(UNAVAILABLE) from None
        except (BotoCoreError, _Short, OSError) as e:
            # No endpoint or key in the log: the exception's class only.
            log.warn("s3: {what} failed: {kind}", what=what, kind=type(e).__name__)
            raise TemporaryStoreError(UNAVAILABLE) from None


_HEX = re.compile(r"[0-9a-f]{64}")


class _Short(Exception):
    """The object has fewer or more bytes than its row says."""


class _Reader:
    """A file's first ``size`` bytes as a read-only stream for put_object (no whole body in memory)."""

    def __init__(self, f, size):
        self._f = f
        self._start = f.tell()
        self._size = size

    def read(self, n=-1):
        left = self._size - (self._f.tell() - self._start)
        if left <= 0:
            return b""
        return self._f.read(left if n is None or n < 0 else min(n, left))

    def seek(self, offset, whence=0):
        if whence == 0:
            return self._f.seek(self._start + offset) - self._start
        if whence == 2:
            return self._f.seek(self._start + self._size + offset) - self._start
        return self._f.seek(offset, whence) - self._start

    def tell(self):
        return self._f.tell() - self._start

"""
An S3 server for the tests: moto's server mode (``moto[server]``,
``python -m moto.server``) in a process of its own on 127.0.0.1 and a free
port, one per test session (per xdist worker), with one bucket.  (Its own
process: the memory the tests measure is mailnet's only.)  ``pause()``
stops it answering (SIGSTOP: connections hang until the client's timeout,
as with a server that is down or unreachable) and ``resume()`` brings it
back with its objects.

A test module names the fixture for pytest to find::

    from tests.store import s3_fixture

    s3Server = s3_fixture.s3Server
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

BUCKET = "mailnet-bodies"
KEY_ID = "mailnet-test"
SECRET = "mailnet-test-secret"


def _freePort():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    def __init__(self):
        self.port = _freePort()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.dir = tempfile.mkdtemp(prefix="mailnet-s3-")
        self.secretFile = os.path.join(self.dir, "secret")
        with open(self.secretFile, "w") as f:
            f.write(SECRET + "\n")
        self.process = None

    def start(self):
        self.process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto's S3 server did not start") from None
                time.sleep(0.1)

    def pause(self):
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self):
        if self.process is not None:
            self.resume()
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None

    def config(self, prefix=""):
        """The ``[postgres]`` settings for a mailnet node."""
        return {"bodies": "s3", "s3_endpoint": self.endpoint, "s3_bucket": BUCKET, "s3_region": "us-east-1",
                "s3_access_key_id": KEY_ID, "s3_secret_file": self.secretFile, "s3_prefix": prefix,
                "s3_timeout": 2}

    def objectStore(self, prefix=""):
        from mailnet.store.postgres.objects import ObjectSettings, ObjectStore

        return ObjectStore(ObjectSettings(self.endpoint, BUCKET, "us-east-1", KEY_ID, self.secretFile,
                                          prefix, 2.0, 4))

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET)

    def keys(self, prefix=""):
        """The names of the objects under ``prefix``."""
        out = []
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            out.extend(o["Key"] for o in page.get("Contents", []))
        return out


@pytest.fixture(scope="session")
def s3Server():
    pytest.importorskip("moto.server")
    pytest.importorskip("boto3")
    server = S3Server()
    server.start()
    server.client().create_bucket(Bucket=BUCKET)
    yield server
    server.stop()

"""
RFC 4978 COMPRESS=DEFLATE (issue 12, "Missing extensions"): imaplib with its
socket wrapped in raw deflate against the real server (plaintext and TLS),
a large FETCH and APPEND, IDLE, the refusals; the decompression-bomb bound
through the real server and in process; the inflater's chunk edges.
"""

from __future__ import annotations

import imaplib
import io
import os
import socket
import time
import zlib

import pytest
from twisted.internet import task
from twisted.internet.testing import StringTransport

from mailnet.imap import compress
from mailnet.imap.compress import CompressionError, Deflater, Inflater
from mailnet.imap.server import IMAPServerProtocol

from .conftest import tls_context

USER, PASSWORD = "alice@example.test", "alice-pw"
# imaplib does not know the command (an addition, harmless to other tests).
imaplib.Commands.setdefault("COMPRESS", ("AUTH", "SELECTED"))


# A client: imaplib whose socket is wrapped in raw deflate after COMPRESS.


class _InflatingRaw(io.RawIOBase):
    def __init__(self, sock, leftover=b""):
        self.sock = sock
        self.z = zlib.decompressobj(-15)
        self.buf = self.z.decompress(leftover) if leftover else b""

    def readable(self):
        return True

    def readinto(self, b):
        while not self.buf:
            data = self.sock.recv(65536)
            if not data:
                return 0
            self.buf = self.z.decompress(data)
        n = min(len(b), len(self.buf))
        b[:n] = self.buf[:n]
        self.buf = self.buf[n:]
        return n


class CompressingIMAP(imaplib.IMAP4):
    """imaplib.IMAP4 with ``compress()``: deflate what it sends, inflate what it reads (RFC 4978)."""

    compressed = False

    def compress(self):
        typ, data = self._simple_command("COMPRESS", "DEFLATE")
        if typ == "OK":
            # What imaplib's file buffered past the OK is compressed already.
            leftover = self._drainBuffer()
            self._z = zlib.compressobj(6, zlib.DEFLATED, -15)
            self.file = io.BufferedReader(_InflatingRaw(self.sock, leftover), 65536)
            self.compressed = True
        return typ, data

    def _drainBuffer(self):
        # The bytes imaplib's reader holds already (peek does not block on a
        # non-blocking socket: it gives what is buffered, or nothing).
        timeout = self.sock.gettimeout()
        self.sock.setblocking(False)
        try:
            pending = self.file.peek(65536) or b""
        except OSError:  # TLS: SSLWantReadError when nothing is buffered
            pending = b""
        finally:
            self.sock.settimeout(timeout)
        return self.file.read(len(pending)) if pending else b""

    def send(self, data):
        if self.compressed:
            data = self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)


class CompressingIMAP_SSL(CompressingIMAP, imaplib.IMAP4_SSL):
    pass


def _login(port):
    c = CompressingIMAP("127.0.0.1", port)
    c.login(USER, PASSWORD)
    return c


def _message(size, subject=b"big"):
    # Text that compresses like mail (repetitive but not constant).
    line = b"The quick brown fox jumps over the lazy dog %08d\r\n"
    body = b"".join(line % i for i in range(size // 46 + 1))[:size]
    return b"Subject: " + subject + b"\r\nFrom: a@example.test\r\n\r\n" + body


# Real server


def test_capability_only_after_login(imap_server):
    c = CompressingIMAP("127.0.0.1", imap_server.port("imap"))
    try:
        assert "COMPRESS=DEFLATE" not in c.capabilities
        c.login(USER, PASSWORD)
        typ, data = c.capability()
        assert b"COMPRESS=DEFLATE" in data[0].split()
    finally:
        c.logout()


def test_compress_before_login_is_refused(imap_server):
    s = socket.create_connection(("127.0.0.1", imap_server.port("imap")), timeout=30)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"a COMPRESS DEFLATE\r\n")
    assert f.readline().startswith(b"a BAD ")
    s.sendall(b"b NOOP\r\n")  # still plaintext
    assert f.readline().startswith(b"b OK")
    s.close()


def test_fetch_and_append_large_compressed(imap_server):
    c = _login(imap_server.port("imap"))
    try:
        assert c.compress()[0] == "OK"
        c.create("Compressed")
        big = _message(3 * 1024 * 1024)
        typ, data = c.append("Compressed", None, None, big)
        assert typ == "OK", data
        c.select("Compressed")
        typ, data = c.fetch("1", "(BODY.PEEK[] RFC822.SIZE)")
        assert typ == "OK"
        assert data[0][1] == big
        assert b"RFC822.SIZE %d" % len(big) in data[1]
        # The connection goes on: more commands, another message.
        typ, data = c.append("Compressed", "(\\Seen)", None, _message(1000, b"small"))
        assert typ == "OK"
        typ, data = c.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK" and b"small" in data[2][1]
    finally:
        c.logout()


def test_incompressible_literal(imap_server):
    # Random bytes (deflate cannot shrink them) in a 1 MB literal, as base64.
    import base64
    c = _login(imap_server.port("imap"))
    try:
        c.compress()
        c.create("Random")
        body = base64.encodebytes(os.urandom(768 * 1024)).replace(b"\n", b"\r\n")
        msg = b"Subject: random\r\n\r\n" + body
        assert c.append("Random", None, None, msg)[0] == "OK"
        c.select("Random", readonly=True)
        typ, data = c.fetch("1", "(BODY.PEEK[])")
        assert data[0][1] == msg
    finally:
        c.logout()


def test_second_compress_and_unknown_mechanism(imap_server):
    c = _login(imap_server.port("imap"))
    try:
        typ, data = c._simple_command("COMPRESS", "LZW")
    except imaplib.IMAP4.error as e:
        assert "compression mechanism" in str(e).lower() or "LZW" in str(e)
    else:
        raise AssertionError("COMPRESS LZW accepted: %r %r" % (typ, data))
    try:
        assert c.compress()[0] == "OK"
        typ, data = c._simple_command("COMPRESS", "DEFLATE")
        assert typ == "NO"
        assert b"[COMPRESSIONACTIVE]" in data[0], data
        assert c.noop()[0] == "OK"
    finally:
        c.logout()


def test_compress_over_tls(imap_server):
    c = CompressingIMAP_SSL("127.0.0.1", imap_server.port("imaps"), ssl_context=tls_context(imap_server))
    try:
        c.login(USER, PASSWORD)
        assert c.compress()[0] == "OK"
        c.create("TLSCompressed")
        msg = _message(600 * 1024, b"tls")
        assert c.append("TLSCompressed", None, None, msg)[0] == "OK"
        c.select("TLSCompressed")
        assert c.fetch("1", "(BODY.PEEK[])")[1][0][1] == msg
    finally:
        c.logout()


def test_idle_compressed(imap_server):
    a = _login(imap_server.port("imap"))
    b = _login(imap_server.port("imap"))
    try:
        a.create("IdleBox")
        a.compress()
        a.select("IdleBox")
        tag = a._new_tag()
        a.send(tag + b" IDLE\r\n")
        assert a.readline().startswith(b"+")
        b.append("IdleBox", None, None, _message(200, b"while idling"))
        line = a.readline()
        assert line.rstrip() == b"* 1 EXISTS", line
        a.send(b"DONE\r\n")
        rest = [a.readline() for _ in range(2)]
        assert any(r.startswith(tag + b" OK") for r in rest), rest
        assert a.noop()[0] == "OK"
    finally:
        a.logout()
        b.logout()


def test_pipelined_after_compress(imap_server):
    # A command sent right behind COMPRESS (already compressed) is read.
    s = socket.create_connection(("127.0.0.1", imap_server.port("imap")), timeout=30)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"a LOGIN %s %s\r\n" % (USER.encode(), PASSWORD.encode()))
    assert f.readline().startswith(b"a OK")
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    s.sendall(b"b COMPRESS DEFLATE\r\n" + z.compress(b"c NOOP\r\n") + z.flush(zlib.Z_SYNC_FLUSH))
    assert f.readline() == b"b OK DEFLATE active\r\n"
    d = zlib.decompressobj(-15)
    got = d.decompress(f.read1(65536))
    deadline = time.monotonic() + 20
    while b"c OK" not in got and time.monotonic() < deadline:
        got += d.decompress(s.recv(65536))
    assert b"c OK" in got
    s.close()


def test_garbage_after_compress_closes(imap_server):
    s = socket.create_connection(("127.0.0.1", imap_server.port("imap")), timeout=30)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"a LOGIN %s %s\r\n" % (USER.encode(), PASSWORD.encode()))
    assert f.readline().startswith(b"a OK")
    s.sendall(b"b COMPRESS DEFLATE\r\n")
    assert f.readline() == b"b OK DEFLATE active\r\n"
    s.sendall(b"\xff\xff\xff\xff not deflate at all\r\n")
    d = zlib.decompressobj(-15)
    got = b""
    while True:
        data = f.read1(65536)
        if not data:
            break
        got += d.decompress(data)
    assert got.startswith(b"* BYE"), got


def _vmhwm(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_decompression_bomb_is_bounded(make_imap_server):
    """
    While a command is stalled (a FETCH the client does not read), 96 MB of
    pipelined input that deflates to about 100 KB must not be inflated into
    the server's memory: the protocol stops inflating while the session has
    reading paused.
    """
    import base64
    server = make_imap_server()
    c = _login(server.port("imap"))
    c.create("Bomb")
    # Incompressible (base64 of random bytes), so that the FETCH cannot
    # fit in the socket buffers once deflated.
    big = b"Subject: bomb\r\n\r\n" + base64.encodebytes(os.urandom(12 * 1024 * 1024)).replace(b"\n", b"\r\n")
    c.append("Bomb", None, None, big)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    c.compress()
    c.select("Bomb", readonly=True)
    before = _vmhwm(server.process.pid)
    sock = c.sock
    # A FETCH we do not read yet: the server waits for us once the socket
    # buffers are full.
    c.send(b"f1 FETCH 1 (BODY.PEEK[])\r\n")
    time.sleep(1.0)
    bomb = c._z.compress(b"x" * (96 * 1024 * 1024)) + c._z.flush(zlib.Z_SYNC_FLUSH)
    assert len(bomb) < 200 * 1024
    sock.sendall(bomb)
    time.sleep(2.0)
    during = _vmhwm(server.process.pid)
    # Now read the FETCH; the long line is refused and the session goes on.
    got = bytearray()
    while b"f1 OK" not in got[-200:]:
        line = c.readline()
        got += line
        if line.endswith(b"}\r\n"):
            got += c.read(int(line[line.rindex(b"{") + 1:-3]))
    c.send(b"\r\nn1 NOOP\r\n")
    answers = b""
    while b"n1 " not in answers:
        answers += c.readline()
    assert b"n1 OK" in answers, answers
    assert b"BAD [TOOBIG]" in answers, answers
    after = _vmhwm(server.process.pid)
    c.logout()
    # Without the bound the server held the 96 MB inflated at once.
    assert during - before < 40 * 1024 * 1024, (before, during)
    assert after - before < 40 * 1024 * 1024, (before, after)


# In process: the protocol's inflating loop, the inflater, the deflater


class _Session:
    """A stand-in for IMAPSession: pauses reading past ``limit`` bytes."""

    def __init__(self, out, limit):
        self.out = out
        self.limit = limit
        self.data = bytearray()
        self.closed = False
        self.sent = []

    def feed(self, data, counted=None):
        self.data += data
        self.counted = getattr(self, "counted", 0) + (len(data) if counted is None else counted)
        if len(self.data) > self.limit:
            self.out.pauseReading()

    def send(self, data):
        self.sent.append(data)

    def _close(self):
        self.closed = True

    def inputFailed(self, text):
        self.send(b"* BYE " + text.encode("ascii") + b"\r\n")
        self._close()
        return []


class _Shared:
    def __init__(self):
        self.clock = task.Clock()


def _protocol(limit):
    p = IMAPServerProtocol(_Shared())
    p.transport = StringTransport()
    p.session = _Session(p, limit)
    p.startCompression()
    return p


def test_protocol_stops_inflating_while_paused():
    p = _protocol(limit=256 * 1024)
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = bomb.compress(b"y" * (50 * 1024 * 1024)) + bomb.flush(zlib.Z_SYNC_FLUSH)
    p.dataReceived(data)
    # At most one chunk past the point where the session asked to stop.
    assert len(p.session.data) <= 256 * 1024 + compress.CHUNK
    assert p.transport.producerState == "paused"
    assert p._inflater.pending()
    # The session drains its buffer and resumes: the rest comes, bounded again.
    got = len(p.session.data)
    p.session.data.clear()
    p.resumeReading()
    assert len(p.session.data) == 0  # in a later reactor turn
    p.shared.clock.advance(0)
    assert 0 < len(p.session.data) <= 256 * 1024 + compress.CHUNK
    total = got + len(p.session.data)
    while p._inflater.pending():
        p.session.data.clear()
        p.resumeReading()
        p.shared.clock.advance(0)
        total += len(p.session.data)
    assert total == 50 * 1024 * 1024
    # The deadlines were credited with the bytes on the wire, once.
    assert p.session.counted == len(data)


def test_protocol_compresses_output_and_flushes_each_write():
    p = _protocol(limit=1 << 30)
    p.write(b"* OK one\r\n")
    first = p.transport.value()
    assert first.endswith(b"\x00\x00\xff\xff")  # Z_SYNC_FLUSH: the client can read it now
    p.writeSequence([b"* 1 FETCH (BODY[] {5}\r\n", b"hello", b")\r\n"])
    d = zlib.decompressobj(-15)
    assert d.decompress(p.transport.value()) == b"* OK one\r\n* 1 FETCH (BODY[] {5}\r\nhello)\r\n"


def test_protocol_bad_input_says_bye():
    p = _protocol(limit=1 << 30)
    p.dataReceived(b"\xfe\xfe\xfe garbage")
    assert p.session.closed
    assert p.session.sent == [b"* BYE Cannot read the compressed input\r\n"]


def test_inflater_bounds_each_step():
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = z.compress(b"\0" * (10 * 1024 * 1024)) + z.flush(zlib.Z_SYNC_FLUSH)
    inf = Inflater(chunk=4096)
    inf.push(data)
    total = 0
    while True:
        out = inf.next()
        if not out:
            break
        assert len(out) <= 4096
        total += len(out)
    assert total == 10 * 1024 * 1024
    assert not inf.pending()


def test_inflater_any_chunking():
    d = Deflater()
    payload = [os.urandom(3000), b"abc" * 5000, b"\r\n", os.urandom(70000)]
    stream = b"".join(d.compress(p) for p in payload)
    for step in (1, 7, 1000, len(stream)):
        inf = Inflater(chunk=5000)
        out = bytearray()
        for i in range(0, len(stream), step):
            inf.push(stream[i:i + step])
            while True:
                piece = inf.next()
                if not piece:
                    break
                out += piece
        assert bytes(out) == b"".join(payload)


def test_inflater_end_of_stream_is_an_error():
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    inf = Inflater()
    inf.push(z.compress(b"a NOOP\r\n") + z.flush(zlib.Z_FINISH) + b"more")
    assert inf.next() == b"a NOOP\r\n"
    with pytest.raises(CompressionError):
        inf.next()


@pytest.mark.skipif(__import__("shutil").which("mbsync") is None, reason="isync (mbsync) not installed")
def test_mbsync_syncs_compressed(imap_server, tmp_path):
    """mbsync (isync) turns COMPRESS on by itself when it is advertised."""
    import subprocess

    from .mbsync import write_config

    c = _login(imap_server.port("imap"))
    c.create("MbsyncZ")
    for i in range(20):
        c.append("MbsyncZ", None, None, _message(20000 + i * 1000, b"z%d" % i))
    c.logout()
    local = tmp_path / "local"
    local.mkdir()
    config = tmp_path / "mbsyncrc"
    write_config(config, imap_server, (USER, PASSWORD), local)
    result = subprocess.run(["mbsync", "-D", "-c", str(config), "-a"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "COMPRESS DEFLATE" in result.stdout + result.stderr
    folder = local / "MbsyncZ"
    got = {}
    for sub in ("cur", "new"):
        for path in (folder / sub).iterdir():
            data = path.read_bytes()
            got[data.split(b"\n", 1)[0]] = data
    assert set(got) == {b"Subject: z%d" % i for i in range(20)}, sorted(got)
    for i in range(20):
        # mbsync stores LF line ends and adds its X-TUID header.
        body = _message(20000 + i * 1000).split(b"\r\n\r\n", 1)[1].replace(b"\r\n", b"\n")
        assert got[b"Subject: z%d" % i].endswith(b"\n\n" + body)


def test_deadline_counts_compressed_bytes(make_imap_server):
    """
    A literal of 2 MB of zeros deflates to about 2 KB: the min_data_rate
    deadline credits the 2 KB that came, not the 2 MB they stand for, so a
    client that stalls after them is cut at about command_deadline + 4 s,
    not an hour later.
    """
    server = make_imap_server(limits={"command_deadline": 3, "min_data_rate": 500})
    c = _login(server.port("imap"))
    c.compress()
    z = c._z
    sent = z.compress(b"a APPEND INBOX {3000000+}\r\n" + b"\0" * 2000000) + z.flush(zlib.Z_SYNC_FLUSH)
    assert len(sent) < 10000
    started = time.monotonic()
    c.sock.settimeout(60)
    c.sock.sendall(sent)
    line = c.readline()  # the BYE, once the deadline passes
    assert line.startswith(b"* BYE Autologout; command not completed in time"), line
    assert time.monotonic() - started < 60


def test_parser_compress():
    from mailnet.imap.parser import ParseError, parseCommand

    assert parseCommand(b"a COMPRESS deflate").mechanism == "DEFLATE"
    for bad in (b"a COMPRESS", b"a COMPRESS DEFLATE extra", b"a COMPRESS  DEFLATE"):
        with pytest.raises(ParseError):
            parseCommand(bad)

"""A raw-socket IMAP client for the tests that look at exact bytes (literal8, NUL, repeats)."""

from __future__ import annotations

import re
import socket

_LITERAL_AT_END = re.compile(rb"(~?)\{(\d+)\}\r\n$")


class RawIMAP:
    """One connection; :meth:`cmd` sends a command and returns every byte up to its tagged answer."""

    def __init__(self, port, timeout=30):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.f = self.sock.makefile("rb")
        self.greeting = self.f.readline()
        self.count = 0

    def login(self, user, password):
        reply = self.cmd(b"LOGIN %s %s" % (user.encode(), password.encode()))
        assert reply.splitlines()[-1].split()[1] == b"OK", reply
        return self

    def send(self, data: bytes):
        self.sock.sendall(data)

    def read(self, tag: bytes) -> bytes:
        """Everything up to and including the line tagged ``tag``; literals read by their counts."""
        out = []
        while True:
            line = self.f.readline()
            if not line:
                raise EOFError(b"".join(out))
            out.append(line)
            m = _LITERAL_AT_END.search(line)
            if m:
                out.append(self.f.read(int(m.group(2))))
                continue
            if line.startswith(tag + b" "):
                return b"".join(out)

    def cmd(self, text: bytes) -> bytes:
        self.count += 1
        tag = b"t%d" % self.count
        self.send(tag + b" " + text + b"\r\n")
        return self.read(tag)

    def append(self, mailbox: bytes, message: bytes, binary=True) -> bytes:
        """APPEND with a non-synchronizing literal (``~{n+}`` when ``binary``)."""
        self.count += 1
        tag = b"t%d" % self.count
        self.send(b"%s APPEND %s %s{%d+}\r\n" % (tag, mailbox, b"~" if binary else b"", len(message)) + message + b"\r\n")
        return self.read(tag)

    def close(self):
        try:
            self.cmd(b"LOGOUT")
        except OSError:
            pass
        self.f.close()
        self.sock.close()


def literals(reply: bytes):
    """The (label, kind, bytes) of each literal in a FETCH reply: ``kind`` is ``b"~"`` for literal8, else ``b""``."""
    out = []
    pos = 0
    pattern = re.compile(rb"([A-Z0-9.]+(?:\[[^\]]*\])?(?:<\d+>)?) (~?)\{(\d+)\}\r\n")
    while True:
        m = pattern.search(reply, pos)
        if m is None:
            return out
        start = m.end()
        size = int(m.group(3))
        out.append((m.group(1), m.group(2), reply[start:start + size]))
        pos = start + size

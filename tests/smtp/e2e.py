"""Helpers for the end-to-end SMTP tests (real server, real clients)."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess


def strip_trace(data: bytes) -> bytes:
    """The message without the Return-Path and Received headers we add."""
    lines = data.split(b"\n")
    i = 0
    if lines and lines[0].startswith(b"Return-Path:"):
        i = 1
    if i < len(lines) and lines[i].startswith(b"Received:"):
        i += 1
        while i < len(lines) and lines[i][:1] in (b"\t", b" "):
            i += 1
    return b"\n".join(lines[i:])


def canonical(data: bytes) -> bytes:
    """CRLF form (the Maildir store may keep LF on disk)."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def newest(server, user, before=()):
    files = [f for f in server.messageFiles(user) if f not in before]
    assert len(files) == 1, files
    with open(files[0], "rb") as f:
        return f.read()


def unverified():
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Raw:
    """A raw SMTP conversation over a socket (for what clients refuse to send)."""

    def __init__(self, port, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.file = self.sock.makefile("rb")
        self.greeting = self.reply()

    def reply(self):
        lines = []
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("closed; got " + repr(lines))
            lines.append(line)
            if line[3:4] != b"-":
                return b"".join(lines)

    def send(self, data: bytes):
        self.sock.sendall(data)

    def cmd(self, data: bytes):
        self.send(data)
        return self.reply()

    def starttls(self):
        self.sock = unverified().wrap_socket(self.sock, server_hostname="localhost")
        self.file = self.sock.makefile("rb")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def run(args, input=None, timeout=30):
    return subprocess.run(args, input=input, capture_output=True, timeout=timeout)


def write_private(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)

"""Helpers for the quota tests: a server with quota rules in its users file."""

from __future__ import annotations

import os
import time

QUOTA_USER = "carol@example.test"
QUOTA_PW = "carol-pw"


def setRule(server, user, rule):
    """Give ``user`` Dovecot extra fields (``userdb_quota_rule=...``) in the users file."""
    path = os.path.join(server.dataDir, "users")
    lines = open(path).read().splitlines()
    out = []
    for line in lines:
        if line.split(":", 1)[0] == user:
            fields = line.split(":")[:2]
            line = ":".join(fields + [""] * 5) + ":" + rule
        out.append(line)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("".join(x + "\n" for x in out))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def quotaServer(make_server, storage="3000", messages=0, extra=None):
    config = {"quota": {"grace": 0, "warning": 90}}
    for section, values in (extra or {}).items():
        config.setdefault(section, {}).update(values)
    server = make_server(config=config)
    server.addUser("alice@example.test", "alice-pw")
    server.addUser(QUOTA_USER, QUOTA_PW)
    rule = f"userdb_quota_rule=*:storage={storage}"
    if messages:
        rule += f" userdb_quota_rule2=*:messages={messages}"
    setRule(server, QUOTA_USER, rule)
    return server


def maildirsize(server, user=QUOTA_USER):
    path = os.path.join(server.maildir(user), "maildirsize")
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def waitFor(predicate, timeout=20, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def message(size, subject="filler"):
    """A message of exactly ``size`` bytes (CRLF), at least about 60."""
    head = f"From: a@elsewhere.example\r\nTo: carol@example.test\r\nSubject: {subject}\r\n\r\n".encode()
    body = size - len(head)
    assert body >= 2
    lines = []
    while body > 0:
        n = min(body, 78)
        lines.append(b"x" * max(n - 2, 0) + b"\r\n"[:n] if n >= 2 else b"")
        body -= n
    out = head + b"".join(lines)
    if len(out) < size:  # a last byte left over: one more character on a line
        out = head + b"x" + b"".join(lines)
    return out

"""
The few header-section operations the checks need (pure, bytes in CRLF form):
field names, one field's values, the RFC5322.From domain, and removing the
Authentication-Results fields that claim our authserv-id (RFC 8601 s5).
"""

from __future__ import annotations

import functools
import re

from mailnet.mail.headers import parseAddresses


@functools.lru_cache(maxsize=16)
def fields(header: bytes):
    """(name lowercased, raw field with its folded lines and CRLF) in order
    (a tuple: the checks ask several questions of one header section)."""
    out = []
    for line in header.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and out:
            out[-1][1].append(line)
        else:
            out.append((line.partition(b":")[0].strip().lower().decode("latin-1"), [line]))
    return tuple((name, b"\r\n".join(lines) + b"\r\n") for name, lines in out)


def fieldNames(header: bytes):
    return [name for name, _ in fields(header)]


def values(header: bytes, name: str) -> list[str]:
    """The unfolded values of every ``name`` field."""
    out = []
    for n, raw in fields(header):
        if n == name:
            value = raw.partition(b":")[2]
            out.append(re.sub(rb"\r\n([ \t])", rb"\1", value).strip().decode("utf-8", "replace"))
    return out


@functools.lru_cache(maxsize=16)
def fromDomains(header: bytes) -> tuple:
    """
    The domains of the RFC5322.From addresses (RFC 7489 s6.6.1).  A message
    with no From, or several From fields, gives what it has; the caller
    treats anything but exactly one domain as unusable.
    """
    domains = []
    for value in values(header, "from"):
        try:
            items = parseAddresses(value)
        except Exception:
            items = []
        for item in items:
            if item[0] == "group":
                continue  # a group in From is not a usable author (s6.6.1)
            host = item[3]
            if host:
                domains.append(host.lower().rstrip("."))
    return tuple(domains)


_COMMENT = re.compile(rb"\((?:[^()\\]|\\.)*\)")


def authservId(raw: bytes) -> str:
    """The authserv-id of an Authentication-Results field (RFC 8601 s2.2), lowercased."""
    value = raw.partition(b":")[2]
    value = re.sub(rb"\r\n([ \t])", rb"\1", value)
    for _ in range(3):  # nested comments, a few levels
        value = _COMMENT.sub(b" ", value)
    first = value.split(b";", 1)[0].split()
    return first[0].decode("utf-8", "replace").lower() if first else ""


def withoutOurResults(header: bytes, authservId_: str) -> tuple[bytes, int]:
    """
    RFC 8601 s5: remove every Authentication-Results field claiming our
    authserv-id (a forgery, or one a sender made to look like ours).
    Returns (the header section, how many were removed).
    """
    ours = authservId_.lower()
    kept, removed = [], 0
    for name, raw in fields(header):
        if name == "authentication-results" and authservId(raw) == ours:
            removed += 1
        else:
            kept.append(raw)
    return (b"".join(kept), removed) if removed else (header, 0)

"""
MTA-STS (RFC 8461), the pure part: the ``_mta-sts`` TXT record, the policy
file, MX name matching, the policy we serve.  No I/O (the fetching and the
cache are in :mod:`mailnet.mailauth.mtastsfetch`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re

MAX_POLICY_SIZE = 64 * 1024  # RFC 8461 s3.3: senders may refuse bodies larger than 64 KB
MAX_AGE_LIMIT = 31557600  # RFC 8461 s3.2: max_age is at most 31557600 (about a year)
MODES = ("enforce", "testing", "none")
MAX_MX = 100  # mx lines kept (no RFC limit; bounds memory and matching work)

_ID = re.compile(r"[A-Za-z0-9]{1,32}\Z")  # RFC 8461 s3.1: sts-id = 1*32(ALPHA / DIGIT)
_KEY = re.compile(r"[A-Za-z0-9_]{1,32}\Z")  # s3.2: sts-field-name = 1*32(ALPHA / DIGIT / "_")
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")


class PolicyError(ValueError):
    """A TXT record or policy file that is not valid (RFC 8460: sts-policy-invalid)."""


@dataclasses.dataclass(frozen=True)
class Policy:
    """A parsed policy (RFC 8461 s3.2)."""

    mode: str
    mx: tuple
    max_age: int
    text: str = ""

    def matches(self, host: str) -> bool:
        """Does the MX host name match one of the policy's ``mx`` patterns (s4.1)?"""
        return any(mxMatches(pattern, host) for pattern in self.mx)

    def lines(self) -> list[str]:
        """The policy as RFC 8460 s4.4's "policy-string": one entry per line."""
        return [line for line in self.text.replace("\r\n", "\n").split("\n") if line.strip()]


def parseTXT(records) -> str | None:
    """
    The policy id of a domain from its ``_mta-sts`` TXT records (each a str,
    its strings joined).  RFC 8461 s3.1: records not starting with
    ``v=STSv1;`` are ignored; none gives None (no policy); more than one,
    or a bad one, raises :class:`PolicyError`.
    """
    found = [r for r in records if r.startswith("v=STSv1;") or r == "v=STSv1"]
    if not found:
        return None
    if len(found) > 1:
        raise PolicyError("more than one v=STSv1 TXT record (RFC 8461 s3.1)")
    fields = {}
    for part in found[0].split(";"):
        part = part.strip(" \t")
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise PolicyError(f"bad field in the TXT record: {part[:60]!r}")
        fields.setdefault(key.strip(" \t"), value.strip(" \t"))
    policyId = fields.get("id")
    if policyId is None or not _ID.match(policyId):
        raise PolicyError("the TXT record has no valid id= (1 to 32 letters and digits, RFC 8461 s3.1)")
    return policyId


def parsePolicy(text: str) -> Policy:
    """
    Parse a policy file (RFC 8461 s3.2).  Lines are ``key: value`` ended by
    CRLF or LF; unknown keys are ignored; the first of a repeated key wins,
    except ``mx``, which may repeat.  Raises :class:`PolicyError`.
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_POLICY_SIZE:
        raise PolicyError("policy larger than 64 KB")
    fields = {}
    mxs = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        key, value = key.strip(" \t"), value.strip(" \t")
        if not sep or not _KEY.match(key):
            raise PolicyError(f"bad policy line: {line[:60]!r}")
        if key == "mx":
            if len(mxs) < MAX_MX:
                mxs.append(_checkPattern(value))
        else:
            fields.setdefault(key, value)
    if fields.get("version") != "STSv1":
        raise PolicyError("the policy has no \"version: STSv1\"")
    mode = fields.get("mode")
    if mode not in MODES:
        raise PolicyError(f"the policy's mode is not enforce, testing or none: {str(mode)[:30]!r}")
    age = fields.get("max_age", "")
    if not age.isascii() or not age.isdigit() or len(age) > 10 or int(age) > MAX_AGE_LIMIT:
        raise PolicyError(f"the policy's max_age is not 0 to {MAX_AGE_LIMIT}: {age[:30]!r}")
    if not mxs and mode != "none":
        raise PolicyError("the policy has no mx line (RFC 8461 s3.2: required unless mode is none)")
    return Policy(mode, tuple(mxs), int(age), text)


def _checkPattern(value):
    pattern = value.lower().rstrip(".")
    labels = pattern[2:].split(".") if pattern.startswith("*.") else pattern.split(".")
    if len(labels) < 1 or not all(_LABEL.match(label) for label in labels):
        raise PolicyError(f"bad mx pattern in the policy: {value[:60]!r}")
    return pattern


def mxMatches(pattern: str, host: str) -> bool:
    """
    RFC 8461 s4.1: ``mx.example.com`` matches only itself; ``*.example.com``
    matches one leftmost label more (``mx.example.com``, not
    ``a.b.example.com`` nor ``example.com``).  No case, no trailing dot.
    """
    host = host.lower().rstrip(".")
    if pattern.startswith("*."):
        first, dot, rest = host.partition(".")
        return bool(first) and bool(dot) and rest == pattern[2:]
    return host == pattern


def policyText(mode: str, mxs, maxAge: int) -> str:
    """The policy file we serve (RFC 8461 s3.2), CRLF lines."""
    lines = ["version: STSv1", f"mode: {mode}"] + [f"mx: {m}" for m in mxs] + [f"max_age: {maxAge}"]
    return "".join(line + "\r\n" for line in lines)


def policyId(text: str) -> str:
    """The TXT id for a policy: a hash of its text, so it changes exactly when the policy does."""
    return hashlib.sha256(text.encode()).hexdigest()[:20]

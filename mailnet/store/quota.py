"""
Quotas for any backend: the limits of a user, per-user rules in Dovecot's
syntax, the usage an account reports, and the one check every writer makes.

* :class:`QuotaLimits`: a storage limit (bytes) and a message-count limit;
  0 means none.
* :class:`QuotaPolicy`: the ``[quota]`` defaults (storage, messages,
  warning threshold, grace) and a lookup of per-user rules, which come from
  the users file's extra fields the way Dovecot writes them
  (``userdb_quota_rule=*:storage=1G``, :func:`parseRule`).
* :class:`QuotaUsage`: what :meth:`IAccount.quota` answers (usage and
  limits), and :meth:`QuotaUsage.check`: the check before a message of N
  bytes is saved, which raises :class:`~mailnet.store.interfaces.OverQuota`.

The rule of the check (Dovecot's ``quota_grace``): a save is refused when
the user is at or over a limit already, or when the message would take the
storage past the limit by more than the grace (``[quota] grace`` percent of
the limit); a message larger than the whole storage limit is refused for
good (``tooLarge``: SMTP 552 5.2.2).  So the last message that fits "almost"
is taken, and the next one is refused.

Pure: no I/O.  The backends keep the usage (Maildir: the ``maildirsize``
file, :mod:`mailnet.store.maildir.quota`).
"""

from __future__ import annotations

import dataclasses
import re

from mailnet.store.interfaces import OverQuota

STORAGE = "STORAGE"  # RFC 9208 s5.1 resource names
MESSAGE = "MESSAGE"

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"\s*(\d{1,15})\s*([BKMGT]?)B?\s*$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True, slots=True)
class QuotaLimits:
    """A user's limits: ``storage`` in bytes, ``messages`` a count; 0 = no limit."""

    storage: int = 0
    messages: int = 0

    @property
    def limited(self) -> bool:
        return bool(self.storage or self.messages)


@dataclasses.dataclass(frozen=True, slots=True)
class QuotaUsage:
    """
    One account's usage and limits (:meth:`IAccount.quota`).

    @ivar storage: bytes of all messages of the account (canonical sizes).
    @ivar messages: the number of messages.
    @ivar limits: the :class:`QuotaLimits` in force.
    @ivar warning: the warning threshold, percent of a limit (0 = none).
    @ivar grace: percent of the storage limit a last message may go past it.
    """

    storage: int
    messages: int
    limits: QuotaLimits
    warning: int = 90
    grace: int = 10

    @property
    def percent(self) -> int:
        """The larger of the two uses in percent of its limit (0 without limits)."""
        out = 0
        if self.limits.storage:
            out = self.storage * 100 // self.limits.storage
        if self.limits.messages:
            out = max(out, self.messages * 100 // self.limits.messages)
        return out

    @property
    def over(self) -> bool:
        """At or past a limit: nothing more may be saved."""
        limits = self.limits
        return bool((limits.storage and self.storage >= limits.storage)
                    or (limits.messages and self.messages >= limits.messages))

    @property
    def warned(self) -> bool:
        """At or past the warning threshold."""
        return bool(self.warning and self.limits.limited and self.percent >= self.warning)

    def check(self, size: int, count: int = 1):
        """
        May ``count`` messages of ``size`` bytes in all be saved?  Returns
        None, or raises :class:`OverQuota` (``tooLarge`` when the message
        alone is larger than the storage limit: no retry can help).
        """
        limits = self.limits
        if limits.storage:
            if size > limits.storage:
                raise OverQuota("message is larger than the mailbox quota", STORAGE, tooLarge=True)
            allowed = limits.storage + limits.storage * self.grace // 100
            if self.storage >= limits.storage or self.storage + size > allowed:
                raise OverQuota("mailbox storage quota exceeded", STORAGE)
        if limits.messages and count and self.messages + count > limits.messages:
            raise OverQuota("mailbox message count quota exceeded", MESSAGE)
        return None


def parseSize(text: str) -> int:
    """``"1G"``, ``"500M"``, ``"1024k"``, ``"100"`` (bytes) -> bytes; ValueError otherwise."""
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"bad size {text!r} (want a number with an optional B, K, M, G or T)")
    return int(m.group(1)) * _UNITS[m.group(2).upper()]


def parseRule(text: str) -> dict:
    """
    One Dovecot quota rule (``*:storage=1G``, ``*:messages=1000``,
    ``*:storage=1G:messages=1000``, ``*:bytes=10M``, ``*:ignore``) ->
    ``{"storage": n, "messages": n}`` with the limits it sets (0 = none).

    Only the rule for all mailboxes (``*``) sets an account's limits; a rule
    for one mailbox (``Trash:storage=+100M``) gives ``{}`` (not supported:
    mailnet counts the whole account).  Raises ValueError for a rule it
    cannot read; relative values (``+10%``) are refused likewise.
    """
    mailbox, sep, rest = text.strip().partition(":")
    if not sep or not mailbox:
        raise ValueError(f"bad quota rule {text!r} (want *:storage=SIZE or *:messages=N)")
    if mailbox != "*":
        return {}
    out = {}
    for part in rest.split(":"):
        part = part.strip()
        if not part:
            continue
        if part in ("ignore", "noenforcing"):
            return {"storage": 0, "messages": 0}
        key, eq, value = part.partition("=")
        key = key.strip().lower()
        if not eq or key not in ("storage", "bytes", "messages"):
            raise ValueError(f"bad quota rule {text!r}: unknown part {part!r}")
        value = value.strip()
        if key == "messages":
            if not value.isdigit():
                raise ValueError(f"bad quota rule {text!r}: messages wants a number")
            out["messages"] = int(value)
        else:
            out["storage"] = parseSize(value)
    return out


_RULE_KEY = re.compile(r"^(?:userdb_)?quota_rule\d*$")


def rulesFromFields(fields: dict) -> dict | None:
    """
    The limits the users file's extra fields set (``{"storage": n}``...),
    or None when they name no quota.  ``userdb_quota_rule``,
    ``userdb_quota_rule2``... (and without the ``userdb_`` prefix) are read
    in order of their names, a later rule winning for what it sets.
    """
    keys = sorted((k for k in fields if _RULE_KEY.match(k)), key=lambda k: (len(k), k))
    if not keys:
        return None
    out = {}
    for key in keys:
        out.update(parseRule(fields[key]))
    return out


class QuotaPolicy:
    """
    The limits of each user: ``[quota]``'s defaults, overridden per user.

    @param storage: default storage limit in bytes (0 = none).
    @param messages: default message-count limit (0 = none).
    @param warning: threshold in percent for the warning message (0 = none).
    @param grace: percent of the storage limit a last message may exceed it by.
    @param rulesFor: ``rulesFor(username) -> dict or None``: the per-user
        override (:func:`rulesFromFields` of the users file), answered from
        memory.
    """

    def __init__(self, storage=0, messages=0, warning=90, grace=10, rulesFor=None):
        self.default = QuotaLimits(storage, messages)
        self.warning = warning
        self.grace = grace
        self.rulesFor = rulesFor

    @classmethod
    def fromConfig(cls, config, users=None):
        q = getattr(config, "quota", None)
        if q is None:
            return cls()
        rulesFor = getattr(users, "quotaRules", None)
        return cls(parseSize(q.storage) if q.storage else 0, q.messages, q.warning, q.grace, rulesFor)

    def limitsFor(self, username) -> QuotaLimits:
        rules = self.rulesFor(username) if self.rulesFor is not None else None
        if not rules:
            return self.default
        return QuotaLimits(rules.get("storage", self.default.storage), rules.get("messages", self.default.messages))

    def usage(self, username, storage, messages) -> QuotaUsage:
        return QuotaUsage(storage, messages, self.limitsFor(username), self.warning, self.grace)


NO_QUOTA = QuotaPolicy()


def policyOf(store) -> QuotaPolicy:
    """The store's policy (``store.quotaPolicy``, set by the service), or no limits."""
    return getattr(store, "quotaPolicy", None) or NO_QUOTA

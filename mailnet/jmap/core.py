"""
``urn:ietf:params:jmap:core`` (RFC 8620 s2): the capability with its
limits, ``Core/echo`` (s4), and the session object (s2).  Pure.
"""

from __future__ import annotations

import hashlib
import json
import re

from mailnet.jmap.dispatch import CORE, Account, Limits, Registry

# RFC 8620 s1.2: Id is 1-255 characters of the URL-safe base64 alphabet.
ID = re.compile(r"[A-Za-z0-9_-]{1,255}\Z")

API_PATH = "/jmap/api/"
UPLOAD_PATH = "/jmap/upload/"
DOWNLOAD_PATH = "/jmap/download/"
EVENTSOURCE_PATH = "/jmap/eventsource/"


def isId(value) -> bool:
    return isinstance(value, str) and ID.match(value) is not None


def accountIdFor(username: str) -> str:
    """
    The accountId of a user's own account: opaque, stable, and not the
    address (ids end up in URLs and logs of proxies).  When the store gives
    accounts their own ids (issue 13), they take its place here.
    """
    return "a" + hashlib.sha256(username.lower().encode("utf-8")).hexdigest()[:20]


def register(registry: Registry):
    # Core is an account capability too (its value empty): Core/echo and
    # Blob/copy work in every account, and clients take the account to use
    # from primaryAccounts[core] when they know no other capability.
    registry.capability(CORE, lambda limits: limits.capability(), accountValue={})
    registry.method("Core/echo", echo)


def echo(call):
    # RFC 8620 s4.1: the arguments come back unchanged.
    return dict(call.arguments)


def sessionObject(registry: Registry, username: str, accounts: list[Account], limits: Limits, base: str = "") -> dict:
    """
    The session resource (RFC 8620 s2).  URLs are absolute when ``base``
    (``scheme://host``) is given, as RFC 8620 s2 asks of apiUrl and the
    templates; ``state`` changes whenever anything in it does.
    """
    capabilities = registry.sessionCapabilities(limits)
    for value in capabilities.values():
        # A capability's own endpoint (RFC 8887's WebSocket url) given as a
        # path: made absolute, ws: or wss: after the scheme of the base.
        url = value.get("url") if isinstance(value, dict) else None
        if isinstance(url, str) and url.startswith("/"):
            wsBase = "wss" + base[5:] if base.startswith("https") else ("ws" + base[4:] if base else "")
            value["url"] = wsBase + url
    primary = {}
    for uri in registry.accountCapabilities:
        for account in accounts:
            if uri in account.capabilities and account.isPersonal:
                primary[uri] = account.id
                break
    session = {
        "capabilities": capabilities,
        "accounts": {a.id: a.sessionValue() for a in accounts},
        "primaryAccounts": primary,
        "username": username,
        "apiUrl": base + API_PATH,
        "downloadUrl": base + DOWNLOAD_PATH + "{accountId}/{blobId}/{name}?type={type}",
        "uploadUrl": base + UPLOAD_PATH + "{accountId}/",
        "eventSourceUrl": base + EVENTSOURCE_PATH + "?types={types}&closeafter={closeafter}&ping={ping}",
    }
    digest = hashlib.sha256(json.dumps(session, sort_keys=True).encode("utf-8")).hexdigest()
    session["state"] = digest[:16]
    return session


def accountFor(registry: Registry, username: str, backend=None) -> Account:
    """The user's own account with every account capability the server has."""
    capabilities = {}
    for uri, value in registry.accountCapabilities.items():
        capabilities[uri] = value(username) if callable(value) else value
    return Account(accountIdFor(username), username, True, False, capabilities, backend)

"""
RFC 8621 s8 VacationResponse: the one ``singleton`` object of an account,
read and written through the :class:`~mailnet.vacation.IVacationStore`
the HTTP side gives (``Context.services["vacation"]``).  Pure: no path, no
file here.  The auto-reply itself is sent after local delivery
(mailnet/vacation.py ``Responder``).
"""

from __future__ import annotations

import hashlib
import json

from mailnet.jmap import standard
from mailnet.jmap.email import parseUTCDate
from mailnet.jmap.errors import MethodError, SetError

VACATION = "urn:ietf:params:jmap:vacationresponse"
SINGLETON = "singleton"
PROPERTIES = ("id", "isEnabled", "fromDate", "toDate", "subject", "textBody", "htmlBody")
MAX_SUBJECT = 998  # RFC 5322 s2.1.1 line length
MAX_BODY = 100_000  # characters of textBody / htmlBody


class VacationResponses:
    name = "VacationResponse"
    properties = PROPERTIES
    defaultProperties = PROPERTIES

    def __init__(self, store, username):
        self.store = store
        self.username = username
        self._settings = None

    async def _current(self):
        if self._settings is None:
            self._settings = await self.store.get(self.username)
        return self._settings

    async def state(self, account):
        settings = await self._current()
        data = json.dumps(settings, sort_keys=True).encode("utf-8")
        return hashlib.sha256(data).hexdigest()[:16]

    def allIds(self, account):
        return [SINGLETON]

    async def read(self, account, ids):
        if SINGLETON not in ids:
            return {}
        return {SINGLETON: dict(await self._current(), id=SINGLETON)}

    def create(self, account, record):
        # RFC 8621 s8.2: there is exactly one; it cannot be created or destroyed.
        raise SetError("singleton", "the VacationResponse exists already: update singleton")

    def destroy(self, account, id):
        raise SetError("singleton", "the VacationResponse cannot be destroyed")

    async def update(self, account, id, patch):
        if id != SINGLETON:
            raise SetError("notFound")
        current = dict(await self._current())
        bad = [k for k in patch if k not in PROPERTIES[1:]]
        if bad:
            raise SetError("invalidProperties", "unknown or server-set properties", properties=bad[:20])
        new = standard.applyPatch(current, patch)
        problems = _check(new)
        if problems:
            raise SetError("invalidProperties", "; ".join(text for _, text in problems),
                           properties=[name for name, _ in problems])
        await self.store.set(self.username, new)
        self._settings = None
        return None


def _check(settings):
    problems = []
    if not isinstance(settings.get("isEnabled"), bool):
        problems.append(("isEnabled", "isEnabled must be a boolean"))
    for key in ("fromDate", "toDate"):
        value = settings.get(key)
        if value is not None:
            try:
                parseUTCDate(value)
            except MethodError:
                problems.append((key, f"{key} must be a UTCDate or null"))
    for key, limit in (("subject", MAX_SUBJECT), ("textBody", MAX_BODY), ("htmlBody", MAX_BODY)):
        value = settings.get(key)
        if value is not None and not (isinstance(value, str) and len(value) <= limit):
            problems.append((key, f"{key} must be a string of at most {limit} characters, or null"))
    if isinstance(settings.get("subject"), str) and any(c in settings["subject"] for c in "\r\n\0"):
        problems.append(("subject", "subject must be one line"))
    return problems


def _dataType(call):
    store = call.context.services.get("vacation")
    if store is None:
        raise MethodError("forbidden", "vacation responses are not available on this server")
    return VacationResponses(store, call.context.username)


async def vacationGet(call):
    call.account()
    return await standard.standardGet(call, _dataType(call))


async def vacationSet(call):
    call.account()
    return await standard.standardSet(call, _dataType(call))


def register(registry):
    # RFC 8621 s1.3.3: the capability's session and account values are empty objects.
    registry.capability(VACATION, {}, accountValue={})
    registry.method("VacationResponse/get", vacationGet, VACATION)
    registry.method("VacationResponse/set", vacationSet, VACATION, mutates=True)

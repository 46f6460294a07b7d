"""
The queue envelope, typed: one :func:`parse` that validates every field of
a ``queue/<id>.json`` file and one :meth:`Envelope.serialize` that writes
it.  Pure (bytes in, objects out; no I/O).

Whatever the file holds, :func:`parse` either returns an :class:`Envelope`
whose fields have the types and ranges below, or raises
:class:`EnvelopeError` with a one-line reason; nothing else escapes (the
property is fuzzed in tests/queue/test_envelope.py).  The scheduler can
then trust every field, and one wrongly shaped file is set aside instead
of stopping the server.

The item's id is the file's name, never the ``"id"`` written inside: a
name that is not a queue id, or an ``"id"`` that differs from the name, is
an error (the id is used to build paths).

The file format is documented in docs/queue.md ("The envelope").  Keys
this version does not know are ignored.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re

VERSION = 1
STATUSES = ("pending", "delayed", "sent", "failed")
ACTIONS = ("delivered", "relayed", "expanded", "failed", "delayed")
NOTIFY_VALUES = ("SUCCESS", "FAILURE", "DELAY", "NEVER")
BODIES = ("7BIT", "8BITMIME", "BINARYMIME")
RETS = ("FULL", "HDRS")

# Queue ids as newQueueId makes them: hex seconds (8 digits until 2106),
# 5 hex digits of microseconds, 8 random hex digits.
ID_PATTERN = re.compile(r"[0-9a-f]{21,32}")

MAX_FILE = 16 * 1024 * 1024  # bytes of one envelope file
MAX_RECIPIENTS = 100_000  # aliases may add recipients to what SMTP accepted
MAX_ADDRESS = 1000  # characters; RFC 5321 s4.5.3.1.3 allows 256 octets for a path
MAX_ENVID = 100  # RFC 3461 s4.4
MAX_ORCPT = 500  # RFC 3461 s4.2
MAX_TEXT = 4096  # last_error, client, auth, remote_mta
MAX_TIME = 2.0 ** 34  # epoch seconds (year 2514): anything larger is garbage (and beyond what datetime shows)
MAX_COUNT = 2 ** 53


class EnvelopeError(ValueError):
    """The file is not a valid envelope; ``str(error)`` says why, in one line."""


def validId(queueId) -> bool:
    """Whether ``queueId`` is a queue id (and so may name a file)."""
    return isinstance(queueId, str) and ID_PATTERN.fullmatch(queueId) is not None


@dataclasses.dataclass
class RecipientState:
    """
    One recipient of a queue item and where it stands.

    ``status``: ``pending`` (not tried), ``delayed`` (waits for
    ``next_attempt``), ``sent`` or ``failed``.  ``action`` is the RFC 3464
    Action once final; ``reported``: a DSN about the final status was
    queued, or none is due.
    """

    address: str
    orcpt: str | None = None
    notify: list | None = None
    status: str = "pending"
    attempts: int = 0
    last_error: str | None = None
    next_attempt: float | None = None
    last_attempt: float | None = None
    remote_mta: str | None = None
    action: str | None = None
    reported: bool = False
    expanded_to: list | None = None
    expanded_from: str | None = None

    # Written only when set, so that files stay short and readable.
    _OPTIONAL = ("last_attempt", "remote_mta", "action", "reported", "expanded_to", "expanded_from")

    def toDict(self) -> dict:
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name in self._OPTIONAL and value in (None, False):
                continue
            out[field.name] = list(value) if isinstance(value, list) else value
        return out


@dataclasses.dataclass
class Envelope:
    """A queue item's envelope: sender, DSN parameters, per-recipient state."""

    id: str
    sender: str  # "" for the null reverse-path
    recipients: list  # of RecipientState
    arrival: float
    envid: str | None = None
    ret: str | None = None
    smtputf8: bool = False
    body: str = "7BIT"
    size: int = 0
    client: str | None = None
    auth: str | None = None
    held: bool = False
    delay_warned: bool = False
    version: int = VERSION

    def toDict(self) -> dict:
        """The envelope as the JSON object of its file (and of ``mailnet queue``)."""
        return {
            "version": self.version, "id": self.id, "sender": self.sender, "envid": self.envid,
            "ret": self.ret, "smtputf8": self.smtputf8, "body": self.body, "arrival": self.arrival,
            "client": self.client, "auth": self.auth, "held": self.held, "delay_warned": self.delay_warned,
            "size": self.size, "recipients": [r.toDict() for r in self.recipients],
        }

    def serialize(self) -> bytes:
        """The bytes of the file: indented UTF-8 JSON (for people), ending in a newline."""
        return json.dumps(self.toDict(), indent=1, ensure_ascii=False).encode("utf-8") + b"\n"


# -- Parsing ------------------------------------------------------------------


def _noConstant(name):
    raise EnvelopeError(f"not a number: {name}")


def _text(obj, key, where, *, required=False, nullable=True, limit=MAX_TEXT, choices=None, default=None):
    if key not in obj:
        if required:
            raise EnvelopeError(f"{where}: missing \"{key}\"")
        return default
    value = obj[key]
    if value is None:
        if not nullable:
            raise EnvelopeError(f"{where}: \"{key}\" is null")
        return None
    if not isinstance(value, str):
        raise EnvelopeError(f"{where}: \"{key}\" is {type(value).__name__}, not a string")
    if len(value) > limit:
        raise EnvelopeError(f"{where}: \"{key}\" is longer than {limit} characters")
    if choices is not None and value not in choices:
        raise EnvelopeError(f"{where}: \"{key}\" is {_show(value)}, not one of {', '.join(choices)}")
    return value


def _parameter(obj, key, where, *, limit):
    # ENVID and ORCPT are sent as they are in the next hop's MAIL and RCPT
    # commands: whitespace (a CR LF above all) would end or split the command
    # (RFC 3461 s4: xtext has none; the SMTP parser never stores any).
    value = _text(obj, key, where, limit=limit)
    if value is not None and any(c.isspace() for c in value):
        raise EnvelopeError(f"{where}: \"{key}\" holds whitespace or a line break")
    return value


def _flag(obj, key, where, default=False):
    value = obj.get(key, default)
    if not isinstance(value, bool):
        raise EnvelopeError(f"{where}: \"{key}\" is {type(value).__name__}, not true or false")
    return value


def _number(obj, key, where, *, required=False, nullable=True, integer=False, limit=MAX_TIME, default=None):
    if key not in obj:
        if required:
            raise EnvelopeError(f"{where}: missing \"{key}\"")
        return default
    value = obj[key]
    if value is None:
        if not nullable:
            raise EnvelopeError(f"{where}: \"{key}\" is null")
        return None
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an integer" if integer else "a number"
        raise EnvelopeError(f"{where}: \"{key}\" is {type(value).__name__}, not {kind}")
    if not (0 <= value <= limit) or (isinstance(value, float) and not math.isfinite(value)):
        raise EnvelopeError(f"{where}: \"{key}\" is out of range")
    return value


def _address(value, where, key):
    if not isinstance(value, str):
        raise EnvelopeError(f"{where}: \"{key}\" is {type(value).__name__}, not a string")
    if not value or len(value) > MAX_ADDRESS or not value.isprintable():
        raise EnvelopeError(f"{where}: \"{key}\" is not an address")
    return value


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _recipient(obj, n) -> RecipientState:
    where = f"recipient {n}"
    if not isinstance(obj, dict):
        raise EnvelopeError(f"{where} is {type(obj).__name__}, not an object")
    if "address" not in obj:
        raise EnvelopeError(f"{where}: missing \"address\"")
    address = _address(obj["address"], where, "address")
    notify = obj.get("notify")
    if notify is not None:
        if not isinstance(notify, list) or not notify or not all(isinstance(v, str) for v in notify):
            raise EnvelopeError(f"{where}: \"notify\" is not a list of NOTIFY values")
        upper = [v.upper() for v in notify]
        if not set(upper) <= set(NOTIFY_VALUES) or len(set(upper)) != len(upper) or (
                "NEVER" in upper and len(upper) > 1):
            raise EnvelopeError(f"{where}: \"notify\" is not a valid NOTIFY list (RFC 3461 s4.1)")
        notify = upper
    expandedTo = obj.get("expanded_to")
    if expandedTo is not None:
        if not isinstance(expandedTo, list) or len(expandedTo) > MAX_RECIPIENTS:
            raise EnvelopeError(f"{where}: \"expanded_to\" is not a list of addresses")
        expandedTo = [_address(a, where, "expanded_to") for a in expandedTo]
    expandedFrom = obj.get("expanded_from")
    if expandedFrom is not None:
        expandedFrom = _address(expandedFrom, where, "expanded_from")
    return RecipientState(
        address=address,
        orcpt=_parameter(obj, "orcpt", where, limit=MAX_ORCPT),
        notify=notify,
        status=_text(obj, "status", where, required=True, nullable=False, choices=STATUSES),
        attempts=_number(obj, "attempts", where, nullable=False, integer=True, limit=MAX_COUNT, default=0),
        last_error=_text(obj, "last_error", where),
        next_attempt=_number(obj, "next_attempt", where),
        last_attempt=_number(obj, "last_attempt", where),
        remote_mta=_text(obj, "remote_mta", where),
        action=_text(obj, "action", where, choices=ACTIONS),
        reported=_flag(obj, "reported", where),
        expanded_to=expandedTo,
        expanded_from=expandedFrom,
    )


def parse(data: bytes, idFromFileName: str) -> Envelope:
    """
    Read and check an envelope file.

    @param data: the file's bytes.
    @param idFromFileName: the file's name without ``.json``: the item's id.
    @raise EnvelopeError: anything wrong, with the reason.
    """
    if not validId(idFromFileName):
        raise EnvelopeError("the file name is not a queue id")
    if not isinstance(data, bytes):
        raise EnvelopeError("not bytes")
    if len(data) > MAX_FILE:
        raise EnvelopeError(f"larger than {MAX_FILE} bytes")
    if not data.strip():
        raise EnvelopeError("empty file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise EnvelopeError("not UTF-8") from None
    try:
        obj = json.loads(text, parse_constant=_noConstant)
    except EnvelopeError:
        raise
    except RecursionError:
        raise EnvelopeError("not JSON (nested too deeply)") from None
    except ValueError as e:
        raise EnvelopeError(f"not JSON ({str(e).split(':')[0]}); truncated?") from None
    if not isinstance(obj, dict):
        raise EnvelopeError(f"the file holds a JSON {type(obj).__name__}, not an object")
    where = "envelope"
    version = obj.get("version", VERSION)
    if version != VERSION or isinstance(version, bool):
        raise EnvelopeError(f"unknown envelope version {_show(version)}")
    if "id" in obj and obj["id"] != idFromFileName:
        # RFC-free rule of ours: the name is the id; a different one inside
        # means the file was edited or copied, and is not to be trusted.
        raise EnvelopeError(f"the \"id\" inside ({_show(obj['id'])}) differs from the file name")
    sender = _text(obj, "sender", where, required=True, nullable=False, limit=MAX_ADDRESS)
    if sender:
        _address(sender, where, "sender")
    recipients = obj.get("recipients")
    if recipients is None:
        raise EnvelopeError("envelope: missing \"recipients\"")
    if not isinstance(recipients, list):
        raise EnvelopeError(f"envelope: \"recipients\" is {type(recipients).__name__}, not a list")
    if not recipients:
        raise EnvelopeError("envelope: no recipients")
    if len(recipients) > MAX_RECIPIENTS:
        raise EnvelopeError(f"envelope: more than {MAX_RECIPIENTS} recipients")
    envid = _parameter(obj, "envid", where, limit=MAX_ENVID)
    ret = obj.get("ret")
    if isinstance(ret, str):
        ret = ret.upper()
    return Envelope(
        id=idFromFileName,
        sender=sender,
        recipients=[_recipient(r, n) for n, r in enumerate(recipients, 1)],
        arrival=_number(obj, "arrival", where, required=True, nullable=False),
        envid=envid,
        ret=_text({"ret": ret}, "ret", where, choices=RETS),
        smtputf8=_flag(obj, "smtputf8", where),
        body=_text(obj, "body", where, nullable=False, choices=BODIES, default="7BIT"),
        size=_number(obj, "size", where, nullable=False, integer=True, limit=MAX_COUNT, default=0),
        client=_text(obj, "client", where),
        auth=_text(obj, "auth", where),
        held=_flag(obj, "held", where),
        delay_warned=_flag(obj, "delay_warned", where),
    )

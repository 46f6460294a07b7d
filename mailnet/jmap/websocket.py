"""
JMAP over WebSocket (RFC 8887), the pure part: the capability, the
messages a client sends (``Request``, ``WebSocketPushEnable``,
``WebSocketPushDisable``) and the ones the server sends (``Response``,
``RequestError``, ``StateChange``).  The socket is mailnet/http/websocket.py.
"""

from __future__ import annotations

import dataclasses
import json

from mailnet.jmap import jsonstream
from mailnet.jmap.dispatch import Registry
from mailnet.jmap.errors import PREFIX, RequestError
from mailnet.jmap.request import Request, checkRequest, loadJSON

WEBSOCKET = "urn:ietf:params:jmap:websocket"
SUBPROTOCOL = "jmap"
PATH = "/jmap/ws/"


def register(registry: Registry):
    # RFC 8887 s4.1: the url is made absolute (ws: or wss:) by core.sessionObject.
    registry.capability(WEBSOCKET, lambda limits: {"url": PATH, "supportsPush": True})


class MessageError(RequestError):
    """A RequestError answered over the socket, with the id of the request it is about."""

    def __init__(self, type, detail, requestId=None, limit=None):
        super().__init__(type, detail, 400, limit)
        self.requestId = requestId


@dataclasses.dataclass
class PushEnable:
    dataTypes: frozenset | None  # None = every type
    pushState: str | None


@dataclasses.dataclass
class PushDisable:
    pass


@dataclasses.dataclass
class SocketRequest:
    id: str | None
    request: Request


def parseMessage(text: str, known, maxCallsInRequest: int):
    """
    One text message from the client: a :class:`SocketRequest`,
    :class:`PushEnable` or :class:`PushDisable`.

    @raise MessageError: RFC 8887 s4.3.4: a RequestError to send back
        (notJSON, notRequest, unknownCapability, limit).
    """
    try:
        value = loadJSON(text.encode("utf-8", "surrogatepass"))
    except (ValueError, RecursionError):
        raise MessageError("notJSON", "The message is not valid I-JSON.")
    if not isinstance(value, dict):
        raise MessageError("notRequest", "The message must be a JSON object.")
    kind = value.get("@type")
    requestId = value.get("id")
    if requestId is not None and not isinstance(requestId, str):
        raise MessageError("notRequest", "id must be a string.")
    if kind == "Request":
        body = {k: v for k, v in value.items() if k not in ("@type", "id")}
        try:
            return SocketRequest(requestId, checkRequest(body, known, maxCallsInRequest))
        except RequestError as e:
            raise MessageError(e.type, e.detail, requestId, e.limit)
    if kind == "WebSocketPushEnable":
        types = value.get("dataTypes")
        if types is not None and (not isinstance(types, list) or not all(isinstance(t, str) for t in types)):
            raise MessageError("notRequest", "dataTypes must be null or an array of type names.")
        pushState = value.get("pushState")
        return PushEnable(None if types is None else frozenset(types),
                          pushState if isinstance(pushState, str) else None)
    if kind == "WebSocketPushDisable":
        return PushDisable()
    raise MessageError("notRequest", "Unknown @type.", requestId)


def encodeResponse(response: dict, requestId=None) -> str:
    out = {"@type": "Response"}
    if requestId is not None:
        out["requestId"] = requestId
    out.update(response)
    return json.dumps(out, separators=(",", ":"), default=jsonstream.plain)  # a long bodyValue joined


def encodeError(error: RequestError) -> str:
    out = {"@type": "RequestError"}
    requestId = getattr(error, "requestId", None)
    if requestId is not None:
        out["requestId"] = requestId
    out.update(type=PREFIX + error.type, status=error.status, detail=error.detail)
    if error.limit is not None:
        out["limit"] = error.limit
    return json.dumps(out, separators=(",", ":"))


def encodeStateChange(changed: dict, pushState=None) -> str:
    out = {"@type": "StateChange", "changed": changed}
    if pushState is not None:
        out["pushState"] = pushState  # RFC 8887 s4.3.5: what WebSocketPushEnable may send back
    return json.dumps(out, separators=(",", ":"))

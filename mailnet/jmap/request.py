"""
The JMAP request object (RFC 8620 s3.3) and result references (s3.7):
bytes in, a checked :class:`Request` out.  Pure: no I/O, fuzzed with
Hypothesis in tests/jmap.
"""

from __future__ import annotations

import dataclasses
import json

from mailnet.jmap.errors import MethodError, RequestError


@dataclasses.dataclass
class Request:
    """
    @ivar using: the capabilities the client uses (RFC 8620 s3.3).
    @ivar methodCalls: ``[name, arguments, callId]`` triples.
    @ivar createdIds: the client's creation id -> id map, or None when the
        request had none (then the response has none either, s3.4).
    """

    using: list
    methodCalls: list
    createdIds: dict | None


def _rejectConstant(name):
    # I-JSON (RFC 7493 s2.2): no NaN or Infinity.
    raise ValueError(f"{name} is not JSON")


def _noDuplicates(pairs):
    # I-JSON (RFC 7493 s2.3): member names are unique.
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"duplicate member {key!r}")
        seen[key] = value
    return seen


def loadJSON(body: bytes):
    """Parse I-JSON (RFC 8620 s3.1: UTF-8, no duplicate names); ValueError when it is not."""
    text = body.decode("utf-8")  # UnicodeDecodeError is a ValueError
    return json.loads(text, parse_constant=_rejectConstant, object_pairs_hook=_noDuplicates)


def parseRequest(body: bytes, contentType: str | None, known, maxCallsInRequest: int) -> Request:
    """
    Check one API request.

    @param contentType: the Content-Type header (None when absent).
    @param known: the capability URIs the server supports.
    @raise RequestError: RFC 8620 s3.6.1 ``notJSON``, ``notRequest``,
        ``unknownCapability`` or ``limit`` (``maxCallsInRequest``).
    """
    mediaType = (contentType or "").split(";", 1)[0].strip().lower()
    if mediaType != "application/json":
        # RFC 8620 s3.6.1: "The content type of the request was not application/json".
        raise RequestError("notJSON", "The request must have Content-Type application/json.")
    try:
        value = loadJSON(body)
    except (ValueError, RecursionError):
        raise RequestError("notJSON", "The request body is not valid I-JSON.")
    return checkRequest(value, known, maxCallsInRequest)


def checkRequest(value, known, maxCallsInRequest: int) -> Request:
    """The checks of :func:`parseRequest` on a parsed JSON value (RFC 8887 messages come parsed)."""
    if not isinstance(value, dict):
        raise RequestError("notRequest", "The request must be a JSON object.")
    using = value.get("using")
    calls = value.get("methodCalls")
    createdIds = value.get("createdIds")
    if not isinstance(using, list) or not all(isinstance(u, str) for u in using):
        raise RequestError("notRequest", "\"using\" must be an array of strings.")
    if not isinstance(calls, list):
        raise RequestError("notRequest", "\"methodCalls\" must be an array.")
    for call in calls:
        if (not isinstance(call, list) or len(call) != 3 or not isinstance(call[0], str)
                or not isinstance(call[1], dict) or not isinstance(call[2], str)):
            raise RequestError("notRequest", "Each method call must be [name, arguments object, call id].")
    if createdIds is not None:
        if not isinstance(createdIds, dict) or not all(isinstance(v, str) for v in createdIds.values()):
            raise RequestError("notRequest", "\"createdIds\" must map creation ids to ids.")
    unknown = [u for u in using if u not in known]
    if unknown:
        # RFC 8620 s3.6.1: unknownCapability names what is not supported.
        shown = ", ".join(u[:200] for u in unknown[:10])
        raise RequestError("unknownCapability", f"Unsupported capabilities: {shown}")
    if len(calls) > maxCallsInRequest:
        raise RequestError("limit", f"At most {maxCallsInRequest} method calls per request.",
                           limit="maxCallsInRequest")
    return Request(list(using), calls, dict(createdIds) if createdIds is not None else None)


# Result references (RFC 8620 s3.7)

class _Fail(Exception):
    pass


def evaluatePointer(value, path: str):
    """
    RFC 8620 s3.7: a JSON Pointer (RFC 6901) with the ``*`` rule: on an
    array, ``*`` applies the rest of the path to each item, and arrays that
    come out are flattened into the result.

    @raise MethodError: ``invalidResultReference`` when the path does not resolve.
    """
    if not isinstance(path, str):
        raise MethodError("invalidResultReference", "path must be a string")
    if path == "":
        return value
    if not path.startswith("/"):
        raise MethodError("invalidResultReference", "path must start with /")
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]
    try:
        return _walk(value, tokens)
    except _Fail as e:
        raise MethodError("invalidResultReference", f"path {path[:200]!r} does not resolve: {e}")


def _walk(value, tokens):
    for i, token in enumerate(tokens):
        if isinstance(value, list):
            if token == "*":
                rest = tokens[i + 1:]
                out = []
                for item in value:
                    found = _walk(item, rest)
                    if isinstance(found, list):
                        out.extend(found)
                    else:
                        out.append(found)
                return out
            if not token.isdigit() or (len(token) > 1 and token[0] == "0"):
                raise _Fail(f"{token[:50]!r} is not an array index")
            index = int(token)
            if index >= len(value):
                raise _Fail(f"index {index} is past the end")
            value = value[index]
        elif isinstance(value, dict):
            if token not in value:
                raise _Fail(f"no member {token[:50]!r}")
            value = value[token]
        else:
            raise _Fail(f"{token[:50]!r} applied to a {type(value).__name__}")
    return value


def resolveReferences(arguments: dict, responses: list) -> dict:
    """
    Replace every ``"#name": ResultReference`` argument by its value
    (RFC 8620 s3.7), looking in the responses of the calls before.

    @param responses: ``[name, arguments, callId]`` answered so far.
    @raise MethodError: ``invalidArguments`` when both ``name`` and
        ``#name`` are given; ``invalidResultReference`` when a reference
        does not resolve.
    """
    if not any(key.startswith("#") for key in arguments):
        return arguments
    resolved = {}
    for key, value in arguments.items():
        if not key.startswith("#"):
            resolved[key] = value
            continue
        name = key[1:]
        if name in arguments:
            raise MethodError("invalidArguments", f"both {name!r} and {key!r} given")
        if (not isinstance(value, dict) or not isinstance(value.get("resultOf"), str)
                or not isinstance(value.get("name"), str) or not isinstance(value.get("path"), str)):
            raise MethodError("invalidResultReference", f"{key!r} is not a ResultReference")
        # "the first response with a method call id identical to resultOf"
        for responseName, responseArgs, callId in responses:
            if callId == value["resultOf"]:
                break
        else:
            raise MethodError("invalidResultReference", f"no earlier response with call id {value['resultOf'][:100]!r}")
        if responseName != value["name"]:
            raise MethodError("invalidResultReference",
                              f"the response to {value['resultOf'][:100]!r} is {responseName!r}, not {value['name'][:100]!r}")
        resolved[name] = evaluatePointer(responseArgs, value["path"])
    return resolved

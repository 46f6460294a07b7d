"""The request parser and result references (RFC 8620 s3.3, s3.6.1, s3.7), pure; Hypothesis over the parser."""

import json

import pytest
from hypothesis import given, settings, strategies as st

from mailnet.jmap.errors import MethodError, RequestError
from mailnet.jmap.request import evaluatePointer, parseRequest, resolveReferences

CORE = "urn:ietf:params:jmap:core"
KNOWN = {CORE}
JSON = "application/json"


def parse(body, contentType=JSON, maxCalls=16):
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    return parseRequest(body, contentType, KNOWN, maxCalls)


def errorOf(*args, **kw):
    with pytest.raises(RequestError) as info:
        parse(*args, **kw)
    return info.value


def test_a_good_request():
    request = parse({"using": [CORE], "methodCalls": [["Core/echo", {"a": 1}, "c1"]], "createdIds": {"k": "v"}})
    assert request.using == [CORE]
    assert request.methodCalls == [["Core/echo", {"a": 1}, "c1"]]
    assert request.createdIds == {"k": "v"}
    assert parse({"using": [], "methodCalls": []}).createdIds is None


@pytest.mark.parametrize("body, contentType", [
    (b"{not json", JSON),
    (b"\xff\xfe{}", JSON),
    (b'{"using": [], "using": [], "methodCalls": []}', JSON),  # duplicate names (I-JSON)
    (b'{"using": [], "methodCalls": [], "x": NaN}', JSON),
    (b'{"using": [], "methodCalls": []}', "text/plain"),
    (b'{"using": [], "methodCalls": []}', None),
    (b"[" * 100000, JSON),
])
def test_not_json(body, contentType):
    error = errorOf(body, contentType)
    assert (error.type, error.status) == ("notJSON", 400)
    assert error.problem()["type"] == "urn:ietf:params:jmap:error:notJSON"


def test_content_type_with_charset_is_json():
    parse(b'{"using": [], "methodCalls": []}', "application/json; charset=utf-8")


@pytest.mark.parametrize("body", [
    [], "x", 1, {}, {"using": [CORE]}, {"methodCalls": []},
    {"using": CORE, "methodCalls": []},
    {"using": [1], "methodCalls": []},
    {"using": [], "methodCalls": {}},
    {"using": [], "methodCalls": [["Core/echo", {}]]},
    {"using": [], "methodCalls": [["Core/echo", [], "c"]]},
    {"using": [], "methodCalls": [[1, {}, "c"]]},
    {"using": [], "methodCalls": [["Core/echo", {}, 3]]},
    {"using": [], "methodCalls": [], "createdIds": []},
    {"using": [], "methodCalls": [], "createdIds": {"a": 1}},
])
def test_not_request(body):
    assert errorOf(body).type == "notRequest"


def test_unknown_capability_is_named():
    error = errorOf({"using": [CORE, "urn:example:nope"], "methodCalls": []})
    assert error.type == "unknownCapability" and "urn:example:nope" in error.detail


def test_too_many_calls_is_the_limit_error_with_its_name():
    error = errorOf({"using": [CORE], "methodCalls": [["Core/echo", {}, "c"]] * 3}, maxCalls=2)
    assert error.type == "limit"
    assert error.problem()["limit"] == "maxCallsInRequest"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_are_a_request_or_a_request_error(body):
    try:
        parse(body)
    except RequestError:
        pass


JSONVALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                          lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
                          max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(JSONVALUES)
def test_any_json_is_a_request_or_a_request_error(value):
    try:
        parse(value)
    except RequestError:
        pass


# Result references (s3.7)

RESULT = {"list": [{"id": "a", "threadIds": ["t1", "t2"]}, {"id": "b", "threadIds": ["t3"]}],
          "ids": ["x", "y"], "a/b": {"~": 1}}


@pytest.mark.parametrize("path, value", [
    ("/ids", ["x", "y"]),
    ("/ids/1", "y"),
    ("/list/*/id", ["a", "b"]),
    ("/list/*/threadIds", ["t1", "t2", "t3"]),  # arrays flattened (s3.7)
    ("/a~1b/~0", 1),
    ("", RESULT),
])
def test_pointer(path, value):
    assert evaluatePointer(RESULT, path) == value


@pytest.mark.parametrize("path", ["ids", "/nothing", "/ids/2", "/ids/01", "/ids/-", "/ids/x", "/list/*/nope", "/ids/0/deeper", 3])
def test_pointer_failures(path):
    with pytest.raises(MethodError) as info:
        evaluatePointer(RESULT, path)
    assert info.value.type == "invalidResultReference"


RESPONSES = [["Toy/query", {"ids": ["t1", "t2"]}, "q"], ["Toy/get", {"list": []}, "g"], ["Toy/query", {"ids": ["t9"]}, "q"]]


def test_references_are_resolved_from_the_first_response_with_the_call_id():
    args = resolveReferences({"#ids": {"resultOf": "q", "name": "Toy/query", "path": "/ids"}, "x": 1}, RESPONSES)
    assert args == {"ids": ["t1", "t2"], "x": 1}


@pytest.mark.parametrize("arguments, type", [
    ({"ids": [], "#ids": {"resultOf": "q", "name": "Toy/query", "path": "/ids"}}, "invalidArguments"),
    ({"#ids": {"resultOf": "nope", "name": "Toy/query", "path": "/ids"}}, "invalidResultReference"),
    ({"#ids": {"resultOf": "q", "name": "Toy/get", "path": "/ids"}}, "invalidResultReference"),
    ({"#ids": {"resultOf": "q", "name": "Toy/query", "path": "/idz"}}, "invalidResultReference"),
    ({"#ids": "q"}, "invalidResultReference"),
    ({"#ids": {"resultOf": "q", "name": "Toy/query"}}, "invalidResultReference"),
])
def test_reference_failures(arguments, type):
    with pytest.raises(MethodError) as info:
        resolveReferences(arguments, RESPONSES)
    assert info.value.type == type

"""Hypothesis over the http listener in-process: any bytes get an HTTP answer or a close, never an exception."""

import json

from hypothesis import HealthCheck, example, given, settings, strategies as st
from twisted.logger import globalLogPublisher

from tests.http.inprocess import HTTP, basic

PATHS = [b"/.well-known/jmap", b"/jmap/api/", b"/jmap/upload/x/", b"/jmap/download/a/b/c", b"/jmap/eventsource/",
         b"/jmap/ws/", b"/", b"/%00", b"/jmap/api/../../etc"]


def failures():
    seen = []

    def observer(event):
        if event.get("log_failure") is not None or event.get("isError"):
            seen.append(event)

    return seen, observer


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from([b"GET", b"POST", b"PUT", b"HEAD", b"OPTIONS", b"X"]), path=st.sampled_from(PATHS),
       headers=st.lists(st.tuples(st.sampled_from([b"content-type", b"content-length", b"authorization", b"host",
                                                   b"x-forwarded-for", b"x-forwarded-proto", b"transfer-encoding",
                                                   b"upgrade", b"sec-websocket-protocol"]),
                                  st.binary(max_size=30).filter(lambda v: b"\r" not in v and b"\n" not in v)),
                        max_size=5),
       body=st.binary(max_size=200) | st.builds(lambda v: json.dumps(v).encode(),
                                                 st.dictionaries(st.sampled_from(["using", "methodCalls", "createdIds"]),
                                                                 st.lists(st.text(max_size=5), max_size=3))))
@example(method=b"GET", path=b"/jmap/ws/", headers=[(b"host", b"\x80")], body=b"")  # wsproto's idna decode of Host
def test_requests_never_raise(tmp_path_factory, method, path, headers, body):
    http = HTTP(tmp_path_factory.mktemp("fuzz"))
    seen, observer = failures()
    globalLogPublisher.addObserver(observer)
    try:
        connection = http.connect()
        head = method + b" " + path + b" HTTP/1.1\r\nAuthorization: " + basic() + b"\r\n"
        head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        connection.raw(head + b"\r\n" + body)
        connection.settle()
        http.clock.advance(120)
        connection.settle()
        out = connection.transport.value()
        assert out == b"" or out.startswith(b"HTTP/1.1 "), out[:100]
        assert b"Traceback" not in out
    finally:
        globalLogPublisher.removeObserver(observer)
    assert seen == [], seen[:1]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400))
def test_raw_bytes_never_raise(tmp_path_factory, data):
    http = HTTP(tmp_path_factory.mktemp("fuzz"))
    seen, observer = failures()
    globalLogPublisher.addObserver(observer)
    try:
        connection = http.connect()
        connection.raw(data)
        connection.settle()
        http.clock.advance(120)
        connection.settle()
    finally:
        globalLogPublisher.removeObserver(observer)
    assert seen == [], seen[:1]

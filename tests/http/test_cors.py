"""
In process: the CORS wrapper (mailnet/http/cors.py) and the Bearer
scheme's header parsing (mailnet/http/auth.py), with twisted.web's
DummyRequest.
"""

import pytest
from twisted.web.test.requesthelper import DummyRequest

from mailnet.http.auth import AuthRefused, BearerScheme
from mailnet.http.cors import CORS

APP = "https://app.example.org"


def request(method=b"GET", **headers):
    r = DummyRequest([b""])
    r.method = method
    for name, value in headers.items():
        r.requestHeaders.setRawHeaders(name.replace("_", "-").encode(), [value.encode()])
    return r


def handler(request, rest):
    return b"handled"


def header(r, name):
    values = r.responseHeaders.getRawHeaders(name)
    return values[0] if values else None


def test_preflight_for_a_listed_origin_only():
    wrapped = CORS([APP + "/"]).wrap(handler)
    r = request(b"OPTIONS", origin="HTTPS://App.Example.org", access_control_request_method="POST")
    assert wrapped(r, b"") != b"handled" and r.responseCode == 204 and r.finished
    assert header(r, b"access-control-allow-origin") == b"HTTPS://App.Example.org"
    assert b"Authorization" in header(r, b"access-control-allow-headers")
    assert header(r, b"access-control-allow-credentials") is None
    for other in ("https://app.example.org.evil", "http://app.example.org", "null", "*"):
        r = request(b"OPTIONS", origin=other, access_control_request_method="POST")
        assert wrapped(r, b"") == b"handled" and header(r, b"access-control-allow-origin") is None


def test_real_requests_get_allow_origin_and_vary():
    wrapped = CORS([APP]).wrap(handler)
    r = request(origin=APP)
    assert wrapped(r, b"") == b"handled"
    assert header(r, b"access-control-allow-origin") == APP.encode() and header(r, b"vary") == b"Origin"
    r = request()  # same-origin or not a browser: nothing added
    assert wrapped(r, b"") == b"handled" and header(r, b"access-control-allow-origin") is None


def test_off_leaves_the_routes_alone():
    routes = {b"/jmap/api/": handler}
    assert CORS([]).apply(routes, set(routes)) is routes
    assert CORS([""]).apply(routes, set(routes)) is routes


def test_bearer_credentials():
    scheme = BearerScheme(tokens=None)
    assert scheme.credentials(request()) is None
    assert scheme.credentials(request(authorization="Basic eDp5")) is None
    assert scheme.credentials(request(authorization="bearer mn_abc")) == "mn_abc"
    for bad in ("Bearer", "Bearer ", "Bearer a b", "Bearer " + "x" * 201):
        with pytest.raises(AuthRefused) as e:
            scheme.credentials(request(authorization=bad))
        assert e.value.status == 401

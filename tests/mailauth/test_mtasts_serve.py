"""
Serving our own MTA-STS policy (RFC 8461 s3.2, s3.3) on the real server's
http listener, and the records `mailnet dns` prints for it.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request

import pytest

from mailnet.mailauth import mtasts

pytestmark = pytest.mark.slow


def get(server, method="GET"):
    request = urllib.request.Request(server.url("/.well-known/mta-sts.txt"), method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_policy_served_and_its_record_printed(make_server):
    server = make_server(config={"mtasts": {"serve_mode": "testing", "serve_mx": ["mx.example.test", "*.example.test"],
                                            "serve_max_age": 1209600}})
    status, headers, body = get(server)
    assert status == 200 and headers["Content-Type"].split(";")[0] == "text/plain"
    policy = mtasts.parsePolicy(body.decode())
    assert (policy.mode, policy.mx, policy.max_age) == ("testing", ("mx.example.test", "*.example.test"), 1209600)
    status, headers, head = get(server, "HEAD")
    assert status == 200 and head == b"" and int(headers["Content-Length"]) == len(body)
    assert get(server, "POST")[0] == 405
    out = server.mailnet("dns", "example.test").stdout
    record = re.search(r'^_mta-sts\.example\.test\. 3600 IN TXT "v=STSv1; id=(\w+)"$', out, re.M)
    assert record and record.group(1) == mtasts.policyId(body.decode()), out
    assert mtasts.parseTXT([f"v=STSv1; id={record.group(1)}"]) == record.group(1)
    assert '_smtp._tls.example.test. 3600 IN TXT "v=TLSRPTv1; rua=mailto:postmaster@example.test"' in out


def test_no_policy_when_off(make_server):
    server = make_server()
    assert get(server)[0] == 404
    out = server.mailnet("dns", "example.test").stdout
    assert "_mta-sts" not in out and "serve_mode is off" in out

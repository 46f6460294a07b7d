"""JMAP Quota (RFC 9425) on the real server, by raw HTTP: the session's capability, Quota/get after SMTP deliveries."""

from __future__ import annotations

import base64
import http.client
import json
import smtplib

from tests.ops.quota_helpers import QUOTA_PW, QUOTA_USER, message, quotaServer

CORE = "urn:ietf:params:jmap:core"
QUOTA = "urn:ietf:params:jmap:quota"


def _http(server, method, path, body=None):
    connection = http.client.HTTPConnection("127.0.0.1", server.port("http"), timeout=30)
    auth = base64.b64encode(f"{QUOTA_USER}:{QUOTA_PW}".encode()).decode()
    headers = {"Authorization": "Basic " + auth, "Content-Type": "application/json"}
    connection.request(method, path, body, headers)
    response = connection.getresponse()
    data = json.loads(response.read())
    connection.close()
    assert response.status == 200, data
    return data


def test_quota_get_over_http(make_server):
    server = quotaServer(make_server, storage="1M", messages=100)
    session = _http(server, "GET", "/.well-known/jmap")
    assert QUOTA in session["capabilities"]
    accountId = session["primaryAccounts"][QUOTA]
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as s:
        s.sendmail("x@elsewhere.example", [QUOTA_USER], message(2000, "one"))
    body = json.dumps({"using": [CORE, QUOTA], "methodCalls": [
        ["Quota/get", {"accountId": accountId, "ids": None}, "0"],
        ["Quota/query", {"accountId": accountId, "filter": {"resourceType": "count"}}, "1"]]}).encode()
    responses = _http(server, "POST", "/jmap/api/", body)["methodResponses"]
    got = {q["id"]: q for q in responses[0][1]["list"]}
    assert got["octets"]["hardLimit"] == 1 << 20 and got["count"]["hardLimit"] == 100
    assert got["count"]["used"] == 1
    assert got["octets"]["used"] > 2000  # the message, its Return-Path and Received fields
    assert responses[1][1]["ids"] == ["count"]

"""
The webmail's cookie sessions shared by two real mailnet nodes on one
PostgreSQL (issue 18; mailnet/store/postgres/sessions.py): a login through
node A's /webmail/login gives a cookie that node B's JMAP API and
/webmail/session accept; a logout on B ends it on A at once.  Plain HTTP
(``[auth] allow_plaintext``), each node on its own address
(tests/pgnodes.py).
"""

from __future__ import annotations

import http.client
import json

import pytest

from tests import pgnodes
from tests.pgnodes import ALICE, pgConfig

pgServer = pgnodes.pgServer
pgDatabase = pgnodes.pgDatabase
pgNodes = pgnodes.pgNodes

pytestmark = [pytest.mark.slow, pytest.mark.nodes]

ECHO = {"using": ["urn:ietf:params:jmap:core"], "methodCalls": [["Core/echo", {"hello": "B"}, "0"]]}


def call(node, method, path, body=None, headers=None):
    headers = dict(headers or {})
    if body is not None:
        headers["Content-Type"] = "application/json"
    connection = http.client.HTTPConnection(node.host, node.port("http"), timeout=30)
    connection.request(method, path, json.dumps(body).encode() if body is not None else None, headers)
    response = connection.getresponse()
    raw = response.read()
    connection.close()
    return response, (json.loads(raw) if raw else None)


def test_a_login_on_node_a_is_a_session_on_node_b_and_a_logout_on_b_ends_it_on_a(pgNodes, pgServer, pgDatabase):
    a, b = pgNodes(2, pgConfig(pgServer, pgDatabase, auth={"allow_plaintext": True}))
    response, body = call(a, "POST", "/webmail/login", {"username": ALICE[0], "password": ALICE[1]})
    assert response.status == 200, body
    cookie = response.getheader("set-cookie").split(";")[0]
    csrf = body["csrf"]
    mine = {"Cookie": cookie, "X-CSRF-Token": csrf}

    response, body = call(b, "POST", "/jmap/api/", ECHO, mine)
    assert response.status == 200, body
    assert body["methodResponses"] == [["Core/echo", {"hello": "B"}, "0"]]
    response, body = call(b, "GET", "/.well-known/jmap", headers={"Cookie": cookie})
    assert response.status == 200 and body["username"] == ALICE[0], body
    response, body = call(b, "GET", "/webmail/session", headers={"Cookie": cookie})
    assert (response.status, body) == (200, {"username": ALICE[0], "csrf": csrf})
    response, body = call(b, "POST", "/jmap/api/", ECHO, {"Cookie": cookie})  # no CSRF token: refused on B too
    assert response.status == 403

    response, _ = call(b, "POST", "/webmail/logout", headers=mine)
    assert response.status == 204
    for node in (a, b):
        response, body = call(node, "POST", "/jmap/api/", ECHO, mine)
        assert response.status == 401, body
        response, _ = call(node, "GET", "/webmail/session", headers={"Cookie": cookie})
        assert response.status == 401
    with pgServer.connect(pgDatabase) as conn:
        assert conn.execute("SELECT count(*) FROM webmail_sessions").fetchone()[0] == 0

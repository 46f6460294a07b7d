"""
A user's JMAP documents shared by two real mailnet nodes on one PostgreSQL
(issue 18; mailnet/store/postgres/userdata.py): an Identity/set through
node A is in Identity/get on node B, and the webmail's settings PUT through
B are read through A (plain HTTP JSON, Basic auth).  Each node on its own
address (tests/pgnodes.py).
"""

from __future__ import annotations

import base64
import http.client
import json

import pytest

from tests import pgnodes
from tests.pgnodes import ALICE, pgConfig

pgServer = pgnodes.pgServer
pgDatabase = pgnodes.pgDatabase
pgNodes = pgnodes.pgNodes

pytestmark = [pytest.mark.slow, pytest.mark.nodes]

USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail", "urn:ietf:params:jmap:submission"]


def call(node, method, path, body=None):
    headers = {"Authorization": "Basic " + base64.b64encode(f"{ALICE[0]}:{ALICE[1]}".encode()).decode()}
    if body is not None:
        headers["Content-Type"] = "application/json"
    connection = http.client.HTTPConnection(node.host, node.port("http"), timeout=30)
    connection.request(method, path, json.dumps(body).encode() if body is not None else None, headers)
    response = connection.getresponse()
    data = json.loads(response.read())
    connection.close()
    return response.status, data


def api(node, name, **args):
    from mailnet.jmap.core import accountIdFor

    args.setdefault("accountId", accountIdFor(ALICE[0]))
    status, data = call(node, "POST", "/jmap/api/", {"using": USING, "methodCalls": [[name, args, "0"]]})
    assert status == 200, data
    [[got, answer, _]] = data["methodResponses"]
    assert got == name, answer
    return answer


def plainHTTP(pgServer, pgDatabase):
    return pgConfig(pgServer, pgDatabase, auth={"allow_plaintext": True})


def test_identity_set_on_node_a_is_in_identity_get_on_node_b(pgNodes, pgServer, pgDatabase):
    a, b = pgNodes(2, plainHTTP(pgServer, pgDatabase))
    [mine] = [i for i in api(b, "Identity/get", ids=None)["list"] if i["email"] == ALICE[0]]
    assert mine["name"] == ""
    answer = api(a, "Identity/set", update={mine["id"]: {"name": "Alice A", "textSignature": "-- \nAlice"}})
    assert answer["updated"] == {mine["id"]: None}, answer
    got = api(b, "Identity/get", ids=[mine["id"]])
    assert got["state"] == answer["newState"]
    [record] = got["list"]
    assert (record["name"], record["textSignature"]) == ("Alice A", "-- \nAlice")
    # ... and the other way, on the state B now has
    answer = api(b, "Identity/set", ifInState=got["state"], update={mine["id"]: {"name": "Alice B"}})
    assert answer["updated"] == {mine["id"]: None}, answer
    assert api(a, "Identity/changes", sinceState=got["state"])["updated"] == [mine["id"]]
    assert api(a, "Identity/get", ids=[mine["id"]])["list"][0]["name"] == "Alice B"


def test_webmail_settings_put_on_node_b_are_read_on_node_a(pgNodes, pgServer, pgDatabase):
    a, b = pgNodes(2, plainHTTP(pgServer, pgDatabase))
    assert call(a, "GET", "/webmail/settings") == (200, {"plainText": False})
    status, data = call(b, "PUT", "/webmail/settings", {"plainText": True})
    assert (status, data) == (200, {"plainText": True})
    assert call(a, "GET", "/webmail/settings") == (200, {"plainText": True})

"""The method dispatcher (RFC 8620 s3.3-3.7, s3.6.2) with Core/echo and the toy data type, pure."""

import pytest

from mailnet.jmap import core
from mailnet.jmap.dispatch import CORE, Registry, defaultRegistry, processRequest, runSync
from mailnet.jmap.errors import MethodError, ServerUnavailable
from mailnet.jmap.request import Request
from tests.jmap import toy


def registry():
    r = defaultRegistry()
    toy.register(r)
    return r


def run(calls, using=(CORE, toy.TOY), createdIds=None, context=None, reg=None):
    context = context or toy.context(readOnly=True)
    response = runSync(processRequest(reg or registry(), Request(list(using), calls, createdIds), context))
    return response


def test_echo_and_a_reference_to_it():
    response = run([["Core/echo", {"a": [1, 2]}, "c1"],
                    ["Core/echo", {"#b": {"resultOf": "c1", "name": "Core/echo", "path": "/a/1"}}, "c2"]])
    assert response["methodResponses"] == [["Core/echo", {"a": [1, 2]}, "c1"], ["Core/echo", {"b": 2}, "c2"]]
    assert "createdIds" not in response


def test_unknown_method_and_a_capability_not_in_using():
    response = run([["Nope/get", {}, "1"], ["Toy/get", {"accountId": "A1"}, "2"], ["Core/echo", {}, "3"]], using=[CORE])
    assert [r[0] for r in response["methodResponses"]] == ["error", "error", "Core/echo"]
    assert response["methodResponses"][1][1] == {"type": "unknownMethod"}


def test_account_errors():
    r = registry()
    r.capability("urn:example:other", {}, accountValue={})
    r.method("Other/get", lambda call: {"accountId": call.account().id}, "urn:example:other")
    calls = [["Toy/get", {"accountId": "nope"}, "1"],
             ["Toy/get", {"accountId": 7}, "2"],
             ["Toy/set", {"accountId": "R1", "create": {"k": {"name": "x"}}}, "3"],
             ["Toy/get", {"accountId": "R1"}, "4"],
             ["Other/get", {"accountId": "A1"}, "5"]]
    response = run(calls, using=[CORE, toy.TOY, "urn:example:other"], reg=r)
    types = [args.get("type") if name == "error" else name for name, args, _ in response["methodResponses"]]
    assert types == ["accountNotFound", "invalidArguments", "accountReadOnly", "Toy/get", "accountNotSupportedByMethod"]


def test_failures_inside_methods():
    r = registry()

    def boom(call):
        raise KeyError("secret path /var/lib/x")

    def busy(call):
        raise ServerUnavailable("store busy")

    def forbidden(call):
        raise MethodError("forbidden", "not yours")

    r.method("Test/boom", boom)
    r.method("Test/busy", busy)
    r.method("Test/forbidden", forbidden)
    r.method("Test/partial", lambda call: (_ for _ in ()).throw(MethodError("serverPartialFail")))
    response = run([["Test/boom", {}, "1"], ["Test/busy", {}, "2"], ["Test/forbidden", {}, "3"], ["Test/partial", {}, "4"]], reg=r)
    answers = [args for _, args, _ in response["methodResponses"]]
    assert answers[0]["type"] == "serverFail" and "secret" not in str(answers[0])
    assert answers[1] == {"type": "serverUnavailable"}
    assert answers[2] == {"type": "forbidden", "description": "not yours"}
    assert answers[3] == {"type": "serverPartialFail"}


def test_a_bad_reference_fails_only_its_call():
    response = run([["Core/echo", {"#x": {"resultOf": "zz", "name": "Core/echo", "path": "/"}}, "1"], ["Core/echo", {"y": 1}, "2"]])
    assert response["methodResponses"][0][1]["type"] == "invalidResultReference"
    assert response["methodResponses"][1] == ["Core/echo", {"y": 1}, "2"]


def test_created_ids_come_back_when_given_and_creation_references_work():
    response = run([["Toy/set", {"accountId": "A1", "create": {"k1": {"name": "one"}}}, "1"],
                    ["Toy/get", {"accountId": "A1", "ids": ["#k1", "#old"]}, "2"]], createdIds={"old": "t99"})
    assert response["createdIds"] == {"old": "t99", "k1": "t1"}
    got = response["methodResponses"][1][1]
    assert [r["id"] for r in got["list"]] == ["t1"] and got["notFound"] == ["t99"]


def test_registry_rules():
    r = Registry()
    with pytest.raises(ValueError):
        r.method("X/y", lambda call: {}, "urn:undeclared")
    r.capability(CORE, {})
    r.method("X/y", lambda call: {})
    with pytest.raises(ValueError):
        r.method("X/y", lambda call: {})


def test_session_object():
    r = registry()
    account = core.accountFor(r, "alice@example.test")
    session = core.sessionObject(r, "alice@example.test", [account], toy.context().limits, "https://mail.example.test")
    assert set(session) == {"capabilities", "accounts", "primaryAccounts", "username", "apiUrl", "downloadUrl",
                            "uploadUrl", "eventSourceUrl", "state"}
    limits = session["capabilities"][CORE]
    for name in ("maxSizeUpload", "maxConcurrentUpload", "maxSizeRequest", "maxConcurrentRequests",
                 "maxCallsInRequest", "maxObjectsInGet", "maxObjectsInSet", "collationAlgorithms"):
        assert name in limits
    mail = "urn:ietf:params:jmap:mail"
    # At least these (each data type module may add its capability).
    assert session["primaryAccounts"].items() >= {CORE: account.id, toy.TOY: account.id, mail: account.id}.items()
    capabilities = session["accounts"][account.id]["accountCapabilities"]
    assert capabilities[CORE] == {} and capabilities[toy.TOY] == {} and capabilities[mail]["maxMailboxesPerEmail"] == 1
    assert session["apiUrl"] == "https://mail.example.test/jmap/api/"
    for template, variables in (("downloadUrl", ("accountId", "blobId", "name", "type")), ("uploadUrl", ("accountId",)),
                                ("eventSourceUrl", ("types", "closeafter", "ping"))):
        for variable in variables:
            assert "{%s}" % variable in session[template]
    assert core.isId(account.id) and "alice" not in account.id
    other = core.sessionObject(r, "bob@example.test", [core.accountFor(r, "bob@example.test")], toy.context().limits)
    assert other["state"] != session["state"]

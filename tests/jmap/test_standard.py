"""The generic standard methods (RFC 8620 s5) through the toy data type."""

from hypothesis import given, settings, strategies as st

from mailnet.jmap.dispatch import CORE, Limits, defaultRegistry, processRequest, runSync
from mailnet.jmap.request import Request
from mailnet.jmap.standard import applyPatch, diffQuery
from tests.jmap import toy


class Session:
    def __init__(self, limits=None):
        self.registry = defaultRegistry()
        toy.register(self.registry)
        self.context = toy.context(limits)

    def call(self, name, **args):
        args.setdefault("accountId", "A1")
        response = runSync(processRequest(self.registry, Request([CORE, toy.TOY], [[name, args, "c"]], None), self.context))
        return response["methodResponses"][0]

    def ok(self, name, **args):
        answer = self.call(name, **args)
        assert answer[0] == name, answer
        return answer[1]

    def error(self, name, **args):
        answer = self.call(name, **args)
        assert answer[0] == "error", answer
        return answer[1]["type"]

    def make(self, *names):
        created = self.ok("Toy/set", create={f"k{i}": {"name": n} for i, n in enumerate(names)})["created"]
        return [created[f"k{i}"]["id"] for i in range(len(names))]


def test_get_all_some_and_properties():
    s = Session()
    ids = s.make("apple", "kiwi")
    got = s.ok("Toy/get", ids=None)
    assert got["state"] == "2" and [r["id"] for r in got["list"]] == ids and got["notFound"] == []
    got = s.ok("Toy/get", ids=[ids[1], "nope", ids[1]], properties=["name"])
    assert got["list"] == [{"id": ids[1], "name": "kiwi"}] and got["notFound"] == ["nope"]
    assert s.error("Toy/get", ids=None, properties=["colour"]) == "invalidArguments"
    assert s.error("Toy/get", ids="t1") == "invalidArguments"


def test_get_over_max_objects_is_request_too_large():
    s = Session(Limits(maxObjectsInGet=2))
    assert s.error("Toy/get", ids=["a", "b", "c"]) == "requestTooLarge"
    s.make("a", "b", "c")
    assert s.error("Toy/get", ids=None) == "requestTooLarge"
    assert len(s.ok("Toy/get", ids=["t1", "t2"])["list"]) == 2


def test_set_create_update_destroy_and_if_in_state():
    s = Session()
    answer = s.ok("Toy/set", create={"a": {"name": "pear"}, "b": {"name": 5}, "c": {"id": "x", "name": "y"}})
    assert answer["created"] == {"a": {"id": "t1", "size": 4}}
    assert answer["notCreated"]["b"]["type"] == "invalidProperties"
    assert answer["notCreated"]["c"]["type"] == "invalidProperties"
    assert (answer["oldState"], answer["newState"]) == ("0", "1")
    assert s.error("Toy/set", ifInState="0", destroy=["t1"]) == "stateMismatch"
    answer = s.ok("Toy/set", ifInState="1", update={"t1": {"name": "plum"}, "t9": {"name": "x"}}, destroy=["t8"])
    assert answer["updated"] == {"t1": None}
    assert answer["notUpdated"]["t9"]["type"] == "notFound" and answer["notDestroyed"]["t8"]["type"] == "notFound"
    assert s.ok("Toy/get", ids=["t1"])["list"][0]["name"] == "plum"
    assert s.ok("Toy/set", destroy=["t1"])["destroyed"] == ["t1"]
    assert s.error("Toy/set", create=[]) == "invalidArguments"


def test_set_over_max_objects_is_request_too_large():
    s = Session(Limits(maxObjectsInSet=2))
    assert s.error("Toy/set", create={"a": {"name": "x"}, "b": {"name": "y"}}, destroy=["t1"]) == "requestTooLarge"


def test_changes():
    s = Session()
    s.make("a", "b")  # states 1, 2
    s.ok("Toy/set", update={"t1": {"name": "aa"}})  # 3
    s.ok("Toy/set", destroy=["t2"])  # 4
    answer = s.ok("Toy/changes", sinceState="2")
    assert (answer["oldState"], answer["newState"], answer["hasMoreChanges"]) == ("2", "4", False)
    assert (answer["created"], answer["updated"], answer["destroyed"]) == ([], ["t1"], ["t2"])
    answer = s.ok("Toy/changes", sinceState="0", maxChanges=1)
    assert answer["hasMoreChanges"] and answer["newState"] == "1" and answer["created"] == ["t1"]
    assert s.error("Toy/changes", sinceState="99") == "cannotCalculateChanges"
    assert s.error("Toy/changes", sinceState="0", maxChanges=0) == "invalidArguments"


def test_query_position_anchor_limit_total():
    s = Session()
    ids = s.make(*[f"n{i:02}" for i in range(10)])
    q = s.ok("Toy/query", calculateTotal=True)
    assert q["ids"] == ids and q["total"] == 10 and q["position"] == 0 and q["limit"] == 50
    assert s.ok("Toy/query", position=3, limit=2)["ids"] == ids[3:5]
    q = s.ok("Toy/query", position=-3)
    assert q["ids"] == ids[7:] and q["position"] == 7
    assert s.ok("Toy/query", position=-30)["ids"] == ids
    assert s.ok("Toy/query", position=30)["ids"] == []
    q = s.ok("Toy/query", anchor=ids[4], anchorOffset=-1, limit=3, position=8)
    assert q["ids"] == ids[3:6] and q["position"] == 3
    assert s.ok("Toy/query", anchor=ids[1], anchorOffset=-5)["ids"][0] == ids[0]
    assert s.error("Toy/query", anchor="nope") == "anchorNotFound"
    assert s.error("Toy/query", limit=-1) == "invalidArguments"
    assert s.error("Toy/query", filter={"colour": "red"}) == "unsupportedFilter"
    assert s.error("Toy/query", sort=[{"property": "colour"}]) == "unsupportedSort"
    assert s.error("Toy/query", sort="name") == "invalidArguments"
    assert s.ok("Toy/query", filter={"nameContains": "n0"}, sort=[{"property": "id", "isAscending": False}])["ids"] == ids[::-1]


def test_query_changes():
    s = Session()
    s.make("b", "d")
    old = s.ok("Toy/query", sort=[{"property": "name"}])
    s.make("a", "c")
    s.ok("Toy/set", destroy=["t2"])
    answer = s.ok("Toy/queryChanges", sinceQueryState=old["queryState"], sort=[{"property": "name"}], calculateTotal=True)
    assert answer["removed"] == ["t2"]
    assert answer["added"] == [{"id": "t3", "index": 0}, {"id": "t4", "index": 2}]
    assert answer["total"] == 3 and answer["oldQueryState"] == old["queryState"]
    assert s.error("Toy/queryChanges", sinceQueryState="nope") == "cannotCalculateChanges"
    assert s.error("Toy/queryChanges", sinceQueryState=old["queryState"], maxChanges=1) == "tooManyChanges"


def applyDiff(old, removed, added):
    result = [i for i in old if i not in set(removed)]
    for item in added:
        result.insert(item["index"], item["id"])
    return result


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 30), unique=True), st.lists(st.integers(0, 30), unique=True))
def test_diff_query_turns_old_into_new(old, new):
    old, new = [f"i{n}" for n in old], [f"i{n}" for n in new]
    removed, added = diffQuery(old, new)
    assert applyDiff(old, removed, added) == new


def test_apply_patch():
    record = {"id": "x", "keywords": {"$seen": True}, "name": "n"}
    assert applyPatch(record, {"keywords/$flagged": True, "name": None}) == {"id": "x", "keywords": {"$seen": True, "$flagged": True}}
    assert record["keywords"] == {"$seen": True}
    try:
        applyPatch(record, {"nope/deeper": 1})
    except Exception as e:
        assert e.type == "invalidPatch"
    else:
        raise AssertionError("no error")

"""
A toy data type ("Toy": id, name, size) in memory, built on
mailnet.jmap.standard the way a real data type will be: the tests of the
generic standard methods drive it.  Every change bumps the account's state;
a log of changes and of past query results lets /changes and
/queryChanges answer.
"""

from mailnet.jmap import standard
from mailnet.jmap.dispatch import Account, Context
from mailnet.jmap.errors import MethodError, SetError

TOY = "urn:example:toy"


class ToyAccount:
    def __init__(self):
        self.records = {}
        self.state = 0
        self.log = []  # (state, id, "created"|"updated"|"destroyed")
        self.nextId = 1
        self.history = {}  # state -> records snapshot (for queryAt)

    def remember(self):
        """Keep the records as they are at this state (before a change)."""
        self.history[str(self.state)] = {k: dict(v) for k, v in self.records.items()}

    def bump(self, id, what):
        self.state += 1
        self.log.append((self.state, id, what))


class Toy:
    name = "Toy"
    properties = ("id", "name", "size")
    defaultProperties = ("id", "name", "size")

    def state(self, account):
        return str(account.state)

    def allIds(self, account):
        return list(account.records)

    def read(self, account, ids):
        return {i: account.records[i] for i in ids if i in account.records}

    def changes(self, account, since, maxChanges):
        if not since.isdigit() or int(since) > account.state:
            raise MethodError("cannotCalculateChanges")
        since = int(since)
        entries = [e for e in account.log if e[0] > since]
        hasMore = False
        if maxChanges is not None and len(entries) > maxChanges:
            entries, hasMore = entries[:maxChanges], True
        created, updated, destroyed = [], [], []
        for state, id, what in entries:
            if what == "created":
                created.append(id)
            elif what == "updated" and id not in created and id not in updated:
                updated.append(id)
            elif what == "destroyed":
                if id in created:
                    created.remove(id)
                else:
                    destroyed.append(id)
                if id in updated:
                    updated.remove(id)
        newState = str(entries[-1][0]) if entries else str(since)
        return standard.Changes(str(since), newState, hasMore, created, updated, destroyed)

    def create(self, account, record):
        bad = [k for k in record if k not in self.properties]
        if bad or not isinstance(record.get("name"), str):
            raise SetError("invalidProperties", properties=bad or ["name"])
        account.remember()
        id = f"t{account.nextId}"
        account.nextId += 1
        account.records[id] = {"id": id, "name": record["name"], "size": len(record["name"])}
        account.bump(id, "created")
        return id, {"size": account.records[id]["size"]}

    def update(self, account, id, patch):
        if id not in account.records:
            raise SetError("notFound")
        new = standard.applyPatch(account.records[id], patch)
        if set(new) - set(self.properties) or new["id"] != id:
            raise SetError("invalidProperties")
        account.remember()
        account.records[id] = new
        account.bump(id, "updated")
        return None

    def destroy(self, account, id):
        if id not in account.records:
            raise SetError("notFound")
        account.remember()
        del account.records[id]
        account.bump(id, "destroyed")

    def _run(self, records, filter, sort):
        items = list(records.values())
        if filter:
            if set(filter) - {"nameContains"}:
                raise MethodError("unsupportedFilter")
            items = [r for r in items if filter["nameContains"] in r["name"]]
        for comparator in reversed(sort or [{"property": "id"}]):
            if comparator["property"] not in ("id", "name", "size"):
                raise MethodError("unsupportedSort")
            key = (lambda r: int(r["id"][1:])) if comparator["property"] == "id" else (lambda r, p=comparator["property"]: r[p])
            items.sort(key=key, reverse=not comparator.get("isAscending", True))
        return [r["id"] for r in items]

    def query(self, account, filter, sort):
        return str(account.state), self._run(account.records, filter, sort)

    def queryAt(self, account, filter, sort, queryState):
        if queryState == str(account.state):
            return self._run(account.records, filter, sort)
        snapshot = account.history.get(queryState)
        return None if snapshot is None else self._run(snapshot, filter, sort)


TOY_TYPE = Toy()


def register(registry):
    registry.capability(TOY, {}, accountValue={})
    registry.method("Toy/get", lambda call: standard.standardGet(call, TOY_TYPE), TOY)
    registry.method("Toy/changes", lambda call: standard.standardChanges(call, TOY_TYPE), TOY)
    registry.method("Toy/set", lambda call: standard.standardSet(call, TOY_TYPE), TOY, mutates=True)
    registry.method("Toy/query", lambda call: standard.standardQuery(call, TOY_TYPE, maxLimit=50), TOY)
    registry.method("Toy/queryChanges", lambda call: standard.standardQueryChanges(call, TOY_TYPE), TOY)


def context(limits=None, readOnly=False, withToy=True):
    """A Context with one account "A1" (toy data) and a read-only "R1" when asked."""
    from mailnet.jmap.dispatch import Limits

    backend = ToyAccount()
    accounts = {"A1": Account("A1", "alice@example.test", capabilities={TOY: {}} if withToy else {}, backend=backend)}
    if readOnly:
        accounts["R1"] = Account("R1", "shared", False, True, {TOY: {}}, ToyAccount())
    return Context("alice@example.test", accounts, limits or Limits())

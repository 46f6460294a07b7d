"""The mail data types in-process: the dispatcher over a MemoryStore account (no sockets)."""

from mailnet.jmap.core import accountFor
from mailnet.jmap.dispatch import CORE, Context, Limits, defaultRegistry, processRequest, runSync
from mailnet.jmap.mailbox import MAIL
from mailnet.jmap.request import Request
from mailnet.store.memory import MemoryStore

USER = "alice@example.test"


def message(subject="Hello", sender="Bob <bob@example.test>", body="Hi there.\r\n", extra=""):
    return (f"From: {sender}\r\nTo: {USER}\r\nSubject: {subject}\r\nDate: Thu, 03 Dec 2026 10:00:00 +0000\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@example.test>\r\n{extra}\r\n{body}").encode()


class MailSession:
    def __init__(self, limits=None):
        self.store = MemoryStore()
        self.account = runSync(_await(self.store.getAccount(USER)))
        self.registry = defaultRegistry()
        self.jmapAccount = accountFor(self.registry, USER, self.account)
        self.limits = limits or Limits()

    def deliver(self, data, folder="INBOX", date=None, flags=()):
        d = self.store.newDelivery()
        d.addRecipient(USER, folder)
        d.write(data)
        result = []
        d.commit(date, flags).addCallback(result.append)
        return result[0]

    def request(self, *calls):
        context = Context(USER, {self.jmapAccount.id: self.jmapAccount}, self.limits)
        methodCalls = []
        for n, (name, args) in enumerate(calls):
            args = dict(args)
            args.setdefault("accountId", self.jmapAccount.id)
            methodCalls.append([name, args, str(n)])
        return runSync(processRequest(self.registry, Request([CORE, MAIL], methodCalls, None), context))

    def call(self, name, **args):
        return self.request((name, args))["methodResponses"][0]

    def ok(self, name, **args):
        answer = self.call(name, **args)
        assert answer[0] == name, answer
        return answer[1]

    def error(self, name, **args):
        answer = self.call(name, **args)
        assert answer[0] == "error", answer
        return answer[1]["type"]

    def mailboxes(self):
        return {m["name"]: m for m in self.ok("Mailbox/get", ids=None)["list"]}


async def _await(d):
    return await d

"""
The JMAP method dispatcher (RFC 8620 s3.3-3.7): a request in, a response
out, every method looked up in a :class:`Registry`.  No I/O: a method is an
``async`` function (or a plain one) given a :class:`Call`; whatever it
awaits (the store, the blob store) comes in through the call's
:class:`Context`.  ``mailnet/http/api.py`` is the thin Twisted side.

Adding a data type is one module with ``register(registry)`` that calls
:meth:`Registry.capability` (if it brings a new one) and
:meth:`Registry.method` per method, listed in :data:`MODULES`; the generic
/get, /changes, /set, /query and /queryChanges are in
:mod:`mailnet.jmap.standard` (docs/jmap.md, "Adding a data type").
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect

from mailnet.logs import Logger

from mailnet.jmap.errors import MethodError, ServerUnavailable
from mailnet.jmap.request import Request, resolveReferences

log = Logger()

CORE = "urn:ietf:params:jmap:core"

# The modules whose register(registry) builds the default registry.
MODULES = (
    "mailnet.jmap.core",
    "mailnet.jmap.blobs",
    "mailnet.jmap.websocket",
    "mailnet.jmap.mailbox",
    "mailnet.jmap.email",
    "mailnet.jmap.emailquery",
    "mailnet.jmap.searchsnippet",
    "mailnet.jmap.vacation",
    "mailnet.jmap.thread",
    "mailnet.jmap.identity",
    "mailnet.jmap.submission",
    "mailnet.jmap.emailimport",
    "mailnet.jmap.quota",
    "mailnet.jmap.pushsubscription",
)


@dataclasses.dataclass(frozen=True)
class Limits:
    """The ``urn:ietf:params:jmap:core`` limits (RFC 8620 s2), advertised and enforced."""

    maxSizeUpload: int = 50_000_000
    maxConcurrentUpload: int = 4
    maxSizeRequest: int = 10_000_000
    maxConcurrentRequests: int = 4
    maxCallsInRequest: int = 16
    maxObjectsInGet: int = 500
    maxObjectsInSet: int = 500

    def capability(self) -> dict:
        value = dataclasses.asdict(self)
        # RFC 8620 s2: the collations the server supports for sorting and filtering.
        value["collationAlgorithms"] = ["i;ascii-numeric", "i;ascii-casemap", "i;unicode-casemap"]
        return value


@dataclasses.dataclass
class Account:
    """
    One account a user may use (RFC 8620 s2 "accounts").

    @ivar id: the accountId (opaque).
    @ivar name: shown to the user.
    @ivar capabilities: capability URI -> the account's value for it; a
        method of a capability the account lacks is ``accountNotSupportedByMethod``.
    @ivar backend: what the data types read the account through (the
        store's ``IAccount``, the blob store's view...); opaque here.
    """

    id: str
    name: str
    isPersonal: bool = True
    isReadOnly: bool = False
    capabilities: dict = dataclasses.field(default_factory=dict)
    backend: object = None

    def sessionValue(self) -> dict:
        return {"name": self.name, "isPersonal": self.isPersonal, "isReadOnly": self.isReadOnly,
                "accountCapabilities": self.capabilities}


@dataclasses.dataclass
class Context:
    """
    What methods of one request share.

    @ivar username: the authenticated user.
    @ivar accounts: accountId -> :class:`Account` (the user's).
    @ivar limits: :class:`Limits`.
    @ivar services: name -> object given by the HTTP side (``"blobs"``: the
        blob store; ``"clock"``...), so methods need no imports of I/O code.
    @ivar createdIds: creation id -> id, for ``#creationId`` references (s5.3).
    """

    username: str
    accounts: dict
    limits: Limits = Limits()
    services: dict = dataclasses.field(default_factory=dict)
    createdIds: dict = dataclasses.field(default_factory=dict)
    using: frozenset = frozenset()


@dataclasses.dataclass
class Call:
    """One method call being answered."""

    name: str
    arguments: dict
    callId: str
    context: Context
    capability: str = CORE
    mutates: bool = False

    def account(self, key="accountId") -> Account:
        """
        The account named by ``arguments[key]``, checked (RFC 8620 s3.6.2):
        ``accountNotFound``, ``accountNotSupportedByMethod``, and for a
        method that changes data ``accountReadOnly``.
        """
        accountId = self.arguments.get(key)
        if not isinstance(accountId, str):
            raise MethodError("invalidArguments", f"{key} must be a string")
        account = self.context.accounts.get(accountId)
        if account is None:
            raise MethodError("accountNotFound")
        if self.capability != CORE and self.capability not in account.capabilities:
            raise MethodError("accountNotSupportedByMethod")
        if self.mutates and account.isReadOnly:
            raise MethodError("accountReadOnly")
        return account

    def resolveId(self, value):
        """An id argument, with ``#creationId`` replaced from createdIds (RFC 8620 s5.3)."""
        if isinstance(value, str) and value.startswith("#"):
            found = self.context.createdIds.get(value[1:])
            if found is None:
                raise MethodError("invalidArguments", f"unknown creation id {value[:100]!r}")
            return found
        return value


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    capability: str
    handler: object
    mutates: bool = False


class Registry:
    """Capabilities and methods, filled by each data type module's ``register``."""

    onCall = staticmethod(lambda name, known: None)  # called for every method call (metrics)

    def __init__(self):
        self.methods: dict[str, Method] = {}
        self.capabilities: dict[str, object] = {}
        self.accountCapabilities: dict[str, object] = {}

    def capability(self, uri, sessionValue=None, accountValue=None):
        """
        Declare a capability; ``sessionValue`` (a dict, or a callable of the
        :class:`Limits` returning one) goes in the session's
        ``capabilities``, ``accountValue`` in each account's
        ``accountCapabilities`` (None: not an account capability).
        """
        self.capabilities[uri] = sessionValue if sessionValue is not None else {}
        if accountValue is not None:
            self.accountCapabilities[uri] = accountValue

    def method(self, name, handler, capability=CORE, mutates=False):
        """Register ``Type/method``; ``mutates``: refused on read-only accounts."""
        if capability not in self.capabilities:
            raise ValueError(f"{name}: capability {capability} is not declared")
        if name in self.methods:
            raise ValueError(f"{name} is registered twice")
        self.methods[name] = Method(name, capability, handler, mutates)

    def sessionCapabilities(self, limits: Limits) -> dict:
        out = {}
        for uri, value in self.capabilities.items():
            out[uri] = value(limits) if callable(value) else value
        return out


def defaultRegistry(modules=MODULES) -> Registry:
    registry = Registry()
    for name in modules:
        importlib.import_module(name).register(registry)
    return registry


async def processRequest(registry: Registry, request: Request, context: Context) -> dict:
    """
    Answer a checked :class:`~mailnet.jmap.request.Request` (RFC 8620 s3.3,
    s3.4): each call in order, its ``#`` references resolved against the
    responses before it, its errors turned into ``error`` responses.
    """
    if request.createdIds is not None:
        context.createdIds.update(request.createdIds)
    context.using = frozenset(request.using)
    responses = []
    for name, arguments, callId in request.methodCalls:
        for answer in await _one(registry, name, arguments, callId, context, responses):
            responses.append(answer)
    response = {"methodResponses": responses, "sessionState": context.services.get("sessionState", "0")}
    if request.createdIds is not None:
        response["createdIds"] = dict(context.createdIds)
    return response


async def _one(registry, name, arguments, callId, context, responses):
    method = registry.methods.get(name)
    registry.onCall(name, method is not None)  # the server's metrics (mailnet/metrics.py)
    # RFC 8620 s3.6.2: unknownMethod also when its capability is not in "using".
    if method is None or method.capability not in context.using:
        return [["error", {"type": "unknownMethod"}, callId]]
    try:
        arguments = resolveReferences(arguments, responses)
        call = Call(name, arguments, callId, context, method.capability, method.mutates)
        result = method.handler(call)
        if inspect.isawaitable(result):
            result = await result
    except MethodError as e:
        return [["error", e.arguments(), callId]]
    except ServerUnavailable as e:
        log.warn("jmap: {method} for {user}: unavailable: {why}", method=name, user=context.username, why=str(e))
        return [["error", {"type": "serverUnavailable"}, callId]]
    except Exception:
        # RFC 8620 s3.6.2 serverFail: logged here; the client sees no traceback.
        log.failure("jmap: {method} for {user} failed", method=name, user=context.username)
        return [["error", {"type": "serverFail", "description": "An unexpected error occurred."}, callId]]
    if isinstance(result, dict):
        return [[name, result, callId]]
    return [[n, a, callId] for n, a in result]  # a method may answer with several responses (s3.4)


def runSync(coroutine):
    """Run a coroutine that never really waits (tests, pure data types)."""
    try:
        coroutine.send(None)
    except StopIteration as e:
        return e.value
    coroutine.close()
    raise RuntimeError("the coroutine waited on something")

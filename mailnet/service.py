"""
Wiring: build the whole server as one Twisted ``MultiService`` from a config.

This is the only module that names concrete backends.  Protocol packages
get a :class:`MailContext` and return a protocol factory; they never import
each other or a store implementation.

Protocol modules plug in through :data:`LISTENERS`: each listener name maps
to a module with ``makeFactory(context, listener) -> IProtocolFactory`` and an
optional ``REFUSAL`` (bytes sent to a client refused for too many
connections).  Implicit-TLS listeners are wrapped in TLS here; the protocol
can tell from ``listener`` (or ``ISSLTransport``) that TLS is on from the
start.  A listener whose module is not present is skipped with a log line
(each listener appears as its protocol lands).

Embedding in another Twisted application::

    from mailnet import config, service
    svc = service.makeService(config.load("mailnet.toml"))
    svc.setServiceParent(application)
"""

from __future__ import annotations

import importlib
import json
import os
import secrets

from twisted.application import service
from twisted.internet import defer, endpoints
from mailnet.logs import Logger

from mailnet import auth, login, net, tls
from mailnet.auth import writeAtomically
from mailnet.config import Config, ConfigError
from mailnet.queue.spool import Spool
from mailnet.store.interfaces import IMailStore

log = Logger()

# listener name -> (module, implicit TLS)
LISTENERS = {
    "smtp": ("mailnet.smtp.server", False),
    "submission": ("mailnet.smtp.server", False),
    "submissions": ("mailnet.smtp.server", True),
    "pop3": ("mailnet.pop3.server", False),
    "pop3s": ("mailnet.pop3.server", True),
    "imap": ("mailnet.imap.server", False),
    "imaps": ("mailnet.imap.server", True),
    "http": ("mailnet.http.server", False),
}

# Other services started when their module is present: module with
# makeService(context) -> IService.
EXTRA_SERVICES = ["mailnet.queue.service"]

BUILTIN_STORES = {
    "maildir": "mailnet.store.maildir:makeStore",
    "memory": "mailnet.store.memory:makeStore",
}


def optionalModule(name):
    """Import a module of ours that may not exist yet; None if it does not."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and (e.name == name or name.startswith(e.name + ".")):
            return None
        raise


def loadObject(spec, what):
    """``"package.module:attribute"`` -> the attribute."""
    module, sep, attr = spec.partition(":")
    if not sep:
        raise ConfigError(f"{what}: expected \"package.module:factory\", got {spec!r}")
    try:
        obj = importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"{what}: cannot import {module}: {e}")
    try:
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise ConfigError(f"{what}: {module} has no {attr}")
    return obj


def makeStore(config: Config):
    """The IMailStore named by ``[store] backend``."""
    spec = BUILTIN_STORES.get(config.store.backend, config.store.backend)
    factory = loadObject(spec, f"{config.source or '<defaults>'}: [store] backend")
    store = factory(config)
    if not IMailStore.providedBy(store):
        raise ConfigError(f"{config.source or '<defaults>'}: [store] backend: {spec} did not return an IMailStore")
    return store


class MailContext:
    """
    Everything a protocol needs, made once per process.

    @ivar config: the validated :class:`~mailnet.config.Config`.
    @ivar reactor: the reactor (also the clock for timeouts).
    @ivar hostname: ``config.server.hostname``.
    @ivar store: the :class:`~mailnet.store.interfaces.IMailStore`.
    @ivar users: :class:`~mailnet.auth.UserDB` (also a cred checker).
    @ivar directory: :class:`~mailnet.auth.Directory`: domains, aliases, users.
    @ivar portal: twisted.cred portal; avatars ``IAccount`` or
        ``IAuthenticatedUser``.
    @ivar throttle: :class:`~mailnet.login.AuthThrottle` shared by all listeners.
    @ivar login: :class:`~mailnet.login.LoginSequence`: every protocol logs in through it.
    @ivar tlsOptions: the server ``CertificateOptions`` (for STARTTLS/STLS
        and implicit TLS), or None if TLS is unavailable.
    @ivar spool: the outbound :class:`~mailnet.queue.spool.Spool`.
    """

    def __init__(self, config: Config, reactor=None, store=None, checkers=None):
        if reactor is None:
            from twisted.internet import reactor
        os.makedirs(config.server.data_dir, mode=0o700, exist_ok=True)
        self.config = config
        self.reactor = reactor
        self.hostname = config.server.hostname
        self.store = store if store is not None else makeStore(config)
        self.users = auth.UserDB(config.usersFile, config.auth.hash, config.auth.cache_seconds, clock=reactor)
        self.aliases = auth.AliasDB(config.aliasesFile)
        self.directory = auth.Directory(config.domains.local, self.users, self.aliases, config.domains.subaddress_separator)
        self.portal = auth.makePortal(self.store, checkers or [self.users])
        self.throttle = login.AuthThrottle(reactor, baseDelay=config.auth.failure_delay,
                                           maxEntries=config.auth.throttle_entries,
                                           parallelPerAddress=config.auth.login_parallel_per_ip,
                                           maxWaiting=config.auth.login_queue)
        self.login = login.LoginSequence(self.portal, self.throttle, reactor)
        tls.ensureCertificate(config)
        self.tlsOptions = tls.serverOptions(config.certFile, config.keyFile)
        self.spool = Spool(config.spoolDir)


class ListenError(Exception):
    """A listener could not start (port in use, permission...)."""


class MailnetService(service.MultiService):
    """
    The whole server.  Listeners are bound in ``privilegedStartService``
    (so that twistd can bind ports below 1024 before dropping privileges).
    Once all listen, the bound addresses are written to
    ``<data_dir>/run/listeners.json`` (useful with port 0) and logged.
    """

    def __init__(self, context: MailContext, exitOnError=False):
        super().__init__()
        self.context = context
        self.exitOnError = exitOnError
        self.ports = {}
        self.addresses = {}
        self.demoLogin = None

    def _factories(self):
        config = self.context.config
        limits = config.limits
        for name, (moduleName, implicit) in LISTENERS.items():
            description = getattr(config.listen, name)
            if not description:
                continue
            module = optionalModule(moduleName)
            if module is None:
                log.info("listener {name}: {module} is not part of this build yet; skipped", name=name, module=moduleName)
                continue
            factory = module.makeFactory(self.context, name)
            refusal = getattr(module, "REFUSAL", b"")
            if implicit:
                factory = net.implicitTLS(factory, self.context.tlsOptions)
                refusal = b""
            factory = net.LimitedFactory(factory, limits.connections, limits.connections_per_ip, refusal, name=name)
            yield name, description, factory

    def privilegedStartService(self):
        reactor = self.context.reactor
        for name, description, factory in self._factories():
            results = []
            endpoints.serverFromString(reactor, description).listen(factory).addBoth(results.append)
            if not results:
                raise ListenError(f"listener {name} ({description}) did not start synchronously")
            if isinstance(results[0], Exception) or hasattr(results[0], "raiseException"):
                failure = results[0]
                problem = getattr(failure, "value", failure)
                message = f"[listen] {name}: cannot listen on {description!r}: {problem}"
                for port in self.ports.values():
                    port.stopListening()
                if self.exitOnError:
                    import sys

                    # twistd has sent sys.stderr to its log by now; the
                    # operator should see exactly one plain line.
                    print(f"mailnet: {message}", file=sys.__stderr__, flush=True)
                    raise SystemExit(1)
                raise ListenError(message)
            self.ports[name] = results[0]
            host = results[0].getHost()
            self.addresses[name] = {"host": getattr(host, "host", None), "port": getattr(host, "port", None), "endpoint": description}
        super().privilegedStartService()

    def startService(self):
        super().startService()
        self.demoLogin = ensureDemoUser(self.context)
        # Announce once the reactor runs: twistd starts services before the
        # reactor installs its signal handlers, and whoever waits for "ready"
        # may send SIGTERM at once (it would kill us without a clean stop).
        self.context.reactor.callWhenRunning(self._announce)

    def _announce(self):
        config = self.context.config
        os.makedirs(config.runDir, exist_ok=True)
        info = {"listeners": self.addresses, "pid": os.getpid(), "data_dir": config.server.data_dir}
        if self.demoLogin:
            info["demo_user"] = self.demoLogin[0]
        writeAtomically(os.path.join(config.runDir, "listeners.json"), json.dumps(info, indent=1).encode())
        for name, address in self.addresses.items():
            log.info("listening: {name:12} {host}:{port}", name=name, host=address["host"], port=address["port"])
        if self.demoLogin:
            log.info("demo login: user {user} password {password}", user=self.demoLogin[0], password=self.demoLogin[1])
        log.info("mailnet ready: {hostname}, domains {domains}, data in {data}",
                 hostname=config.server.hostname, domains=", ".join(config.domains.local), data=config.server.data_dir)

    @defer.inlineCallbacks
    def stopService(self):
        yield defer.maybeDeferred(super().stopService)
        yield defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in self.ports.values()])
        self.ports.clear()
        yield defer.maybeDeferred(self.context.store.close)


def ensureDemoUser(context: MailContext):
    """
    With ``[server] demo_user``, make ``demo@<first local domain>`` once, with
    a random password kept in data_dir/demo-password (mode 0600) so that it
    can be printed at every start.  Returns (login, password) or None.
    """
    config = context.config
    if not config.server.demo_user:
        return None
    login = "demo@" + config.domains.local[0]
    path = os.path.join(config.server.data_dir, "demo-password")
    if not context.users.exists(login):
        password = secrets.token_urlsafe(12)
        context.users.add(login, password)
        writeAtomically(path, password.encode() + b"\n", mode=0o600)
    try:
        with open(path) as f:
            return login, f.read().strip()
    except FileNotFoundError:
        return None  # the admin removed it or set their own password


def makeService(config: Config, reactor=None, store=None, checkers=None, exitOnError=False):
    """
    Build the whole server from a config.

    @param store: an IMailStore to use instead of the configured backend.
    @param checkers: cred checkers to use instead of the users file.
    @return: a :class:`MailnetService` (a ``MultiService``); its ``context``
        attribute is the :class:`MailContext` it gives the protocols.
    """
    context = MailContext(config, reactor=reactor, store=store, checkers=checkers)
    top = MailnetService(context, exitOnError=exitOnError)
    for moduleName in EXTRA_SERVICES:
        module = optionalModule(moduleName)
        if module is not None:
            module.makeService(context).setServiceParent(top)
    return top

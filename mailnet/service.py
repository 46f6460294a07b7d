"""
Wiring: build the whole server as one Twisted ``MultiService`` from a config.

This is the only module that names concrete backends.  Protocol packages
get a :class:`MailContext` and return a protocol factory; they never import
each other or a store implementation.

Each module of :data:`PROTOCOLS` has ``makeService(context)`` returning a
:class:`~mailnet.serving.ProtocolService`: a child service that owns the
protocol's shared state and gives ``factory(listener)`` for each listener
it serves.  Binding happens here: implicit-TLS listeners are wrapped in TLS
(the protocol can tell from ``listener`` or ``ISSLTransport`` that TLS is on
from the start), every listener gets the connection limits and the
protocol's ``REFUSAL``.  The ``http`` listener serves JMAP (mailnet/http/).

One server at a time per data directory: the running one holds an exclusive
``flock`` on ``run/mailnet.lock`` (like the queue's spool lock), taken
before any port is bound.

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
import signal
import sys

from twisted.application import service
from twisted.internet import defer, endpoints, task
from mailnet.logs import Logger

from mailnet import auth, localdelivery, login, metrics, net, tls, vacation
from mailnet.config import Config, ConfigError
from mailnet.durable import writeAtomically
from mailnet.http import metrics as metricsServer
from mailnet.http import server as httpServer
from mailnet.imap import server as imapServer
from mailnet.pop3 import server as pop3Server
from mailnet.queue import service as queueService
from mailnet.queue.spool import Spool, SpoolLock
from mailnet.smtp import server as smtpServer
from mailnet.store.interfaces import IMailStore
from mailnet.store.quota import QuotaPolicy
from mailnet.tokens import TokenDB

log = Logger()

# Modules with makeService(context) -> ProtocolService; listeners are
# bound in this order.
PROTOCOLS = (smtpServer, pop3Server, imapServer, httpServer, metricsServer)

# Configured listeners that have no protocol yet -> why (logged once).
NOT_BUILT = {}

# Other services: modules with makeService(context) -> IService.
EXTRA_SERVICES = [queueService]

BUILTIN_STORES = {
    "maildir": "mailnet.store.maildir:makeStore",
    "memory": "mailnet.store.memory:makeStore",
    "postgres": "mailnet.store.postgres:makeStore",
}


def loadObject(spec, what, searchDir=None):
    """
    ``"package.module:attribute"`` -> the attribute.

    @param searchDir: a directory appended to ``sys.path`` (searched after
        everything installed) before importing: the config file's directory,
        so that a backend module kept next to the config is found.
    """
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise ConfigError(f"{what}: expected \"package.module:factory\", got {spec!r}")
    if searchDir and searchDir not in sys.path:
        sys.path.append(searchDir)
    try:
        obj = importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"{what}: cannot import {module}: {e}")
    except Exception as e:  # a syntax error or a crash in the module's own code
        raise ConfigError(f"{what}: importing {module} failed: {type(e).__name__}: {e}")
    try:
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise ConfigError(f"{what}: {module} has no {attr}")
    if not callable(obj):
        raise ConfigError(f"{what}: {spec} is not callable")
    return obj


def _storeFactory(config: Config):
    """(spec, factory, where) for ``[store] backend``, options checked for built-ins."""
    where = f"{config.source or '<defaults>'}: [store] backend"
    backend = config.store.backend
    if backend in BUILTIN_STORES:
        if config.store.options:
            key = sorted(config.store.options)[0]
            raise ConfigError(f"{config.source or '<defaults>'}: [store.options] {key}: the {backend} backend takes no options")
        spec = BUILTIN_STORES[backend]
        return spec, loadObject(spec, where), where
    # A backend module kept beside the config file is importable (docs/extending.md).
    searchDir = config.base if config.source and os.path.isfile(config.source) else None
    return backend, loadObject(backend, where, searchDir), where


def makeStore(config: Config):
    """
    The IMailStore named by ``[store] backend``: ``factory(config)``, where a
    third-party factory finds its own settings in ``config.store.options``
    (the ``[store.options]`` table, a dict) and rejects bad ones with
    ``ValueError`` (or ``ConfigError``), reported as one line.
    """
    spec, factory, where = _storeFactory(config)
    try:
        store = factory(config)
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError(f"{where} {spec}: {e}")
    if not IMailStore.providedBy(store):
        raise ConfigError(f"{where}: {spec} did not return an IMailStore (got {type(store).__name__})")
    return store


def makeSpool(config: Config, reactor=None):
    """
    The outbound queue's storage named by ``[queue] backend``: the spool
    directory (one node) or the queue table shared by every node on the
    PostgreSQL database (mailnet/queue/pgspool.py, docs/scaling.md).
    """
    if config.queueBackend == "postgres":
        from mailnet.queue.pgspool import openQueue

        return openQueue(config, reactor)
    return Spool(config.spoolDir)


def checkStore(config: Config):
    """
    What ``mailnet config check`` does for ``[store]``: a third-party
    backend is imported, made once with its options and closed, so that
    every problem ``run`` would meet is found now.  Built-in backends are
    only checked for options (making them would create directories).

    @raise ConfigError: one line.
    """
    if config.store.backend in BUILTIN_STORES:
        _storeFactory(config)
        return
    try:
        store = makeStore(config)
    except ConfigError:
        raise
    except Exception as e:
        where = f"{config.source or '<defaults>'}: [store] backend"
        raise ConfigError(f"{where} {config.store.backend}: making the store failed: {type(e).__name__}: {e}")
    # Only checking: a store that fails to close has still been made.
    defer.maybeDeferred(store.close).addErrback(lambda failure: None)


class MailContext:
    """
    Everything a protocol needs, made once per process.

    @ivar config: the validated :class:`~mailnet.config.Config`.
    @ivar reactor: the reactor (also the clock for timeouts).
    @ivar hostname: ``config.server.hostname``.
    @ivar store: the :class:`~mailnet.store.interfaces.IMailStore`.
    @ivar users: the :class:`~mailnet.auth.IUserDirectory`: logins and who
        has a mailbox (the users file, :class:`~mailnet.auth.UserDB`, unless
        the embedding application gave its own).
    @ivar directory: :class:`~mailnet.auth.Directory`: domains, aliases, users.
    @ivar portal: twisted.cred portal over ``users``; avatars ``IAccount`` or
        ``IAuthenticatedUser``.
    @ivar throttle: :class:`~mailnet.login.AuthThrottle` shared by all listeners.
    @ivar login: :class:`~mailnet.login.LoginSequence`: every protocol logs in through it.
    @ivar tlsOptions: the server ``CertificateOptions`` (for STARTTLS/STLS
        and implicit TLS), or None if TLS is unavailable.
    @ivar spool: the outbound :class:`~mailnet.queue.spool.Spool`.
    @ivar metrics: the :class:`~mailnet.metrics.Metrics` of this server.
    @ivar sharedUserData: the IUserData of the JMAP documents shared by the
        nodes (PostgreSQL), or None (the node's files keep them).
    @ivar uploads: JMAP uploads shared by the nodes
        (:class:`~mailnet.store.postgres.uploads.PostgresUploadStore`), or None.
    @ivar webSessions: the webmail's cookie sessions shared by the nodes
        (:class:`~mailnet.store.postgres.sessions.PostgresSessionStore`), or None.
    """

    def __init__(self, config: Config, reactor=None, store=None, checkers=None, users=None):
        if reactor is None:
            from twisted.internet import reactor
        os.makedirs(config.server.data_dir, mode=0o700, exist_ok=True)
        self.config = config
        self.reactor = reactor
        self.hostname = config.server.hostname
        self.metrics = metrics.Metrics()
        self.store = store if store is not None else makeStore(config)
        tables = None
        if config.auth.directory == "postgres" and users is None and not checkers:
            tables = makeDirectoryTables(config, reactor, self.store, background=True)
        self.users = tables[0] if tables else makeUsers(config, reactor, users, checkers)
        # [quota] and the users file's per-user rules (mailnet/store/quota.py).
        if hasattr(self.store, "quotaPolicy"):
            self.store.quotaPolicy = QuotaPolicy.fromConfig(config, self.users)
        self.aliases = tables[1] if tables else auth.AliasDB(config.aliasesFile)
        self.directory = auth.Directory(config.domains.local, self.users, self.aliases, config.domains.subaddress_separator)
        self.portal = auth.makePortal(self.store, self.users)
        # JMAP uploads every node finds (PostgreSQL), or None: the http service keeps them in data_dir.
        self.uploads = sharedUploads(config, self.store)
        # The webmail's cookie sessions every node accepts (PostgreSQL), or None: the http service's memory.
        self.webSessions = sharedSessions(config, self.store, reactor)
        self.throttle = login.AuthThrottle(reactor, baseDelay=config.auth.failure_delay,
                                           maxEntries=config.auth.throttle_entries,
                                           parallelPerAddress=config.auth.login_parallel_per_ip,
                                           maxWaiting=config.auth.login_queue,
                                           shared=sharedFailures(config, self.store))
        self.login = login.LoginSequence(self.portal, self.throttle, reactor, self.metrics)
        # JMAP documents every node must see alike (identities, webmail settings, push subscriptions), or None: files.
        self.sharedUserData = sharedUserData(config, self.store)
        tls.ensureCertificate(config)
        for warning in tls.checkCertificates(config):
            log.warn("{warning}", warning=warning)
        self.tlsOptions = tls.serverOptions(config)
        if self.tlsOptions is not None:
            self.tlsOptions.onHandshake = self.metrics.tlsHandshake
        self.spool = makeSpool(config, reactor)
        # RFC 8621 s8 / RFC 3834: vacation settings, and the auto-reply after each local delivery.
        self.vacation = vacation.FileVacationStore(os.path.join(config.server.data_dir, "vacation"))
        from mailnet.mailauth.ownmail import OwnMailSigner

        localdelivery.setDeliveryHook(self.store, vacation.Responder(self.vacation, self.spool,
                                                                     config.jmap.vacation_period, self.hostname,
                                                                     directory=self.directory,
                                                                     signer=OwnMailSigner(config, reactor)))
        # [srs]: the MAIL FROM of forwarded mail (the queue) and bounces to it (SMTP's RCPT)
        from mailnet.mailauth.forwarding import SRSRewriter
        self.srs = SRSRewriter(config, reactor) if config.srs.enabled != "off" else None
        # DKIM signing and the inbound checks (issue 16), called by SMTP's delivery
        from mailnet.mailauth.filter import makeFilter
        self.messageFilter = makeFilter(config, reactor)


def sharedFailures(config: Config, store):
    """The login throttle's counts shared by every node: PostgreSQL's table with that store, else None."""
    if config.store.backend == "postgres" and getattr(store, "db", None) is not None:
        from mailnet.store.postgres.throttle import PostgresFailures

        return PostgresFailures(store.db)
    return None


def sharedUserData(config: Config, store):
    """
    The IUserData of the JMAP documents every node must see alike
    (identities, the webmail's settings, PushSubscriptions): PostgreSQL's table with that
    store, else None (the node's files keep them).
    """
    if config.store.backend == "postgres" and getattr(store, "db", None) is not None:
        from mailnet.store.postgres.userdata import PostgresUserData

        return PostgresUserData(store.db, store)
    return None


def sharedUploads(config: Config, store):
    """JMAP uploads shared by every node: PostgreSQL's tables with that store, else None."""
    if config.store.backend == "postgres" and getattr(store, "db", None) is not None:
        from mailnet.store.postgres.uploads import PostgresUploadStore

        return PostgresUploadStore(store.db, config.http.blob_expiry)
    return None


def sharedSessions(config: Config, store, clock):
    """The webmail's cookie sessions every node accepts: PostgreSQL's table with that store, else None."""
    if config.webmail.enabled and config.store.backend == "postgres" and getattr(store, "db", None) is not None:
        from mailnet.store.postgres.sessions import PostgresSessionStore

        return PostgresSessionStore(store.db, clock, config.webmail.session_idle, config.webmail.session_max)
    return None


def makeDirectoryTables(config: Config, reactor=None, store=None, background=False):
    """
    ``[auth] directory = "postgres"``: (users, aliases) over the database's
    tables (mailnet/store/postgres/directory.py), on the PostgreSQL store's
    connections when that is the store, else on connections of their own.
    """
    from mailnet.store.postgres.db import Database, Settings
    from mailnet.store.postgres.directory import makeDirectory

    db = getattr(store, "db", None) if config.store.backend == "postgres" else None
    if db is None:
        db = Database(Settings.fromConfig(config), reactor=reactor)
    return makeDirectory(db, config, clock=reactor, background=background)  # app passwords: the tokens table


def makeUsers(config: Config, reactor, users=None, checkers=None):
    """
    The :class:`~mailnet.auth.IUserDirectory` of a :class:`MailContext`:
    ``users`` if given, else the users file; ``checkers`` (the older form)
    check logins against the users file's names.
    """
    if users is not None:
        if checkers:
            raise TypeError("makeService: give users= or checkers=, not both")
        if not auth.IUserDirectory.providedBy(users):
            raise TypeError(f"makeService: users= must provide mailnet.auth.IUserDirectory, "
                            f"got {type(users).__name__} (or wrap a cred checker in mailnet.auth.CheckerUsers)")
        return users
    fileUsers = auth.UserDB(config.usersFile, config.auth.hash, config.auth.cache_seconds, clock=reactor,
                            tokens=TokenDB(config.tokensFile))
    if checkers:
        return auth.CheckerUsers(checkers, addresses=fileUsers)
    return fileUsers


class ListenError(Exception):
    """A listener could not start (port in use, permission...)."""


class AlreadyRunning(ListenError):
    """Another server holds the data directory's lock."""


class MailnetService(service.MultiService):
    """
    The whole server.  Listeners are bound in ``privilegedStartService``
    (so that twistd can bind ports below 1024 before dropping privileges).
    Once all listen, the bound addresses are written to
    ``<data_dir>/run/listeners.json`` (useful with port 0) and logged.

    @ivar protocols: the :class:`~mailnet.serving.ProtocolService` children,
        one per module of :data:`PROTOCOLS`.
    @ivar listeners: listener name -> (its ProtocolService, implicit TLS),
        in binding order.
    """

    def __init__(self, context: MailContext, exitOnError=False):
        super().__init__()
        self.context = context
        self.exitOnError = exitOnError
        self.ports = {}
        self.addresses = {}
        self.demoLogin = None
        self.lock = SpoolLock(os.path.join(context.config.runDir, "mailnet.lock"))
        self.protocols = [module.makeService(context) for module in PROTOCOLS]
        self.listeners = {}
        for protocol in self.protocols:
            protocol.setServiceParent(self)
            for name in protocol.listeners:
                self.listeners[name] = (protocol, name in protocol.implicitTLS)

    def _factories(self):
        config = self.context.config
        limits = config.limits
        for name, why in NOT_BUILT.items():
            if getattr(config.listen, name):
                log.info("listener {name}: {why}; [listen] {name} is ignored", name=name, why=why)
        for name, (protocol, implicit) in self.listeners.items():
            description = getattr(config.listen, name)
            if not description:
                continue
            factory = protocol.factory(name)
            refusal = protocol.REFUSAL
            if implicit:
                factory = net.implicitTLS(factory, self.context.tlsOptions)
                refusal = b""
            factory = net.LimitedFactory(factory, limits.connections, limits.connections_per_ip, refusal, name=name,
                                         metrics=self.context.metrics)
            yield name, description, factory

    def _fail(self, error):
        if self.exitOnError:
            # twistd has sent sys.stderr to its log by now; the
            # operator should see exactly one plain line.
            print(f"mailnet: {error}", file=sys.__stderr__, flush=True)
            raise SystemExit(1)
        raise error

    def _lock(self):
        """Take the data directory (before binding: a second server must
        not touch the first one's ports or run/listeners.json)."""
        os.makedirs(self.context.config.runDir, mode=0o700, exist_ok=True)
        if not self.lock.acquire(blocking=False):
            holder = self.lock.holder()
            self._fail(AlreadyRunning(
                f"another mailnet{f' (pid {holder})' if holder else ''} is running with the data directory "
                f"{self.context.config.server.data_dir}; stop it first or give this one another [server] data_dir"))

    def _raiseFileLimit(self):
        need = net.filesNeeded(self.context.config)
        before, after = net.raiseFileLimit(need)
        if after < need:
            log.warn("open files limit is {after}, the connection limits need about {need}: raise it "
                     "(ulimit -n, systemd LimitNOFILE=) or lower [limits] connections", after=after, need=need)
        elif after != before:
            log.info("raised the open files limit from {before} to {after}", before=before, after=after)

    def privilegedStartService(self):
        reactor = self.context.reactor
        self._lock()
        self._raiseFileLimit()
        backlog = self.context.config.limits.listen_backlog
        for name, description, factory in self._factories():
            results = []
            endpoint = endpoints.serverFromString(reactor, net.withBacklog(description, backlog))
            endpoint.listen(factory).addBoth(results.append)
            if not results:
                raise ListenError(f"listener {name} ({description}) did not start synchronously")
            if isinstance(results[0], Exception) or hasattr(results[0], "raiseException"):
                failure = results[0]
                problem = getattr(failure, "value", failure)
                message = f"[listen] {name}: cannot listen on {description!r}: {problem}"
                for port in self.ports.values():
                    port.stopListening()
                self.lock.release()
                self._fail(ListenError(message))
            self.ports[name] = results[0]
            host = results[0].getHost()
            self.addresses[name] = {"host": getattr(host, "host", None), "port": getattr(host, "port", None), "endpoint": description}
        super().privilegedStartService()

    def startService(self):
        super().startService()
        self.demoLogin = ensureDemoUser(self.context)
        self._watchCertificates()
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
        http = self.addresses.get("http")
        if http and http["port"] is not None:
            host = http["host"] if ":" not in (http["host"] or "") else f"[{http['host']}]"
            log.info("jmap session: http://{host}:{port}/.well-known/jmap", host=host, port=http["port"])
            if config.webmail.enabled:
                log.info("webmail: http://{host}:{port}/", host=host, port=http["port"])
        if self.demoLogin:
            log.info("demo login: user {user} password {password}", user=self.demoLogin[0], password=self.demoLogin[1])
        log.info("mailnet ready: {hostname}, domains {domains}, data in {data}",
                 hostname=config.server.hostname, domains=", ".join(config.domains.local), data=config.server.data_dir)

    def _watchCertificates(self):
        """Reload the TLS certificates when their files change, and on SIGHUP (under twistd)."""
        context = self.context
        options = context.tlsOptions
        if options is None or not hasattr(options, "reload"):
            return
        stamps = [tls.fileStamps(context.config)]

        def check(force=False):
            now = tls.fileStamps(context.config)
            if force or now != stamps[0]:
                stamps[0] = now
                tls.reloadCertificates(context.config, options)

        self.reloadCertificates = lambda: check(force=True)
        if context.config.tls.reload_poll:
            self._certPoll = task.LoopingCall(check)
            self._certPoll.clock = context.reactor
            self._certPoll.start(context.config.tls.reload_poll, now=False)
        if self.exitOnError and hasattr(signal, "SIGHUP"):
            # twistd's own process: SIGHUP means "reload", as for most daemons.
            signal.signal(signal.SIGHUP, lambda *_: context.reactor.callFromThread(check, True))

    @defer.inlineCallbacks
    def stopService(self):
        poll, self._certPoll = getattr(self, "_certPoll", None), None
        if poll is not None and poll.running:
            poll.stop()
        yield defer.maybeDeferred(super().stopService)
        yield defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in self.ports.values()])
        self.ports.clear()
        yield defer.maybeDeferred(self.context.store.close)
        self.lock.release()


def ensureDemoUser(context: MailContext):
    """
    With ``[server] demo_user``, make ``demo@<first local domain>`` once, with
    a random password kept in data_dir/demo-password (mode 0600) so that it
    can be printed at every start.  Returns (login, password) or None.
    """
    config = context.config
    if not config.server.demo_user or not isinstance(context.users, auth.UserDB):
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


def makeService(config: Config, reactor=None, store=None, checkers=None, exitOnError=False, users=None):
    """
    Build the whole server from a config.

    @param store: an IMailStore to use instead of the configured backend.
    @param users: an :class:`~mailnet.auth.IUserDirectory` to use instead of
        the users file, for logins and local recipients alike (for example
        ``auth.CheckerUsers(checker, addresses)``).
    @param checkers: the older form: cred checkers for logins (given bytes,
        as twisted.cred specifies); recipients still come from the users
        file.  Prefer ``users=``.
    @return: a :class:`MailnetService` (a ``MultiService``); its ``context``
        attribute is the :class:`MailContext` it gives the protocols.
    """
    context = MailContext(config, reactor=reactor, store=store, checkers=checkers, users=users)
    top = MailnetService(context, exitOnError=exitOnError)
    for module in EXTRA_SERVICES:
        module.makeService(context).setServiceParent(top)
    return top

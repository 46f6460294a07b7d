"""
Users, aliases, local domains, and authentication through twisted.cred.

* :class:`IUserDirectory`: who can log in and who has a mailbox.  Logins
  (the portal) and local recipients (the :class:`Directory`) both go
  through it.  The users file implements it; so can an embedding
  application, or :class:`CheckerUsers` adapts any twisted.cred checker
  plus a list of addresses.
* :class:`UserDB`: the users file, in Dovecot passwd-file form
  (``user@domain:{SCHEME}hash`` and optional ``:uid:gid:gecos:home:shell:extra``
  fields; of the extra fields, only the quota rules are read:
  ``userdb_quota_rule=*:storage=1G``).  It is re-read when it changes on
  disk, so ``mailnet user add`` takes effect on a running server at once.  It is an
  :class:`IUserDirectory` and also an ``ICredentialsChecker`` for
  ``IUsernamePassword``.
* :class:`AliasDB`: the aliases file (``address: target, target``;
  ``@domain: target`` is the domain's catch-all), re-read likewise.
* :class:`Directory`: answers the questions protocols ask: is this domain
  ours, who gets mail for this address, may this user send as that address.
* :class:`MailRealm` / :func:`makePortal`: the cred portal the protocols log
  in through.  Avatars are :class:`IAuthenticatedUser` (SMTP) or the store's
  ``IAccount`` (IMAP, POP3, JMAP).
* :class:`AuthThrottle`: now in :mod:`mailnet.login` (the login sequence
  every protocol runs), importable from here too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import hmac
import os
import secrets

from twisted.cred import credentials, error, portal
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import defer, threads
from mailnet.durable import fileStamp, writeAtomically
from mailnet.logs import Logger
from zope.interface import Attribute, Interface, implementer

from mailnet import passwords
from mailnet.store.interfaces import IAccount
from mailnet.store.quota import rulesFromFields

log = Logger()


def splitAddress(address: str) -> tuple[str, str]:
    """``"User@Example.TEST"`` -> ``("User", "example.test")``; no domain -> ``(addr, "")``."""
    local, sep, domain = address.rpartition("@")
    if not sep:
        return address, ""
    return local, domain.lower().rstrip(".")


def normalize(address: str) -> str:
    """The form used as a key: local part and domain lower-cased."""
    local, domain = splitAddress(address.strip())
    return f"{local.lower()}@{domain}" if domain else local.lower()


def validUsername(name: str) -> bool:
    local, domain = splitAddress(name)
    bad = set(':\r\n\t /\\"\x00')
    return bool(local and domain) and not (bad & set(name)) and ".." not in domain and not local.startswith(".")


class _WatchedFile:
    """
    A small text file parsed into memory and re-read whenever its identity
    (inode, size, mtime) changes.  Writers replace it atomically.
    """

    def __init__(self, path):
        self.path = path
        self._stamp = None
        self._data = None

    def _parse(self, lines):
        raise NotImplementedError

    def current(self):
        stamp = fileStamp(self.path)
        if stamp != self._stamp or self._data is None:
            lines = []
            if stamp is not None:
                with open(self.path, encoding="utf-8") as f:
                    lines = f.read().splitlines()
            self._data = self._parse(lines)
            self._stamp = stamp
            self.changed()
        return self._data

    def changed(self):
        pass

    @contextlib.contextmanager
    def editing(self):
        """
        Lock the file against other writers (``mailnet`` commands run at once)
        and yield its lines; the caller changes the list, which is written
        back atomically (tmp, fsync, rename, fsync dir).
        """
        directory = os.path.dirname(self.path) or "."
        os.makedirs(directory, exist_ok=True)
        with open(self.path + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with open(self.path, encoding="utf-8") as f:
                    lines = f.read().splitlines()
            except FileNotFoundError:
                lines = []
            before = list(lines)
            yield lines
            if lines != before:
                writeAtomically(self.path, "".join(line + "\n" for line in lines).encode("utf-8"), mode=0o600)
            self._stamp = None


class IAuthenticatedUser(Interface):
    """The avatar SMTP gets: just who logged in."""

    username = Attribute("The canonical login name (user@domain).")


@implementer(IAuthenticatedUser)
@dataclasses.dataclass(frozen=True)
class AuthenticatedUser:
    username: str


class IUserDirectory(Interface):
    """
    The users mailnet serves: who may log in, and which addresses have a
    mailbox.  Every login (SMTP AUTH, IMAP, POP3) is checked by
    :meth:`authenticate`; every local recipient and every "may this user
    send as that address" question ends in :meth:`canonical`.

    The users file (:class:`UserDB`) implements it; an application that
    embeds mailnet passes its own to ``makeService(users=...)``, or wraps a
    twisted.cred checker with :class:`CheckerUsers`.

    Names returned by :meth:`authenticate` and :meth:`canonical` are the
    account keys of the store (``store.getAccount(name)``): the same user
    must get the same name from both, or mail and logins reach different
    mailboxes.
    """

    def authenticate(username, password):
        """
        Check a login.  Called by the portal for every protocol.

        @param username: ``str``, as the client sent it (UTF-8 decoded).
        @param password: ``str``, likewise.  Never log it.
        @return: a Deferred firing with the canonical user name, or failing
            with ``twisted.cred.error.UnauthorizedLogin`` (unknown user or
            wrong password: the client is told only "failed").  Any other
            failure is logged and answered as a temporary error.
        """

    def canonical(address):
        """
        The canonical user name whose mailbox receives mail for exactly this
        address, or None.  Aliases, ``user+tag`` and catch-alls are the
        :class:`Directory`'s business, not this method's.

        Called synchronously on the reactor thread for every RCPT: answer
        from memory.
        """

    def exists(address):
        """``canonical(address) is not None``."""

@implementer(ICredentialsChecker, IUserDirectory)
class UserDB(_WatchedFile):
    """
    The users file, and the password checker over it.

    Verification runs in a thread (argon2 takes tens of milliseconds).  A
    verified password is remembered in memory as an HMAC under a per-process
    key for ``cacheSeconds``, so that clients that log in every minute do not
    each cost a full hash; the memory is forgotten when the file changes.
    """

    credentialInterfaces = (credentials.IUsernamePassword,)

    def __init__(self, path, scheme="argon2id", cacheSeconds=300, clock=None, runInThread=None, tokens=None):
        super().__init__(path)
        # App passwords (mailnet/tokens.py TokenDB): a user's token is accepted as their password.
        self.tokens = tokens
        self.runInThread = runInThread or threads.deferToThread
        self.scheme = scheme
        self.cacheSeconds = cacheSeconds
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock = clock
        self._cacheKey = secrets.token_bytes(32)
        self._cache = {}
        self._dummy = None

    _quotaRules = {}

    def _parse(self, lines):
        users = {}
        rules = {}
        for number, line in enumerate(lines, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            name, sep, rest = line.partition(":")
            if not sep:
                log.warn("{path}:{n}: no ':' after the user name; line ignored", path=self.path, n=number)
                continue
            fields = rest.split(":", 6)
            users[normalize(name)] = fields[0]
            if len(fields) == 7 and fields[6].strip():
                self._extraFields(normalize(name), fields[6], number, rules)
        self._quotaRules = rules
        return users

    def _extraFields(self, user, extra, number, rules):
        """
        Dovecot's extra fields (the seventh field: ``key=value`` separated
        by spaces): the quota rules (``userdb_quota_rule=*:storage=1G``,
        mailnet/store/quota.py) are kept; the others are ignored.
        """
        fields = dict(part.partition("=")[::2] for part in extra.split() if "=" in part)
        try:
            found = rulesFromFields(fields)
        except ValueError as e:
            log.warn("{path}:{n}: {error}; quota rule ignored", path=self.path, n=number, error=str(e))
            return
        if found:
            rules[user] = found

    def quotaRules(self, username) -> dict | None:
        """
        The user's quota limits from the users file (``{"storage": bytes,
        "messages": n}``, what is set), or None: the ``[quota]`` defaults
        apply.  From memory, like :meth:`canonical`.
        """
        self.current()
        return self._quotaRules.get(normalize(username))

    def changed(self):
        self._cache.clear()

    # Queries

    def exists(self, username) -> bool:
        return normalize(username) in self.current()

    def canonical(self, username) -> str | None:
        key = normalize(username)
        return key if key in self.current() else None

    def list(self) -> list[str]:
        return sorted(self.current())

    # Changes (used by the CLI; safe against concurrent writers)

    def add(self, username, password):
        if not validUsername(username):
            raise ValueError(f"{username!r} is not a valid user name (want user@domain)")
        key = normalize(username)
        with self.editing() as lines:
            if any(normalize(line.partition(":")[0]) == key for line in lines if ":" in line):
                raise ValueError(f"user {key} exists already")
            lines.append(f"{key}:{passwords.make(password, self.scheme)}")

    def setPassword(self, username, password):
        key = normalize(username)
        with self.editing() as lines:
            for i, line in enumerate(lines):
                name, sep, rest = line.partition(":")
                if sep and normalize(name) == key:
                    extra = rest.split(":", 1)[1:]
                    lines[i] = ":".join([key, passwords.make(password, self.scheme)] + extra)
                    return
            raise KeyError(f"no user {key}")

    def remove(self, username):
        key = normalize(username)
        with self.editing() as lines:
            keep = [line for line in lines if normalize(line.partition(":")[0]) != key or ":" not in line]
            if len(keep) == len(lines):
                raise KeyError(f"no user {key}")
            lines[:] = keep

    # Checking

    def _check(self, key, stored, password):
        # An unknown user is checked against a dummy hash of the configured
        # scheme and cost, so that "no such user" takes as long as "wrong
        # password".  The first unknown user makes it (in this thread):
        # making a hash costs what checking one does, and a known user's
        # login never waits for it.
        if stored is None:
            if self._dummy is None:
                self._dummy = passwords.make(secrets.token_urlsafe(16), self.scheme)
            else:
                passwords.verify(password, self._dummy)
            return False
        try:
            return passwords.verify(password, stored)
        except passwords.UnsupportedScheme as e:
            log.error("users file: {user}: cannot check password: {why}", user=key, why=str(e))
            return False

    def checkPassword(self, username, password) -> defer.Deferred:
        """
        @return: Deferred firing with the canonical username, or failing
            with ``UnauthorizedLogin``.  Never logs the password.  An
            unknown user costs a full hash like a wrong password, and the
            cache holds successes only, so neither tells who exists.
        """
        try:
            if isinstance(username, bytes):
                username = username.decode("utf-8")
        except UnicodeDecodeError:
            return defer.fail(error.UnauthorizedLogin("unknown user or bad password"))
        key = normalize(username)
        stored = self.current().get(key)
        if not password:
            return defer.fail(error.UnauthorizedLogin("unknown user or bad password"))
        if isinstance(password, bytes):
            try:
                password = password.decode("utf-8")
            except UnicodeDecodeError:
                return defer.fail(error.UnauthorizedLogin("unknown user or bad password"))
        if stored is not None and self.tokens is not None and self.tokens.check(key, password):
            return defer.succeed(key)  # an app password: one SHA-256, no thread (mailnet/tokens.py)
        token = hmac.new(self._cacheKey, f"{key}\0{stored}\0{password}".encode(), hashlib.sha256).digest()
        hit = self._cache.get(key) if stored is not None else None
        if hit and hit[1] > self.clock.seconds() and hmac.compare_digest(hit[0], token):
            return defer.succeed(key)

        def done(ok):
            if not ok:
                raise error.UnauthorizedLogin("unknown user or bad password")
            if self.cacheSeconds:
                self._cache[key] = (token, self.clock.seconds() + self.cacheSeconds)
            return key

        return self.runInThread(self._check, key, stored, password).addCallback(done)

    def requestAvatarId(self, creds):
        return self.checkPassword(creds.username, creds.password)

    def authenticate(self, username, password) -> defer.Deferred:
        """L{IUserDirectory.authenticate}: see :meth:`checkPassword`."""
        return self.checkPassword(username, password)


class AliasDB(_WatchedFile):
    """
    The aliases file: ``address: target[, target...]``.  ``@domain: target``
    is the domain's catch-all.  Targets are addresses, local or remote.
    """

    def _parse(self, lines):
        aliases = {}
        for number, line in enumerate(lines, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            name, sep, rest = line.partition(":")
            targets = [t.strip() for t in rest.replace(",", " ").split() if t.strip()]
            if not sep or not targets:
                log.warn("{path}:{n}: expected 'address: target, ...'; line ignored", path=self.path, n=number)
                continue
            aliases[normalize(name)] = targets
        return aliases

    def get(self, address) -> list[str] | None:
        return self.current().get(normalize(address))

    def list(self) -> dict[str, list[str]]:
        return dict(sorted(self.current().items()))

    @staticmethod
    def _checked(address, targets) -> str:
        """The key of a new alias; ValueError for a bad address or target."""
        key = normalize(address)
        local, domain = splitAddress(key)
        if not domain or any(c in key for c in " \t:,"):
            raise ValueError(f"{address!r} is not an address (or @domain for a catch-all)")
        for t in targets:
            if "@" not in t or any(c in t for c in " \t:,"):
                raise ValueError(f"{t!r} is not an address")
        return key

    def add(self, address, targets):
        key = self._checked(address, targets)
        with self.editing() as lines:
            lines[:] = [line for line in lines if normalize(line.partition(":")[0]) != key]
            lines.append(f"{key}: {', '.join(targets)}")

    def remove(self, address):
        key = normalize(address)
        with self.editing() as lines:
            keep = [line for line in lines if normalize(line.partition(":")[0]) != key]
            if len(keep) == len(lines):
                raise KeyError(f"no alias {key}")
            lines[:] = keep


@dataclasses.dataclass
class Resolution:
    """Where mail for one address goes: local usernames and remote addresses."""

    local: list[str] = dataclasses.field(default_factory=list)
    remote: list[str] = dataclasses.field(default_factory=list)


class Directory:
    """
    The address book every protocol consults.

    @ivar domains: set of local domains (lower case).
    """

    MAX_DEPTH = 10

    def __init__(self, domains, users: IUserDirectory, aliases: AliasDB, subaddressSeparator="+"):
        self.domains = {d.lower() for d in domains}
        self.users = users
        self.aliases = aliases
        self.separator = subaddressSeparator

    def isLocalDomain(self, domain) -> bool:
        return domain.lower().rstrip(".") in self.domains

    def isLocal(self, address) -> bool:
        return self.isLocalDomain(splitAddress(address)[1])

    def _stripTag(self, address):
        local, domain = splitAddress(address)
        if self.separator and self.separator in local:
            return local.split(self.separator, 1)[0] + "@" + domain
        return None

    def resolve(self, address) -> Resolution | None:
        """
        Expand an address: aliases (recursively, loops cut), then users,
        then ``user+tag`` as ``user``, then the domain's catch-all.

        @return: a :class:`Resolution`, or None when the address is in a local
            domain and nobody takes it (SMTP 550 5.1.1).  An address in a
            remote domain resolves to itself as a remote address.
        """
        result = Resolution()
        if not self._expand(normalize(address), result, 0, set()):
            return None
        return result

    def _expand(self, address, result, depth, seen) -> bool:
        if address in seen:
            return True
        seen.add(address)
        if not self.isLocal(address):
            if address not in result.remote:
                result.remote.append(address)
            return True
        if depth > self.MAX_DEPTH:
            log.warn("alias expansion deeper than {n} at {a}; cut", n=self.MAX_DEPTH, a=address)
            return False
        candidates = [address]
        stripped = self._stripTag(address)
        if stripped:
            candidates.append(stripped)
        for candidate in candidates:
            targets = self.aliases.get(candidate)
            if targets:
                ok = False
                for target in targets:
                    ok = self._expand(normalize(target), result, depth + 1, seen) or ok
                return ok
            name = self.users.canonical(candidate)
            if name is not None:
                if name not in result.local:
                    result.local.append(name)
                return True
        catchAll = self.aliases.get("@" + splitAddress(address)[1])
        if catchAll:
            ok = False
            for target in catchAll:
                ok = self._expand(normalize(target), result, depth + 1, seen) or ok
            return ok
        return False

    def mayUseSender(self, username, address) -> bool:
        """
        Whether an authenticated user may use ``address`` as MAIL FROM: their
        own address (with or without a +tag), or an alias that delivers to them.
        """
        username, address = normalize(username), normalize(address)
        if address == username or self._stripTag(address) == username:
            return True
        if not self.isLocal(address):
            return False
        resolution = self.resolve(address)
        return resolution is not None and username in resolution.local


def _usernamePasswordChecker(checkers):
    """The checker a Portal would use for username/password logins."""
    if ICredentialsChecker.providedBy(checkers):
        checkers = [checkers]
    probe = credentials.UsernamePassword(b"", b"")
    chosen = None
    for checker in checkers:
        if any(i.providedBy(probe) for i in checker.credentialInterfaces):
            chosen = checker  # like Portal.registerChecker: the last one wins
    if chosen is None:
        raise TypeError("no checker for IUsernamePassword among the checkers given")
    return chosen


@implementer(IUserDirectory)
class CheckerUsers:
    """
    An :class:`IUserDirectory` made of a twisted.cred checker (logins) and
    the addresses that have a mailbox (recipients).

    Any ``ICredentialsChecker`` for ``IUsernamePassword`` works, Twisted's
    stock ``InMemoryUsernamePasswordDatabaseDontUse`` and ``FilePasswordDB``
    included: it is given the username and password as UTF-8 ``bytes``, as
    twisted.cred specifies, exactly as the client typed them.  The avatar ID
    it returns (bytes or str) becomes the user name: the matching address
    of ``addresses`` if there is one, else the ID lower-cased (such a user
    can log in but receives no mail).

    @param checker: one checker, or a list (the last one that handles
        username/password is used, as a ``Portal`` would).
    @param addresses: the addresses that receive mail: an iterable of
        addresses (copied; see :meth:`add` and :meth:`remove`), or any object
        with ``canonical(address)`` (asked each time, e.g. a :class:`UserDB`).
    """

    def __init__(self, checker, addresses=()):
        self.checker = _usernamePasswordChecker(checker)
        if hasattr(addresses, "canonical"):
            self._lookup = addresses
            self._addresses = None
        else:
            if isinstance(addresses, (str, bytes)):
                raise TypeError("addresses: expected a list of addresses, got one string")
            self._lookup = None
            self._addresses = {normalize(a) for a in addresses}

    def add(self, address):
        """Give ``address`` a mailbox (it receives mail from now on)."""
        self._editable().add(normalize(address))

    def remove(self, address):
        self._editable().discard(normalize(address))

    def _editable(self):
        if self._addresses is None:
            raise TypeError("addresses come from an object with canonical(); change them there")
        return self._addresses

    def canonical(self, address) -> str | None:
        if self._lookup is not None:
            return self._lookup.canonical(address)
        key = normalize(address)
        return key if key in self._addresses else None

    def exists(self, address) -> bool:
        return self.canonical(address) is not None

    def authenticate(self, username, password) -> defer.Deferred:
        if isinstance(username, str):
            username = username.encode("utf-8")
        if isinstance(password, str):
            password = password.encode("utf-8")
        d = defer.maybeDeferred(self.checker.requestAvatarId, credentials.UsernamePassword(username, password))

        def named(avatarId):
            if isinstance(avatarId, bytes):
                try:
                    avatarId = avatarId.decode("utf-8")
                except UnicodeDecodeError:
                    raise error.UnauthorizedLogin("the checker's avatar ID is not UTF-8")
            if not isinstance(avatarId, str) or not avatarId:
                raise TypeError(f"the checker returned {type(avatarId).__name__} as avatar ID, not a name")
            return self.canonical(avatarId) or normalize(avatarId)

        return d.addCallback(named)


@implementer(ICredentialsChecker)
class UserDirectoryChecker:
    """
    The portal's checker: username/password logins, checked by an
    :class:`IUserDirectory` with ``str`` arguments whatever the protocol
    gave (bytes that are not UTF-8 fail the login).
    """

    credentialInterfaces = (credentials.IUsernamePassword,)

    def __init__(self, users: IUserDirectory):
        self.users = users

    def requestAvatarId(self, creds):
        username, password = creds.username, creds.password
        try:
            if isinstance(username, bytes):
                username = username.decode("utf-8")
            if isinstance(password, bytes):
                password = password.decode("utf-8")
        except UnicodeDecodeError:
            return defer.fail(error.UnauthorizedLogin("unknown user or bad password"))
        return defer.maybeDeferred(self.users.authenticate, username, password)


@implementer(portal.IRealm)
class MailRealm:
    """Gives a logged-in user their store account or a plain identity."""

    def __init__(self, store):
        self.store = store

    def requestAvatar(self, avatarId, mind, *interfaces):
        if IAccount in interfaces:
            d = defer.maybeDeferred(self.store.getAccount, avatarId)
            return d.addCallback(lambda account: (IAccount, account, lambda: None))
        if IAuthenticatedUser in interfaces:
            return defer.succeed((IAuthenticatedUser, AuthenticatedUser(avatarId), lambda: None))
        raise NotImplementedError(f"no avatar for {interfaces}")


def makePortal(store, users):
    """
    The cred portal the protocols log in through.

    @param users: an :class:`IUserDirectory` (every login goes through its
        ``authenticate``), or a list of cred checkers used as they are.
    """
    if IUserDirectory.providedBy(users):
        return portal.Portal(MailRealm(store), [UserDirectoryChecker(users)])
    return portal.Portal(MailRealm(store), users)

"""
The login sequence, written once for every protocol.

SMTP AUTH, IMAP LOGIN/AUTHENTICATE and POP3 USER/PASS/AUTH all call
:meth:`LoginSequence.login`, which

1. waits for its turn: at most ``[auth] login_parallel_per_ip`` password
   checks from one client address at once, one at a time per account (a
   queue longer than ``[auth] login_queue`` is answered "try again later");
2. waits out the throttle *before* the password is checked, success or not:
   the delay grows with the failures from the client address and the
   failures on the account, so neither hanging up early, nor parallel
   connections, nor many addresses guessing one account get more checks
   than the delay allows;
3. skips the check when the client has gone meanwhile (no free guess);
4. logs in through the cred portal;
5. records the outcome (a success forgets that account's failures and that
   address's failures on that account, nothing else) and logs it, never
   the password;
6. answers a failure only after the delay, as before.

:class:`AuthThrottle` is the arithmetic: counters per client address (IPv6:
per /64) and per account, bounded in number, forgotten after ``window``
seconds without a failure.
"""

from __future__ import annotations

import collections
import ipaddress

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin, UnhandledCredentials
from twisted.internet import defer, task

from mailnet.logs import Logger

log = Logger()


class LoginFailed(Exception):
    """Bad credentials (counted); the delay has been waited already."""


class LoginBusy(Exception):
    """Too many logins are waiting for this address or account: try again later (nothing checked)."""


class LoginAbandoned(Exception):
    """The client went away before its password was checked (nothing checked)."""


def addressKey(ip) -> str:
    """The throttle's key for a client address: IPv4 as is, IPv6 by /64 (one
    customer's allocation; per /128 an attacker would rotate addresses)."""
    try:
        address = ipaddress.ip_address(str(ip).split("%", 1)[0])
    except ValueError:
        return str(ip)
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def accountKey(username) -> str:
    """The throttle's key for an account: the name as the client gave it,
    normalised (known and unknown names alike, so the throttle does not tell
    which exist), and cut to a sane length (bounded memory)."""
    if isinstance(username, bytes):
        username = username.decode("utf-8", "replace")
    return (username or "").strip().lower()[:320]


class _Gate:
    """A FIFO semaphore that knows how many wait."""

    def __init__(self, tokens):
        self.semaphore = defer.DeferredSemaphore(tokens)

    @property
    def waiting(self):
        return len(self.semaphore.waiting)

    @property
    def idle(self):
        return self.semaphore.tokens == self.semaphore.limit and not self.semaphore.waiting


class AuthThrottle:
    """
    How long a login must wait before its password is checked.

    Failures are counted per client address and per account.  With ``n``
    failures (the larger of the two counts) within ``window`` seconds of the
    last one, the next check may run ``baseDelay * 2**(n-1)`` seconds (at
    most ``maxDelay``) after that last failure.  A success clears the
    account's count and removes that address's failures on that account
    from the address's count; failures on other accounts stay.  An address
    that logged in to an account successfully within ``trustSeconds`` is
    not held back by that account's count (others guessing the account
    cannot lock its owner out), only by its own.

    Memory: at most ``maxEntries`` addresses, accounts and address-account
    pairs each; the least recently failed are forgotten first.

    Several nodes (``shared``, an :class:`ISharedFailures` such as the
    PostgreSQL table of mailnet/store/postgres/throttle.py): the counts and
    trusts are kept there too, and that table is the truth.  Before a
    check, :meth:`catchUp` reads the address's and the account's rows into
    the tables here; :meth:`recordFailure` counts a failure there before it
    is answered, :meth:`recordSuccess` clears there.  When the table cannot
    be reached the throttle goes on with this node's counts alone.
    """

    def __init__(self, clock, baseDelay=1.0, maxDelay=30.0, window=900, maxEntries=100_000,
                 parallelPerAddress=1, maxWaiting=20, trustSeconds=7 * 86400, shared=None):
        self.shared = shared
        self._sharedDown = False
        self.clock = clock
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
        self.window = window
        self.maxEntries = maxEntries
        self.parallelPerAddress = parallelPerAddress
        self.maxWaiting = maxWaiting
        self.trustSeconds = trustSeconds
        # key -> [count, time of the last failure]
        self._addresses: collections.OrderedDict = collections.OrderedDict()
        self._accounts: collections.OrderedDict = collections.OrderedDict()
        # (address, account) -> failures of that address on that account
        self._pairs: collections.OrderedDict = collections.OrderedDict()
        # (address, account) -> time of the last success
        self._trusted: collections.OrderedDict = collections.OrderedDict()
        self._gates: dict = {}

    # Arithmetic

    def delayFor(self, count) -> float:
        if count <= 0 or not self.baseDelay:
            return 0.0
        return min(self.maxDelay, self.baseDelay * 2 ** min(count - 1, 64))

    def _entry(self, table, key):
        """[count, last] of a key, or None when unknown or expired."""
        entry = table.get(key)
        if entry is not None and self.clock.seconds() - entry[1] > self.window:
            del table[key]
            entry = None
        return entry

    def _bump(self, table, key, value):
        table[key] = value
        table.move_to_end(key)
        while len(table) > self.maxEntries:
            table.popitem(last=False)

    def _isTrusted(self, ip, account):
        when = self._trusted.get((ip, account))
        return when is not None and self.clock.seconds() - when <= self.trustSeconds

    def _until(self, ip, account):
        """When the next check for (address, account) may run."""
        until = 0.0
        tables = [(self._addresses, ip)]
        if account is not None and not self._isTrusted(ip, account):
            tables.append((self._accounts, account))
        for table, key in tables:
            entry = self._entry(table, key)
            if entry is not None:
                until = max(until, entry[1] + self.delayFor(entry[0]))
        return until

    def wait(self, ip, account=None) -> float:
        """Seconds to wait now before checking a password (0 when not throttled)."""
        ip = addressKey(ip)
        return max(0.0, self._until(ip, account) - self.clock.seconds())

    def failed(self, ip, account=None) -> float:
        """Record a failure; return the seconds to wait before answering it."""
        ip = addressKey(ip)
        now = self.clock.seconds()
        entry = self._entry(self._addresses, ip)
        self._bump(self._addresses, ip, [(entry[0] if entry else 0) + 1, now])
        if account is not None:
            entry = self._entry(self._accounts, account)
            self._bump(self._accounts, account, [(entry[0] if entry else 0) + 1, now])
        entry = self._entry(self._pairs, (ip, account))
        self._bump(self._pairs, (ip, account), [(entry[0] if entry else 0) + 1, now])
        return self.wait(ip, account)

    def succeeded(self, ip, account=None):
        """A good login: forget the account's failures and this address's
        failures on this account (not its failures on other accounts)."""
        ip = addressKey(ip)
        pair = self._pairs.pop((ip, account), None)
        entry = self._entry(self._addresses, ip)
        if pair is not None and entry is not None:
            entry[0] -= pair[0]
            if entry[0] <= 0:
                del self._addresses[ip]
        if account is not None:
            self._accounts.pop(account, None)
            self._bump(self._trusted, (ip, account), self.clock.seconds())

    # Shared by several nodes (``shared``)

    @staticmethod
    def _pairKey(ip, account):
        return f"{ip} {account or ''}"

    def _rows(self, ip, account):
        """(kind, key) -> (local table, local key) of the rows a check looks at."""
        rows = {("ip", ip): (self._addresses, ip)}
        if account is not None:
            rows[("account", account)] = (self._accounts, account)
            rows[("trusted", self._pairKey(ip, account))] = (self._trusted, (ip, account))
        return rows

    def _merge(self, rows, found):
        """The shared table's rows (``found``: (kind, key) -> (count, last)) replace ours."""
        self._sharedUp()
        for name, (table, key) in rows.items():
            value = found.get(name)
            if value is None:
                table.pop(key, None)
            elif table is self._trusted:
                self._bump(table, key, value[1])
            else:
                self._bump(table, key, [value[0], value[1]])

    def _sharedFailed(self, failure):
        if not self._sharedDown:
            self._sharedDown = True
            log.warn("login throttle: the shared failure counts cannot be reached ({why}); "
                     "counting on this node only until they can", why=failure.getErrorMessage())
        return None

    def _sharedUp(self):
        if self._sharedDown:
            self._sharedDown = False
            log.info("login throttle: the shared failure counts are back")

    def catchUp(self, ip, account=None) -> defer.Deferred:
        """Deferred: the other nodes' counts for this address and account read in (now, without ``shared``)."""
        if self.shared is None:
            return defer.succeed(None)
        rows = self._rows(addressKey(ip), account)
        d = self.shared.read(list(rows))
        d.addCallback(lambda found: self._merge(rows, found))
        return d.addErrback(self._sharedFailed)

    def recordFailure(self, ip, account=None) -> defer.Deferred:
        """:meth:`failed`, counted in the shared table too: Deferred firing with the seconds to wait."""
        after = self.failed(ip, account)
        if self.shared is None:
            return defer.succeed(after)
        ip = addressKey(ip)
        rows = self._rows(ip, account)
        counted = [("ip", ip), ("pair", self._pairKey(ip, account))]
        if account is not None:
            counted.append(("account", account))
        d = self.shared.failed(counted, list(rows), self.clock.seconds(), self.window)
        d.addCallback(lambda found: self._merge(rows, found))
        d.addErrback(self._sharedFailed)
        return d.addCallback(lambda _: self.wait(ip, account))

    def recordSuccess(self, ip, account=None):
        """:meth:`succeeded`, cleared in the shared table too (not waited for)."""
        self.succeeded(ip, account)
        if self.shared is not None:
            ip = addressKey(ip)
            d = self.shared.succeeded(ip, account, self._pairKey(ip, account), self.clock.seconds(),
                                      self.window, self.trustSeconds)
            d.addCallback(lambda _: self._sharedUp()).addErrback(self._sharedFailed)

    def delay(self, ip, seconds):
        """A Deferred that fires after ``seconds`` (now if 0)."""
        if seconds <= 0:
            return defer.succeed(None)
        return task.deferLater(self.clock, seconds, lambda: None)

    # Turns

    def _gate(self, key, tokens):
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = _Gate(tokens)
        return gate

    def _release(self, key):
        gate = self._gates.get(key)
        if gate is not None:
            gate.semaphore.release()  # may run the next login through, re-entering here
            if gate.idle and self._gates.get(key) is gate:
                del self._gates[key]

    def acquire(self, ip, account=None) -> defer.Deferred:
        """
        Wait for this login's turn: a free slot for the address (at most
        ``parallelPerAddress`` checks at once), then the account's slot (one
        at a time; not for an address the account trusts).

        @return: Deferred firing with a function that gives the turn back
            (call it exactly once), or failing with :class:`LoginBusy` at once
            when ``maxWaiting`` logins wait already.
        """
        ip = addressKey(ip)
        keys = [("ip", ip, self.parallelPerAddress)]
        if account is not None and not self._isTrusted(ip, account):
            keys.append(("account", account, 1))
        for kind, key, tokens in keys:
            gate = self._gates.get((kind, key))
            if gate is not None and gate.waiting >= self.maxWaiting:
                return defer.fail(LoginBusy(kind))
        held = []

        def releaseAll():
            while held:
                self._release(held.pop())

        @defer.inlineCallbacks
        def take():
            # Always the address first, then the account: one order, no deadlock.
            try:
                for kind, key, tokens in keys:
                    yield self._gate((kind, key), tokens).semaphore.acquire()
                    held.append((kind, key))
            except BaseException:
                releaseAll()
                raise
            return releaseAll

        return take()


class ISharedFailures:
    """
    (Documentation only.)  Where several nodes keep :class:`AuthThrottle`'s
    counts.  Rows are named ``(kind, key)``: ``("ip", address)``,
    ``("account", name)``, ``("pair", "address name")`` (failures of an
    address on an account), ``("trusted", "address name")`` (the last good
    login; its count is 0).  Each method returns a Deferred.

    * ``read(names)``: ``{(kind, key): (count, last)}`` of the rows there are
      (none older than the window).
    * ``failed(counted, names, now, window)``: add one failure at ``now`` to
      each row of ``counted`` (a row older than ``window`` starts again at
      one), then as ``read(names)``.
    * ``succeeded(address, account, pair, now, window, trustSeconds)``: drop
      the account's row and the pair's, take the pair's count off the
      address's row, and trust the pair from ``now``.
    """


class LoginSequence:
    """
    One login, the same way for every protocol (see the module docstring).

    @ivar portal: the twisted.cred portal.
    @ivar throttle: :class:`AuthThrottle` shared by every listener.
    """

    # While waiting out the throttle, how often to look whether the client is still there.
    pollInterval = 0.25
    # HTTP Basic sends the password with every request: after a user's first
    # "logged in" line, more from the same protocol within this many seconds
    # are logged at debug (docs/login.md).  Failures are always at info.
    repeatProtocols = frozenset({"http"})
    repeatWindow = 300
    repeatKept = 10_000

    def __init__(self, portal, throttle: AuthThrottle, clock=None, metrics=None):
        if clock is None:
            clock = throttle.clock
        if metrics is None:
            from mailnet.metrics import DISCARD as metrics
        self.attempts = metrics.authAttempts
        self.portal = portal
        self.throttle = throttle
        self.clock = clock
        self.lastLogged = {}  # (protocol, user) -> when its "logged in" line was last at info

    @defer.inlineCallbacks
    def login(self, protocol, peer, username, password, interface, alive=None):
        """
        Check a user name and password and log in.

        @param protocol: ``"smtp"``, ``"imap"``, ``"pop3"`` (for the log).
        @param peer: the client address (the throttle's key).
        @param username: as the client sent it (str, or bytes as received).
        @param password: likewise; never logged.
        @param interface: the avatar interface wanted from the realm.
        @param alive: a callable, false once the client has gone; then the
            password is not checked.
        @return: Deferred firing with ``(avatar, logout)``; or failing with
            :class:`LoginFailed` (after the failure delay), :class:`LoginBusy`,
            :class:`LoginAbandoned`, or another exception (the realm or the
            store failed; logged here: answer "temporary failure").
        """
        throttle = self.throttle
        account = accountKey(username)
        shown = account[:100]
        try:
            release = yield throttle.acquire(peer, account)
        except LoginBusy as e:
            log.info("{protocol}: {peer}: login for {user!r} refused: too many logins waiting for this {what}",
                     protocol=protocol, peer=peer, user=shown, what="address" if str(e) == "ip" else "account")
            raise
        after = None
        try:
            # Other nodes' failures for this address or account (a shared throttle).
            yield throttle.catchUp(peer, account)
            # Wait in short steps, so that a client that hangs up gives its
            # turn back soon instead of holding it for the whole delay.
            wait = throttle.wait(peer, account)
            while wait > 0 and (alive is None or alive()):
                yield throttle.delay(peer, min(wait, self.pollInterval))
                wait = throttle.wait(peer, account)
            if alive is not None and not alive():
                raise LoginAbandoned()
            try:
                _, avatar, logout = yield self.portal.login(UsernamePassword(username, password), None, interface)
            except (UnauthorizedLogin, UnhandledCredentials):
                after = yield throttle.recordFailure(peer, account)
            except Exception:
                log.failure("{protocol}: {peer}: error checking the login of {user!r}",
                            protocol=protocol, peer=peer, user=shown)
                raise
            else:
                throttle.recordSuccess(peer, account)
        finally:
            release()
        self.attempts.labels(protocol=protocol, outcome="failure" if after is not None else "success").inc()
        if after is not None:
            log.info("{protocol}: {peer}: failed login for {user!r}", protocol=protocol, peer=peer, user=shown)
            # The answer waits too, so a client that reads its answers
            # cannot tell the delay before the check from none.
            yield throttle.delay(peer, after)
            raise LoginFailed()
        name = getattr(avatar, "username", None) or account
        if self._repeated(protocol, name):
            log.debug("{protocol}: {peer}: {user} logged in", protocol=protocol, peer=peer, user=name)
        else:
            log.info("{protocol}: {peer}: {user} logged in", protocol=protocol, peer=peer, user=name)
        return avatar, logout

    def _repeated(self, protocol, name) -> bool:
        """True for a login of a protocol in repeatProtocols logged at info within repeatWindow."""
        if protocol not in self.repeatProtocols:
            return False
        now = self.clock.seconds()
        key = (protocol, str(name).lower())
        last = self.lastLogged.get(key)
        if last is not None and now - last < self.repeatWindow:
            return True
        if len(self.lastLogged) >= self.repeatKept:
            self.lastLogged = {k: t for k, t in self.lastLogged.items() if now - t < self.repeatWindow}
            if len(self.lastLogged) >= self.repeatKept:
                self.lastLogged.clear()
        self.lastLogged[key] = now
        return False

    @defer.inlineCallbacks
    def refuse(self, protocol, peer, username, why):
        """
        A login refused before any password check (say, a SASL authorization
        identity naming someone else): counted and answered like a failure,
        after the delay.  Fails with :class:`LoginFailed`.
        """
        account = accountKey(username)
        log.info("{protocol}: {peer}: login for {user!r} refused: {why}", protocol=protocol, peer=peer,
                 user=account[:100], why=why)
        self.attempts.labels(protocol=protocol, outcome="failure").inc()
        after = yield self.throttle.recordFailure(peer, account)
        yield self.throttle.delay(peer, after)
        raise LoginFailed()

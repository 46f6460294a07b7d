"""
Commands of any state and of the not-authenticated state: CAPABILITY,
NOOP, LOGOUT, ID, STARTTLS, LOGIN, AUTHENTICATE; and ENABLE, NAMESPACE and
COMPRESS (RFC 4978; the compression itself is in mailnet.imap.compress and
the protocol).

On the protocol shape (docs/design.md): no I/O here.  LOGIN and
AUTHENTICATE yield the shared ``Login`` effect (the one login sequence of
mailnet.login, run by the runner) and read its ``LoginOk``/``LoginError``;
AUTHENTICATE without an initial response yields ``ReadLine`` for the
client's answer; STARTTLS and COMPRESS emit ``StartTLS`` and ``Compress``
after their tagged OK.
"""

from __future__ import annotations

import base64
import binascii

from mailnet.imap.commands.common import ALREADY_ANSWERED, AUTHENTICATED, LOGOUT, bad, no
from mailnet.imap.effects import Compress, Login, LoginOk, ReadLine, StartTLS
from mailnet.logs import Logger

log = Logger()


class AuthCommands:
    """Auth commands of :class:`mailnet.imap.session.IMAPSession` (a mixin)."""

    # Any state

    def cmdCapability(self, cmd):
        self.send(b"* CAPABILITY " + self.capabilities() + b"\r\n")

    def cmdNoop(self, cmd):
        pass

    def cmdLogout(self, cmd):
        self.send(b"* BYE Logging out\r\n")
        self.tagged(cmd.tag, "OK", "LOGOUT completed")
        self.state = LOGOUT
        self._close()
        return ALREADY_ANSWERED

    def cmdId(self, cmd):
        # RFC 2971.  The client's values are not logged (they may identify people).
        self.send(b'* ID ("name" "mailnet" "vendor" "mailnet")\r\n')

    # Not authenticated

    def cmdStarttls(self, cmd):
        if self.secure:
            raise bad("TLS is already active")
        if not self.shared.tlsAvailable:
            raise no("TLS is not available")
        self.tagged(cmd.tag, "OK", "Begin TLS negotiation now")
        # RFC 9051 s6.2.1 / RFC 3207 s4.2: everything received before the
        # handshake is discarded, along with any state learned from it.
        self.reader.clear()
        self.secure = True
        self.emit(StartTLS())
        return ALREADY_ANSWERED

    def _mayLogin(self):
        return self.secure or self.settings.allowPlaintext

    def cmdLogin(self, cmd):
        if not self._mayLogin():
            raise no("Plaintext login is disabled until STARTTLS", b"PRIVACYREQUIRED")
        return (yield from self._authenticate(cmd, cmd.user, cmd.password))

    def cmdAuthenticate(self, cmd):
        if cmd.mechanism != "PLAIN":
            raise no("Unsupported authentication mechanism %s" % cmd.mechanism[:20], b"CANNOT")
        if not self._mayLogin():
            raise no("Plaintext authentication is disabled until STARTTLS", b"PRIVACYREQUIRED")
        response = cmd.initial
        if response is None:
            # RFC 3501 s6.2.2: empty challenge.
            self.send(b"+ \r\n")
            response = yield ReadLine()
            if response.strip() == b"*":
                raise bad("Authentication cancelled")
        response = response.strip()
        try:
            decoded = b"" if response == b"=" else base64.b64decode(response, validate=True)
        except (binascii.Error, ValueError):
            raise bad("Invalid base64 in SASL response")
        parts = decoded.split(b"\x00")
        if len(parts) != 3:
            raise bad("Malformed PLAIN response")
        authzid, user, password = parts
        if authzid and authzid != user:
            self.authFailures += 1
            raise no("Proxy authorization is not supported", b"AUTHORIZATIONFAILED")
        return (yield from self._authenticate(cmd, user, password))

    def _authenticate(self, cmd, user, password):
        try:
            username = user.decode("utf-8")
            secret = password.decode("utf-8")
        except UnicodeDecodeError:
            username, secret = user.decode("utf-8", "replace"), ""  # fails in the checker, throttled like any
        peer = self.out.peer
        # The one login sequence (mailnet.login, through the runner):
        # throttle, portal, log.  The authorization identity was checked above.
        outcome = yield Login(username, secret)
        if outcome is None:
            return ALREADY_ANSWERED  # the client went away before the check
        if type(outcome) is not LoginOk:
            if outcome.temporary:
                # too many logins waiting, or the realm or the store failed
                # (logged by the login sequence)
                raise no("Cannot log in now; try again later", b"UNAVAILABLE")
            self.authFailures += 1
            if self.closed:
                return ALREADY_ANSWERED
            if self.authFailures >= self.settings.authFailures:
                self.tagged(cmd.tag, "NO", "Invalid credentials", b"AUTHENTICATIONFAILED")
                self.send(b"* BYE Too many failed logins\r\n")
                self._close()
                return ALREADY_ANSWERED
            raise no("Invalid credentials", b"AUTHENTICATIONFAILED")
        account, logout = outcome.avatar, outcome.logout
        if self.closed:
            logout()
            return ALREADY_ANSWERED
        name = account.username
        count = self.shared.userSessions.get(name, 0)
        if count >= self.settings.connectionsPerUser:
            logout()
            log.info("imap: {peer}: {user} has too many connections", peer=peer, user=name)
            raise no("Too many connections for this user (limit %d)" % self.settings.connectionsPerUser, b"UNAVAILABLE")
        self.shared.userSessions[name] = count + 1
        self.username = name
        self.account = account
        self.logout = logout
        self.state = AUTHENTICATED
        self.reader.maxLiteral = self.settings.maxLiteral
        self._resetTimer()
        return ("OK", "Logged in", b"CAPABILITY " + self.capabilities())

    # Authenticated

    def cmdEnable(self, cmd):
        if "UTF8=ACCEPT" in cmd.capabilities and self.view is not None:
            # RFC 6855 s3: "only valid in the authenticated state" (the
            # names of the selected mailbox would change under the client).
            raise bad("ENABLE UTF8=ACCEPT is only valid in the authenticated state")
        enabled = []
        for cap in cmd.capabilities:
            if cap == "CONDSTORE" and not self.condstore:
                self._enableCondstore()
                enabled.append(cap)
            elif cap == "QRESYNC" and not self.qresync:
                # RFC 7162 s3.2.3: QRESYNC implies CONDSTORE.
                self._enableCondstore()
                self.qresync = True
                enabled.append(cap)
            elif cap == "IMAP4REV2" and not self.rev2:
                self.rev2 = True
                enabled.append("IMAP4rev2")
            elif cap == "UTF8=ACCEPT" and not self.utf8:
                # RFC 6855: mailbox names in UTF-8, UTF-8 headers in APPEND.
                self.utf8 = True
                enabled.append(cap)
        # RFC 5161 s3.2: ENABLED lists what this command newly enabled.
        self.send(b"* ENABLED" + b"".join(b" " + c.encode() for c in enabled) + b"\r\n")

    def _enableCondstore(self):
        if not self.condstore:
            self.condstore = True
            if self.view is not None:
                # RFC 7162 s3.1: enabled while selected -> tell HIGHESTMODSEQ.
                self.send(b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % self.view.folder.highestModSeq)

    def cmdCompress(self, cmd):
        # RFC 4978 s3 (command-auth: authenticated and selected states).
        if cmd.mechanism != "DEFLATE":
            raise bad("Unknown compression mechanism %s (DEFLATE is)" % cmd.mechanism[:20])
        if not self.compressAvailable:
            raise bad("COMPRESS is not available")
        if self.compressed:
            # RFC 4978 s3 (as Dovecot and mox): NO [COMPRESSIONACTIVE].
            raise no("DEFLATE is already active", b"COMPRESSIONACTIVE")
        self.tagged(cmd.tag, "OK", "DEFLATE active")
        # RFC 4978 s3: compressed from right after the CRLF of the OK, both
        # ways; whatever the client sent after the command is compressed.
        self.compressed = True
        self.emit(Compress(self.reader.takeBuffered()))
        return ALREADY_ANSWERED

    def cmdNamespace(self, cmd):
        # RFC 2342: one personal namespace, "/" separated.
        self.send(b'* NAMESPACE (("" "/")) NIL NIL\r\n')

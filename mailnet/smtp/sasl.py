"""
AUTH (RFC 4954) in the SMTP session: the PLAIN (RFC 4616) and LOGIN
mechanisms, when AUTH is allowed (only over TLS unless configured) and when
MAIL needs it first (submission).  No I/O: a complete response becomes the
shared ``Login`` effect, whose outcome comes back through
:meth:`mailnet.smtp.session.SMTPSession.authResult`.
"""

from __future__ import annotations

from mailnet.effects import Login
from mailnet.smtp import parser, replies
from mailnet.smtp.parser import ParseError
from mailnet.smtp.replies import Reply
from mailnet.smtp.settings import SMTP
from mailnet.smtp.states import AUTH, COMMAND


class AuthCommands:
    """AUTH of :class:`mailnet.smtp.session.SMTPSession` (a mixin)."""

    def _authAllowed(self):
        # RFC 4954 s4 / RFC 8314: passwords only over TLS unless configured
        return self.tls or self.settings.allowPlaintext

    def cmdAuth(self, arg):
        if self.helo is None or not self.esmtp:
            # RFC 4954 s4: AUTH follows EHLO
            self._error(replies.NEED_HELO.withText("Send EHLO first"))
            return
        if self.user is not None:
            self._error(replies.ALREADY_AUTHENTICATED)
            return
        if self.mail is not None:
            self._error(replies.AUTH_IN_TRANSACTION)
            return
        if not self._authAllowed():
            # RFC 3207 s4: 530 5.7.0 Must issue a STARTTLS command first
            self._error(replies.NEED_TLS)
            return
        parts = arg.split()
        if not 1 <= len(parts) <= 2:
            raise ParseError(replies.SYNTAX.withText("Syntax: AUTH <mechanism> [initial-response]"))
        mechanism = parts[0].upper()
        initial = parts[1] if len(parts) == 2 else None
        if mechanism == "PLAIN":
            if initial is None:
                self._auth = ("PLAIN", 0, None)
                self.state = AUTH
                self._emit(Reply(334, "", ""))
            else:
                self._plain(initial)
        elif mechanism == "LOGIN":
            if initial is None:
                self._auth = ("LOGIN", 0, None)
                self.state = AUTH
                self._emit(Reply(334, "", "VXNlcm5hbWU6"))  # "Username:"
            else:
                self._authLogin(0, initial)
        else:
            self._error(replies.BAD_MECHANISM)

    def _authLine(self, line: bytes):
        mechanism, step, username = self._auth
        self._auth = None
        self.state = COMMAND
        if self.trace is not None:
            self.trace("**** (SASL response)")
        text = line.decode("ascii", "replace").strip()
        if text == "*":
            # RFC 4954 s4: the client cancels
            self._error(replies.AUTH_CANCELLED)
            return
        try:
            if mechanism == "PLAIN":
                self._plain(text)
            else:
                self._authLogin(step, text, username)
        except ParseError as e:
            self._error(e.reply)

    def _authLogin(self, step, text, username=None):
        value = parser.decodeBase64(text)
        if step == 0:
            self._auth = ("LOGIN", 1, value)
            self.state = AUTH
            self._emit(Reply(334, "", "UGFzc3dvcmQ6"))  # "Password:"
        else:
            self._check(username, value)

    def _plain(self, text):
        # RFC 4616 s2: [authzid] NUL authcid NUL passwd
        message = parser.decodeBase64(text)
        parts = message.split(b"\0")
        if len(parts) != 3:
            raise ParseError(replies.SYNTAX.withText("Malformed PLAIN response (RFC 4616)"))
        authzid, authcid, password = parts
        if authzid and authzid != authcid:
            # acting for another identity is not offered
            self._check(None, None)
            return
        self._check(authcid, password)

    def _check(self, username, password):
        try:
            username = username.decode("utf-8") if username else ""
            password = password.decode("utf-8") if password else ""
        except UnicodeDecodeError:
            username = password = ""
        self.waiting = True
        self._emit(Login(username, password))

    def _needAuth(self):
        """The reply when MAIL needs AUTH first (submission), or None."""
        if self.user is not None or self.settings.role == SMTP:
            return None
        if not self._authAllowed():
            return replies.NEED_TLS
        return replies.NEED_AUTH

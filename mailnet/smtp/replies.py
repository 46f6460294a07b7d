"""
Every fixed reply the SMTP server sends, as named constants.  The value
itself is :class:`mailnet.mail.reply.Reply` (importable from here too), which
renders RFC 2034's rule for enhanced status codes.
"""

from __future__ import annotations

from mailnet.mail.reply import Reply


def greeting(hostname: str) -> Reply:
    # RFC 2034 s4: no enhanced code in the greeting
    return Reply(220, "", f"{hostname} ESMTP mailnet")


# RFC 5321 s4.2.2 reply codes with RFC 3463 enhanced codes

BYE = Reply(221, "2.0.0", "Bye")
OK = Reply(250, "2.0.0", "OK")
SENDER_OK = Reply(250, "2.1.0", "Sender OK")
RECIPIENT_OK = Reply(250, "2.1.5", "Recipient OK")
RESET_OK = Reply(250, "2.0.0", "Reset OK")
HELP = Reply(214, "2.0.0", [
    "mailnet: commands EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY STARTTLS AUTH",
    "See RFC 5321; report problems to the postmaster of this host",
])
VRFY_CANNOT = Reply(252, "2.5.0", "Cannot VRFY user, but will accept the message and attempt delivery")
AUTH_OK = Reply(235, "2.7.0", "Authentication successful")
START_DATA = Reply(354, "", "End data with <CR><LF>.<CR><LF>")
READY_TLS = Reply(220, "2.0.0", "Ready to start TLS")

SHUTTING_DOWN = Reply(421, "4.3.2", "Service shutting down, closing the connection")
TIMEOUT = Reply(421, "4.4.2", "Timeout waiting for the client, closing the connection")
LINE_TIMEOUT = Reply(421, "4.4.2", "Timeout: command line not completed in time, closing the connection")
DATA_TIMEOUT = Reply(421, "4.4.2", "Timeout: message data arriving too slowly, closing the connection")
LOGIN_TIMEOUT = Reply(421, "4.4.2", "Timeout: no login in time, closing the connection")
TOO_MANY_ERRORS = Reply(421, "4.7.0", "Too many errors, closing the connection")
TOO_MANY_AUTH_FAILURES = Reply(421, "4.7.0", "Too many failed logins, closing the connection")
TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "Too many connections, try again later")
STORE_FAILED = Reply(451, "4.3.0", "Error storing the message; try again later")
# RFC 5321 s4.2.3 452 "insufficient system storage"; RFC 3463 X.3.1 "Mail
# system full" (the disk under the store or the spool is full).
MAIL_SYSTEM_FULL = Reply(452, "4.3.1", "Mail system full; try again later")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients; send the others in another transaction")
TLS_UNAVAILABLE = Reply(454, "4.7.0", "TLS not available")
AUTH_TEMPORARY = Reply(454, "4.7.0", "Temporary authentication failure")

UNRECOGNIZED = Reply(500, "5.5.2", "Syntax error, command unrecognized")
LINE_TOO_LONG = Reply(500, "5.5.2", "Line too long")
BARE_LINE_END = Reply(500, "5.5.2", "Command lines must end with <CR><LF>")
BAD_UTF8 = Reply(500, "5.5.2", "Command is not valid UTF-8")
SYNTAX = Reply(501, "5.5.4", "Syntax error in parameters or arguments")
BAD_ADDRESS = Reply(501, "5.1.3", "Bad address syntax")
BAD_SENDER_ADDRESS = Reply(501, "5.1.7", "Bad sender address syntax")
NOT_IMPLEMENTED = Reply(502, "5.5.1", "Command not implemented")
BAD_SEQUENCE = Reply(503, "5.5.1", "Bad sequence of commands")
NEED_HELO = Reply(503, "5.5.1", "Send EHLO or HELO first")
NEED_MAIL = Reply(503, "5.5.1", "Send MAIL first")
NESTED_MAIL = Reply(503, "5.5.1", "Sender already given; send RSET first")
NEED_RCPT = Reply(503, "5.5.1", "Send RCPT first")
ALREADY_AUTHENTICATED = Reply(503, "5.5.1", "Already authenticated")
ALREADY_TLS = Reply(503, "5.5.1", "TLS is already active")
AUTH_IN_TRANSACTION = Reply(503, "5.5.1", "AUTH is not allowed during a mail transaction")
BDAT_FAILED = Reply(503, "5.5.1", "An earlier BDAT of this message failed; send RSET")
BAD_MECHANISM = Reply(504, "5.5.4", "Unrecognized authentication mechanism")
BAD_BASE64 = Reply(501, "5.5.2", "Cannot decode the base64 response")
AUTH_CANCELLED = Reply(501, "5.0.0", "Authentication cancelled")
NEED_TLS = Reply(530, "5.7.0", "Must issue a STARTTLS command first")
NEED_AUTH = Reply(530, "5.7.0", "Authentication required")
AUTH_FAILED = Reply(535, "5.7.8", "Authentication credentials invalid")
UNKNOWN_USER = Reply(550, "5.1.1", "No such user here")
MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds the fixed maximum message size")
# RFC 5321 s3.3 lets the server refuse MAIL FROM; our users send with a login.
LOCAL_SENDER = Reply(550, "5.7.1", "Local domain here: log in to send as it")
SENDER_NOT_OWNED = Reply(553, "5.7.1", "Sender address not owned by the authenticated user")
NON_ASCII_ADDRESS = Reply(553, "5.6.7", "Non-ASCII address needs the SMTPUTF8 parameter")
RELAY_DENIED = Reply(554, "5.7.1", "Relay access denied")
NO_VALID_RECIPIENTS = Reply(554, "5.5.1", "No valid recipients")
DATA_LONG_LINE = Reply(554, "5.6.0", "Message has a line longer than the limit; rejected")
DATA_BARE_LINE_END = Reply(554, "5.6.0", "Message contains a bare CR or LF; lines must end with <CR><LF>")
BAD_PARAMETER = Reply(555, "5.5.4", "MAIL FROM/RCPT TO parameter not recognized or not implemented")

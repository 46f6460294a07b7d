"""
The states of :class:`mailnet.smtp.session.SMTPSession` and the flags of
its ``deadlineFlags`` (plain constants: the session, its AUTH commands in
:mod:`mailnet.smtp.sasl` and the protocol all read them).
"""

# states
COMMAND = "command"  # reading command lines
DATA = "data"  # reading a DATA body
BDAT = "bdat"  # reading a BDAT chunk
AUTH = "auth"  # reading a SASL response line
DISCARD_LINE = "discard"  # skipping the rest of an over-long command line
CLOSED = "closed"  # the session is over

# SMTPSession.deadlineFlags
MID_LINE = 1  # a command line has begun and not ended
RECEIVING = 2  # a message is being received
ENDED = 4  # the session is closed

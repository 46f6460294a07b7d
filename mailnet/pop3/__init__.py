"""
POP3 (RFC 1939) with CAPA (RFC 2449), STLS (RFC 2595), SASL PLAIN
(RFC 5034) and response codes (RFC 2449, RFC 3206).

:mod:`mailnet.pop3.protocol` is the parser and session state machine (no
I/O); :mod:`mailnet.pop3.server` is the Twisted protocol and the listener
service (``makeService`` -> ``POP3Service``, ``REFUSAL``).
"""

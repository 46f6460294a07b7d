"""
Mail that belongs to no protocol: what SMTP, the queue, IMAP, POP3 (and,
next, JMAP and DKIM) all need, in one place.

* :mod:`mailnet.mail.codecs`: xtext (RFC 3461) and modified UTF-7
  (RFC 3501 s5.1.3).
* :mod:`mailnet.mail.lines`: line endings (CRLF) and dot-stuffing.
* :mod:`mailnet.mail.reply`: an SMTP reply, sent or received.
* :mod:`mailnet.mail.mime`: the one-pass MIME scanner, message parts and
  transfer decoding.
* :mod:`mailnet.mail.headers`: header encodings (RFC 2047) and addresses.

Nothing here does I/O beyond reading file objects it is given.
"""
